//! SPIFFE IDs and trust domains, validated to the SPIFFE ID specification.
//!
//! A SPIFFE ID is `spiffe://` + trust domain + path. The trust domain holds only lowercase letters,
//! digits, `.`, `-` and `_`; each path segment holds letters, digits, `.`, `-` and `_` and is neither
//! empty, `.` nor `..`; there is no trailing `/`, query, fragment, port or user info, and the whole
//! ID is at most 2048 bytes. Anything else is refused with a [`SpiffeIdError`] that names the problem.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The longest SPIFFE ID the specification allows, in bytes.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

const SCHEME: &str = "spiffe://";

/// Why a string is not a SPIFFE ID or trust domain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The string is empty.
    #[error("SPIFFE ID is empty")]
    Empty,
    /// The string does not start with `spiffe://` (the scheme must be lowercase).
    #[error("SPIFFE ID must start with \"spiffe://\"")]
    WrongScheme,
    /// Nothing between `spiffe://` and the path.
    #[error("SPIFFE ID has no trust domain")]
    MissingTrustDomain,
    /// A character not allowed in a trust domain (only `a-z 0-9 . - _`).
    #[error(
        "trust domain contains {0:?}: only lowercase letters, digits, '.', '-' and '_' are allowed"
    )]
    BadTrustDomainChar(char),
    /// A port (`:`) after the trust domain.
    #[error("SPIFFE ID must not have a port")]
    Port,
    /// User info (`@`) before the trust domain.
    #[error("SPIFFE ID must not have user info")]
    UserInfo,
    /// A query (`?`).
    #[error("SPIFFE ID must not have a query")]
    Query,
    /// A fragment (`#`).
    #[error("SPIFFE ID must not have a fragment")]
    Fragment,
    /// A character not allowed in a path segment (only `a-z A-Z 0-9 . - _`; no percent-encoding).
    #[error("path contains {0:?}: only letters, digits, '.', '-' and '_' are allowed in segments")]
    BadPathChar(char),
    /// Two slashes in a row.
    #[error("path has an empty segment")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("path has a '.' or '..' segment")]
    DotSegment,
    /// The path ends with `/`.
    #[error("path must not end with '/'")]
    TrailingSlash,
    /// Longer than [`MAX_SPIFFE_ID_LEN`] bytes.
    #[error("SPIFFE ID is {0} bytes long; the limit is 2048")]
    TooLong(usize),
    /// A trust domain was expected but the SPIFFE ID has a path. Refused rather than truncated:
    /// reading `td:spiffe://prod.example/ns/admin` as the whole of `prod.example` would silently
    /// widen a policy its author meant to be narrow.
    #[error(
        "a trust domain has no path, but this SPIFFE ID has {0:?}: write spiffe://DOMAIN (or use prefix: for a path)"
    )]
    TrustDomainWithPath(String),
}

impl From<SpiffeIdError> for workload_auth_core::Error {
    fn from(e: SpiffeIdError) -> Self {
        workload_auth_core::Error::new(
            workload_auth_core::ErrorKind::InvalidArgument,
            e.to_string(),
        )
    }
}

fn trust_domain_char_error(c: char) -> SpiffeIdError {
    match c {
        ':' => SpiffeIdError::Port,
        '@' => SpiffeIdError::UserInfo,
        '?' => SpiffeIdError::Query,
        '#' => SpiffeIdError::Fragment,
        c => SpiffeIdError::BadTrustDomainChar(c),
    }
}

fn is_trust_domain_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

fn is_path_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

fn validate_trust_domain_name(name: &str) -> Result<(), SpiffeIdError> {
    if name.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    match name.bytes().position(|b| !is_trust_domain_char(b)) {
        None => Ok(()),
        Some(i) => Err(trust_domain_char_error(
            name[i..].chars().next().unwrap_or('\u{fffd}'),
        )),
    }
}

/// Checks a path: empty, or `/`-separated non-empty segments of allowed characters.
fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(SpiffeIdError::BadPathChar(
            path.chars().next().unwrap_or('\u{fffd}'),
        ));
    };
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            return Err(if segments.peek().is_none() {
                SpiffeIdError::TrailingSlash
            } else {
                SpiffeIdError::EmptySegment
            });
        }
        if let Some(i) = segment.bytes().position(|b| !is_path_char(b)) {
            return Err(match segment[i..].chars().next().unwrap_or('\u{fffd}') {
                '?' => SpiffeIdError::Query,
                '#' => SpiffeIdError::Fragment,
                c => SpiffeIdError::BadPathChar(c),
            });
        }
        if segment == "." || segment == ".." {
            return Err(SpiffeIdError::DotSegment);
        }
    }
    Ok(())
}

/// A SPIFFE trust domain, such as `example.org` or `my-pool.global.123.workload.id.goog`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain {
    name: Arc<str>,
}

impl TrustDomain {
    /// Parses a trust domain name (`example.org`) or a trust domain's SPIFFE ID
    /// (`spiffe://example.org`, with no path). A SPIFFE ID with a path is an error
    /// ([`SpiffeIdError::TrustDomainWithPath`]), never its trust domain: a policy naming one
    /// workload must not become one allowing the whole domain.
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        if name.contains("://") {
            let id = SpiffeId::parse(name)?;
            if !id.path().is_empty() {
                return Err(SpiffeIdError::TrustDomainWithPath(id.path().to_owned()));
            }
            return Ok(id.trust_domain());
        }
        if name.len() > MAX_SPIFFE_ID_LEN - SCHEME.len() {
            return Err(SpiffeIdError::TooLong(name.len() + SCHEME.len()));
        }
        validate_trust_domain_name(name)?;
        Ok(Self { name: name.into() })
    }

    /// The bare name, e.g. `example.org`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The trust domain's own SPIFFE ID, e.g. `spiffe://example.org`.
    pub fn id_string(&self) -> String {
        format!("{SCHEME}{}", self.name)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({})", self.name)
    }
}

/// Lets maps keyed by trust domain be looked up by name without allocating (the derived `Hash`
/// and `Eq` are those of the name).
impl std::borrow::Borrow<str> for TrustDomain {
    fn borrow(&self) -> &str {
        &self.name
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for TrustDomain {
    type Error = SpiffeIdError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

/// A validated SPIFFE ID: `spiffe://TRUST_DOMAIN[/PATH]`.
///
/// ```
/// use workload_auth_mtls::SpiffeId;
/// let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/web").unwrap();
/// assert_eq!(id.trust_domain().name(), "example.org");
/// assert_eq!(id.path(), "/ns/prod/sa/web");
/// assert!(SpiffeId::parse("spiffe://example.org/ns/../sa").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: Arc<str>,
    /// Byte offset where the path starts (equal to `id.len()` for a trust domain ID).
    path_start: usize,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID.
    pub fn parse(id: &str) -> Result<Self, SpiffeIdError> {
        if id.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if id.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong(id.len()));
        }
        let Some(rest) = id.strip_prefix(SCHEME) else {
            return Err(SpiffeIdError::WrongScheme);
        };
        let td_end = rest.find('/').unwrap_or(rest.len());
        validate_trust_domain_name(&rest[..td_end])?;
        validate_path(&rest[td_end..])?;
        Ok(Self {
            id: id.into(),
            path_start: SCHEME.len() + td_end,
        })
    }

    /// Builds `spiffe://TD/seg1/seg2/...`, validating each segment.
    pub fn from_segments(
        trust_domain: &TrustDomain,
        segments: &[&str],
    ) -> Result<Self, SpiffeIdError> {
        let mut id = trust_domain.id_string();
        for segment in segments {
            id.push('/');
            id.push_str(segment);
        }
        Self::parse(&id)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain {
            name: self.trust_domain_name().into(),
        }
    }

    /// The trust domain's name, without allocating.
    pub fn trust_domain_name(&self) -> &str {
        &self.id[SCHEME.len()..self.path_start]
    }

    /// Whether this ID belongs to `trust_domain`.
    pub fn is_member_of(&self, trust_domain: &TrustDomain) -> bool {
        self.trust_domain_name() == trust_domain.name()
    }

    /// The path, starting with `/`, or empty for a trust domain's own ID.
    pub fn path(&self) -> &str {
        &self.id[self.path_start..]
    }

    /// The whole ID as a string.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// Whether this ID equals `prefix` or lies beneath it on a `/` boundary: `spiffe://td/ns/a`
    /// is under `spiffe://td/ns` but `spiffe://td/nsx` is not.
    pub fn is_under(&self, prefix: &SpiffeId) -> bool {
        if self.trust_domain_name() != prefix.trust_domain_name() {
            return false;
        }
        match self.path().strip_prefix(prefix.path()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for SpiffeId {
    type Error = SpiffeIdError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SpiffeIdError as E;

    #[test]
    fn valid_ids_parse() {
        for (s, td, path) in [
            ("spiffe://example.org", "example.org", ""),
            ("spiffe://example.org/a", "example.org", "/a"),
            (
                "spiffe://a-b_c.9/Ns/x.y-z_/..a/a..",
                "a-b_c.9",
                "/Ns/x.y-z_/..a/a..",
            ),
            (
                "spiffe://pool.global.123.workload.id.goog/ns/prod/sa/web",
                "pool.global.123.workload.id.goog",
                "/ns/prod/sa/web",
            ),
        ] {
            let id = SpiffeId::parse(s).unwrap();
            assert_eq!(id.as_str(), s);
            assert_eq!(id.trust_domain_name(), td);
            assert_eq!(id.trust_domain().name(), td);
            assert_eq!(id.path(), path);
            assert_eq!(id.to_string(), s);
        }
    }

    #[test]
    fn invalid_ids_name_the_problem() {
        let long = format!("spiffe://td/{}", "a".repeat(2048));
        for (s, want) in [
            ("", E::Empty),
            ("http://example.org/a", E::WrongScheme),
            ("SPIFFE://example.org/a", E::WrongScheme),
            ("spiffe:/example.org", E::WrongScheme),
            ("spiffe://", E::MissingTrustDomain),
            ("spiffe:///path", E::MissingTrustDomain),
            ("spiffe://Example.org/a", E::BadTrustDomainChar('E')),
            ("spiffe://exa mple.org", E::BadTrustDomainChar(' ')),
            ("spiffe://exämple.org", E::BadTrustDomainChar('ä')),
            ("spiffe://example.org:8443/a", E::Port),
            ("spiffe://user@example.org/a", E::UserInfo),
            ("spiffe://example.org?x=1", E::Query),
            ("spiffe://example.org/a?x=1", E::Query),
            ("spiffe://example.org#frag", E::Fragment),
            ("spiffe://example.org/a#frag", E::Fragment),
            ("spiffe://example.org/", E::TrailingSlash),
            ("spiffe://example.org/a/", E::TrailingSlash),
            ("spiffe://example.org//a", E::EmptySegment),
            ("spiffe://example.org/a//b", E::EmptySegment),
            ("spiffe://example.org/.", E::DotSegment),
            ("spiffe://example.org/a/../b", E::DotSegment),
            ("spiffe://example.org/a/./b", E::DotSegment),
            ("spiffe://example.org/a%20b", E::BadPathChar('%')),
            ("spiffe://example.org/a b", E::BadPathChar(' ')),
            ("spiffe://example.org/a*", E::BadPathChar('*')),
            (long.as_str(), E::TooLong(long.len())),
        ] {
            assert_eq!(SpiffeId::parse(s), Err(want.clone()), "{s:?}");
            // Every refusal reads as a sentence a person can act on.
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn length_limit_is_exactly_2048_bytes() {
        let prefix = "spiffe://td/";
        let ok = format!("{prefix}{}", "a".repeat(MAX_SPIFFE_ID_LEN - prefix.len()));
        assert_eq!(ok.len(), 2048);
        assert!(SpiffeId::parse(&ok).is_ok());
        let too_long = format!("{ok}b");
        assert_eq!(SpiffeId::parse(&too_long), Err(E::TooLong(2049)));
    }

    #[test]
    fn trust_domains_parse_bare_or_as_ids() {
        assert_eq!(
            TrustDomain::new("example.org").unwrap().name(),
            "example.org"
        );
        assert_eq!(
            TrustDomain::new("spiffe://example.org").unwrap().name(),
            "example.org"
        );
        assert_eq!(
            TrustDomain::new("example.org").unwrap().id_string(),
            "spiffe://example.org"
        );
        assert_eq!(TrustDomain::new(""), Err(E::MissingTrustDomain));
        assert_eq!(
            TrustDomain::new("Example.org"),
            Err(E::BadTrustDomainChar('E'))
        );
        assert_eq!(TrustDomain::new("example.org:443"), Err(E::Port));
        assert_eq!(
            TrustDomain::new("example.org/a"),
            Err(E::BadTrustDomainChar('/'))
        );
    }

    #[test]
    fn finding_5_trust_domain_refuses_a_spiffe_id_with_a_path() {
        assert_eq!(
            TrustDomain::new("spiffe://prod.example/ns/admin"),
            Err(E::TrustDomainWithPath("/ns/admin".into()))
        );
        assert_eq!(
            TrustDomain::new("spiffe://prod.example/a"),
            Err(E::TrustDomainWithPath("/a".into()))
        );
        // Still refused for the path's own faults first (trailing slash is not an empty path).
        assert_eq!(
            TrustDomain::new("spiffe://prod.example/"),
            Err(E::TrailingSlash)
        );
        assert_eq!(
            TrustDomain::new("spiffe://prod.example").unwrap().name(),
            "prod.example"
        );
        assert_eq!(
            TrustDomain::new("prod.example").unwrap().name(),
            "prod.example"
        );
    }

    #[test]
    fn path_prefix_respects_segment_boundaries() {
        let p = SpiffeId::parse("spiffe://td/ns/prod").unwrap();
        let yes = ["spiffe://td/ns/prod", "spiffe://td/ns/prod/sa/web"];
        let no = [
            "spiffe://td/ns/production",
            "spiffe://td/ns",
            "spiffe://other/ns/prod/x",
        ];
        for s in yes {
            assert!(SpiffeId::parse(s).unwrap().is_under(&p), "{s}");
        }
        for s in no {
            assert!(!SpiffeId::parse(s).unwrap().is_under(&p), "{s}");
        }
        let td = SpiffeId::parse("spiffe://td").unwrap();
        assert!(SpiffeId::parse("spiffe://td/x").unwrap().is_under(&td));
    }

    #[test]
    fn from_segments_validates_each_segment() {
        let td = TrustDomain::new("td").unwrap();
        assert_eq!(
            SpiffeId::from_segments(&td, &["ns", "a"]).unwrap().as_str(),
            "spiffe://td/ns/a"
        );
        assert_eq!(SpiffeId::from_segments(&td, &["a/"]), Err(E::TrailingSlash));
        assert_eq!(SpiffeId::from_segments(&td, &[".."]), Err(E::DotSegment));
    }
}
