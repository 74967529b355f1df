//! Where the metadata server is: `metadata.google.internal`, or the `GCE_METADATA_HOST` override.

use std::fmt;

use url::Url;
use workload_auth_core::{Error, ErrorKind, Result};

/// The environment variable that points clients at another metadata server (`host[:port]`).
pub const METADATA_HOST_ENV: &str = "GCE_METADATA_HOST";

/// The metadata server's name on Google Cloud.
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";

/// The path every metadata value lives under.
pub(crate) const API_PREFIX: &str = "/computeMetadata/v1/";

/// A validated metadata-server authority: `host` or `host:port`, plain HTTP.
///
/// Accepts what people put in `GCE_METADATA_HOST`: `host`, `host:port`, `[::1]:port`, and also
/// `http://host:port` or `http://host:port/`. Refuses `https://` (the metadata server speaks plain
/// HTTP), paths, queries, user names and anything that is not a host.
#[derive(Clone, PartialEq, Eq)]
pub struct MetadataHost {
    authority: String,
    base: Url,
}

impl MetadataHost {
    /// Parses `value`; `source` names where it came from (for the error message).
    pub fn parse(value: &str, source: &str) -> Result<Self> {
        let invalid = |what: &str| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("invalid metadata server host: {what}"),
            )
            .with_endpoint(source.to_owned())
            .with_hint("expected host or host:port, e.g. 127.0.0.1:8080")
        };
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(invalid("it is empty"));
        }
        let rest = match trimmed.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(invalid(
                    "https is not supported, the metadata server speaks plain HTTP",
                ));
            }
            Some(_) => return Err(invalid("unknown URL scheme")),
            None => trimmed,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err(invalid("no host"));
        }
        if rest.contains(['/', '?', '#', '@', '\\']) || rest.chars().any(char::is_whitespace) {
            return Err(invalid(
                "only a host and an optional port are allowed (no path, query or user)",
            ));
        }
        let url = Url::parse(&format!("http://{rest}/")).map_err(|e| invalid(&e.to_string()))?;
        let Some(host) = url.host_str() else {
            return Err(invalid("no host"));
        };
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let base = url
            .join(API_PREFIX.trim_start_matches('/'))
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(Self { authority, base })
    }

    /// The default, `metadata.google.internal`.
    pub fn google() -> Self {
        match Self::parse(DEFAULT_METADATA_HOST, "default") {
            Ok(host) => host,
            Err(_) => unreachable!("the default host is valid"),
        }
    }

    /// Resolves the host a client uses: `explicit` if given, else the value of `GCE_METADATA_HOST`
    /// (`env_value`; empty counts as unset), else `metadata.google.internal`.
    pub fn resolve(explicit: Option<&str>, env_value: Option<&str>) -> Result<Self> {
        if let Some(value) = explicit {
            return Self::parse(value, "metadata host setting");
        }
        match env_value.filter(|v| !v.trim().is_empty()) {
            Some(value) => Self::parse(value, METADATA_HOST_ENV),
            None => Ok(Self::google()),
        }
    }

    /// `host` or `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `http://AUTHORITY/computeMetadata/v1/`.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The URL of `path` (relative to `/computeMetadata/v1/`). A path that could leave that
    /// prefix or this host once joined ([`check_path`]) is an [`ErrorKind::InvalidArgument`],
    /// and the joined URL is checked again, so no request for it can be sent.
    #[cfg(test)]
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        join_checked(&self.base, path)
    }
}

/// `path` joined to `base` (`SCHEME://AUTHORITY/computeMetadata/v1/`), refused as
/// [`MetadataHost::url`] describes.
pub(crate) fn join_checked(base: &Url, path: &str) -> Result<Url> {
    let refuse = |why: &str| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "invalid metadata path {:?}: {why}; expected a relative path such as instance/zone",
                workload_auth_core::text::snippet(path, 80)
            ),
        )
        .with_endpoint(base.to_string())
    };
    check_path(path).map_err(refuse)?;
    let url = base.join(path).map_err(|e| refuse(&e.to_string()))?;
    let stays = url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port() == base.port()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.path().starts_with(API_PREFIX)
        && url.path().len() > API_PREFIX.len();
    if !stays {
        return Err(refuse("it leaves the metadata API"));
    }
    Ok(url)
}

/// Why `path` is not a plain path under `/computeMetadata/v1/`, if it is not.
///
/// `Url::join` resolves `..`, `.` and their percent-encoded forms (`%2e%2E`), treats `//host`
/// as another host and `http:x` as another URL, and drops what follows `?` or `#` into the
/// query or fragment; whitespace and control characters are stripped or encoded behind the
/// caller's back. Rather than predict each, only the characters metadata paths use are allowed:
/// ASCII letters and digits, `-`, `_`, `.`, `~` and `@` (service-account emails), in non-empty
/// segments separated by single `/` (a trailing `/` lists a directory).
pub(crate) fn check_path(path: &str) -> std::result::Result<(), &'static str> {
    /// Far more than any real metadata path.
    const MAX_LEN: usize = 1024;
    if path.is_empty() {
        return Err("it is empty");
    }
    if path.len() > MAX_LEN {
        return Err("it is longer than 1024 bytes");
    }
    if path.starts_with('/') {
        return Err("it starts with `/`");
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.~@/".contains(*c)))
    {
        return Err(match c {
            c if c.is_whitespace() || c.is_control() => {
                "it contains whitespace or a control character"
            }
            '%' => "it contains a percent escape",
            '\\' => "it contains a backslash",
            '?' | '#' => "it contains `?` or `#` (a query or fragment is not part of a path)",
            ':' => "it contains `:` (a URL scheme or port)",
            _ => "it contains a character metadata paths never hold",
        });
    }
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => return Err("it has a `.` or `..` segment"),
            "" if i != last => return Err("it has an empty segment (`//`)"),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Debug for MetadataHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MetadataHost")
            .field(&self.authority)
            .finish()
    }
}

impl fmt::Display for MetadataHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_forms_people_write() {
        for (input, authority) in [
            ("metadata.google.internal", "metadata.google.internal"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("  127.0.0.1:8080\n", "127.0.0.1:8080"),
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("HTTP://127.0.0.1:8080/", "127.0.0.1:8080"),
            ("localhost", "localhost"),
            ("[::1]:9000", "[::1]:9000"),
            ("http://[::1]:9000/", "[::1]:9000"),
            ("169.254.169.254", "169.254.169.254"),
            ("Example.COM:80", "example.com"),
        ] {
            let host = MetadataHost::parse(input, "test").unwrap();
            assert_eq!(host.authority(), authority, "{input}");
            assert_eq!(
                host.base_url().as_str(),
                format!("http://{authority}/computeMetadata/v1/")
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_host() {
        for input in [
            "",
            "   ",
            "https://metadata.google.internal",
            "ftp://x",
            "http://",
            "host/path",
            "http://host:80/computeMetadata/v1/",
            "user@host",
            "host?x=1",
            "host:notaport",
            "host:99999",
            "a b",
        ] {
            let err = MetadataHost::parse(input, "GCE_METADATA_HOST").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{input:?}");
            assert_eq!(err.endpoint(), Some("GCE_METADATA_HOST"));
        }
    }

    #[test]
    fn explicit_beats_env_beats_default() {
        let h = MetadataHost::resolve(Some("127.0.0.1:1"), Some("127.0.0.1:2")).unwrap();
        assert_eq!(h.authority(), "127.0.0.1:1");
        let h = MetadataHost::resolve(None, Some("127.0.0.1:2")).unwrap();
        assert_eq!(h.authority(), "127.0.0.1:2");
        let h = MetadataHost::resolve(None, Some("")).unwrap();
        assert_eq!(h.authority(), DEFAULT_METADATA_HOST);
        let h = MetadataHost::resolve(None, None).unwrap();
        assert_eq!(h, MetadataHost::google());
        let err = MetadataHost::resolve(None, Some("https://x")).unwrap_err();
        assert_eq!(err.endpoint(), Some(METADATA_HOST_ENV));
    }

    #[test]
    fn joins_paths_under_the_api_prefix() {
        let h = MetadataHost::parse("127.0.0.1:8080", "t").unwrap();
        assert_eq!(
            h.url("project/project-id").unwrap().as_str(),
            "http://127.0.0.1:8080/computeMetadata/v1/project/project-id"
        );
        for ok in [
            "instance/",
            "instance/attributes/my_key-1",
            "instance/service-accounts/sa@p.iam.gserviceaccount.com/email",
            "instance/network-interfaces/0/access-configs/0/external-ip",
            "a..b/c.d~e",
        ] {
            let url = h.url(ok).unwrap();
            assert_eq!(url.host_str(), Some("127.0.0.1"), "{ok}");
            assert_eq!(url.path(), format!("{API_PREFIX}{ok}"), "{ok}");
        }
    }

    #[test]
    fn finding_4_paths_that_could_escape_are_refused() {
        let h = MetadataHost::parse("127.0.0.1:8080", "t").unwrap();
        for (path, why) in [
            ("", "empty"),
            ("/instance/zone", "starts with `/`"),
            ("//evil.example/x", "starts with `/`"),
            ("../../x", "`.` or `..` segment"),
            ("instance/../../../x", "`.` or `..` segment"),
            ("instance/./zone", "`.` or `..` segment"),
            ("..", "`.` or `..` segment"),
            ("instance/%2e%2e/%2E%2E/x", "percent escape"),
            ("instance/%2fzone", "percent escape"),
            ("instance//zone", "empty segment"),
            ("instance\\..\\..\\x", "backslash"),
            ("instance/zone?recursive=true", "`?` or `#`"),
            ("instance/zone#x", "`?` or `#`"),
            ("http://evil.example/x", "`:`"),
            ("http:evil.example", "`:`"),
            ("javascript:x", "`:`"),
            ("instance/ zone", "whitespace"),
            ("instance/zone\n", "whitespace"),
            ("instance/\tzone", "whitespace"),
            ("instance/zo\u{0}ne", "control"),
            ("instance/z\u{7f}", "control"),
            ("instance/zöne", "never hold"),
            ("instance/\u{ff0e}\u{ff0e}/x", "never hold"),
            ("instance/<x>", "never hold"),
        ] {
            let err = h.url(path).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{path:?}");
            assert!(err.message().contains(why), "{path:?}: {err}");
        }
        assert!(h.url(&"a/".repeat(600)).is_err());
    }
}
