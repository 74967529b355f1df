//! The metadata server's workload-certificates answers as the mTLS crate reads them
//! (`X509Material::from_metadata_json`: workload-identities and trust-anchors, separated by a
//! NUL byte in the fuzzed input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_fuzz::assert_no_secret_in;
use workload_auth_mtls::X509Material;

fuzz_target!(|data: &[u8]| {
    let (identities, anchors) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"{\"trustAnchors\":{}}"[..]),
    };
    if let Ok(material) = X509Material::from_metadata_json(identities, anchors) {
        assert!(!material.svid().chain().is_empty());
    }
    assert_no_secret_in(identities, |identities| {
        X509Material::from_metadata_json(identities, anchors)
            .err()
            .map(|error| format!("{error} {error:?}"))
            .unwrap_or_default()
    });
});
