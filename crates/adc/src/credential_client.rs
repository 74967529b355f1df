//! The HTTP client of a credential, for its token, STS, IAM and other Google endpoints: the
//! trust anchors and proxy it uses, requests with their authentication, and answers read into
//! errors that say whether retrying can help.
//!
//! The reqwest client itself (no redirects, time limits, bounded zeroed bodies, transport
//! errors) is built by `workload_auth_core::http_client`, shared with the metadata client; what
//! is only ADC's stays here: the platform's roots, the proxy rules of [`crate::proxy`], a
//! caller-supplied client, and OAuth error answers.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use url::Url;
use workload_auth_core::http_client::{self, ClientOptions, Proxy, build_client, read_body};
use workload_auth_core::json::{Fields, JsonObject, parse_object};
use workload_auth_core::text::snippet;
use workload_auth_core::{AccessToken, Error, ErrorKind, IdToken, Result, Retry, SecretString};
use zeroize::Zeroizing;

use crate::proxy::ProxySettings;
use crate::url_policy::display_url;

/// The largest response body accepted (1 MiB): token answers are a few kilobytes.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long one request may take, connect included, unless the builder says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The trust anchors for `https://` token endpoints, and how requests reach them: directly or
/// through a proxy, on a client built here or on the caller's own.
#[derive(Clone, Default)]
pub(crate) struct TlsRoots {
    roots: Option<Arc<Vec<CertificateDer<'static>>>>,
    proxy: ProxyRoute,
    /// The caller's client, which owns proxy and TLS settings. Requests that present a client
    /// certificate cannot use it: they get a client of their own, built here.
    given: Option<reqwest::Client>,
}

/// Which proxy the clients built here use.
#[derive(Clone, Default)]
enum ProxyRoute {
    /// reqwest's reading of the process environment (credentials made without a builder).
    #[default]
    Process,
    /// The builder's reading of its environment: these proxies, or none.
    Settings(Option<Arc<ProxySettings>>),
}

impl TlsRoots {
    pub(crate) fn only(roots: Vec<CertificateDer<'static>>) -> Self {
        Self {
            roots: Some(Arc::new(roots)),
            ..Self::default()
        }
    }

    /// These roots, with requests going through the proxies `settings` name (or directly).
    pub(crate) fn with_proxy(mut self, settings: Option<ProxySettings>) -> Self {
        self.proxy = ProxyRoute::Settings(settings.map(Arc::new));
        self
    }

    /// These settings, with every request without a client certificate made by `client`.
    pub(crate) fn with_client(mut self, client: Option<reqwest::Client>) -> Self {
        self.given = client;
        self
    }

    fn proxy_settings(&self) -> Option<&Arc<ProxySettings>> {
        match &self.proxy {
            ProxyRoute::Settings(settings) => settings.as_ref(),
            ProxyRoute::Process => None,
        }
    }
}

impl fmt::Debug for TlsRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.roots {
            None => f.write_str("TlsRoots(platform")?,
            Some(roots) => write!(f, "TlsRoots({} given", roots.len())?,
        }
        match &self.proxy {
            ProxyRoute::Process => {}
            ProxyRoute::Settings(None) => f.write_str(", no proxy")?,
            ProxyRoute::Settings(Some(p)) => write!(f, ", {p:?}")?,
        }
        if self.given.is_some() {
            f.write_str(", the caller's HTTP client")?;
        }
        f.write_str(")")
    }
}

fn tls_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Setup, "cannot configure TLS").with_source(e)
}

/// A rustls client configuration on the ring provider: the platform's roots (or the given ones),
/// and optionally a client certificate (then TLS 1.3 only, as Google's mTLS endpoints require).
pub(crate) fn client_config(
    roots: &TlsRoots,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider));
    let builder = if identity.is_some() {
        builder.with_protocol_versions(&[&rustls::version::TLS13])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .map_err(tls_error)?;
    let builder = match &roots.roots {
        Some(given) => {
            let mut store = rustls::RootCertStore::empty();
            for cert in given.iter() {
                store.add(cert.clone()).map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        "a root certificate given cannot be used",
                    )
                    .with_source(e)
                })?;
            }
            builder.with_root_certificates(store)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(platform_verifier()?),
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
            Error::new(
                ErrorKind::InvalidCredentials,
                "the client certificate and private key cannot be used for TLS",
            )
            .with_source(e)
        }),
    }
}

/// The HTTP client of one credential. Cheap to clone. The reqwest client (and the TLS
/// configuration under it) is built on the first request, so resolving credentials costs no more
/// than reading the file.
#[derive(Clone)]
pub(crate) struct Http {
    inner: Arc<HttpInner>,
}

struct HttpInner {
    roots: TlsRoots,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    timeout: Duration,
    client: OnceLock<std::result::Result<reqwest::Client, Error>>,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("timeout", &self.inner.timeout)
            .field("roots", &self.inner.roots)
            .field("client_certificate", &self.inner.identity.is_some())
            .finish_non_exhaustive()
    }
}

/// The platform verifier, built once per process: loading the system's roots takes
/// milliseconds.
fn platform_verifier() -> Result<Arc<rustls_platform_verifier::Verifier>> {
    type Cached = std::result::Result<Arc<rustls_platform_verifier::Verifier>, String>;
    static VERIFIER: OnceLock<Cached> = OnceLock::new();
    VERIFIER
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls_platform_verifier::Verifier::new(provider)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| {
            Error::new(
                ErrorKind::Setup,
                format!("cannot load the platform's TLS roots: {e}"),
            )
        })
}

/// How a request authenticates itself.
pub(crate) enum Auth<'a> {
    None,
    Bearer(&'a SecretString),
    Basic(&'a str, &'a SecretString),
}

/// A request body.
pub(crate) enum Body<'a> {
    Empty,
    Form(&'a [(&'a str, &'a str)]),
    Json(String),
}

/// An answer: status and (zeroed on drop) body, and the endpoint as errors name it.
pub(crate) struct CredentialResponse {
    pub(crate) status: u16,
    pub(crate) body: Zeroizing<Vec<u8>>,
    pub(crate) endpoint: String,
}

impl CredentialResponse {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// This reply if it is 2xx; otherwise an HTTP-status error with `message` (transient or not
    /// by the status).
    pub(crate) fn ok_or_http_error(self, message: impl Into<String>) -> Result<Self> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(Error::http_status(self.status, self.endpoint, message))
        }
    }

    /// This reply if it is 2xx; otherwise the token endpoint's error for a `what` request, see
    /// [`answer_error`].
    pub(crate) fn ok_or_token_error(self, what: &str, refused_hint: &str) -> Result<Self> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(answer_error(&self, &self.endpoint, what, refused_hint))
        }
    }

    /// The body as a JSON object; `what` names it in errors ("the token answer").
    pub(crate) fn json(&self, what: &str) -> Result<JsonObject> {
        parse_object(
            &self.body,
            &self.endpoint,
            ErrorKind::MalformedResponse,
            what,
        )
    }

    /// The ID token (a JWT) in the `field` of this JSON answer; `what` names the answer.
    pub(crate) fn id_token(&self, what: &str, field: &str) -> Result<IdToken> {
        let map = self.json(what)?;
        let token = Fields::of_response(&map, &self.endpoint).secret(field)?;
        IdToken::from_jwt(token).map_err(|e| e.with_endpoint(self.endpoint.clone()))
    }
}

impl Http {
    pub(crate) fn new(
        roots: &TlsRoots,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(HttpInner {
                roots: roots.clone(),
                identity,
                timeout,
                client: OnceLock::new(),
            }),
        }
    }

    /// Builds the client now, to report a configuration error where it is known.
    pub(crate) fn prepared(self) -> Result<Self> {
        self.client()?;
        Ok(self)
    }

    fn client(&self) -> Result<&reqwest::Client> {
        let inner = &self.inner;
        inner
            .client
            .get_or_init(|| {
                if let (Some(client), None) = (&inner.roots.given, &inner.identity) {
                    return Ok(client.clone());
                }
                let identity = inner
                    .identity
                    .as_ref()
                    .map(|(chain, key)| (chain.clone(), key.clone_key()));
                let tls = client_config(&inner.roots, identity)?;
                let proxy = match &inner.roots.proxy {
                    ProxyRoute::Process => Proxy::Environment,
                    ProxyRoute::Settings(None) => Proxy::None,
                    ProxyRoute::Settings(Some(settings)) => {
                        Proxy::Only(Box::new(settings.to_reqwest()))
                    }
                };
                build_client(
                    tls,
                    ClientOptions::new(inner.timeout).with_proxy(proxy),
                    |b| b,
                )
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Sends one request (no retries: the token cache retries transient failures).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        url: &Url,
        auth: Auth<'_>,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<CredentialResponse> {
        let endpoint = display_url(url);
        let mut request = self.client()?.request(method, url.clone());
        match auth {
            Auth::None => {}
            Auth::Bearer(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| {
                        Error::new(
                            ErrorKind::MalformedResponse,
                            "the access token contains characters not allowed in a header",
                        )
                        .with_endpoint(endpoint.clone())
                    })?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
            Auth::Basic(user, password) => {
                request = request.basic_auth(user, Some(password.expose()));
            }
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request = match body {
            Body::Empty => request,
            Body::Form(pairs) => {
                let encoded: Zeroizing<String> = Zeroizing::new(
                    url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(pairs.iter())
                        .finish(),
                );
                request
                    .header(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/x-www-form-urlencoded"),
                    )
                    .body(encoded.as_bytes().to_vec())
            }
            Body::Json(json) => request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(json),
        };
        let mut response = request
            .timeout(self.inner.timeout)
            .send()
            .await
            .map_err(|e| self.transport_error(&e, url, &endpoint))?;
        if response.url() != url {
            // Only a client given to the builder follows redirects; ours never do.
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the HTTP client given to the builder followed a redirect, which is refused \
                 (credentials are never forwarded to another URL)",
            )
            .with_endpoint(endpoint)
            .with_hint("build the client with .redirect(reqwest::redirect::Policy::none())")
            .with_retry(Retry::Permanent));
        }
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            return Err(Error::http_status(
                status,
                endpoint,
                "the server answered with a redirect, which is refused (credentials are never \
                 forwarded to another URL)",
            )
            .with_retry(Retry::Permanent));
        }
        let body = read_body(&mut response, MAX_BODY_BYTES, &endpoint, |e| {
            self.transport_error(e, url, &endpoint)
        })
        .await?;
        Ok(CredentialResponse {
            status,
            body,
            endpoint,
        })
    }
}

impl Http {
    /// A transport error (see `http_client::transport_error`), saying which proxy the request
    /// went through, if any.
    fn transport_error(&self, e: &reqwest::Error, url: &Url, endpoint: &str) -> Error {
        let error = http_client::transport_error(e, None, endpoint, self.inner.timeout);
        if self.inner.roots.given.is_some() && self.inner.identity.is_none() {
            return error;
        }
        match self
            .inner
            .roots
            .proxy_settings()
            .and_then(|p| p.for_url(url))
        {
            None => error,
            Some(proxy) => error.with_hint(format!(
                "the request went through the proxy {}: check that it runs and lets this host \
                 through, or list the host in NO_PROXY",
                proxy.describe()
            )),
        }
    }
}

/// OAuth error codes after which the same request may succeed later (google-auth's list).
const RETRYABLE_OAUTH_ERRORS: [&str; 3] = [
    "internal_failure",
    "server_error",
    "temporarily_unavailable",
];

/// OAuth error codes that mean the credential itself was refused.
const REFUSED_OAUTH_ERRORS: [&str; 6] = [
    "invalid_grant",
    "invalid_client",
    "unauthorized_client",
    "access_denied",
    "invalid_rapt",
    "invalid_token",
];

/// What an error answer of a token endpoint said.
#[derive(Debug, Default)]
pub(crate) struct ErrorBody {
    /// The OAuth `error` code, or a Google API `error.status`.
    pub(crate) code: Option<String>,
    /// `error_description`, or a Google API `error.message`.
    pub(crate) description: Option<String>,
}

impl ErrorBody {
    pub(crate) fn parse(body: &[u8]) -> Self {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body)
        else {
            return Self::default();
        };
        let text =
            |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(|s| snippet(s, 200));
        match map.get("error") {
            Some(serde_json::Value::String(code)) => Self {
                code: Some(snippet(code, 60)),
                description: text(map.get("error_description")),
            },
            Some(serde_json::Value::Object(inner)) => Self {
                code: text(inner.get("status")).or_else(|| text(inner.get("code"))),
                description: text(inner.get("message")),
            },
            _ => Self::default(),
        }
    }

    fn summary(&self) -> String {
        match (&self.code, &self.description) {
            (Some(c), Some(d)) => format!("{c}: {d}"),
            (Some(c), None) => c.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => String::new(),
        }
    }
}

/// The error for a non-2xx answer of `endpoint` to a `what` request ("the JWT-bearer grant").
/// `refused_hint` is what the user should do when the credential itself was refused.
pub(crate) fn answer_error(
    reply: &CredentialResponse,
    endpoint: &str,
    what: &str,
    refused_hint: &str,
) -> Error {
    let parsed = ErrorBody::parse(&reply.body);
    let summary = parsed.summary();
    let message = if summary.is_empty() {
        format!("{what} failed")
    } else {
        format!("{what} failed: {summary}")
    };
    let code = parsed.code.as_deref().unwrap_or("");
    let mut error = Error::http_status(reply.status, endpoint.to_owned(), message);
    if RETRYABLE_OAUTH_ERRORS.contains(&code) {
        error = error.with_retry(Retry::Transient);
    }
    let refused = REFUSED_OAUTH_ERRORS.contains(&code)
        || matches!(reply.status, 401 | 403)
        || code == "PERMISSION_DENIED"
        || code == "UNAUTHENTICATED";
    if refused && !error.is_transient() {
        // Rebuild as a refusal: permanent, with what to do.
        let mut refusal = Error::new(ErrorKind::Rejected, error.message().to_owned())
            .with_status(reply.status)
            .with_endpoint(endpoint.to_owned())
            .with_retry(Retry::Permanent);
        if !refused_hint.is_empty() {
            refusal = refusal.with_hint(refused_hint.to_owned());
        }
        return refusal;
    }
    error
}

/// An OAuth 2.0 token answer: `access_token`, `expires_in` (default 3600 s), `token_type`.
pub(crate) fn parse_access_token(
    reply: &CredentialResponse,
    now: SystemTime,
) -> Result<AccessToken> {
    let map = reply.json("the token answer")?;
    let fields = Fields::of_response(&map, &reply.endpoint);
    let token = fields.secret("access_token")?;
    let expires_in = fields.opt_lifetime_seconds("expires_in")?.unwrap_or(3600);
    let expires_at = workload_auth_core::expiry_after(now, Duration::from_secs(expires_in))
        .ok_or_else(|| fields.error("the token answer's `expires_in` is out of range"))?;
    let token_type = fields.opt_nonempty_str("token_type")?.unwrap_or("Bearer");
    let token_type = if token_type.eq_ignore_ascii_case("bearer") {
        "Bearer"
    } else {
        token_type
    };
    Ok(AccessToken::new(token, token_type, expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> CredentialResponse {
        CredentialResponse {
            status,
            body: Zeroizing::new(body.as_bytes().to_vec()),
            endpoint: "e".to_owned(),
        }
    }

    #[test]
    fn invalid_grant_is_a_permanent_refusal_with_the_hint() {
        let e = answer_error(
            &reply(
                400,
                r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
            ),
            "https://oauth2.googleapis.com/token",
            "the refresh-token grant",
            "log in again",
        );
        assert_eq!(e.kind(), ErrorKind::Rejected);
        assert!(!e.is_transient());
        assert_eq!(e.status(), Some(400));
        assert_eq!(e.hint(), Some("log in again"));
        assert!(e.message().contains("expired or revoked"), "{e}");
    }

    #[test]
    fn server_errors_and_retryable_codes_are_transient() {
        for (status, body) in [
            (503, "unavailable"),
            (429, ""),
            (500, r#"{"error":"internal_failure"}"#),
            (400, r#"{"error":"temporarily_unavailable"}"#),
        ] {
            let e = answer_error(&reply(status, body), "e", "x", "h");
            assert!(e.is_transient(), "{status} {body}");
        }
        let e = answer_error(&reply(400, r#"{"error":"invalid_request"}"#), "e", "x", "h");
        assert!(!e.is_transient());
        assert_eq!(e.kind(), ErrorKind::Http);
        let e = answer_error(
            &reply(
                403,
                r#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied","status":"PERMISSION_DENIED"}}"#,
            ),
            "e",
            "generateAccessToken",
            "grant the role",
        );
        assert_eq!(e.kind(), ErrorKind::Rejected);
        assert!(e.message().contains("PERMISSION_DENIED"), "{e}");
    }

    #[test]
    fn token_answers_are_checked() {
        let now = SystemTime::UNIX_EPOCH;
        let t = parse_access_token(
            &reply(
                200,
                r#"{"access_token":"ya29.x","expires_in":"120","token_type":"bearer"}"#,
            ),
            now,
        )
        .unwrap();
        assert_eq!(t.token_type(), "Bearer");
        assert_eq!(t.expires_at(), now + Duration::from_secs(120));
        for bad in [
            "{}",
            r#"{"access_token":5}"#,
            r#"{"access_token":"x","expires_in":-1}"#,
            r#"{"access_token":"x","expires_in":0}"#,
            "not json",
        ] {
            let e = parse_access_token(&reply(200, bad), now).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MalformedResponse, "{bad}");
        }
    }

    #[test]
    fn finding_3_token_answers_with_huge_lifetimes_are_typed_errors() {
        for (expires_in, needle) in [
            ("1e300", "out of range"),
            ("18446744073709551615", "out of range"),
            ("\"18446744073709551615\"", "out of range"),
            ("-1", "negative"),
            ("\"-1\"", "not a whole number"),
            ("\"1e300\"", "not a whole number"),
            ("\"soon\"", "not a whole number"),
        ] {
            let body = format!(r#"{{"access_token":"ya29.x","expires_in":{expires_in}}}"#);
            let e = parse_access_token(&reply(200, &body), SystemTime::now()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MalformedResponse, "{expires_in}");
            assert!(e.message().contains(needle), "{expires_in}: {e}");
            assert!(!e.to_string().contains("ya29"), "{e}");
        }
        // A quoted integer is accepted, as google-auth accepts it.
        let now = SystemTime::now();
        let body = r#"{"access_token":"ya29.x","expires_in":"3600"}"#;
        let t = parse_access_token(&reply(200, body), now).unwrap();
        assert_eq!(t.expires_at(), now + Duration::from_secs(3600));
    }
}
