//! Which URLs a credential may be sent to.
//!
//! Credential files can come from untrusted places (a configuration someone hands you, a pull
//! request). A file that names its own token endpoint could send a credential taken from *this*
//! machine — an OIDC token from a file, a signed AWS request, a certificate-bound token, a source
//! access token for impersonation — to a server of its author's choosing, in clear text. So every
//! URL that receives a credential must be `https://`, with one exception: `http://` to a loopback
//! host (`localhost`, `127.0.0.0/8`, `::1`), which never leaves the machine and is what tests and
//! the emulator use. The check happens when the file is loaded, before any request is made.

use std::net::IpAddr;

use url::{Host, Url};
use workload_auth_core::{Error, ErrorKind, Result};

/// Whether `url` points at this machine.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Parses `raw` (the value of `field` in `place`) as a URL that may receive a credential:
/// `https://HOST/...`, or `http://` to a loopback host.
pub(crate) fn credential_endpoint(raw: &str, field: &str, place: &str) -> Result<Url> {
    let invalid = |why: String| {
        Error::new(
            ErrorKind::InvalidCredentials,
            format!("the `{field}` URL is refused: {why}"),
        )
        .with_endpoint(place.to_owned())
        .with_hint(
            "credentials are only sent to https:// URLs (or http:// to localhost for tests); \
             check that this credentials file comes from a source you trust",
        )
    };
    let url = parse_with_host(raw, &invalid)?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(invalid(format!(
            "http://{} is not encrypted and not on this machine",
            url.host_str().unwrap_or_default()
        ))),
        other => Err(invalid(format!("the scheme {other:?} is not https"))),
    }
}

/// Parses `raw` as a URL that a credential *source* is read from (`credential_source.url`, AWS
/// metadata endpoints): `http` or `https`, no user info. These often are link-local metadata
/// services, which speak plain HTTP.
pub(crate) fn source_url(raw: &str, field: &str, place: &str) -> Result<Url> {
    let invalid = |why: String| {
        Error::new(
            ErrorKind::InvalidCredentials,
            format!("the `{field}` URL is invalid: {why}"),
        )
        .with_endpoint(place.to_owned())
    };
    let url = parse_with_host(raw, &invalid)?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(invalid(format!(
            "the scheme {other:?} is not http or https"
        ))),
    }
}

/// Parses `raw` as an absolute URL with a host and no user info; `invalid` makes the error from
/// what is wrong.
fn parse_with_host(raw: &str, invalid: &impl Fn(String) -> Error) -> Result<Url> {
    let url =
        Url::parse(raw.trim()).map_err(|e| invalid(format!("it is not a valid URL ({e})")))?;
    if url.host().is_none() {
        return Err(invalid("it has no host".to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it contains a user name or password".to_owned()));
    }
    Ok(url)
}

/// Decodes `%XX` escapes. `None` when an escape is not `%` and two hex digits (`%+1`, `%2x`, a
/// trailing `%`) or the result is not UTF-8: a URL that does not say one thing is refused, not
/// guessed at.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    for (i, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'%') {
        let hex = bytes.get(i + 1..i + 3)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
    }
    percent_encoding::percent_decode(bytes)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// A URL without its query and fragment, for error messages.
pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 8: an escape that is not `%` and two hex digits is refused, not read as a number.
    #[test]
    fn finding_8_percent_decode_refuses_malformed_escapes() {
        for bad in ["%+1", "a%+1b", "%-1", "%2x", "%", "a%4", "%%41", "%C3%28"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
        assert_eq!(percent_decode("%41%2f%2F").as_deref(), Some("A//"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("\u{e9}"));
    }

    #[test]
    fn https_and_loopback_http_only() {
        for ok in [
            "https://oauth2.googleapis.com/token",
            "https://sts.googleapis.com/v1/token",
            "http://127.0.0.1:8080/token",
            "http://127.9.9.9/token",
            "http://localhost:1/x",
            "http://[::1]:9/x",
        ] {
            credential_endpoint(ok, "token_url", "f").unwrap();
        }
        for bad in [
            "http://evil.example/",
            "http://169.254.169.254/token",
            "http://10.0.0.1/",
            "ftp://x/",
            "file:///etc/passwd",
            "https://user:pw@host/",
            "not a url",
            "http://localhost.evil.example/",
        ] {
            let err = credential_endpoint(bad, "token_url", "/f.json").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{bad}");
            assert_eq!(err.endpoint(), Some("/f.json"));
            assert!(err.message().contains("`token_url`"));
        }
    }

    #[test]
    fn source_urls_may_be_plain_http() {
        source_url("http://169.254.169.254/latest/meta-data", "url", "f").unwrap();
        assert!(source_url("file:///x", "url", "f").is_err());
        assert_eq!(percent_decode("a%40b+").as_deref(), Some("a@b+"));
        let u = Url::parse("https://h/p?secret=1#f").unwrap();
        assert_eq!(display_url(&u), "https://h/p");
    }
}
