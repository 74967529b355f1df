//! The metadata server's `service-accounts/default/token` answer.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use workload_auth_fuzz::{assert_no_secret_in, shown};
use workload_auth_metadata::fuzzing::access_token;

fuzz_target!(|data: &[u8]| {
    let now = SystemTime::now();
    if let Ok(token) = access_token(data, now) {
        assert!(token.expires_at() > now);
        assert!(!token.secret().expose().is_empty());
    }
    assert_no_secret_in(data, |data| shown(&access_token(data, now)));
});
