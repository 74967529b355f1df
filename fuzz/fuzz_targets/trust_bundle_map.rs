//! The trust-bundle map (`trust_bundles.json` of the credentials directory).
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_mtls::TrustBundleSet;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = TrustBundleSet::from_bundle_map_json(data) {
        assert_eq!(set.trust_domains().count(), set.len());
        for td in set.trust_domains() {
            assert!(set.for_domain(td).is_some_and(|b| b.trust_domain() == td));
        }
    }
});
