//! Property tests: SPIFFE IDs parse and print back unchanged, and exactly the strings of the
//! grammar parse; every authorizer rule allows what a plain model of it allows; `--allow`
//! policies parse into the rule they name.
//!
//! The grammar (REFERENCE.md, SPIFFE ID standard): `spiffe://` + a trust domain of lowercase
//! letters, digits, `.`, `-`, `_` + a path of `/`-separated segments of letters, digits, `.`,
//! `-`, `_`, none empty, `.` or `..`, no trailing `/`, at most 2048 bytes in all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use workload_auth_mtls::{Authorizer, MAX_SPIFFE_ID_LEN, SpiffeId, TrustDomain};

/// Enough cases to find the edge cases below, few enough for a two-core CI box.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // A failure prints its minimal input; nothing is written next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The grammar, written independently of the parser.
fn model_is_valid_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("spiffe://") else {
        return false;
    };
    if s.len() > MAX_SPIFFE_ID_LEN {
        return false;
    }
    let (td, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let td_ok = !td.is_empty()
        && td
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    let path_ok = path.is_empty()
        || path[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        });
    td_ok && path_ok
}

fn trust_domain_name() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,24}"
}

fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,12}".prop_filter("not a dot segment", |s| s != "." && s != "..")
}

/// A valid SPIFFE ID straight from the grammar, with its parts.
fn valid_id() -> impl Strategy<Value = (String, Vec<String>)> {
    (trust_domain_name(), prop::collection::vec(segment(), 0..6))
}

fn join(td: &str, segments: &[String]) -> String {
    let mut id = format!("spiffe://{td}");
    for s in segments {
        id.push('/');
        id.push_str(s);
    }
    id
}

/// Strings close to SPIFFE IDs: the scheme, then characters the grammar treats specially.
fn near_id() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["spiffe://", "spiffe:/", "SPIFFE://", "spiffe://", ""]),
        "[a-zA-Z0-9./_:@?#%+ -]{0,30}",
    )
        .prop_map(|(scheme, rest)| format!("{scheme}{rest}"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn grammar_ids_parse_and_print_back((td, segments) in valid_id()) {
        let text = join(&td, &segments);
        let id = SpiffeId::parse(&text).unwrap();
        prop_assert_eq!(id.as_str(), text.as_str());
        prop_assert_eq!(id.to_string(), text.clone());
        prop_assert_eq!(id.trust_domain_name(), td.as_str());
        let path: String = segments.iter().map(|s| format!("/{s}")).collect();
        prop_assert_eq!(id.path(), path.as_str());
        let printed = id.to_string();
        prop_assert_eq!(SpiffeId::parse(&printed).unwrap(), id.clone());
        let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
        prop_assert_eq!(SpiffeId::from_segments(&id.trust_domain(), &refs).unwrap(), id);
    }

    #[test]
    fn near_ids_parse_exactly_when_the_grammar_says_and_round_trip(text in near_id()) {
        let parsed = SpiffeId::parse(&text);
        prop_assert_eq!(parsed.is_ok(), model_is_valid_id(&text), "{:?}: {:?}", text, parsed);
        if let Ok(id) = parsed {
            prop_assert_eq!(id.as_str(), text.as_str());
        }
    }

    #[test]
    fn arbitrary_strings_fail_or_round_trip(text in any::<String>()) {
        let parsed = SpiffeId::parse(&text);
        prop_assert_eq!(parsed.is_ok(), model_is_valid_id(&text));
        if let Ok(id) = parsed {
            prop_assert_eq!(id.to_string(), text.clone());
        }
        // Behind a valid prefix, too: most of these end up in the path.
        let prefixed = format!("spiffe://example.org/{text}");
        let parsed = SpiffeId::parse(&prefixed);
        prop_assert_eq!(parsed.is_ok(), model_is_valid_id(&prefixed));
        if let Ok(id) = parsed {
            prop_assert_eq!(id.as_str(), prefixed.as_str());
        }
    }

    #[test]
    fn trust_domains_parse_bare_or_as_their_id(td in trust_domain_name()) {
        let bare = TrustDomain::new(&td).unwrap();
        prop_assert_eq!(bare.name(), td.as_str());
        prop_assert_eq!(TrustDomain::new(&bare.id_string()).unwrap(), bare.clone());
        prop_assert_eq!(bare.to_string(), td.clone());
        prop_assert!(TrustDomain::new(&td.to_uppercase()).is_ok() == (td.to_uppercase() == td));
    }
}

// ---- authorizer semantics against a model

/// A small universe of IDs so that rules and candidates collide often: two trust domains plus
/// one that extends a name's text, and segments that share text prefixes (`x`, `xy`).
fn small_id() -> impl Strategy<Value = SpiffeId> {
    (
        prop::sample::select(vec!["a.org", "b.org", "a.org.evil"]),
        prop::collection::vec(prop::sample::select(vec!["x", "xy", "y", "x.y"]), 0..4),
    )
        .prop_map(|(td, segs)| {
            let segs: Vec<String> = segs.into_iter().map(str::to_owned).collect();
            SpiffeId::parse(&join(td, &segs)).unwrap()
        })
}

fn small_td() -> impl Strategy<Value = TrustDomain> {
    prop::sample::select(vec!["a.org", "b.org", "a.org.evil"])
        .prop_map(|t| TrustDomain::new(t).unwrap())
}

/// An authorizer rule and a model of what it allows.
#[derive(Clone, Debug)]
enum Model {
    Any,
    Exact(SpiffeId),
    OneOf(Vec<SpiffeId>),
    MemberOf(Vec<TrustDomain>),
    Prefix(SpiffeId),
    AnyOf(Vec<Model>),
    AllOf(Vec<Model>),
}

impl Model {
    fn allows(&self, id: &SpiffeId) -> bool {
        let text = id.as_str();
        match self {
            Model::Any => true,
            Model::Exact(want) => want.as_str() == text,
            Model::OneOf(set) => set.iter().any(|w| w.as_str() == text),
            Model::MemberOf(tds) => tds.iter().any(|td| {
                // Exactly the domain: `spiffe://TD` then the end or a `/`.
                let own = format!("spiffe://{}", td.name());
                text == own || text.starts_with(&format!("{own}/"))
            }),
            Model::Prefix(p) => text == p.as_str() || text.starts_with(&format!("{}/", p.as_str())),
            Model::AnyOf(rules) => rules.iter().any(|r| r.allows(id)),
            Model::AllOf(rules) => rules.iter().all(|r| r.allows(id)),
        }
    }

    fn build(&self) -> Authorizer {
        match self {
            Model::Any => Authorizer::any(),
            Model::Exact(id) => Authorizer::exact(id.clone()),
            Model::OneOf(ids) => Authorizer::one_of(ids.iter().cloned()),
            Model::MemberOf(tds) if tds.len() == 1 => Authorizer::member_of(tds[0].clone()),
            Model::MemberOf(tds) => Authorizer::member_of_any(tds.iter().cloned()),
            Model::Prefix(p) => Authorizer::path_prefix(p.clone()),
            Model::AnyOf(rules) => Authorizer::any_of(rules.iter().map(Model::build)),
            Model::AllOf(rules) => Authorizer::all_of(rules.iter().map(Model::build)),
        }
    }
}

fn model() -> impl Strategy<Value = Model> {
    let leaf = prop_oneof![
        Just(Model::Any),
        small_id().prop_map(Model::Exact),
        prop::collection::vec(small_id(), 0..4).prop_map(Model::OneOf),
        prop::collection::vec(small_td(), 1..3).prop_map(Model::MemberOf),
        small_id().prop_map(Model::Prefix),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Model::AnyOf),
            prop::collection::vec(inner, 0..3).prop_map(Model::AllOf),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn authorizers_allow_what_the_model_allows(
        rule in model(),
        candidates in prop::collection::vec(small_id(), 1..8),
    ) {
        let authorizer = rule.build();
        for id in &candidates {
            prop_assert_eq!(authorizer.allows(id), rule.allows(id), "{} for {}", authorizer, id);
            prop_assert_eq!(authorizer.authorize(id).is_ok(), rule.allows(id));
        }
    }
}

// ---- policy parsing

/// A policy as a user types it, with the rule it must become.
fn policy() -> impl Strategy<Value = (String, Model)> {
    prop_oneof![
        Just(("any".to_owned(), Model::Any)),
        small_id().prop_map(|id| (id.to_string(), Model::Exact(id))),
        small_td().prop_map(|td| (format!("td:{td}"), Model::MemberOf(vec![td]))),
        small_td().prop_map(|td| (format!("td:{}", td.id_string()), Model::MemberOf(vec![td]))),
        small_id().prop_map(|id| (format!("prefix:{id}"), Model::Prefix(id))),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn policies_parse_into_the_rule_they_name(
        (text, rule) in policy(),
        pad in prop::sample::select(vec!["", " ", "\t", "\n"]),
        candidates in prop::collection::vec(small_id(), 1..8),
    ) {
        let parsed = Authorizer::from_policies([format!("{pad}{text}{pad}")]).unwrap();
        for id in &candidates {
            prop_assert_eq!(parsed.allows(id), rule.allows(id), "{:?} for {}", text, id);
        }
    }

    #[test]
    fn arbitrary_policies_parse_only_as_one_of_the_four_forms(text in near_id(), kind in 0..4u8) {
        let text = match kind {
            0 => text,
            1 => format!("td:{text}"),
            2 => format!("prefix:{text}"),
            _ => format!("td:{}", text.trim_start_matches("spiffe://")),
        };
        let trimmed = text.trim();
        let expected = if trimmed == "any" {
            true
        } else if let Some(td) = trimmed.strip_prefix("td:") {
            match td.strip_prefix("spiffe://") {
                // A trust domain's own ID: no path at all.
                Some(_) => model_is_valid_id(td) && !td["spiffe://".len()..].contains('/'),
                None => model_is_valid_id(&format!("spiffe://{td}")) && !td.contains('/'),
            }
        } else if let Some(prefix) = trimmed.strip_prefix("prefix:") {
            model_is_valid_id(prefix)
        } else {
            model_is_valid_id(trimmed)
        };
        let parsed = Authorizer::from_policies([&text]);
        prop_assert_eq!(parsed.is_ok(), expected, "{:?}: {:?}", text, parsed.map(|p| p.to_string()));
    }

    /// Issue 8, finding 5: `td:` with a SPIFFE ID that has a path must be refused, not widened
    /// to the whole trust domain.
    #[test]
    fn finding_5_td_policy_with_a_path_is_refused((td, segments) in valid_id().prop_filter("has a path", |(_, s)| !s.is_empty())) {
        let policy = format!("td:{}", join(&td, &segments));
        let parsed = Authorizer::from_policies([&policy]);
        prop_assert!(parsed.is_err(), "{:?} was accepted as {}", policy, parsed.map(|p| p.to_string()).unwrap_or_default());
    }
}
