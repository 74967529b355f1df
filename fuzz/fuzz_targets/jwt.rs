//! JWT parsing (`IdToken::from_jwt`: the `exp` claim of every ID token this library returns).
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_core::{IdToken, SecretString};
use workload_auth_fuzz::{marker_for, shown};

fn render(jwt: &str) -> String {
    shown(&IdToken::from_jwt(SecretString::from(jwt)))
}

fuzz_target!(|data: &[u8]| {
    let Ok(jwt) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(token) = IdToken::from_jwt(SecretString::from(jwt)) {
        assert_eq!(token.secret().expose(), jwt);
    }
    // Neither the token's Debug output nor an error quotes a part of the JWT: a part seen in
    // the output counts as quoted when, replaced by a marker, the marker is seen instead.
    let shown = render(jwt);
    for part in jwt.split('.').filter(|p| p.len() >= 12) {
        if shown.contains(part) {
            let marker = marker_for(part);
            let changed = render(&jwt.replacen(part, &marker, 1));
            assert!(
                !changed.contains(&marker),
                "a part of the JWT is quoted in: {changed}"
            );
        }
    }
});
