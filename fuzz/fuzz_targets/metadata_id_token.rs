//! The metadata server's `service-accounts/default/identity` answer (a JWT as text).
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_fuzz::{marker_for, shown};
use workload_auth_metadata::fuzzing::id_token;

fuzz_target!(|data: &[u8]| {
    let result = shown(&id_token(data));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // No part of the token is quoted (see the jwt target).
    for part in text.trim().split('.').filter(|p| p.len() >= 12) {
        if result.contains(part) {
            let marker = marker_for(part);
            let changed = shown(&id_token(text.replacen(part, &marker, 1).as_bytes()));
            assert!(
                !changed.contains(&marker),
                "a part of the ID token is quoted in: {changed}"
            );
        }
    }
});
