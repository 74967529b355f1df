//! Credential access boundaries: downscoped tokens that can do less than the credentials they
//! come from.
//!
//! A workload holding broad credentials hands a narrower token to a less trusted party (a
//! customer's job, a browser): the token reaches only the resources, roles and objects an
//! [`AccessBoundary`] names. Two ways to get one:
//!
//! - **Server-side** — [`DownscopedCredentials`]: one Security Token Service exchange per token,
//!   with the boundary as JSON `options`. Simple, and the service checks the boundary at once.
//! - **Client-side** — [`ClientSideDownscoper`]: one exchange for an *intermediary* token and an
//!   AES-GCM session key, then every downscoped token is minted locally, without a network call
//!   (the boundary, serialized as protobuf, encrypted with the session key, appended to the
//!   intermediary token). For a service minting a token per request or per customer.
//!
//! ```no_run
//! use workload_auth_adc::Builder;
//! use workload_auth_adc::downscoped::{
//!     AccessBoundary, AccessBoundaryRule, AvailabilityCondition, ClientSideDownscoper,
//! };
//!
//! # async fn run() -> workload_auth_core::Result<()> {
//! let source = Builder::new().build()?;
//! let boundary = AccessBoundary::new(vec![AccessBoundaryRule::new(
//!     "//storage.googleapis.com/projects/_/buckets/my-bucket",
//!     ["inRole:roles/storage.objectViewer"],
//! )
//! .with_condition(AvailabilityCondition::new(
//!     "resource.name.startsWith('projects/_/buckets/my-bucket/objects/customer-a/')",
//! ))])?;
//! let downscoper = ClientSideDownscoper::builder(source).build_client_side()?;
//! let prepared = downscoper.prepare(&boundary)?; // once per boundary
//! let token = downscoper.token(&prepared).await?; // no network call once warm
//! # let _ = token; Ok(()) }
//! ```
//!
//! Limits: client-side conditions accept the CEL forms listed in the `cel` module's docs
//! (`startsWith`, `endsWith`, `==` on `resource.name|type|service`, `&&`, `||`); anything else
//! is refused when the boundary is prepared. Server-side conditions are passed through as text.

mod boundary;
mod cel;
mod client_side;
mod proto;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use url::Url;
use workload_auth_core::json::Fields;
use workload_auth_core::{
    AccessToken, CacheConfig, Error, ErrorKind, Result, SecretString, SystemClock, TokenCache,
};

pub use boundary::{AccessBoundary, AccessBoundaryRule, AvailabilityCondition, MAX_RULES};
pub use client_side::{ClientSideDownscoper, PreparedBoundary};

use crate::Credentials;
use crate::credential_client::{Auth, Body, CredentialResponse, DEFAULT_TIMEOUT, Http, TlsRoots};
use crate::url_policy::caller_endpoint;

const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const INTERMEDIARY_TOKEN_TYPE: &str =
    "urn:ietf:params:oauth:token-type:access_boundary_intermediary_token";

const REFUSED_HINT: &str = "the Security Token Service refused the source token or the access \
                            boundary; check that the source credentials are valid and that \
                            every rule names an existing resource and role";

/// Where the Security Token Service is, and how to reach it.
#[derive(Clone, Debug)]
struct Sts {
    source: Credentials,
    /// Set by the builder; otherwise `https://sts.{universe}/v1/token` of the source.
    endpoint: Option<Url>,
    http: Http,
}

/// An STS answer: the token, when it expires, and the rest of the JSON.
struct Exchanged {
    token: SecretString,
    expires_at: SystemTime,
    reply: CredentialResponse,
}

impl Sts {
    fn new(
        source: Credentials,
        endpoint: Option<&str>,
        timeout: Duration,
        roots: &TlsRoots,
    ) -> Result<Self> {
        let endpoint = endpoint
            .map(|raw| caller_endpoint(raw, "sts_endpoint", "the downscoping builder"))
            .transpose()?;
        Ok(Self {
            source,
            endpoint,
            http: Http::new(roots, None, timeout),
        })
    }

    async fn endpoint(&self) -> Result<Url> {
        match &self.endpoint {
            Some(url) => Ok(url.clone()),
            None => {
                let universe = self.source.universe_domain().await?;
                caller_endpoint(
                    &format!("https://sts.{universe}/v1/token"),
                    "sts_endpoint",
                    "the source credentials' universe domain",
                )
            }
        }
    }

    /// Exchanges a fresh source token for a token of `requested` type, with `options`.
    async fn exchange(&self, requested: &str, options: Option<&str>) -> Result<Exchanged> {
        let url = self.endpoint().await?;
        let source = self.source.access_token().await?;
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", requested),
            ("subject_token", source.secret().expose()),
        ];
        if let Some(options) = options {
            form.push(("options", options));
        }
        let now = SystemTime::now();
        let reply = self
            .http
            .send(
                reqwest::Method::POST,
                &url,
                Auth::None,
                &[],
                Body::Form(&form),
            )
            .await?
            .ok_or_token_error("the downscoping token exchange", REFUSED_HINT)?;
        let map = reply.json("the token exchange answer")?;
        let fields = Fields::of_response(&map, &reply.endpoint);
        let token = fields.secret("access_token")?;
        // Absent for tokens that are not a service account's: the source's expiry holds.
        let expires_at = match fields.opt_lifetime_seconds("expires_in")? {
            Some(secs) => workload_auth_core::expiry_after(now, Duration::from_secs(secs))
                .ok_or_else(|| fields.error("the answer's `expires_in` is out of range"))?,
            None => source.expires_at(),
        };
        Ok(Exchanged {
            token,
            expires_at,
            reply,
        })
    }
}

/// Builds [`DownscopedCredentials`] and [`ClientSideDownscoper`]s.
#[derive(Debug)]
pub struct DownscopingBuilder {
    source: Credentials,
    endpoint: Option<String>,
    timeout: Duration,
    roots: TlsRoots,
}

impl DownscopingBuilder {
    fn new(source: Credentials) -> Self {
        Self {
            source,
            endpoint: None,
            timeout: DEFAULT_TIMEOUT,
            roots: TlsRoots::default(),
        }
    }

    /// The Security Token Service's token URL, instead of `https://sts.{universe}/v1/token`
    /// (the source credentials' universe). Must be `https://`, or `http://` to this machine.
    #[must_use]
    pub fn with_sts_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// How long one exchange may take.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Trusts exactly these roots for an `https://` Security Token Service instead of the
    /// platform's (a private endpoint, or a test server).
    #[must_use]
    pub fn with_tls_root_certificates(
        mut self,
        roots: impl IntoIterator<Item = rustls_pki_types::CertificateDer<'static>>,
    ) -> Self {
        self.roots = TlsRoots::only(roots.into_iter().collect());
        self
    }

    fn sts(self) -> Result<Sts> {
        Sts::new(
            self.source,
            self.endpoint.as_deref(),
            self.timeout,
            &self.roots,
        )
    }
}

/// Server-side downscoped credentials: each token is one Security Token Service exchange of the
/// source credentials' token, with the boundary as `options`. Tokens are cached and refreshed
/// early like every other token here. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DownscopedCredentials {
    inner: Arc<ServerSide>,
}

#[derive(Debug)]
struct ServerSide {
    boundary: AccessBoundary,
    cache: TokenCache<AccessToken>,
}

impl DownscopedCredentials {
    /// A builder for credentials downscoped from `source`.
    pub fn builder(source: Credentials) -> DownscopingBuilder {
        DownscopingBuilder::new(source)
    }

    /// Credentials limited to `boundary`, from what `builder` says.
    pub fn new(builder: DownscopingBuilder, boundary: AccessBoundary) -> Result<Self> {
        let sts = Arc::new(builder.sts()?);
        // JSON once, form-encoded once (by the form encoder), as most peers send it.
        let options: Arc<str> = Arc::from(boundary.to_json().to_string());
        let cache = TokenCache::with_options(
            move || {
                let sts = Arc::clone(&sts);
                let options = Arc::clone(&options);
                async move {
                    let answer = sts.exchange(ACCESS_TOKEN_TYPE, Some(&options)).await?;
                    Ok(AccessToken::new(answer.token, "Bearer", answer.expires_at))
                }
            },
            CacheConfig::default(),
            SystemClock,
        );
        Ok(Self {
            inner: Arc::new(ServerSide { boundary, cache }),
        })
    }

    /// The boundary these credentials are limited to.
    pub fn boundary(&self) -> &AccessBoundary {
        &self.inner.boundary
    }

    /// A downscoped access token, from the cache when it holds a fresh one.
    pub async fn access_token(&self) -> Result<AccessToken> {
        Ok(AccessToken::clone(&*self.inner.cache.get().await?))
    }

    /// [`DownscopedCredentials::access_token`] for callers without an async runtime.
    pub fn access_token_blocking(&self) -> Result<AccessToken> {
        Ok(AccessToken::clone(&*self.inner.cache.get_blocking()?))
    }

    /// How many exchanges have been started (for tests and metrics).
    pub fn exchange_count(&self) -> u64 {
        self.inner.cache.fetch_count()
    }

    /// Forgets the cached token (say, after an API answered 401); the next call exchanges anew.
    pub fn invalidate(&self) {
        self.inner.cache.invalidate();
    }
}

fn malformed(reply: &CredentialResponse, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::MalformedResponse, message).with_endpoint(reply.endpoint.clone())
}
