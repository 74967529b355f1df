//! The metadata server's `gce-workload-certificates/workload-identities` answer, and the
//! status/body pair that says workload certificates are unavailable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_fuzz::{assert_no_secret_in, shown};
use workload_auth_metadata::fuzzing::{workload_identities, workload_unavailable};

fuzz_target!(|data: &[u8]| {
    if let Ok(identities) = workload_identities(data) {
        assert!(!identities.spiffe_id.is_empty());
    }
    assert_no_secret_in(data, |data| shown(&workload_identities(data)));
    if let Some((status, body)) = data.split_first_chunk::<2>() {
        let _ = workload_unavailable(u16::from_be_bytes(*status), &String::from_utf8_lossy(body));
    }
});
