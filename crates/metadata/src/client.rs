//! [`MetadataClient`]: typed access to the metadata server, with retries and a reused connection.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use workload_auth_core::http_client::build_client;
use workload_auth_core::{AccessToken, Error, ErrorKind, IdToken, Result, RetryPolicy};

use crate::binding::{BindingForm, CertificateBinding, FINGERPRINT_PARAM};
use crate::host::{METADATA_HOST_ENV, MetadataHost, join_checked};
use crate::mds_mtls::{
    ClientSettings, MDS_MTLS_CLIENT_FILE, MDS_MTLS_DIR_ENV, MDS_MTLS_MODE_ENV, MDS_MTLS_ROOT_FILE,
    MdsMtlsMode, MdsTransport, MtlsTransport, exists, resolve_dir, target,
};
use crate::request::{MetadataResponse, malformed, send_once};
use crate::service_account::{ServiceAccountInfo, parse_service_account};
use crate::token::{parse_access_token, parse_id_token};
use crate::workload::{
    WorkloadCertificatesUnavailable, WorkloadIdentities, parse_config_status, parse_trust_anchors,
    parse_workload_identities,
};
use workload_auth_core::text::snippet;

/// The universe domain of Google Cloud's public universe: what the metadata server means when it
/// names none, and what the other credential kinds (re-exported by the ADC crate) assume.
pub const DEFAULT_UNIVERSE_DOMAIN: &str = "googleapis.com";

const TOKEN: &str = "instance/service-accounts/default/token";
const IDENTITY: &str = "instance/service-accounts/default/identity";
const EMAIL: &str = "instance/service-accounts/default/email";
const SERVICE_ACCOUNT: &str = "instance/service-accounts/default/";
const PROJECT_ID: &str = "project/project-id";
const NUMERIC_PROJECT_ID: &str = "project/numeric-project-id";
const UNIVERSE_DOMAIN: &str = "universe/universe-domain";
const WORKLOAD_IDENTITIES: &str = "instance/gce-workload-certificates/workload-identities";
const TRUST_ANCHORS: &str = "instance/gce-workload-certificates/trust-anchors";
const CONFIG_STATUS: &str = "instance/gce-workload-certificates/config-status";

/// A client for the GCE metadata server.
///
/// Cheap to clone (the connection pool and settings are shared). Building one needs no tokio
/// runtime; its methods must run inside one. Transient failures (connect errors, timeouts, resets,
/// truncated bodies, 408, 429, 5xx) are retried under the [`RetryPolicy`]; everything else is
/// reported at once.
#[derive(Clone)]
pub struct MetadataClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// The plain-HTTP client; `None` in `strict` mode, so plain HTTP cannot be sent at all.
    http: Option<reqwest::Client>,
    /// The mTLS side, when the mode and the files allow it.
    mtls: Option<MtlsTransport>,
    /// The transport, decided once: at build, or by the first request's mTLS ping.
    transport: tokio::sync::OnceCell<MdsTransport>,
    mode: MdsMtlsMode,
    host: MetadataHost,
    timeout: Duration,
    retry: RetryPolicy,
    binding_form: BindingForm,
}

/// Builds a [`MetadataClient`].
#[derive(Clone, Debug)]
pub struct MetadataClientBuilder {
    host: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    binding_form: BindingForm,
    mtls_mode: Option<MdsMtlsMode>,
    mtls_dir: Option<PathBuf>,
}

impl Default for MetadataClientBuilder {
    fn default() -> Self {
        Self {
            host: None,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            binding_form: BindingForm::default(),
            mtls_mode: None,
            mtls_dir: None,
        }
    }
}

impl MetadataClientBuilder {
    /// Talks to `host` (`host`, `host:port` or `http://host:port`) instead of the value of
    /// `GCE_METADATA_HOST` or `metadata.google.internal`.
    #[must_use]
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The limit for one attempt, from connecting to the last byte of the body (default 5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The limit for establishing a connection (default 1 s; on Google Cloud it takes well
    /// under a millisecond).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How transient failures are retried (default: [`RetryPolicy::default`]).
    #[must_use]
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How certificate-bound token requests carry their binding (default:
    /// [`BindingForm::CertificateChain`], the POST google-auth 2.61+ sends;
    /// [`BindingForm::FingerprintQuery`] for metadata servers that only know the older
    /// `?bindCertificateFingerprint=` form).
    #[must_use]
    pub fn binding_form(mut self, form: BindingForm) -> Self {
        self.binding_form = form;
        self
    }

    /// How the metadata server is reached (default: the value of `GCE_METADATA_MTLS_MODE`,
    /// else [`MdsMtlsMode::None`]). See [`MdsMtlsMode`] and the crate's mTLS section.
    #[must_use]
    pub fn mtls_mode(mut self, mode: MdsMtlsMode) -> Self {
        self.mtls_mode = Some(mode);
        self
    }

    /// The directory holding `root.crt` and `client.key` (default: the value of
    /// `WORKLOAD_AUTH_MDS_MTLS_DIR`, else `/run/google-mds-mtls`).
    #[must_use]
    pub fn mtls_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.mtls_dir = Some(dir.into());
        self
    }

    /// Builds the client. Reads `GCE_METADATA_HOST`, `GCE_METADATA_MTLS_MODE` and
    /// `WORKLOAD_AUTH_MDS_MTLS_DIR` now for what was not given.
    ///
    /// Fails with [`ErrorKind::InvalidArgument`] when the host is not `host[:port]` or the mode
    /// is not `none`, `default` or `strict`, and in `strict` mode when the host is overridden to
    /// a non-loopback address; with [`ErrorKind::InvalidCredentials`] (naming the file) in
    /// `strict` mode when `root.crt` or `client.key` is missing, half-written, a directory,
    /// holds a non-EC key or an expired certificate.
    pub fn build(self) -> Result<MetadataClient> {
        let env = std::env::var(METADATA_HOST_ENV).ok();
        let host = MetadataHost::resolve(self.host.as_deref(), env.as_deref())?;
        let mode = match self.mtls_mode {
            Some(mode) => mode,
            None => MdsMtlsMode::from_env_value(std::env::var(MDS_MTLS_MODE_ENV).ok().as_deref())?,
        };
        let dir = resolve_dir(
            self.mtls_dir.as_deref(),
            std::env::var(MDS_MTLS_DIR_ENV).ok().as_deref(),
        );
        let settings = ClientSettings {
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
        };
        let (http, mtls, decided) = transports(mode, dir, &host, &settings)?;
        Ok(MetadataClient {
            inner: Arc::new(Inner {
                http,
                mtls,
                transport: tokio::sync::OnceCell::new_with(decided),
                mode,
                host,
                timeout: self.timeout,
                retry: self.retry,
                binding_form: self.binding_form,
            }),
        })
    }
}

/// The plain-HTTP client, the mTLS side, and the transport when it is decided without a ping.
type Transports = (
    Option<reqwest::Client>,
    Option<MtlsTransport>,
    Option<MdsTransport>,
);

fn transports(
    mode: MdsMtlsMode,
    dir: PathBuf,
    host: &MetadataHost,
    settings: &ClientSettings,
) -> Result<Transports> {
    let http = || http_client(settings).map(Some);
    match mode {
        MdsMtlsMode::None => Ok((
            http()?,
            None,
            Some(MdsTransport::http(
                mode,
                None,
                "metadata server mTLS is off (GCE_METADATA_MTLS_MODE unset or none)",
            )),
        )),
        MdsMtlsMode::Strict => {
            let target = target(host).map_err(|why| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("GCE_METADATA_MTLS_MODE=strict: {why}"),
                )
                .with_endpoint(host.to_string())
                .with_hint("unset GCE_METADATA_HOST, or point it at a loopback emulator")
            })?;
            let reason = format!(
                "strict: only mTLS, never plain HTTP; client certificate {}, server verified as \
                 metadata.google.internal against {}",
                dir.join(MDS_MTLS_CLIENT_FILE).display(),
                dir.join(MDS_MTLS_ROOT_FILE).display()
            );
            let mtls = MtlsTransport::load(dir.clone(), target, settings.clone())?;
            Ok((
                None,
                Some(mtls),
                Some(MdsTransport::mtls(mode, dir, reason)),
            ))
        }
        MdsMtlsMode::Default => {
            let missing: Vec<String> = [MDS_MTLS_ROOT_FILE, MDS_MTLS_CLIENT_FILE]
                .iter()
                .map(|f| dir.join(f))
                .filter(|p| !exists(p))
                .map(|p| p.display().to_string())
                .collect();
            if !missing.is_empty() {
                let reason = format!("{} does not exist", missing.join(" and "));
                return Ok((
                    http()?,
                    None,
                    Some(MdsTransport::http(mode, Some(dir), reason)),
                ));
            }
            let loaded = target(host)
                .map_err(|why| Error::new(ErrorKind::InvalidArgument, why))
                .and_then(|t| MtlsTransport::load(dir.clone(), t, settings.clone()));
            match loaded {
                Ok(mtls) => Ok((http()?, Some(mtls), None)),
                Err(e) => {
                    tracing::warn!("metadata server mTLS unusable, using plain HTTP: {e}");
                    let reason = format!("mTLS unusable ({e})");
                    Ok((
                        http()?,
                        None,
                        Some(MdsTransport::http(mode, Some(dir), reason)),
                    ))
                }
            }
        }
    }
}

fn http_client(settings: &ClientSettings) -> Result<reqwest::Client> {
    build_client(tls_config()?, settings.options(), |b| b)
}

/// A rustls configuration on the ring provider. The metadata server is plain HTTP, so it is never
/// used, but reqwest must not reach for a process-wide default provider.
fn tls_config() -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::Setup, "cannot configure TLS").with_source(e))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Ok(config)
}

impl MetadataClient {
    /// A builder with the defaults.
    pub fn builder() -> MetadataClientBuilder {
        MetadataClientBuilder::default()
    }

    /// The metadata server this client talks to.
    pub fn host(&self) -> &MetadataHost {
        &self.inner.host
    }

    /// The base URL requests go to: `http://HOST/computeMetadata/v1/`, or over mTLS
    /// `https://metadata.google.internal[:PORT]/computeMetadata/v1/` (in `default` mode, before
    /// the transport is decided, the mTLS one).
    pub fn base_url(&self) -> String {
        self.endpoint("")
    }

    /// The mTLS mode this client was built with.
    pub fn mtls_mode(&self) -> MdsMtlsMode {
        self.inner.mode
    }

    /// The transport this client uses and why. In `default` mode with both files present, the
    /// first call (or the first request) pings the server over mTLS once to decide; every
    /// later call returns that decision.
    pub async fn mds_transport(&self) -> MdsTransport {
        self.transport().await.clone()
    }

    /// The transport, deciding it on first use.
    async fn transport(&self) -> &MdsTransport {
        self.inner
            .transport
            .get_or_init(|| async {
                match &self.inner.mtls {
                    Some(mtls) => decide(mtls, self.inner.mode, self.inner.timeout).await,
                    None => MdsTransport::http(self.inner.mode, None, "no mTLS configuration"),
                }
            })
            .await
    }

    /// The HTTP client and base URL for `transport`.
    fn route(&self, transport: &MdsTransport) -> Result<(reqwest::Client, &url::Url)> {
        match (&self.inner.mtls, &self.inner.http) {
            (Some(mtls), _) if transport.is_mtls() => Ok((mtls.client(), &mtls.target.base)),
            (_, Some(http)) if !transport.is_mtls() => {
                Ok((http.clone(), self.inner.host.base_url()))
            }
            _ => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("no client for the metadata server transport: {transport}"),
            )),
        }
    }

    /// An OAuth 2.0 access token of the attached service account, for `scopes` (none: the VM's
    /// scopes).
    pub async fn access_token(&self, scopes: &[&str]) -> Result<AccessToken> {
        self.token_request(scopes, None).await
    }

    /// An access token for `scopes` bound to the certificate of `binding` (Agent Identity,
    /// AIP-4119): the token is only accepted over mutual TLS presenting that certificate, so hand
    /// it out only together with it.
    pub async fn bound_access_token(
        &self,
        scopes: &[&str],
        binding: &CertificateBinding,
    ) -> Result<AccessToken> {
        self.token_request(scopes, Some(binding)).await
    }

    /// How this client sends certificate bindings.
    pub fn binding_form(&self) -> BindingForm {
        self.inner.binding_form
    }

    async fn token_request(
        &self,
        scopes: &[&str],
        binding: Option<&CertificateBinding>,
    ) -> Result<AccessToken> {
        if let Some(bad) = scopes
            .iter()
            .find(|s| s.is_empty() || s.contains(|c: char| c == ',' || c.is_whitespace()))
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("invalid OAuth scope {bad:?}: empty or contains a comma or whitespace"),
            )
            .with_endpoint(self.endpoint(TOKEN)));
        }
        let mut query: Vec<(&str, String)> = if scopes.is_empty() {
            Vec::new()
        } else {
            vec![("scopes", scopes.join(","))]
        };
        let body = self.bind(&mut query, binding);
        // Expiry counts from before the request, so it can only err on the early side.
        let requested_at = SystemTime::now();
        self.fetch_with(TOKEN, &query, body.as_deref(), |body, endpoint| {
            parse_access_token(body, endpoint, requested_at)
        })
        .await
    }

    /// Adds `binding` to a token request in this client's form: a query parameter, or the
    /// POST body it returns.
    fn bind(
        &self,
        query: &mut Vec<(&str, String)>,
        binding: Option<&CertificateBinding>,
    ) -> Option<Vec<u8>> {
        let binding = binding?;
        match self.inner.binding_form {
            BindingForm::CertificateChain => Some(binding.post_body()),
            BindingForm::FingerprintQuery => {
                query.push((FINGERPRINT_PARAM, binding.fingerprint().to_owned()));
                None
            }
        }
    }

    /// An OpenID Connect ID token for `audience`. `format_full` adds the `email` and (with
    /// `licenses`) license claims.
    pub async fn id_token(
        &self,
        audience: &str,
        format_full: bool,
        licenses: bool,
    ) -> Result<IdToken> {
        self.id_token_request(audience, format_full, licenses, None)
            .await
    }

    /// [`MetadataClient::id_token`] bound to the certificate of `binding`: the audience accepts
    /// it only from a caller presenting that certificate over mutual TLS.
    pub async fn bound_id_token(
        &self,
        audience: &str,
        format_full: bool,
        licenses: bool,
        binding: &CertificateBinding,
    ) -> Result<IdToken> {
        self.id_token_request(audience, format_full, licenses, Some(binding))
            .await
    }

    async fn id_token_request(
        &self,
        audience: &str,
        format_full: bool,
        licenses: bool,
        binding: Option<&CertificateBinding>,
    ) -> Result<IdToken> {
        if audience.trim().is_empty() {
            return Err(
                Error::new(ErrorKind::InvalidArgument, "the ID token audience is empty")
                    .with_endpoint(self.endpoint(IDENTITY)),
            );
        }
        let mut query = vec![("audience", audience.to_owned())];
        if format_full {
            query.push(("format", "full".to_owned()));
            query.push((
                "licenses",
                if licenses { "TRUE" } else { "FALSE" }.to_owned(),
            ));
        }
        let body = self.bind(&mut query, binding);
        self.fetch_with(IDENTITY, &query, body.as_deref(), parse_id_token)
            .await
    }

    /// The attached service account's email.
    pub async fn email(&self) -> Result<String> {
        self.text(EMAIL).await
    }

    /// The attached service account: email, scopes and aliases.
    pub async fn service_account_info(&self) -> Result<ServiceAccountInfo> {
        self.fetch(
            SERVICE_ACCOUNT,
            &[("recursive", "true".to_owned())],
            parse_service_account,
        )
        .await
    }

    /// The project id (e.g. `my-project`).
    pub async fn project_id(&self) -> Result<String> {
        self.text(PROJECT_ID).await
    }

    /// The project number.
    pub async fn numeric_project_id(&self) -> Result<u64> {
        self.fetch(NUMERIC_PROJECT_ID, &[], |body, endpoint| {
            let text = utf8(body, endpoint)?.trim();
            text.parse::<u64>().map_err(|_| {
                malformed(
                    endpoint,
                    format!(
                        "the project number {:?} is not a decimal number",
                        snippet(text, 40)
                    ),
                )
            })
        })
        .await
    }

    /// The universe domain; `googleapis.com` when the server answers 404 or an empty value.
    pub async fn universe_domain(&self) -> Result<String> {
        let endpoint = self.endpoint(UNIVERSE_DOMAIN);
        match self.request(UNIVERSE_DOMAIN, &[]).await? {
            MetadataResponse::Ok(body) => {
                let text = utf8(&body, &endpoint)?.trim();
                Ok(if text.is_empty() {
                    DEFAULT_UNIVERSE_DOMAIN.to_owned()
                } else {
                    text.to_owned()
                })
            }
            MetadataResponse::Status(404, _) => Ok(DEFAULT_UNIVERSE_DOMAIN.to_owned()),
            MetadataResponse::Status(status, body) => Err(status_error(status, &endpoint, &body)),
        }
    }

    /// The workload's X509-SVID and key (managed workload identity). Errors carry a
    /// [`WorkloadCertificatesUnavailable`] reason when the VM has none.
    pub async fn workload_identities(&self) -> Result<WorkloadIdentities> {
        self.workload(WORKLOAD_IDENTITIES, parse_workload_identities)
            .await
    }

    /// The trust anchors (root certificates, PEM) of each trust domain the workload trusts.
    pub async fn trust_anchors(&self) -> Result<BTreeMap<String, String>> {
        self.workload(TRUST_ANCHORS, parse_trust_anchors).await
    }

    /// The workload-certificate configuration status (a JSON object, e.g.
    /// `{"partnerMetadataConfigsErrors":{}}`).
    pub async fn config_status(&self) -> Result<serde_json::Value> {
        self.workload(CONFIG_STATUS, parse_config_status).await
    }

    /// A text value under `/computeMetadata/v1/`, e.g. `instance/zone`. Not for tokens: use
    /// [`MetadataClient::access_token`] and [`MetadataClient::id_token`].
    ///
    /// `path` may hold only ASCII letters and digits, `-`, `_`, `.`, `~`, `@` and single `/`
    /// between non-empty segments; anything that could make the request leave
    /// `/computeMetadata/v1/` or the metadata host (`..`, `%2e`, `//host`, `http:`, `?`, `#`,
    /// `\`, whitespace) is an [`ErrorKind::InvalidArgument`] and nothing is sent.
    pub async fn get_text(&self, path: &str) -> Result<String> {
        self.text(path).await
    }

    async fn text(&self, path: &str) -> Result<String> {
        self.fetch(path, &[], |body, endpoint| {
            let text = utf8(body, endpoint)?.trim();
            if text.is_empty() {
                return Err(malformed(endpoint, "the value is empty"));
            }
            Ok(text.to_owned())
        })
        .await
    }

    async fn workload<T>(&self, path: &str, parse: impl Fn(&[u8], &str) -> Result<T>) -> Result<T> {
        let endpoint = self.endpoint(path);
        match self.request(path, &[]).await? {
            MetadataResponse::Ok(body) => parse(&body, &endpoint),
            MetadataResponse::Status(status, body) => {
                match WorkloadCertificatesUnavailable::from_status(status, &body) {
                    Some(reason) => Err(reason.into_error(status, &endpoint)),
                    None => Err(status_error(status, &endpoint, &body)),
                }
            }
        }
    }

    /// GET `path`, then `parse` a 2xx body; any other status is an error.
    async fn fetch<T>(
        &self,
        path: &str,
        query: &[(&str, String)],
        parse: impl Fn(&[u8], &str) -> Result<T>,
    ) -> Result<T> {
        self.fetch_with(path, query, None, parse).await
    }

    /// [`Self::fetch`], POSTing `body` (JSON) when there is one.
    async fn fetch_with<T>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
        parse: impl Fn(&[u8], &str) -> Result<T>,
    ) -> Result<T> {
        let endpoint = self.endpoint(path);
        match self.request_with(path, query, body).await? {
            MetadataResponse::Ok(body) => parse(&body, &endpoint),
            MetadataResponse::Status(status, body) => Err(status_error(status, &endpoint, &body)),
        }
    }

    /// GET `path` with retries. Transient statuses are retried here and reported as errors once
    /// the attempts are used up; other statuses are returned for the caller to interpret.
    async fn request(&self, path: &str, query: &[(&str, String)]) -> Result<MetadataResponse> {
        self.request_with(path, query, None).await
    }

    /// [`Self::request`], POSTing `body` when there is one.
    async fn request_with(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<MetadataResponse> {
        let transport = self.transport().await;
        let (http, base) = self.route(transport)?;
        let endpoint = format!("{base}{path}");
        let mut url = join_checked(base, path)?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let inner = &self.inner;
        inner
            .retry
            .run(|| async {
                match send_once(&http, &url, body, &endpoint, inner.timeout).await? {
                    MetadataResponse::Status(status, body)
                        if workload_auth_core::status_is_transient(status) =>
                    {
                        Err(status_error(status, &endpoint, &body))
                    }
                    answer => Ok(answer),
                }
            })
            .await
    }

    /// The URL of `path` without its query, as errors name it: over mTLS once that is
    /// decided (or possible), else over plain HTTP.
    fn endpoint(&self, path: &str) -> String {
        let mtls = match self.inner.transport.get() {
            Some(transport) => transport.is_mtls(),
            None => self.inner.mtls.is_some(),
        };
        match &self.inner.mtls {
            Some(m) if mtls => format!("{}{path}", m.target.base),
            _ => format!("{}{path}", self.inner.host.base_url()),
        }
    }
}

/// `default` mode with usable files: one mTLS ping decides. The failures google-auth falls back
/// on (TLS and connection errors, timeouts, 4xx and 5xx) choose plain HTTP, logged; anything else
/// keeps mTLS.
async fn decide(mtls: &MtlsTransport, mode: MdsMtlsMode, timeout: Duration) -> MdsTransport {
    let ping = &mtls.target.ping;
    let outcome = mtls
        .client()
        .get(ping.clone())
        .header(crate::request::FLAVOR_HEADER, crate::request::FLAVOR_VALUE)
        .timeout(timeout)
        .send()
        .await;
    let failure = match outcome {
        Ok(response) if response.status().as_u16() >= 400 => {
            Some(format!("it answered HTTP {}", response.status().as_u16()))
        }
        Ok(_) => None,
        Err(e) => Some(error_chain(&e)),
    };
    match failure {
        None => MdsTransport::mtls(
            mode,
            mtls.dir.clone(),
            format!(
                "both files exist in {} and the mTLS ping to {ping} succeeded (server verified as \
                 169.254.169.254 against root.crt); data requests verify metadata.google.internal",
                mtls.dir.display()
            ),
        ),
        Some(why) => {
            tracing::warn!(
                ping = %ping,
                "metadata server mTLS ping failed ({why}); this client falls back to plain HTTP \
                 (GCE_METADATA_MTLS_MODE=default; use strict to forbid that)"
            );
            MdsTransport::http(
                mode,
                Some(mtls.dir.clone()),
                format!("the mTLS ping to {ping} failed ({why}); fell back to plain HTTP"),
            )
        }
    }
}

/// An error and its causes on one line (transport errors never hold secrets).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn utf8<'a>(body: &'a [u8], endpoint: &str) -> Result<&'a str> {
    std::str::from_utf8(body).map_err(|_| malformed(endpoint, "the body is not UTF-8 text"))
}

fn status_error(status: u16, endpoint: &str, body: &str) -> Error {
    let what = match status {
        400 => "the metadata server refused the request as malformed",
        403 => "the metadata server refused the request",
        404 => "the metadata server has no such value",
        429 => "the metadata server is rate limiting requests",
        s if s >= 500 => "the metadata server failed",
        _ => "the metadata server answered with an error",
    };
    let message = if body.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {body:?}")
    };
    Error::http_status(status, endpoint.to_owned(), message)
}

impl fmt::Debug for MetadataClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataClient")
            .field("host", &self.inner.host)
            .field("mtls_mode", &self.inner.mode)
            .field("timeout", &self.inner.timeout)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_without_a_runtime_and_names_endpoints() {
        let client = MetadataClient::builder()
            .host("127.0.0.1:1")
            .retry_policy(RetryPolicy::none())
            .build()
            .unwrap();
        assert_eq!(client.host().authority(), "127.0.0.1:1");
        assert_eq!(
            client.endpoint(TOKEN),
            "http://127.0.0.1:1/computeMetadata/v1/instance/service-accounts/default/token"
        );
        let clone = client.clone();
        assert!(Arc::ptr_eq(&client.inner, &clone.inner));
        assert!(format!("{client:?}").contains("127.0.0.1:1"));
    }

    #[test]
    fn a_bad_host_is_an_invalid_argument() {
        let err = MetadataClient::builder()
            .host("https://metadata.google.internal")
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn status_errors_classify_retry() {
        assert!(status_error(503, "e", "").is_transient());
        assert!(!status_error(404, "e", "Not Found").is_transient());
        assert_eq!(status_error(403, "e", "").kind(), ErrorKind::Rejected);
        let text = status_error(404, "e", "Not Found").to_string();
        assert!(text.contains("Not Found") && text.contains("[e]"), "{text}");
    }
}
