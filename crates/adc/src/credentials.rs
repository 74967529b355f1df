//! [`Credentials`]: tokens (cached), project, quota project, universe domain, explain.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arc_swap::ArcSwapOption;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use tokio::sync::OnceCell;
use workload_auth_core::{
    AccessToken, CacheConfig, Cached, Error, ErrorKind, IdToken, Result, SecretString, SystemClock,
    TokenCache,
};
use workload_auth_metadata::MetadataClient;

use crate::agent_identity::{BoundAccessToken, BoundCertificate, BoundIdToken, CertificateFiles};
use crate::explain::{Detail, Explanation, Outcome, ProjectIdSource, QuotaProjectSource, Step};
use crate::kinds::{CredentialType, DEFAULT_UNIVERSE_DOMAIN, Source};
use crate::regional::{ALLOWED_LOCATIONS_HEADER, Regional, RegionalState};

/// Most token caches kept per kind (scope sets, audiences); past it the oldest set is dropped.
const MAX_CACHES: usize = 64;

/// The project id, known at build time or asked of the metadata server on first use.
pub(crate) enum ProjectState {
    Known(Option<(String, ProjectIdSource)>),
    Metadata(MetadataClient, OnceCell<String>),
    /// Workload identity federation: Cloud Resource Manager, asked on first use.
    ResourceManager(crate::project_lookup::ResourceManager, OnceCell<String>),
}

impl ProjectState {
    pub(crate) fn metadata(client: MetadataClient) -> Self {
        Self::Metadata(client, OnceCell::new())
    }

    pub(crate) fn resource_manager(lookup: crate::project_lookup::ResourceManager) -> Self {
        Self::ResourceManager(lookup, OnceCell::new())
    }
}

/// Everything the builder found.
pub(crate) struct Resolved {
    pub(crate) source: Source,
    pub(crate) origin: String,
    pub(crate) steps: Vec<Step>,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) project: ProjectState,
    pub(crate) project_steps: Vec<Step>,
    pub(crate) quota: Option<(String, QuotaProjectSource)>,
    pub(crate) cache: CacheConfig,
    pub(crate) metadata: Option<MetadataClient>,
    pub(crate) regional: Option<Arc<Regional>>,
    pub(crate) signing: crate::kinds::impersonated::iam::BlobSigning,
}

/// Loads the bound certificate; one that is no longer an Agent Identity certificate is an error
/// (bound credentials never quietly turn into unbound ones).
fn load_bound(files: &CertificateFiles) -> Result<BoundCertificate> {
    files.load()?.ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidCredentials,
            "the workload certificate is no longer an Agent Identity certificate",
        )
        .with_endpoint(files.cert.display().to_string())
    })
}

/// Token caches created on first use, one per key.
struct CacheMap<K, T> {
    caches: Mutex<HashMap<K, TokenCache<T>>>,
}

impl<K: Hash + Eq + Clone, T: workload_auth_core::Expiring> CacheMap<K, T> {
    fn new() -> Self {
        Self {
            caches: Mutex::new(HashMap::new()),
        }
    }

    fn get_or_create(&self, key: &K, create: impl FnOnce() -> TokenCache<T>) -> TokenCache<T> {
        let mut caches = self
            .caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cache) = caches.get(key) {
            return cache.clone();
        }
        if caches.len() >= MAX_CACHES {
            caches.clear();
        }
        let cache = create();
        caches.insert(key.clone(), cache.clone());
        cache
    }

    fn invalidate(&self) {
        let caches = self
            .caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for cache in caches.values() {
            cache.invalidate();
        }
    }
}

/// The caches of certificate-bound tokens, all for one certificate: when the certificate on disk
/// changes (rotation), every one of them is dropped, so no token bound to the old certificate is
/// handed out with the new one.
#[derive(Default)]
struct BoundCaches {
    fingerprint: String,
    access: HashMap<Vec<String>, TokenCache<BoundAccessToken>>,
    id: HashMap<String, TokenCache<BoundIdToken>>,
}

impl BoundCaches {
    /// Switches to `fingerprint`, dropping the caches of any other certificate.
    fn for_certificate(&mut self, fingerprint: &str) {
        if self.fingerprint != fingerprint {
            self.invalidate();
            self.access.clear();
            self.id.clear();
            fingerprint.clone_into(&mut self.fingerprint);
        }
    }

    fn invalidate(&self) {
        self.access.values().for_each(TokenCache::invalidate);
        self.id.values().for_each(TokenCache::invalidate);
    }
}

struct Inner {
    source: Source,
    scopes: Arc<[String]>,
    bound: Mutex<BoundCaches>,
    origin: String,
    steps: Vec<Step>,
    default_cache: TokenCache<AccessToken>,
    scoped: CacheMap<Vec<String>, AccessToken>,
    id_tokens: CacheMap<String, IdToken>,
    audience_jwts: CacheMap<String, AccessToken>,
    cache: CacheConfig,
    project: ProjectState,
    project_steps: Vec<Step>,
    quota: Option<(String, QuotaProjectSource)>,
    universe: OnceCell<String>,
    metadata: Option<MetadataClient>,
    regional: Option<Arc<Regional>>,
    signing: crate::kinds::impersonated::iam::BlobSigning,
    /// With a regional boundary, the default token's ready request headers, rebuilt when the
    /// token or the boundary's generation changes (so a warm `request_headers` allocates
    /// nothing). Without one they are kept with the token in the cache instead.
    headers: ArcSwapOption<HeaderSet>,
}

/// Credentials found by Application Default Credentials. Cheap to clone; clones share their
/// token caches.
///
/// Tokens are cached with `workload-auth-core`'s [`TokenCache`]: a hit is lock-free, one fetch
/// serves every concurrent caller, and tokens are refreshed in the background before they expire
/// (metadata-server tokens a few minutes before; tokens from shared endpoints such as STS and OAuth
/// first at a random point of their lifetime, so that a fleet does not refresh in step). One
/// cache serves the default scopes; one more is created, on first use, for each other scope set
/// and each ID-token audience.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("type", &self.credential_type())
            .field("source", &self.inner.origin)
            .field("quota_project_id", &self.quota_project_id())
            .finish_non_exhaustive()
    }
}

fn new_cache<T, F>(config: &CacheConfig, fetch: F) -> TokenCache<T>
where
    T: workload_auth_core::Expiring,
    F: Fn() -> crate::kinds::BoxFut<T> + Send + Sync + 'static,
{
    TokenCache::with_options(fetch, config.clone(), SystemClock)
}

fn check_scopes(scopes: &[&str]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(scopes.len());
    for scope in scopes {
        if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c == ',') {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("invalid OAuth scope {scope:?}: empty or contains whitespace or a comma"),
            ));
        }
        out.push((*scope).to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

impl Credentials {
    pub(crate) fn new(resolved: Resolved) -> Self {
        let scopes: Arc<[String]> = Arc::from(resolved.scopes.unwrap_or_default());
        let source = resolved.source.clone();
        // The metadata server caches its tokens: refresh late, do not spread (see CacheConfig).
        let cache = match &resolved.source {
            Source::Metadata(_) => resolved.cache.with_metadata_server_refresh(),
            _ => resolved.cache,
        };
        let default_scopes = Arc::clone(&scopes);
        let default_cache = new_cache(&cache, move || source.access_token(Arc::clone(&scopes)));
        Self {
            inner: Arc::new(Inner {
                source: resolved.source,
                scopes: default_scopes,
                bound: Mutex::new(BoundCaches::default()),
                origin: resolved.origin,
                steps: resolved.steps,
                default_cache,
                scoped: CacheMap::new(),
                id_tokens: CacheMap::new(),
                audience_jwts: CacheMap::new(),
                cache,
                project: resolved.project,
                project_steps: resolved.project_steps,
                quota: resolved.quota,
                universe: OnceCell::new(),
                metadata: resolved.metadata,
                regional: resolved.regional,
                signing: resolved.signing,
                headers: ArcSwapOption::empty(),
            }),
        }
    }

    /// The kind of credential.
    pub fn credential_type(&self) -> CredentialType {
        self.inner.source.credential_type()
    }

    /// An access token for the builder's scopes (or the credential type's default), from the
    /// cache when it holds a fresh one. A hit allocates nothing: the token is shared with the
    /// cache, not copied.
    ///
    /// This is an `async fn` in all but name: the future does nothing until polled, and reads the
    /// cache on its first poll, so a future awaited late still never yields an expired token.
    #[inline]
    pub fn access_token(&self) -> impl Future<Output = Result<AccessToken>> + Send + '_ {
        AccessTokenFuture {
            credentials: self,
            wait: None,
        }
    }

    /// [`Credentials::access_token`] for callers without an async runtime (blocks the thread).
    // Inlined, like `AccessTokenFuture::poll`: the hit then hands the token to the caller in
    // registers (see there).
    #[inline]
    pub fn access_token_blocking(&self) -> Result<AccessToken> {
        match self.inner.default_cache.get_cloned() {
            Some(token) => Ok(token),
            None => self.wait_for_access_token(),
        }
    }

    #[inline(never)]
    fn wait_for_access_token(&self) -> Result<AccessToken> {
        Ok(AccessToken::clone(
            &*self.inner.default_cache.get_blocking()?,
        ))
    }

    /// The cached access token, lent without copying it (the hot path: no allocation on a cache
    /// hit). Hold it for one request; clone the token to keep it longer.
    pub async fn access_token_cached(&self) -> Result<Cached<AccessToken>> {
        if let Some(token) = self.inner.default_cache.get_cached() {
            return Ok(token);
        }
        Box::pin(self.inner.default_cache.get()).await
    }

    /// [`Credentials::access_token_cached`] for callers without an async runtime.
    pub fn access_token_cached_blocking(&self) -> Result<Cached<AccessToken>> {
        self.inner.default_cache.get_blocking()
    }

    /// An access token for `scopes`; each scope set gets its own cache on first use.
    pub async fn access_token_with_scopes(&self, scopes: &[&str]) -> Result<AccessToken> {
        let cache = self.scoped_cache(scopes)?;
        Ok(AccessToken::clone(&*cache.get().await?))
    }

    fn scoped_cache(&self, scopes: &[&str]) -> Result<TokenCache<AccessToken>> {
        let key = check_scopes(scopes)?;
        Ok(self.inner.scoped.get_or_create(&key, || {
            let source = self.inner.source.clone();
            let scopes: Arc<[String]> = Arc::from(key.clone());
            new_cache(&self.inner.cache, move || {
                source.access_token(Arc::clone(&scopes))
            })
        }))
    }

    /// An OpenID Connect ID token whose `aud` is `audience` (for example a Cloud Run service's
    /// URL): from the metadata server, a service-account key, or impersonation. Each audience
    /// gets its own cache on first use.
    pub async fn id_token(&self, audience: &str) -> Result<IdToken> {
        let cache = self.id_token_cache(audience)?;
        Ok(IdToken::clone(&*cache.get().await?))
    }

    /// [`Credentials::id_token`] for callers without an async runtime (blocks the thread).
    pub fn id_token_blocking(&self, audience: &str) -> Result<IdToken> {
        let cache = self.id_token_cache(audience)?;
        Ok(IdToken::clone(&*cache.get_blocking()?))
    }

    fn id_token_cache(&self, audience: &str) -> Result<TokenCache<IdToken>> {
        if audience.trim().is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the ID token audience is empty",
            ));
        }
        let key = audience.to_owned();
        Ok(self.inner.id_tokens.get_or_create(&key, || {
            let source = self.inner.source.clone();
            let audience: Arc<str> = Arc::from(audience);
            new_cache(&self.inner.cache, move || {
                source.id_token(Arc::clone(&audience))
            })
        }))
    }

    /// A self-signed JWT for the API at `audience` (`https://SERVICE/`, AIP-4111), usable as a
    /// bearer token without any network call. Only service-account keys can make one.
    pub async fn self_signed_jwt(&self, audience: &str) -> Result<AccessToken> {
        let Some(account) = self.inner.source.service_account().cloned() else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{} credentials cannot self-sign JWTs; only service-account keys can",
                    self.credential_type()
                ),
            ));
        };
        if audience.trim().is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the self-signed JWT audience is empty",
            ));
        }
        let key = audience.to_owned();
        let cache = self.inner.audience_jwts.get_or_create(&key, || {
            let audience = audience.to_owned();
            new_cache(&self.inner.cache, move || {
                let account = Arc::clone(&account);
                let audience = audience.clone();
                Box::pin(async move {
                    account.self_signed_jwt(("aud", audience), std::time::SystemTime::now())
                })
            })
        });
        Ok(AccessToken::clone(&*cache.get().await?))
    }

    /// The email of the service account these credentials act as (a key's `client_email`, an
    /// impersonation target, the metadata server's attached account; asks the metadata server
    /// once per call), or `None` for user and federated credentials, which sign nothing.
    pub async fn service_account_email(&self) -> Result<Option<String>> {
        self.inner.source.service_account_email().await
    }

    /// Signs `message` locally with a service-account key: the raw signature (RSASSA-PKCS1-v1_5
    /// SHA-256 for RSA keys, `r || s` for P-256) and the key's id. Other credentials hold no key,
    /// so this is an [`ErrorKind::InvalidArgument`] error for them; they sign through the IAM
    /// Credentials API's `signBlob` with their access token instead.
    pub fn sign_bytes(&self, message: &[u8]) -> Result<(Option<String>, Vec<u8>)> {
        match self.inner.source.service_account() {
            Some(account) => account.sign_bytes(message),
            None => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{} credentials hold no key to sign with locally",
                    self.credential_type()
                ),
            )
            .with_hint("sign through the IAM Credentials API (signBlob) with an access token")),
        }
    }

    /// Whether this credential's tokens are bound to an Agent Identity workload certificate
    /// (AIP-4119). Then [`Credentials::access_token`] and [`Credentials::id_token`] refuse, with
    /// an [`ErrorKind::InvalidArgument`] error, to hand out a token without its certificate: use
    /// [`Credentials::bound_access_token`] and [`Credentials::bound_id_token`].
    pub fn is_bound(&self) -> bool {
        self.inner.source.binding().is_some()
    }

    /// The certificate tokens are bound to, read from its file now (`Ok(None)`: tokens are not
    /// bound).
    pub fn bound_certificate(&self) -> Result<Option<BoundCertificate>> {
        match self.inner.source.binding() {
            None => Ok(None),
            Some(files) => load_bound(files).map(Some),
        }
    }

    /// An access token for the builder's scopes bound to the Agent Identity workload
    /// certificate, together with that certificate: present the certificate over mutual TLS
    /// with the token, nothing else. The certificate file is read on every call; when it has
    /// changed (rotation), the tokens bound to the old one are dropped and a new one is fetched.
    pub async fn bound_access_token(&self) -> Result<BoundAccessToken> {
        let cache = self.bound_access_cache(self.inner.scopes.to_vec())?;
        Ok(BoundAccessToken::clone(&*cache.get().await?))
    }

    /// [`Credentials::bound_access_token`] for `scopes`.
    pub async fn bound_access_token_with_scopes(
        &self,
        scopes: &[&str],
    ) -> Result<BoundAccessToken> {
        let cache = self.bound_access_cache(check_scopes(scopes)?)?;
        Ok(BoundAccessToken::clone(&*cache.get().await?))
    }

    /// [`Credentials::bound_access_token`] for callers without an async runtime.
    pub fn bound_access_token_blocking(&self) -> Result<BoundAccessToken> {
        let cache = self.bound_access_cache(self.inner.scopes.to_vec())?;
        Ok(BoundAccessToken::clone(&*cache.get_blocking()?))
    }

    /// An ID token for `audience` bound to the Agent Identity workload certificate, with it.
    pub async fn bound_id_token(&self, audience: &str) -> Result<BoundIdToken> {
        if audience.trim().is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the ID token audience is empty",
            ));
        }
        let certificate = self.current_bound_certificate()?;
        let cache = {
            let mut bound = self.lock_bound();
            bound.for_certificate(certificate.fingerprint());
            let source = self.inner.source.clone();
            let config = self.inner.cache.clone();
            let audience: Arc<str> = Arc::from(audience);
            bound
                .id
                .entry(audience.to_string())
                .or_insert_with(|| {
                    new_cache(&config, move || {
                        source.bound_id_token(certificate.clone(), Arc::clone(&audience))
                    })
                })
                .clone()
        };
        Ok(BoundIdToken::clone(&*cache.get().await?))
    }

    fn bound_access_cache(&self, scopes: Vec<String>) -> Result<TokenCache<BoundAccessToken>> {
        let certificate = self.current_bound_certificate()?;
        let mut bound = self.lock_bound();
        bound.for_certificate(certificate.fingerprint());
        if bound.access.len() >= MAX_CACHES {
            bound.access.clear();
        }
        let source = self.inner.source.clone();
        let config = self.inner.cache.clone();
        let key = scopes.clone();
        let scopes: Arc<[String]> = Arc::from(scopes);
        Ok(bound
            .access
            .entry(key)
            .or_insert_with(|| {
                new_cache(&config, move || {
                    source.bound_access_token(certificate.clone(), Arc::clone(&scopes))
                })
            })
            .clone())
    }

    fn current_bound_certificate(&self) -> Result<BoundCertificate> {
        let files = self
            .inner
            .source
            .binding()
            .ok_or_else(crate::kinds::not_bound)?;
        load_bound(files)
    }

    fn lock_bound(&self) -> std::sync::MutexGuard<'_, BoundCaches> {
        self.inner
            .bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Signs `message` as the service account these credentials act as, the way google-auth does
    /// for Cloud Storage signed URLs: locally with a service-account key (as
    /// [`Credentials::sign_bytes`]); for metadata-server and impersonated credentials, which hold
    /// no key, through the IAM Credentials API's `signBlob` with an access token of these
    /// credentials, at the builder's [`Builder::with_iam_credentials_endpoint`] or else
    /// `https://iamcredentials.{universe}/v1/`. Returns the key id and the signature (RS256 by
    /// IAM). User and federated credentials act as no service account, so they cannot sign: an
    /// [`ErrorKind::InvalidArgument`] error, before any request.
    ///
    /// [`Builder::with_iam_credentials_endpoint`]: crate::Builder::with_iam_credentials_endpoint
    pub async fn sign_blob(&self, message: &[u8]) -> Result<(Option<String>, Vec<u8>)> {
        self.sign_blob_at(message, None).await
    }

    /// [`Credentials::sign_blob`] through the IAM Credentials API at `iam_endpoint` (its base,
    /// like `https://iamcredentials.googleapis.com/v1/`; `https://`, or `http://` to this machine,
    /// for an emulator) instead of the builder's: for callers that choose the endpoint per call.
    pub async fn sign_blob_with_endpoint(
        &self,
        message: &[u8],
        iam_endpoint: &str,
    ) -> Result<(Option<String>, Vec<u8>)> {
        let base = crate::url_policy::caller_endpoint(iam_endpoint, "iam_endpoint", "the caller")?;
        self.sign_blob_at(message, Some(base)).await
    }

    async fn sign_blob_at(
        &self,
        message: &[u8],
        base: Option<url::Url>,
    ) -> Result<(Option<String>, Vec<u8>)> {
        if self.inner.source.service_account().is_some() {
            return self.sign_bytes(message);
        }
        let email = self
            .inner
            .signing
            .email
            .get_or_try_init(|| self.service_account_email())
            .await?;
        let Some(email) = email.clone() else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{} credentials cannot sign: they act as no service account",
                    self.credential_type().as_str()
                ),
            )
            .with_hint("sign with a service account's credentials, or impersonate one"));
        };
        let base = match base.or_else(|| self.inner.signing.base.clone()) {
            Some(base) => base,
            None => crate::kinds::impersonated::iam::default_base(&self.universe_domain().await?)?,
        };
        let url = crate::kinds::impersonated::iam::sign_blob_url(&base, &email)?;
        let token = self.access_token().await?;
        let auth = (token.secret(), self.quota_project_id());
        crate::kinds::impersonated::iam::sign_blob(
            &self.inner.signing.http,
            &url,
            &email,
            auth,
            message,
        )
        .await
    }

    /// Forgets every cached token (say, after an API answered 401); the next call fetches anew.
    pub fn invalidate(&self) {
        self.lock_bound().invalidate();
        self.inner.default_cache.invalidate();
        // The ready headers hold the forgotten token: drop them too.
        self.inner.headers.store(None);
        self.inner.scoped.invalidate();
        self.inner.id_tokens.invalidate();
        self.inner.audience_jwts.invalidate();
    }

    /// The headers a request to a Google API needs: `authorization`; with a quota project,
    /// `x-goog-user-project`; with regional access boundaries enabled and known,
    /// `x-allowed-locations` (never waited for: see [`Credentials::regional_access_boundary`]).
    pub async fn request_headers(&self) -> Result<RequestHeaders> {
        if let Some(headers) = self.kept_headers() {
            return Ok(headers);
        }
        if let Some(token) = self.inner.default_cache.get_cached() {
            return self.headers_with(&token, true);
        }
        Box::pin(self.headers(true)).await
    }

    /// [`Credentials::request_headers`] for a request to `url`: requests to regional endpoints
    /// (`*.rep.googleapis.com`, `rep.sandbox`, `rep.mtls`) and to the IAM and STS hosts go
    /// without `x-allowed-locations`.
    pub async fn request_headers_for(&self, url: &str) -> Result<RequestHeaders> {
        let applies = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(crate::regional::applies_to_host))
            .unwrap_or(true);
        self.headers(applies).await
    }

    /// [`Credentials::request_headers`] for callers without an async runtime.
    pub fn request_headers_blocking(&self) -> Result<RequestHeaders> {
        if let Some(headers) = self.kept_headers() {
            return Ok(headers);
        }
        // `get_blocking` returns a usable token at once when there is one.
        let token = self.inner.default_cache.get_blocking()?;
        self.headers_with(&token, true)
    }

    /// The header set kept with the cached token, when there is no regional boundary (else the
    /// set depends on the boundary too) and the set was built for this token already. Its own
    /// `Option<RequestHeaders>` (two words) on purpose: one helper answering
    /// `Option<Result<RequestHeaders>>` for this and the lent path cost `request_headers().await`
    /// 5 ns more (BENCHMARKS.md, "Token paths").
    #[inline(always)]
    fn kept_headers(&self) -> Option<RequestHeaders> {
        if self.inner.regional.is_some() {
            return None;
        }
        let set = self.inner.default_cache.get_derived::<HeaderSet>()?;
        Some(RequestHeaders {
            set,
            with_locations: true,
        })
    }

    async fn headers(&self, with_locations: bool) -> Result<RequestHeaders> {
        let token = self.inner.default_cache.get().await?;
        self.headers_with(&token, with_locations)
    }

    /// The headers for `token`. Without a regional boundary they depend on the token alone, so
    /// they are built once per token and kept with it in the cache (a warm call is one cache
    /// load). With one, the ready set is reused while it was built for this token and (with
    /// locations) the boundary's current generation, else a new set is built and kept.
    fn headers_with(
        &self,
        token: &Cached<AccessToken>,
        with_locations: bool,
    ) -> Result<RequestHeaders> {
        if self.inner.regional.is_none() {
            let set =
                token.derived(|token| HeaderSet::new(token, 0, self.quota_project_id(), None))?;
            return Ok(RequestHeaders {
                set,
                with_locations,
            });
        }
        let regional = self.inner.regional.as_ref().filter(|_| with_locations);
        let generation = regional.map(|regional| Regional::with_header(regional, token, |g, _| g));
        if let Some(set) = &*self.inner.headers.load()
            && AccessToken::ptr_eq(&set.token, token)
            && generation.is_none_or(|g| set.generation == g)
        {
            return Ok(RequestHeaders {
                set: Arc::clone(set),
                with_locations,
            });
        }
        let (generation, allowed_locations) = match regional {
            Some(regional) => {
                Regional::with_header(regional, token, |g, value| (g, value.map(str::to_owned)))
            }
            // Built without asking the boundary: never reused for a call that sends it.
            None => (NOT_ASKED, None),
        };
        let set = Arc::new(HeaderSet::new(
            token,
            generation,
            self.quota_project_id(),
            allowed_locations,
        )?);
        self.inner.headers.store(Some(Arc::clone(&set)));
        Ok(RequestHeaders {
            set,
            with_locations,
        })
    }

    /// The state of this credential's regional access boundary: disabled, pending, the allowed
    /// locations, or why there is none.
    pub fn regional_access_boundary(&self) -> RegionalState {
        match &self.inner.regional {
            None => RegionalState::Disabled,
            Some(regional) => regional.state(),
        }
    }

    /// The project id: `GOOGLE_CLOUD_PROJECT`, `GCLOUD_PROJECT`, the credentials file, gcloud's
    /// configuration (for gcloud's credentials file), the metadata server, or — for workload
    /// identity federation with scopes set — Cloud Resource Manager (asked once, with this
    /// credential's token, for the project number of the audience or workforce pool user
    /// project). `Ok(None)` when none of them knows.
    pub async fn project_id(&self) -> Result<Option<String>> {
        match &self.inner.project {
            ProjectState::Known(known) => Ok(known.as_ref().map(|(id, _)| id.clone())),
            ProjectState::Metadata(client, cell) => cell
                .get_or_try_init(|| self.inner.cache.retry.run(|| client.project_id()))
                .await
                .map(|id| Some(id.clone())),
            ProjectState::ResourceManager(lookup, cell) => cell
                .get_or_try_init(|| self.inner.cache.retry.run(|| lookup.project_id(self)))
                .await
                .map(|id| Some(id.clone())),
        }
    }

    /// The project billed for quota: the builder's, `GOOGLE_CLOUD_QUOTA_PROJECT`, or the file's
    /// `quota_project_id`.
    pub fn quota_project_id(&self) -> Option<&str> {
        self.inner.quota.as_ref().map(|(id, _)| id.as_str())
    }

    /// The universe domain: the credentials file's, or the metadata server's;
    /// `googleapis.com` when neither names one.
    pub async fn universe_domain(&self) -> Result<String> {
        if let Some(domain) = self.inner.source.known_universe_domain() {
            return Ok(domain.to_owned());
        }
        match &self.inner.metadata {
            Some(client) => self
                .inner
                .universe
                .get_or_try_init(|| self.inner.cache.retry.run(|| client.universe_domain()))
                .await
                .cloned(),
            None => Ok(DEFAULT_UNIVERSE_DOMAIN.to_owned()),
        }
    }

    /// Every step of the search and where the project id, quota project and universe domain
    /// come from. Asks the metadata server for the project id and universe domain when they
    /// come from there; a failure is reported in the explanation, not as an error.
    pub async fn explain(&self) -> Explanation {
        let mut project_steps = self.inner.project_steps.clone();
        let (project_id, project_id_source) = match &self.inner.project {
            ProjectState::Known(known) => match known {
                Some((id, source)) => (Some(id.clone()), Some(*source)),
                None => (None, None),
            },
            ProjectState::Metadata(..) | ProjectState::ResourceManager(..) => {
                let (name, source) = match &self.inner.project {
                    ProjectState::ResourceManager(lookup, _) => (
                        format!("Cloud Resource Manager (project number {})", lookup.number),
                        ProjectIdSource::ResourceManager,
                    ),
                    _ => (
                        "metadata server".to_owned(),
                        ProjectIdSource::MetadataServer,
                    ),
                };
                match self.project_id().await {
                    Ok(id) => {
                        project_steps.push(Step::new(
                            name,
                            None,
                            Outcome::Chosen,
                            id.clone().unwrap_or_default(),
                        ));
                        (id, Some(source))
                    }
                    Err(e) => {
                        project_steps.push(Step::new(name, None, Outcome::Failed, e.to_string()));
                        (None, None)
                    }
                }
            }
        };
        let universe_domain = self.universe_domain().await.ok();
        let regional_access_boundary = match &self.inner.regional {
            None => RegionalState::Disabled,
            Some(regional) => match self.access_token().await {
                Ok(token) => regional.settle(&token).await,
                Err(e) => RegionalState::Failing(e.to_string()),
            },
        }
        .to_string();
        let mut details: Vec<Detail> = self
            .inner
            .source
            .details()
            .into_iter()
            .map(|(name, value)| Detail { name, value })
            .collect();
        if let Some(client) = &self.inner.metadata {
            details.extend(metadata_transport_details(client).await);
            // Decided now: name the URL requests really go to (https over mTLS).
            if let Some(server) = details.iter_mut().find(|d| d.name == "metadata_server") {
                server.value = client.base_url();
            }
        }
        Explanation {
            steps: self.inner.steps.clone(),
            credential_type: Some(self.credential_type()),
            credential_source: Some(self.inner.origin.clone()),
            details,
            project_id,
            project_id_source,
            project_id_steps: project_steps,
            quota_project_id: self.quota_project_id().map(str::to_owned),
            quota_project_source: self.inner.quota.as_ref().map(|(_, s)| *s),
            universe_domain,
            regional_access_boundary,
            token_binding: self.token_binding(),
            error: None,
        }
    }

    /// What `explain` says about certificate-bound tokens.
    fn token_binding(&self) -> crate::explain::TokenBinding {
        use crate::explain::TokenBinding;
        let form = match &self.inner.source {
            Source::Metadata(m) => match m.client.binding_form() {
                workload_auth_metadata::BindingForm::FingerprintQuery => "fingerprint_query",
                _ => "certificate_chain",
            },
            _ => "sts_options",
        };
        let Some(files) = self.inner.source.binding() else {
            let detail = match &self.inner.source {
                Source::Metadata(_) | Source::External(_) => {
                    "no Agent Identity workload certificate, or binding turned off"
                }
                _ => "this credential type does not bind tokens",
            };
            return TokenBinding {
                detail: detail.to_owned(),
                ..TokenBinding::default()
            };
        };
        match load_bound(files) {
            Ok(cert) => TokenBinding {
                bound: true,
                fingerprint: Some(cert.fingerprint().to_owned()),
                spiffe_id: Some(cert.spiffe_id().to_owned()),
                certificate_file: Some(cert.path().display().to_string()),
                form: Some(form.to_owned()),
                detail: format!("from the {}", files.origin),
            },
            Err(e) => TokenBinding {
                bound: true,
                certificate_file: Some(files.cert.display().to_string()),
                form: Some(form.to_owned()),
                detail: e.to_string(),
                ..TokenBinding::default()
            },
        }
    }

    /// [`Credentials::explain`] for callers without an async runtime.
    pub fn explain_blocking(&self) -> Explanation {
        let this = self.clone();
        match workload_auth_core::runtime::block_on(async move { this.explain().await }) {
            Ok(explanation) => explanation,
            Err(e) => Explanation::failed(self.inner.steps.clone(), e.to_string()),
        }
    }
}

/// The metadata server transport (`metadata_transport`: `mtls` or `http`), the mode it was
/// chosen under and why: in `default` mode this makes the one mTLS ping if no request has yet.
async fn metadata_transport_details(client: &MetadataClient) -> [Detail; 3] {
    let transport = client.mds_transport().await;
    [
        Detail {
            name: "metadata_transport".to_owned(),
            value: transport.name().to_owned(),
        },
        Detail {
            name: "metadata_mtls_mode".to_owned(),
            value: transport.mode().to_string(),
        },
        Detail {
            name: "metadata_transport_reason".to_owned(),
            value: transport.reason().to_owned(),
        },
    ]
}

/// The generation of a header set built without asking the regional boundary (for a URL it
/// does not apply to); the boundary's own generations never reach it.
const NOT_ASKED: u64 = u64::MAX;

/// The request headers of one token, built once per token (and regional boundary generation)
/// and shared by every [`RequestHeaders`] handed out until either changes.
struct HeaderSet {
    token: AccessToken,
    generation: u64,
    authorization: Arc<SecretString>,
    authorization_value: HeaderValue,
    user_project: Option<(String, HeaderValue)>,
    allowed_locations: Option<(String, HeaderValue)>,
}

/// The future of [`Credentials::access_token`]. Written out rather than an `async fn` so that
/// its `poll` can be inlined into the caller's, and the hit's token goes straight into the
/// caller's registers. An `async fn`'s out-of-line `poll` returned it through memory that the
/// caller read back in other widths than it was written (a store-forwarding stall): 12 ns a call
/// more than the blocking form with the same body (BENCHMARKS.md, "Token paths").
struct AccessTokenFuture<'a> {
    credentials: &'a Credentials,
    /// The wait for a fetch, once the first poll found no usable token. Boxed so that this future
    /// stays two words long; a miss, which fetches anyway, pays for the box.
    wait: Option<Pin<Box<dyn Future<Output = Result<AccessToken>> + Send + 'a>>>,
}

impl Future for AccessTokenFuture<'_> {
    type Output = Result<AccessToken>;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.wait.is_none()
            && let Some(token) = self.credentials.inner.default_cache.get_cloned()
        {
            return Poll::Ready(Ok(token));
        }
        self.poll_wait(cx)
    }
}

impl AccessTokenFuture<'_> {
    #[inline(never)]
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<Result<AccessToken>> {
        let cache = &self.credentials.inner.default_cache;
        let wait = self.wait.get_or_insert_with(|| {
            Box::pin(async move { Ok(AccessToken::clone(&*cache.get().await?)) })
        });
        wait.as_mut().poll(cx)
    }
}

/// The bytes of a sensitive header value, zeroed when the last `HeaderValue` sharing them drops.
struct SecretBytes(Arc<SecretString>);

impl AsRef<[u8]> for SecretBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.expose().as_bytes()
    }
}

impl HeaderSet {
    fn new(
        token: &AccessToken,
        generation: u64,
        user_project: Option<&str>,
        allowed_locations: Option<String>,
    ) -> Result<Self> {
        let authorization = Arc::new(token.authorization_header());
        let bytes = bytes::Bytes::from_owner(SecretBytes(Arc::clone(&authorization)));
        let mut authorization_value = HeaderValue::from_maybe_shared(bytes).map_err(|_| {
            Error::new(
                ErrorKind::MalformedResponse,
                "the access token cannot be sent in an HTTP header (it holds control characters \
                 or non-ASCII bytes)",
            )
        })?;
        authorization_value.set_sensitive(true);
        let user_project = match user_project {
            Some(project) => Some((
                project.to_owned(),
                HeaderValue::from_str(project).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        format!("the quota project {project:?} cannot be sent in an HTTP header"),
                    )
                })?,
            )),
            None => None,
        };
        // The boundary's answer was checked to be printable ASCII when it arrived.
        let allowed_locations = allowed_locations.and_then(|encoded| {
            let value = HeaderValue::from_str(&encoded).ok()?;
            Some((encoded, value))
        });
        Ok(Self {
            token: token.clone(),
            generation,
            authorization,
            authorization_value,
            user_project,
            allowed_locations,
        })
    }
}

/// The headers of a request to a Google API. `Debug` does not show the token.
///
/// Cheap to clone: every value is built once per token and shared (the `authorization` value
/// marked sensitive, so `http` and `hyper` keep it out of their logs and HPACK tables).
#[derive(Clone)]
pub struct RequestHeaders {
    set: Arc<HeaderSet>,
    /// Whether `x-allowed-locations` applies to the request these headers are for.
    with_locations: bool,
}

impl RequestHeaders {
    /// The `authorization` header's value, `Bearer <token>`.
    pub fn authorization(&self) -> &SecretString {
        &self.set.authorization
    }

    /// The `x-goog-user-project` header's value, when there is a quota project.
    pub fn user_project(&self) -> Option<&str> {
        self.set.user_project.as_ref().map(|(p, _)| p.as_str())
    }

    /// The `x-allowed-locations` header's value (the credential's regional access boundary),
    /// when enabled and known.
    pub fn allowed_locations(&self) -> Option<&str> {
        self.locations().map(|(l, _)| l.as_str())
    }

    fn locations(&self) -> Option<&(String, HeaderValue)> {
        self.set
            .allowed_locations
            .as_ref()
            .filter(|_| self.with_locations)
    }

    /// `(name, value)` of every header, names in lower case. The values include the token:
    /// do not log them.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        std::iter::once(("authorization", self.set.authorization.expose()))
            .chain(self.user_project().map(|p| ("x-goog-user-project", p)))
            .chain(
                self.allowed_locations()
                    .map(|l| (ALLOWED_LOCATIONS_HEADER, l)),
            )
    }

    /// The `authorization` header's ready value (marked sensitive), to insert in an
    /// `http::HeaderMap` without copying the token.
    pub fn authorization_value(&self) -> &HeaderValue {
        &self.set.authorization_value
    }

    /// [`RequestHeaders::iter`] as ready `http` header names and values (the `authorization`
    /// value marked sensitive): cloning one is a reference-count increment, not a copy.
    pub fn header_values(&self) -> impl Iterator<Item = (HeaderName, &HeaderValue)> {
        std::iter::once((AUTHORIZATION, &self.set.authorization_value))
            .chain(
                self.set
                    .user_project
                    .as_ref()
                    .map(|(_, v)| (HeaderName::from_static("x-goog-user-project"), v)),
            )
            .chain(
                self.locations()
                    .map(|(_, v)| (HeaderName::from_static(ALLOWED_LOCATIONS_HEADER), v)),
            )
    }
}

impl PartialEq for RequestHeaders {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for RequestHeaders {}

impl fmt::Debug for RequestHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHeaders")
            .field("authorization", &self.set.authorization)
            .field("user_project", &self.user_project())
            .field("allowed_locations", &self.allowed_locations())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Credentials>();
        assert_send_sync::<RequestHeaders>();
        assert_send_sync::<crate::Explanation>();
    }

    #[test]
    fn scopes_are_checked_sorted_and_deduplicated() {
        assert_eq!(check_scopes(&["b", "a", "b"]).unwrap(), ["a", "b"]);
        for bad in ["", "a b", "a,b"] {
            let err = check_scopes(&[bad]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        }
    }

    fn token(secret: &str) -> AccessToken {
        let expires = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        AccessToken::new(secret.into(), "Bearer", expires)
    }

    fn headers(set: HeaderSet, with_locations: bool) -> RequestHeaders {
        RequestHeaders {
            set: Arc::new(set),
            with_locations,
        }
    }

    #[test]
    fn request_headers_hide_the_token() {
        let set = HeaderSet::new(&token("ya29.secret"), 0, Some("quota-proj"), None).unwrap();
        let h = headers(set, true);
        assert!(!format!("{h:?}").contains("ya29"));
        let all: Vec<_> = h.iter().collect();
        assert_eq!(
            all,
            [
                ("authorization", "Bearer ya29.secret"),
                ("x-goog-user-project", "quota-proj")
            ]
        );
        assert!(h.authorization_value().is_sensitive());
        assert!(!format!("{:?}", h.authorization_value()).contains("ya29"));
        let values: Vec<_> = h
            .header_values()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
            .collect();
        let strings: Vec<_> = all
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(values, strings);
    }

    #[test]
    fn allowed_locations_only_for_requests_they_apply_to() {
        let set = HeaderSet::new(&token("ya29.t"), 3, None, Some("0xA30".into())).unwrap();
        let set = Arc::new(set);
        let sent = RequestHeaders {
            set: Arc::clone(&set),
            with_locations: true,
        };
        let skipped = RequestHeaders {
            set,
            with_locations: false,
        };
        assert_eq!(sent.allowed_locations(), Some("0xA30"));
        assert_eq!(sent.header_values().count(), 2);
        assert_eq!(skipped.allowed_locations(), None);
        assert_eq!(skipped.iter().count(), 1);
        assert_eq!(skipped.header_values().count(), 1);
        assert_ne!(sent, skipped);
    }

    #[test]
    fn values_that_cannot_be_headers_are_typed_errors() {
        let err = HeaderSet::new(&token("ya29.a\r\nx-evil: 1"), 0, None, None)
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::MalformedResponse);
        assert!(!err.to_string().contains("evil"));
        let err = HeaderSet::new(&token("ya29.ok"), 0, Some("proj\nx"), None)
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
}
