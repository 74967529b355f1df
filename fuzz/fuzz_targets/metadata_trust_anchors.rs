//! The metadata server's `gce-workload-certificates/trust-anchors` answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_metadata::fuzzing::trust_anchors;

fuzz_target!(|data: &[u8]| {
    if let Ok(anchors) = trust_anchors(data) {
        // Keys are bare trust domains.
        for domain in anchors.keys() {
            assert!(!domain.is_empty());
        }
    }
});
