//! HTTP for token endpoints: one reqwest client on rustls with the ring provider, bounded bodies,
//! no redirects, and errors that say whether retrying can help.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use url::Url;
use workload_auth_core::{AccessToken, Error, ErrorKind, Result, Retry, SecretString};
use zeroize::Zeroizing;

use crate::json::{Fields, parse_object};
use crate::url_policy::display_url;

/// The largest response body accepted (1 MiB): token answers are a few kilobytes.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long one request may take, connect included, unless the builder says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The trust anchors for `https://` token endpoints.
#[derive(Clone, Default)]
pub(crate) struct TlsRoots(Option<Arc<Vec<CertificateDer<'static>>>>);

impl TlsRoots {
    pub(crate) fn only(roots: Vec<CertificateDer<'static>>) -> Self {
        Self(Some(Arc::new(roots)))
    }
}

impl fmt::Debug for TlsRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("TlsRoots(platform)"),
            Some(roots) => write!(f, "TlsRoots({} given)", roots.len()),
        }
    }
}

fn tls_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::InvalidArgument, "cannot configure TLS").with_source(e)
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
    let builder = match &roots.0 {
        Some(given) => {
            let mut store = rustls::RootCertStore::empty();
            for cert in given.iter() {
                store.add(cert.clone()).map_err(tls_error)?;
            }
            builder.with_root_certificates(store)
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(tls_error)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
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

/// The HTTP client of one credential. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    timeout: Duration,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
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

/// An answer: status and (zeroed on drop) body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Zeroizing<Vec<u8>>,
}

impl Reply {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Http {
    pub(crate) fn new(
        roots: &TlsRoots,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        timeout: Duration,
    ) -> Result<Self> {
        let tls = client_config(roots, identity)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("workload-auth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::new(ErrorKind::InvalidArgument, "cannot build the HTTP client").with_source(e)
            })?;
        Ok(Self { client, timeout })
    }

    /// Sends one request (no retries: the token cache retries transient failures).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        url: &Url,
        auth: Auth<'_>,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Reply> {
        let endpoint = display_url(url);
        let mut request = self.client.request(method, url.clone());
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
            .send()
            .await
            .map_err(|e| transport_error(&e, &endpoint, self.timeout))?;
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
        let body = read_body(&mut response, &endpoint, self.timeout).await?;
        Ok(Reply { status, body })
    }
}

async fn read_body(
    response: &mut reqwest::Response,
    endpoint: &str,
    timeout: Duration,
) -> Result<Zeroizing<Vec<u8>>> {
    let too_large = || {
        Error::new(
            ErrorKind::MalformedResponse,
            format!("the response body is larger than {MAX_BODY_BYTES} bytes"),
        )
        .with_endpoint(endpoint.to_owned())
    };
    let declared = response.content_length();
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let capacity = declared.map_or(4096, |n| n as usize);
    let mut body = Zeroizing::new(Vec::with_capacity(capacity));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                if body.len() + chunk.len() > body.capacity() {
                    let mut bigger = Zeroizing::new(Vec::with_capacity(
                        (body.len() + chunk.len()).max(body.capacity() * 2),
                    ));
                    bigger.extend_from_slice(&body);
                    body = bigger;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(transport_error(&e, endpoint, timeout)),
        }
    }
}

/// The innermost cause of a transport failure, as text.
#[derive(Debug)]
struct Cause(String);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

fn transport_error(e: &reqwest::Error, endpoint: &str, timeout: Duration) -> Error {
    let message = if e.is_timeout() {
        format!("no complete answer within {} ms", timeout.as_millis())
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the connection failed while reading the answer (truncated or reset)".to_owned()
    } else {
        "the request failed (connection closed or reset)".to_owned()
    };
    let mut detail = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    let mut err = Error::new(ErrorKind::Transport, message).with_endpoint(endpoint.to_owned());
    if !detail.is_empty() {
        err = err.with_source(Cause(detail));
    }
    err
}

/// The first `max` characters of `text` on one line.
pub(crate) fn snippet(text: &str, max: usize) -> String {
    let trimmed = text.trim();
    let mut out: String = trimmed
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if trimmed.chars().count() > max {
        out.push('…');
    }
    out
}

/// OAuth error codes after which the same request may succeed later (google-auth's list).
const RETRYABLE_OAUTH_ERRORS: [&str; 3] =
    ["internal_failure", "server_error", "temporarily_unavailable"];

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
        let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(|s| snippet(s, 200));
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
pub(crate) fn answer_error(reply: &Reply, endpoint: &str, what: &str, refused_hint: &str) -> Error {
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
pub(crate) fn parse_access_token(reply: &Reply, endpoint: &str, now: SystemTime) -> Result<AccessToken> {
    let map = parse_object(
        &reply.body,
        endpoint,
        ErrorKind::MalformedResponse,
        "the token answer",
    )?;
    let fields = Fields::of_response(&map, endpoint);
    let token = fields.secret("access_token")?;
    let expires_in = fields.opt_u64("expires_in")?.unwrap_or(3600);
    if expires_in == 0 {
        return Err(fields.error("the token answer says `expires_in` is 0"));
    }
    let token_type = fields.opt_nonempty_str("token_type")?.unwrap_or("Bearer");
    let token_type = if token_type.eq_ignore_ascii_case("bearer") {
        "Bearer"
    } else {
        token_type
    };
    Ok(AccessToken::new(
        token,
        token_type,
        now + Duration::from_secs(expires_in),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: Zeroizing::new(body.as_bytes().to_vec()),
        }
    }

    #[test]
    fn invalid_grant_is_a_permanent_refusal_with_the_hint() {
        let e = answer_error(
            &reply(400, r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#),
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
            &reply(403, r#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied","status":"PERMISSION_DENIED"}}"#),
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
            &reply(200, r#"{"access_token":"ya29.x","expires_in":"120","token_type":"bearer"}"#),
            "e",
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
            let e = parse_access_token(&reply(200, bad), "e", now).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MalformedResponse, "{bad}");
        }
    }
}
