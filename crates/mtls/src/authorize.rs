//! Authorizers: which verified SPIFFE IDs may talk to us.
//!
//! Small pieces that read like the policy they enforce, in the style of go-spiffe's `tlsconfig`:
//!
//! ```
//! use workload_auth_mtls::{Authorizer, SpiffeId, TrustDomain};
//! let frontend = SpiffeId::parse("spiffe://prod.example/ns/web/sa/frontend").unwrap();
//! let policy = Authorizer::any_of([
//!     Authorizer::exact(frontend.clone()),
//!     Authorizer::path_prefix(SpiffeId::parse("spiffe://prod.example/ns/batch").unwrap()),
//! ]);
//! assert!(policy.authorize(&frontend).is_ok());
//! let other = SpiffeId::parse("spiffe://prod.example/ns/batchx/sa/a").unwrap();
//! assert!(policy.authorize(&other).is_err()); // "/ns/batch" is not a prefix on a '/' boundary
//! ```

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use workload_auth_core::{Error, ErrorKind};

use crate::error::VerificationError;
use crate::spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};

type Predicate = Arc<dyn Fn(&SpiffeId) -> bool + Send + Sync>;

/// A policy over the peer's verified SPIFFE ID.
#[derive(Clone)]
pub struct Authorizer {
    rule: Rule,
}

#[derive(Clone)]
enum Rule {
    Any,
    Exact(SpiffeId),
    OneOf(HashSet<SpiffeId>),
    MemberOf(Vec<TrustDomain>),
    PathPrefix(SpiffeId),
    Predicate { name: String, f: Predicate },
    AnyOf(Vec<Authorizer>),
    AllOf(Vec<Authorizer>),
}

impl Authorizer {
    /// Allows every peer whose certificate verified. Use only where the trust domain alone is
    /// enough (the peer still had to chain to the bundle of its own domain).
    pub fn any() -> Self {
        Self { rule: Rule::Any }
    }

    /// Allows exactly `id`.
    pub fn exact(id: SpiffeId) -> Self {
        Self {
            rule: Rule::Exact(id),
        }
    }

    /// Allows any of `ids`.
    pub fn one_of(ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        Self {
            rule: Rule::OneOf(ids.into_iter().collect()),
        }
    }

    /// Allows every workload of `trust_domain`.
    pub fn member_of(trust_domain: TrustDomain) -> Self {
        Self::member_of_any([trust_domain])
    }

    /// Allows every workload of any of `trust_domains`.
    pub fn member_of_any(trust_domains: impl IntoIterator<Item = TrustDomain>) -> Self {
        Self {
            rule: Rule::MemberOf(trust_domains.into_iter().collect()),
        }
    }

    /// Allows `prefix` itself and every ID beneath it on a `/` boundary, in the same trust domain:
    /// `spiffe://td/ns/a` allows `spiffe://td/ns/a/sa/x` but not `spiffe://td/ns/ab`.
    pub fn path_prefix(prefix: SpiffeId) -> Self {
        Self {
            rule: Rule::PathPrefix(prefix),
        }
    }

    /// Allows the IDs for which `f` returns true. `name` describes the rule in error messages.
    pub fn predicate(
        name: impl Into<String>,
        f: impl Fn(&SpiffeId) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            rule: Rule::Predicate {
                name: name.into(),
                f: Arc::new(f),
            },
        }
    }

    /// Allows a peer that any of `rules` allows (none: nobody).
    pub fn any_of(rules: impl IntoIterator<Item = Authorizer>) -> Self {
        Self {
            rule: Rule::AnyOf(rules.into_iter().collect()),
        }
    }

    /// Allows a peer that all of `rules` allow (none: everybody).
    pub fn all_of(rules: impl IntoIterator<Item = Authorizer>) -> Self {
        Self {
            rule: Rule::AllOf(rules.into_iter().collect()),
        }
    }

    /// One authorizer from policies as the command line's `--allow`, the C API and the Python
    /// API write them, allowing a peer that any of them allows: `any`, a SPIFFE ID (exact),
    /// `td:TRUST_DOMAIN` (member of) or `prefix:SPIFFE_ID` (path prefix on `/` boundaries).
    /// Surrounding whitespace is ignored.
    ///
    /// An empty list is an [`ErrorKind::InvalidArgument`](workload_auth_core::ErrorKind) rather
    /// than an authorizer that refuses everyone (write `any` to allow every verified peer), and
    /// so is a malformed policy, named in the message with the reason as the error's source.
    ///
    /// ```
    /// use workload_auth_mtls::{Authorizer, SpiffeId};
    /// let allow = Authorizer::from_policies(["td:prod.example", "spiffe://ops.example/sa/admin"])?;
    /// assert!(allow.allows(&SpiffeId::parse("spiffe://prod.example/ns/web/sa/a")?));
    /// assert!(!allow.allows(&SpiffeId::parse("spiffe://dev.example/ns/web/sa/a")?));
    /// assert!(Authorizer::from_policies(["td:NOT VALID"]).is_err());
    /// # Ok::<(), workload_auth_core::Error>(())
    /// ```
    pub fn from_policies<I, S>(policies: I) -> workload_auth_core::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut rules = Vec::new();
        for policy in policies {
            let policy = policy.as_ref();
            let rule = Self::parse_policy(policy).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("invalid authorization policy {policy:?}"),
                )
                .with_source(e)
                .with_hint("write `any`, a SPIFFE ID, `td:TRUST_DOMAIN` or `prefix:SPIFFE_ID`")
            })?;
            rules.push(rule);
        }
        match <[Self; 1]>::try_from(rules) {
            Ok([one]) => Ok(one),
            Err(none) if none.is_empty() => Err(Error::new(
                ErrorKind::InvalidArgument,
                "no authorization policy given",
            )
            .with_hint("write `any` to allow every peer whose certificate verifies")),
            Err(many) => Ok(Self::any_of(many)),
        }
    }

    /// One policy of [`Authorizer::from_policies`].
    fn parse_policy(policy: &str) -> Result<Self, SpiffeIdError> {
        let policy = policy.trim();
        if policy == "any" {
            Ok(Self::any())
        } else if let Some(td) = policy.strip_prefix("td:") {
            Ok(Self::member_of(TrustDomain::new(td)?))
        } else if let Some(prefix) = policy.strip_prefix("prefix:") {
            Ok(Self::path_prefix(SpiffeId::parse(prefix)?))
        } else {
            Ok(Self::exact(SpiffeId::parse(policy)?))
        }
    }

    /// Whether the policy allows `id`.
    pub fn allows(&self, id: &SpiffeId) -> bool {
        match &self.rule {
            Rule::Any => true,
            Rule::Exact(want) => want == id,
            Rule::OneOf(set) => set.contains(id),
            Rule::MemberOf(tds) => tds.iter().any(|td| id.is_member_of(td)),
            Rule::PathPrefix(prefix) => id.is_under(prefix),
            Rule::Predicate { f, .. } => f(id),
            Rule::AnyOf(rules) => rules.iter().any(|r| r.allows(id)),
            Rule::AllOf(rules) => rules.iter().all(|r| r.allows(id)),
        }
    }

    /// `Ok` when the policy allows `id`, else [`VerificationError::Unauthorized`] naming the policy.
    pub fn authorize(&self, id: &SpiffeId) -> Result<(), VerificationError> {
        if self.allows(id) {
            Ok(())
        } else {
            Err(VerificationError::Unauthorized {
                id: id.clone(),
                policy: self.to_string(),
            })
        }
    }
}

impl fmt::Display for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, name: &str, items: &[String]) -> fmt::Result {
            write!(f, "{name}(")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(item)?;
            }
            f.write_str(")")
        }
        match &self.rule {
            Rule::Any => f.write_str("any"),
            Rule::Exact(id) => write!(f, "{id}"),
            Rule::OneOf(set) => {
                let mut ids: Vec<String> = set.iter().map(|id| id.to_string()).collect();
                ids.sort_unstable();
                list(f, "one_of", &ids)
            }
            Rule::MemberOf(tds) => {
                let tds: Vec<String> = tds.iter().map(|td| format!("td:{td}")).collect();
                list(f, "member_of", &tds)
            }
            Rule::PathPrefix(prefix) => write!(f, "prefix:{prefix}"),
            Rule::Predicate { name, .. } => write!(f, "predicate({name})"),
            Rule::AnyOf(rules) => list(
                f,
                "any_of",
                &rules.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            ),
            Rule::AllOf(rules) => list(
                f,
                "all_of",
                &rules.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            ),
        }
    }
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Authorizer({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    #[test]
    fn each_rule_allows_what_it_says() {
        let a = id("spiffe://td1/ns/a/sa/x");
        let b = id("spiffe://td1/ns/b/sa/y");
        let c = id("spiffe://td2/ns/a/sa/x");
        assert!(Authorizer::any().allows(&c));
        assert!(Authorizer::exact(a.clone()).allows(&a));
        assert!(!Authorizer::exact(a.clone()).allows(&b));
        let one_of = Authorizer::one_of([a.clone(), c.clone()]);
        assert!(one_of.allows(&a) && one_of.allows(&c) && !one_of.allows(&b));
        let td1 = Authorizer::member_of(TrustDomain::new("td1").unwrap());
        assert!(td1.allows(&a) && td1.allows(&b) && !td1.allows(&c));
        let tds = Authorizer::member_of_any([
            TrustDomain::new("td1").unwrap(),
            TrustDomain::new("td2").unwrap(),
        ]);
        assert!(tds.allows(&c));
        let prefix = Authorizer::path_prefix(id("spiffe://td1/ns/a"));
        assert!(prefix.allows(&a) && !prefix.allows(&b) && !prefix.allows(&c));
        assert!(!prefix.allows(&id("spiffe://td1/ns/ab/sa/x")));
        let pred = Authorizer::predicate("sa is x", |id| id.path().ends_with("/sa/x"));
        assert!(pred.allows(&a) && pred.allows(&c) && !pred.allows(&b));
        let all = Authorizer::all_of([td1.clone(), pred.clone()]);
        assert!(all.allows(&a) && !all.allows(&b) && !all.allows(&c));
        let any = Authorizer::any_of([Authorizer::exact(b.clone()), prefix]);
        assert!(any.allows(&a) && any.allows(&b) && !any.allows(&c));
        assert!(!Authorizer::any_of([]).allows(&a));
        assert!(Authorizer::all_of([]).allows(&a));
    }

    #[test]
    fn refusal_names_the_peer_and_the_policy() {
        let err = Authorizer::member_of(TrustDomain::new("td1").unwrap())
            .authorize(&id("spiffe://td2/x"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "peer spiffe://td2/x is not authorized by policy member_of(td:td1)"
        );
        assert!(matches!(err, VerificationError::Unauthorized { .. }));
    }

    #[test]
    fn command_line_policies_parse() {
        let a = id("spiffe://td1/ns/a/sa/x");
        assert!(Authorizer::parse_policy("any").unwrap().allows(&a));
        assert!(Authorizer::parse_policy("td:td1").unwrap().allows(&a));
        assert!(!Authorizer::parse_policy("td:td2").unwrap().allows(&a));
        assert!(
            Authorizer::parse_policy("prefix:spiffe://td1/ns")
                .unwrap()
                .allows(&a)
        );
        assert!(
            !Authorizer::parse_policy("prefix:spiffe://td1/n")
                .unwrap()
                .allows(&a)
        );
        assert!(
            Authorizer::parse_policy("spiffe://td1/ns/a/sa/x")
                .unwrap()
                .allows(&a)
        );
        assert_eq!(
            Authorizer::parse_policy("td:TD").unwrap_err(),
            SpiffeIdError::BadTrustDomainChar('T')
        );
        assert!(Authorizer::parse_policy("bogus").is_err());
    }

    #[test]
    fn policy_lists_combine_and_are_refused_with_the_bad_entry_named() {
        let web = id("spiffe://prod.example/ns/web/sa/a");
        let admin = id("spiffe://ops.example/sa/admin");
        let dev = id("spiffe://dev.example/ns/web/sa/a");
        let allow =
            Authorizer::from_policies([" td:prod.example", "spiffe://ops.example/sa/admin"])
                .unwrap();
        assert!(allow.allows(&web) && allow.allows(&admin) && !allow.allows(&dev));
        let one = Authorizer::from_policies(["prefix:spiffe://dev.example/ns"]).unwrap();
        assert!(one.allows(&dev) && !one.allows(&web));
        assert_eq!(
            one.to_string(),
            Authorizer::parse_policy("prefix:spiffe://dev.example/ns")
                .unwrap()
                .to_string()
        );

        let e = Authorizer::from_policies(["any", "td:NOT VALID"]).unwrap_err();
        assert_eq!(e.kind(), workload_auth_core::ErrorKind::InvalidArgument);
        assert!(e.message().contains("\"td:NOT VALID\""), "{e}");
        assert!(std::error::Error::source(&e).is_some(), "{e}");
        assert!(e.hint().unwrap().contains("td:TRUST_DOMAIN"), "{e}");
        let e = Authorizer::from_policies(Vec::<String>::new()).unwrap_err();
        assert_eq!(e.kind(), workload_auth_core::ErrorKind::InvalidArgument);
        assert!(e.hint().unwrap().contains("any"), "{e}");
    }

    #[test]
    fn finding_5_td_policy_with_a_path_is_refused_not_widened() {
        assert_eq!(
            Authorizer::parse_policy("td:spiffe://prod.example/ns/admin").unwrap_err(),
            SpiffeIdError::TrustDomainWithPath("/ns/admin".into())
        );
        let other = id("spiffe://prod.example/ns/web/sa/x");
        for ok in ["td:spiffe://prod.example", "td:prod.example"] {
            assert!(Authorizer::parse_policy(ok).unwrap().allows(&other), "{ok}");
        }
    }
}
