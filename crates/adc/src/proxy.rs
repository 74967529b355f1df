//! Which HTTP proxy a token request goes through, from the variables curl and Google's client
//! libraries read: `HTTPS_PROXY`/`https_proxy` for https URLs, `HTTP_PROXY`/`http_proxy` for
//! plain http ones (not `HTTP_PROXY` in a CGI program, where a request header can set it), else
//! `ALL_PROXY`/`all_proxy`; hosts in `NO_PROXY`/`no_proxy` are reached directly.
//!
//! The variables are read through the builder's [`EnvSource`] (so tests and embedding programs
//! can pass their own) and checked when credentials are built: a proxy URL that cannot work is an
//! error then, not a puzzling transport failure later. Link-local addresses (the AWS and GCE
//! instance metadata services) are never proxied, whatever the variables say: their answers are
//! the instance's credentials, and a proxy elsewhere cannot reach them anyway. The GCE metadata
//! client (crate `workload-auth-metadata`) never uses a proxy at all.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use url::Url;
use workload_auth_core::{Error, ErrorKind, Result};

use crate::env::EnvSource;

/// One proxy: where it is, and the variable that named it.
#[derive(Clone)]
pub(crate) struct ProxyUrl {
    url: Url,
    variable: &'static str,
}

impl ProxyUrl {
    /// `scheme://host:port` and the variable, never the credentials the URL may hold.
    pub(crate) fn describe(&self) -> String {
        let host = self.url.host_str().unwrap_or("");
        match self.url.port_or_known_default() {
            Some(port) => format!("{}://{host}:{port} ({})", self.url.scheme(), self.variable),
            None => format!("{}://{host} ({})", self.url.scheme(), self.variable),
        }
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The proxies the environment names and the hosts excluded from them.
#[derive(Clone, Debug)]
pub(crate) struct ProxySettings {
    https: Option<ProxyUrl>,
    http: Option<ProxyUrl>,
    no_proxy: NoProxy,
}

/// The first of `names` set to a non-blank value, with its name.
fn first_set(env: &EnvSource, names: &[&'static str]) -> Option<(&'static str, String)> {
    names
        .iter()
        .find_map(|name| env.nonempty(name).map(|v| (*name, v.trim().to_owned())))
}

/// Checks one proxy variable's value. A value without a scheme means `http://`, as in curl.
fn parse_proxy(variable: &'static str, value: &str) -> Result<ProxyUrl> {
    let invalid = |why: &str| {
        // The value is not repeated: it may hold the proxy's password.
        Error::new(
            ErrorKind::InvalidArgument,
            format!("the proxy in {variable} {why}"),
        )
        .with_hint(format!(
            "set {variable} to http://HOST:PORT (or https://, user:password@ allowed), or unset it"
        ))
    };
    let with_scheme = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    let url = Url::parse(&with_scheme).map_err(|_| invalid("is not a URL"))?;
    match url.scheme() {
        "http" | "https" => {}
        "socks5" | "socks5h" | "socks4" | "socks4a" => {
            return Err(invalid("is a SOCKS proxy, which is not supported"));
        }
        _ => return Err(invalid("has a scheme other than http or https")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("names no host"));
    }
    Ok(ProxyUrl { url, variable })
}

impl ProxySettings {
    /// The settings the variables of `env` make, or `None` when they name no proxy.
    pub(crate) fn from_env(env: &EnvSource) -> Result<Option<Self>> {
        let all = first_set(env, &["ALL_PROXY", "all_proxy"]);
        let https = first_set(env, &["HTTPS_PROXY", "https_proxy"]).or_else(|| all.clone());
        // A CGI program's HTTP_PROXY may come from a request's `Proxy:` header (httpoxy).
        let cgi = env.var("REQUEST_METHOD").is_some();
        let http_names: &[&'static str] = if cgi {
            &["http_proxy"]
        } else {
            &["HTTP_PROXY", "http_proxy"]
        };
        let http = first_set(env, http_names).or(all);
        if https.is_none() && http.is_none() {
            return Ok(None);
        }
        let parse = |found: Option<(&'static str, String)>| {
            found
                .map(|(name, value)| parse_proxy(name, &value))
                .transpose()
        };
        let no_proxy = first_set(env, &["NO_PROXY", "no_proxy"])
            .map(|(_, v)| NoProxy::parse(&v))
            .unwrap_or_default();
        Ok(Some(Self {
            https: parse(https)?,
            http: parse(http)?,
            no_proxy,
        }))
    }

    /// The proxy for a request to `url`, if any.
    pub(crate) fn for_url(&self, url: &Url) -> Option<&ProxyUrl> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }?;
        let host = match url.host()? {
            url::Host::Domain(d) => Host::Domain(d.trim_end_matches('.').to_ascii_lowercase()),
            url::Host::Ipv4(ip) => Host::Ip(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Host::Ip(IpAddr::V6(ip)),
        };
        if host.is_link_local() || self.no_proxy.matches(&host) {
            return None;
        }
        Some(proxy)
    }

    /// These settings as a reqwest proxy rule.
    pub(crate) fn to_reqwest(self: &Arc<Self>) -> reqwest::Proxy {
        let settings = Arc::clone(self);
        reqwest::Proxy::custom(move |url| settings.for_url(url).map(|p| p.url.clone()))
    }
}

enum Host {
    Domain(String),
    Ip(IpAddr),
}

impl Host {
    /// 169.254.0.0/16 and fe80::/10: the instance metadata services.
    fn is_link_local(&self) -> bool {
        match self {
            Host::Ip(IpAddr::V4(ip)) => ip.is_link_local(),
            Host::Ip(IpAddr::V6(ip)) => (ip.segments()[0] & 0xffc0) == 0xfe80,
            Host::Domain(_) => false,
        }
    }
}

/// `NO_PROXY`: `*`, host names (each also covers its subdomains; a leading `.` is optional), IP
/// addresses and CIDR ranges, separated by commas. Ports in entries are ignored.
#[derive(Clone, Debug, Default)]
struct NoProxy {
    everything: bool,
    domains: Vec<String>,
    ranges: Vec<(IpAddr, u8)>,
}

impl NoProxy {
    fn parse(list: &str) -> Self {
        let mut out = Self::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                out.everything = true;
                continue;
            }
            let (addr, bits) = match entry.split_once('/') {
                Some((a, b)) => (a, b.parse::<u8>().ok()),
                None => (entry, None),
            };
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = addr.parse::<IpAddr>() {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                out.ranges.push((ip, bits.unwrap_or(max).min(max)));
                continue;
            }
            // `host:port` and `.domain` forms.
            let name = entry.rsplit_once(':').map_or(entry, |(h, _)| h);
            let name = name.trim_start_matches("*.").trim_start_matches('.');
            if !name.is_empty() {
                out.domains
                    .push(name.trim_end_matches('.').to_ascii_lowercase());
            }
        }
        out
    }

    fn matches(&self, host: &Host) -> bool {
        if self.everything {
            return true;
        }
        match host {
            Host::Domain(d) => self.domains.iter().any(|n| {
                d == n
                    || d.strip_suffix(n.as_str())
                        .is_some_and(|prefix| prefix.ends_with('.'))
            }),
            Host::Ip(ip) => self
                .ranges
                .iter()
                .any(|(net, bits)| in_range(*ip, *net, *bits)),
        }
    }
}

fn in_range(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<ProxySettings>> {
        ProxySettings::from_env(&EnvSource::from_vars(vars.iter().copied()))
    }

    fn proxied(s: &ProxySettings, url: &str) -> Option<String> {
        s.for_url(&Url::parse(url).unwrap()).map(ProxyUrl::describe)
    }

    #[test]
    fn variables_choose_the_proxy_by_scheme() {
        assert!(settings(&[]).unwrap().is_none());
        let s = settings(&[
            ("https_proxy", "proxy.corp:3128"),
            ("ALL_PROXY", "http://all:1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            proxied(&s, "https://oauth2.googleapis.com/token").as_deref(),
            Some("http://proxy.corp:3128 (https_proxy)")
        );
        assert_eq!(
            proxied(&s, "http://127.0.0.1:9/token").as_deref(),
            Some("http://all:1 (ALL_PROXY)")
        );
        // HTTPS_PROXY beats https_proxy; the CGI rule drops HTTP_PROXY only.
        let s = settings(&[
            ("HTTPS_PROXY", "http://a:1"),
            ("https_proxy", "http://b:2"),
            ("HTTP_PROXY", "http://c:3"),
            ("REQUEST_METHOD", "GET"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            proxied(&s, "https://x.example/").as_deref(),
            Some("http://a:1 (HTTPS_PROXY)")
        );
        assert_eq!(proxied(&s, "http://x.example/"), None);
    }

    #[test]
    fn no_proxy_and_link_local_addresses_go_direct() {
        let s = settings(&[
            ("HTTPS_PROXY", "http://p:1"),
            ("HTTP_PROXY", "http://p:1"),
            (
                "NO_PROXY",
                " .corp.example, 10.0.0.0/8 ,localhost:8080, [::1], sts.googleapis.com.",
            ),
        ])
        .unwrap()
        .unwrap();
        for direct in [
            "https://corp.example/",
            "https://token.corp.example/",
            "https://10.1.2.3/",
            "https://localhost/",
            "https://[::1]:443/",
            "https://sts.googleapis.com/v1/token",
            "http://169.254.169.254/latest/api/token",
            "http://[fe80::1]/",
        ] {
            assert_eq!(proxied(&s, direct), None, "{direct}");
        }
        for proxied_url in [
            "https://notcorp.example/",
            "https://11.0.0.1/",
            "https://oauth2.googleapis.com/token",
            "https://127.0.0.1/",
        ] {
            assert!(proxied(&s, proxied_url).is_some(), "{proxied_url}");
        }
        let s = settings(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")])
            .unwrap()
            .unwrap();
        assert_eq!(proxied(&s, "https://oauth2.googleapis.com/token"), None);
    }

    #[test]
    fn unusable_proxy_urls_are_refused_without_repeating_them() {
        for (value, needle) in [
            ("socks5://user:hunter2@p:1080", "SOCKS"),
            ("ftp://user:hunter2@p:21", "scheme"),
            ("http://user:hunter2@", "the proxy in HTTPS_PROXY"),
            ("http://user:hunter2@[::1", "not a URL"),
        ] {
            let e = settings(&[("HTTPS_PROXY", value)]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{value}");
            assert!(e.to_string().contains(needle), "{value}: {e}");
            assert!(e.to_string().contains("HTTPS_PROXY"), "{e}");
            assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
        }
        let s = settings(&[("HTTPS_PROXY", "http://user:hunter2@p:1")])
            .unwrap()
            .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
