//! The metadata server's `service-accounts/default/identity` answer (a JWT as text).
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_metadata::fuzzing::id_token;

fuzz_target!(|data: &[u8]| {
    let shown = match id_token(data) {
        Ok(token) => format!("{token:?}"),
        Err(error) => format!("{error} {error:?}"),
    };
    if let Ok(text) = std::str::from_utf8(data) {
        let text = text.trim();
        if text.len() >= 16 {
            assert!(!shown.contains(text), "the ID token is quoted in: {shown}");
        }
    }
});
