//! JWT parsing (`IdToken::from_jwt`: the `exp` claim of every ID token this library returns).
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_core::{IdToken, SecretString};

fuzz_target!(|data: &[u8]| {
    let Ok(jwt) = std::str::from_utf8(data) else {
        return;
    };
    let shown = match IdToken::from_jwt(SecretString::from(jwt)) {
        Ok(token) => {
            assert_eq!(token.secret().expose(), jwt);
            format!("{token:?}")
        }
        Err(error) => format!("{error} {error:?}"),
    };
    // Neither the token's Debug output nor an error quotes the JWT (or its signature).
    if jwt.len() >= 16 {
        assert!(!shown.contains(jwt), "the JWT is quoted in: {shown}");
    }
    if let Some(signature) = jwt.rsplit('.').next().filter(|s| s.len() >= 16) {
        if jwt.matches('.').count() == 2 {
            assert!(
                !shown.contains(signature),
                "the JWT's signature is quoted in: {shown}"
            );
        }
    }
});
