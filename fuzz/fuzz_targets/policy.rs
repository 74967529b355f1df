//! `--allow` policies (`Authorizer::from_policies`): parse → print → parse gives the same policy,
//! and each kind of policy allows what it says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_mtls::{Authorizer, SpiffeId, TrustDomain};

/// The text `from_policies` reads back for a parsed policy (a one-domain `member_of(td:X)` prints
/// in list form).
fn policy_text(printed: &str) -> String {
    printed
        .strip_prefix("member_of(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(printed)
        .to_owned()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Authorizer::from_policies([text]) else {
        return;
    };
    let printed = policy.to_string();
    let again = Authorizer::from_policies([policy_text(&printed)]);
    assert_eq!(again.map(|p| p.to_string()).ok(), Some(printed.clone()));

    let trimmed = text.trim();
    if let Some(td) = trimmed.strip_prefix("td:") {
        let td = TrustDomain::new(td).ok();
        assert!(td.is_some());
        if let Some(td) = td {
            let member = SpiffeId::parse(&format!("{}/x", td.id_string())).ok();
            assert!(member.is_some_and(|m| policy.allows(&m)));
        }
    } else if let Some(prefix) = trimmed.strip_prefix("prefix:") {
        let prefix = SpiffeId::parse(prefix).ok();
        assert!(prefix.as_ref().is_some_and(|p| policy.allows(p)));
        if let Some(p) = prefix {
            let below = SpiffeId::parse(&format!("{p}/x")).ok();
            assert!(below.is_some_and(|b| policy.allows(&b)));
            // A sibling that only shares the text prefix is not under it.
            if !p.path().is_empty() {
                let sibling = SpiffeId::parse(&format!("{p}x")).ok();
                assert!(sibling.is_some_and(|s| !policy.allows(&s)));
            }
        }
    } else if trimmed != "any" {
        let id = SpiffeId::parse(trimmed).ok();
        assert!(id.as_ref().is_some_and(|id| policy.allows(id)));
        if let Some(id) = id {
            let other = SpiffeId::parse(&format!("{id}/x")).ok();
            assert!(other.is_some_and(|o| !policy.allows(&o)));
        }
    }
});
