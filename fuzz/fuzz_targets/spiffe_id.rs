//! SPIFFE IDs and trust domains: parse → print → parse round trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_mtls::{MAX_SPIFFE_ID_LEN, SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SpiffeId::parse(text) {
        assert_eq!(id.as_str(), text, "a parsed ID prints as it was written");
        assert!(text.len() <= MAX_SPIFFE_ID_LEN);
        assert_eq!(SpiffeId::parse(&id.to_string()).ok().as_ref(), Some(&id));
        let td = id.trust_domain();
        assert!(id.is_member_of(&td));
        assert_eq!(
            format!("spiffe://{}{}", id.trust_domain_name(), id.path()),
            text
        );
        assert_eq!(TrustDomain::new(td.name()).ok().as_ref(), Some(&td));
        assert!(id.is_under(&id));
        let segments: Vec<&str> = id.path().split('/').skip(1).collect();
        let rebuilt = SpiffeId::from_segments(&td, &segments);
        assert_eq!(rebuilt.ok().as_ref(), Some(&id));
        assert!(!id.path().ends_with('/'));
    }
    if let Ok(td) = TrustDomain::new(text) {
        assert_eq!(TrustDomain::new(td.name()).ok().as_ref(), Some(&td));
        let as_id = SpiffeId::parse(&td.id_string());
        assert!(as_id.is_ok_and(|id| id.path().is_empty() && id.is_member_of(&td)));
    }
});
