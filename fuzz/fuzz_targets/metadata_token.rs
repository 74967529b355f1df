//! The metadata server's `service-accounts/default/token` answer.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use workload_auth_fuzz::assert_no_secret_in;
use workload_auth_metadata::fuzzing::access_token;

fuzz_target!(|data: &[u8]| {
    let now = SystemTime::now();
    let shown = match access_token(data, now) {
        Ok(token) => {
            assert!(token.expires_at() > now);
            assert!(!token.secret().expose().is_empty());
            format!("{token:?}")
        }
        Err(error) => format!("{error} {error:?}"),
    };
    assert_no_secret_in(data, &shown);
});
