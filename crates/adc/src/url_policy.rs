//! Which URLs a credential may be sent to.
//!
//! Credential files can come from untrusted places (a configuration someone hands you, a pull
//! request). A file that names its own token endpoint could send a credential taken from *this*
//! machine — an OIDC token read from a file, a signed AWS request, a certificate-bound token, a
//! source access token for impersonation — to a server of its author's choosing. So every URL
//! that receives a credential must be one of:
//!
//! - `https://` to a Google token endpoint of the `googleapis.com` universe: `sts`, `oauth2` and
//!   `iamcredentials`, with their `mtls.` forms and regional and Private Service Connect forms
//!   (`sts.REGION.rep.googleapis.com`, `REGION-sts.googleapis.com`, `sts-NAME.p.googleapis.com`,
//!   the shapes google-auth once validated), plus `accounts.google.com` and
//!   `www.googleapis.com`, which Google-written files name;
//! - `http://` or `https://` to a loopback host (`localhost`, `127.0.0.0/8`, `::1`), which never
//!   leaves the machine and is what tests and the emulator use;
//! - `https://` to a host the caller allowed: [`Builder::with_allowed_endpoints`] or
//!   [`ALLOWED_ENDPOINTS_ENV`].
//!
//! A file's `universe_domain` is not enough to trust hosts under it: the file's author wrote it
//! too. Another universe's endpoints are allowed by allowing `*.UNIVERSE`.
//!
//! The AWS source's metadata URLs may only be the EC2 instance metadata service
//! (`169.254.169.254`, `fd00:ec2::254`) or loopback, and its `regional_cred_verification_url` an
//! AWS STS host. The check happens when the file is loaded, before any request is made.
//!
//! [`Builder::with_allowed_endpoints`]: crate::Builder::with_allowed_endpoints
//! [`ALLOWED_ENDPOINTS_ENV`]: crate::ALLOWED_ENDPOINTS_ENV

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};
use workload_auth_core::{Error, ErrorKind, Result};

use crate::env::ALLOWED_ENDPOINTS_ENV;

/// Whether `url` points at this machine.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// The Google services that receive credentials.
const GOOGLE_SERVICES: [&str; 3] = ["sts", "oauth2", "iamcredentials"];

/// Hosts outside the service patterns that Google-written credential files name.
const GOOGLE_FIXED_HOSTS: [&str; 2] = ["accounts.google.com", "www.googleapis.com"];

/// One DNS label: letters, digits and `-`, 1 to 63 characters.
fn is_label(text: &str) -> bool {
    (1..=63).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `host` (lower case, no trailing dot) is a Google endpoint that receives credentials.
pub(crate) fn is_google_endpoint(host: &str) -> bool {
    if GOOGLE_FIXED_HOSTS.contains(&host) {
        return true;
    }
    let Some(rest) = host.strip_suffix(".googleapis.com") else {
        return false;
    };
    let rest = rest.strip_suffix(".mtls").unwrap_or(rest);
    let labels: Vec<&str> = rest.split('.').collect();
    let service = |s: &str| GOOGLE_SERVICES.contains(&s);
    match labels.as_slice() {
        // sts.googleapis.com
        [s] if service(s) => true,
        // REGION-sts.googleapis.com
        [one] => GOOGLE_SERVICES.iter().any(|svc| {
            one.strip_suffix(svc)
                .and_then(|r| r.strip_suffix('-'))
                .is_some_and(is_label)
        }),
        // REGION.sts.googleapis.com, sts.REGION.googleapis.com
        [a, b] if service(a) && is_label(b) => true,
        [a, b] if is_label(a) && service(b) => true,
        // sts-NAME.p.googleapis.com (Private Service Connect)
        [a, "p"] => GOOGLE_SERVICES.iter().any(|svc| {
            a.strip_prefix(svc)
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(is_label)
        }),
        // sts.REGION.rep.googleapis.com (regional endpoints)
        [s, region, "rep"] => service(s) && is_label(region),
        _ => false,
    }
}

/// One entry of the caller's allowed hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostRule {
    /// Exactly this host (a DNS name or an IP address).
    Exact(String),
    /// Any host under this domain (`*.corp.example`: `a.corp.example`, not `corp.example`).
    Under(String),
}

/// The hosts, beyond Google's and this machine's, that credentials may be sent to. Empty by
/// default; filled from [`ALLOWED_ENDPOINTS_ENV`] and
/// [`Builder::with_allowed_endpoints`](crate::Builder::with_allowed_endpoints).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EndpointPolicy {
    rules: Vec<HostRule>,
}

impl EndpointPolicy {
    /// Adds the comma-separated entries of `list` (from `origin`, named in errors). Every entry
    /// must be a host name, an IP address, or `*.` and a domain of two labels or more; anything
    /// else — `*`, `*.com`, an empty entry, a URL, a port — is an error rather than ignored, so a
    /// typo cannot widen (or silently drop) the list.
    pub(crate) fn add_list(&mut self, list: &str, origin: &str) -> Result<()> {
        if list.trim().is_empty() {
            return Ok(());
        }
        for entry in list.split(',') {
            self.add(entry, origin)?;
        }
        Ok(())
    }

    /// Adds one entry (see [`EndpointPolicy::add_list`]).
    pub(crate) fn add(&mut self, entry: &str, origin: &str) -> Result<()> {
        let refuse = |why: &str| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{origin} has the entry {:?}, which is not allowed: {why}",
                    workload_auth_core::text::snippet(entry, 80)
                ),
            )
            .with_hint(
                "list host names (token.corp.example), IP addresses, or *.DOMAIN with at least \
                 two labels (*.corp.example), separated by commas; no schemes, ports or paths",
            )
        };
        let text = entry.trim().to_ascii_lowercase();
        let text = text.strip_suffix('.').unwrap_or(&text);
        if text.is_empty() {
            return Err(refuse("it is empty"));
        }
        let unbracketed = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            if ip.is_unspecified() {
                return Err(refuse("an unspecified address matches nothing"));
            }
            self.rules.push(HostRule::Exact(ip.to_string()));
            return Ok(());
        }
        let (rule, domain) = match text.strip_prefix("*.") {
            Some(domain) => (HostRule::Under(domain.to_owned()), domain),
            None => (HostRule::Exact(text.to_owned()), text),
        };
        if !domain.split('.').all(is_label) || domain.len() > 253 {
            return Err(refuse(
                "it is not a host name (letters, digits, `-` and `.`; wildcards only as a \
                 leading `*.`)",
            ));
        }
        if matches!(rule, HostRule::Under(_)) && domain.split('.').count() < 2 {
            return Err(refuse(
                "a wildcard must name a domain of at least two labels (*.corp.example, not \
                 *.example)",
            ));
        }
        self.rules.push(rule);
        Ok(())
    }

    /// Whether the caller allowed `host` (lower case, no trailing dot; IPv6 without brackets).
    fn allows(&self, host: &str) -> bool {
        self.rules.iter().any(|rule| match rule {
            HostRule::Exact(h) => h == host,
            HostRule::Under(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        })
    }

    /// Parses `raw` (the value of `field` in `place`, a file of universe `universe`) as a URL
    /// that may receive a credential: see the module documentation.
    pub(crate) fn credential_endpoint(
        &self,
        raw: &str,
        field: &str,
        place: &str,
        universe: &str,
    ) -> Result<Url> {
        let invalid = |why: String| refused(field, place, why);
        let url = parse_with_host(raw, &invalid)?;
        if is_loopback(&url) && matches!(url.scheme(), "http" | "https") {
            return Ok(url);
        }
        match url.scheme() {
            "https" => {}
            "http" => {
                return Err(invalid(format!(
                    "http://{} is not encrypted and not on this machine",
                    url.host_str().unwrap_or_default()
                )));
            }
            other => return Err(invalid(format!("the scheme {other:?} is not https"))),
        }
        let host = match url.host() {
            Some(Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            None => String::new(),
        };
        let host = host.strip_suffix('.').unwrap_or(&host);
        if is_google_endpoint(host) || self.allows(host) {
            return Ok(url);
        }
        let mut hint = format!(
            "credentials are sent only to Google's token, STS and IAM credentials endpoints \
             (sts., oauth2., iamcredentials.googleapis.com and their mtls, regional and private \
             forms) or to this machine; if this file comes from a source you trust and {host} \
             is your own endpoint, allow it with {ALLOWED_ENDPOINTS_ENV}={host} or \
             Builder::with_allowed_endpoints"
        );
        if universe != crate::kinds::DEFAULT_UNIVERSE_DOMAIN {
            hint.push_str(&format!(
                " (the file names the universe {:?}; allow *.{} to trust all of it)",
                workload_auth_core::text::snippet(universe, 80),
                workload_auth_core::text::snippet(universe, 80)
            ));
        }
        Err(Error::new(
            ErrorKind::InvalidCredentials,
            format!(
                "the `{field}` URL is refused: {host} is not a Google endpoint that receives \
                 credentials, not on this machine, and not an allowed endpoint"
            ),
        )
        .with_endpoint(place.to_owned())
        .with_hint(hint))
    }
}

/// Parses `raw` as a URL that receives a credential and that the calling program chose itself (a
/// builder's endpoint override, or a Google endpoint derived from the universe domain), not a
/// file: `https://` anywhere, or `http://` to this machine. The host rules above are for files,
/// whose authors may not be trusted; a program's own configuration is.
pub(crate) fn caller_endpoint(raw: &str, field: &str, place: &str) -> Result<Url> {
    let invalid = |why: String| refused(field, place, why);
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

/// The error for a refused credential URL.
fn refused(field: &str, place: &str, why: String) -> Error {
    Error::new(
        ErrorKind::InvalidCredentials,
        format!("the `{field}` URL is refused: {why}"),
    )
    .with_endpoint(place.to_owned())
    .with_hint(
        "credentials are only sent over https:// to Google's token endpoints or allowed hosts \
         (or to localhost, for tests); check that this credentials file comes from a source you \
         trust",
    )
}

/// The EC2 instance metadata service's addresses.
const AWS_IMDS_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
const AWS_IMDS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Parses `raw` as one of the AWS source's metadata URLs (`url`, `region_url`,
/// `imdsv2_session_token_url`): `http://169.254.169.254/...`, `http://[fd00:ec2::254]/...`, or
/// loopback for tests. The IMDSv2 session token and the role's keys travel over these.
pub(crate) fn aws_metadata_url(raw: &str, field: &str, place: &str) -> Result<Url> {
    let invalid = |why: String| refused(field, place, why);
    let url = parse_with_host(raw, &invalid)?;
    if is_loopback(&url) && matches!(url.scheme(), "http" | "https") {
        return Ok(url);
    }
    let imds = match url.host() {
        Some(Host::Ipv4(ip)) => ip == AWS_IMDS_V4,
        Some(Host::Ipv6(ip)) => ip == AWS_IMDS_V6,
        _ => false,
    };
    if url.scheme() == "http" && imds {
        return Ok(url);
    }
    Err(Error::new(
        ErrorKind::InvalidCredentials,
        format!(
            "the `{field}` URL is refused: the AWS source only reads the EC2 instance metadata \
             service (http://169.254.169.254 or http://[fd00:ec2::254]), or this machine"
        ),
    )
    .with_endpoint(place.to_owned())
    .with_hint("check that this credentials file comes from a source you trust"))
}

/// Whether `host` is an AWS STS endpoint: `sts.amazonaws.com`, `sts.REGION.amazonaws.com`,
/// `sts-fips.REGION.amazonaws.com`, or the same under `amazonaws.com.cn`.
pub(crate) fn is_aws_sts_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let Some(rest) = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
    else {
        return false;
    };
    match rest.split('.').collect::<Vec<_>>().as_slice() {
        ["sts"] => true,
        ["sts" | "sts-fips", region] => is_label(region),
        _ => false,
    }
}

/// Checks `url` as the AWS `regional_cred_verification_url` (with the region filled in): an
/// `https://` AWS STS host, or `https://` to loopback for tests. The subject token is a signed request for it.
pub(crate) fn aws_verification_url(url: &str, field: &str, place: &str) -> Result<Url> {
    let invalid = |why: String| refused(field, place, why);
    let parsed = parse_with_host(url, &invalid)?;
    if parsed.scheme() == "https"
        && (is_loopback(&parsed) || parsed.host_str().is_some_and(is_aws_sts_host))
    {
        return Ok(parsed);
    }
    Err(invalid(
        "it must be an https:// AWS STS endpoint (sts.REGION.amazonaws.com)".to_owned(),
    ))
}

/// Parses `raw` as a URL that a credential *source* is read from (`credential_source.url`):
/// `http` or `https`, no user info. What it returns only goes to the checked token URL, and these
/// often are link-local metadata services (Azure's), which speak plain HTTP.
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

    fn check(policy: &EndpointPolicy, raw: &str) -> Result<Url> {
        policy.credential_endpoint(raw, "token_url", "/f.json", "googleapis.com")
    }

    #[test]
    fn google_endpoints_and_loopback_only_by_default() {
        let policy = EndpointPolicy::default();
        for ok in [
            "https://oauth2.googleapis.com/token",
            "https://sts.googleapis.com/v1/token",
            "https://STS.googleapis.com./v1/token",
            "https://sts.mtls.googleapis.com/v1/token",
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/a@b:generateAccessToken",
            "https://iamcredentials.mtls.googleapis.com/v1/x",
            "https://sts.us-east7.rep.googleapis.com/v1/token",
            "https://us-east1.sts.googleapis.com/v1/token",
            "https://sts.europe-west1.googleapis.com/v1/token",
            "https://europe-west1-sts.googleapis.com/v1/token",
            "https://sts-xyz123.p.googleapis.com/v1/token",
            "https://iamcredentials-xyz.p.mtls.googleapis.com/v1/x",
            "https://accounts.google.com/o/oauth2/token",
            "https://www.googleapis.com/oauth2/v4/token",
            "http://127.0.0.1:8080/token",
            "https://127.0.0.1:8443/token",
            "http://127.9.9.9/token",
            "http://localhost:1/x",
            "http://[::1]:9/x",
        ] {
            check(&policy, ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "https://evil.example/token",
            "https://sts.googleapis.com.evil.example/token",
            "https://evilsts.googleapis.com.example/token",
            "https://storage.googleapis.com/bucket/token",
            "https://bucket.storage.googleapis.com/token",
            "https://sts.a.b.googleapis.com/token",
            "https://-sts.googleapis.com/token",
            "https://sts-.p.googleapis.com/token",
            "https://googleapis.com/token",
            "https://sts.googleapis.evil/token",
            "http://sts.googleapis.com/token",
            "http://evil.example/",
            "http://169.254.169.254/token",
            "https://169.254.169.254/token",
            "http://10.0.0.1/",
            "ftp://x/",
            "file:///etc/passwd",
            "https://user:pw@sts.googleapis.com/",
            "not a url",
            "http://localhost.evil.example/",
        ] {
            let err = check(&policy, bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{bad}");
            assert_eq!(err.endpoint(), Some("/f.json"));
            assert!(err.message().contains("`token_url`"), "{bad}: {err}");
        }
    }

    /// Finding 1: hosts outside Google and loopback need an explicit, well-formed opt-in.
    #[test]
    fn finding_1_opt_in_allows_named_hosts_and_cannot_widen_to_everything() {
        let mut policy = EndpointPolicy::default();
        assert!(check(&policy, "https://sts.corp.example/v1/token").is_err());
        policy
            .add_list(
                " sts.corp.example ,*.tpc.example., 10.1.2.3,[fd00::1]",
                "list",
            )
            .unwrap();
        for ok in [
            "https://sts.corp.example/v1/token",
            "https://STS.corp.example:8443/v1/token",
            "https://sts.tpc.example/v1/token",
            "https://a.b.tpc.example/v1/token",
            "https://10.1.2.3/token",
            "https://[fd00::1]/token",
        ] {
            check(&policy, ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "https://corp.example/token",
            "https://tpc.example/token",
            "https://xtpc.example/token",
            "https://evil.example/token",
            "http://sts.corp.example/token",
            "https://10.1.2.4/token",
        ] {
            assert!(check(&policy, bad).is_err(), "{bad}");
        }
        for bad_entry in [
            "*",
            "*.com",
            "*.",
            "",
            "a,,b",
            "a,",
            "https://sts.corp.example",
            "sts.corp.example:443",
            "sts.corp.example/v1",
            "*.*.example",
            "a*.example",
            "0.0.0.0",
            "sts corp",
        ] {
            let err = EndpointPolicy::default()
                .add_list(bad_entry, ALLOWED_ENDPOINTS_ENV)
                .map(|()| EndpointPolicy::default())
                .err();
            // The empty value as a whole means "none", like an unset variable.
            if bad_entry.is_empty() {
                assert!(err.is_none());
                continue;
            }
            let err = err.unwrap_or_else(|| panic!("{bad_entry:?} was accepted"));
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad_entry:?}");
            assert!(err.message().contains(ALLOWED_ENDPOINTS_ENV), "{err}");
        }
    }

    /// Finding 1: the AWS source reads only the instance metadata service or loopback, and signs
    /// only for AWS STS.
    #[test]
    fn finding_1_aws_urls_only_imds_and_sts() {
        for ok in [
            "http://169.254.169.254/latest/meta-data/iam/security-credentials",
            "http://[fd00:ec2::254]/latest/api/token",
            "http://127.0.0.1:9/latest",
            "http://localhost:9/latest",
        ] {
            aws_metadata_url(ok, "credential_source.url", "f").unwrap();
        }
        for bad in [
            "http://evil.example/latest",
            "https://169.254.169.254/latest",
            "http://169.254.169.253/latest",
            "http://[fd00:ec2::253]/latest",
            "http://metadata.google.internal/",
            "file:///etc/passwd",
        ] {
            let err = aws_metadata_url(bad, "credential_source.region_url", "f").unwrap_err();
            assert!(
                err.message().contains("credential_source.region_url"),
                "{err}"
            );
        }
        for ok in [
            "https://sts.amazonaws.com?Action=GetCallerIdentity",
            "https://sts.us-east-2.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            "https://sts-fips.us-gov-west-1.amazonaws.com/",
            "https://sts.cn-north-1.amazonaws.com.cn/",
            "https://127.0.0.1:1/sts",
        ] {
            aws_verification_url(ok, "regional_cred_verification_url", "f").unwrap();
        }
        for bad in [
            "https://evil.example/?Action=GetCallerIdentity",
            "http://sts.us-east-2.amazonaws.com/",
            "https://sts.us-east-2.amazonaws.com.evil.example/",
            "https://s3.us-east-2.amazonaws.com/",
            "https://sts.a.b.amazonaws.com/",
        ] {
            assert!(
                aws_verification_url(bad, "regional_cred_verification_url", "f").is_err(),
                "{bad}"
            );
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
