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

    /// The URL of `path` (relative to `/computeMetadata/v1/`).
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.base.join(path).map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("invalid metadata path: {e}"),
            )
            .with_endpoint(path.to_owned())
        })
    }
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
    }
}
