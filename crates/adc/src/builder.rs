//! [`Builder`]: the options, and the Application Default Credentials search.

use std::fmt;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use workload_auth_core::fs::{
    MAX_JSON_FILE_BYTES, MAX_SMALL_FILE_BYTES, is_not_found, read_bounded,
};
use workload_auth_core::{CacheConfig, Error, ErrorKind, Result, SecretString};
use workload_auth_metadata::{
    DEFAULT_MDS_MTLS_DIR, DEFAULT_METADATA_HOST, DetectionInput, MDS_MTLS_DIR_ENV,
    MDS_MTLS_MODE_ENV, METADATA_HOST_ENV, MdsMtlsMode, MetadataClient, detect,
};

use crate::credential_client::{DEFAULT_TIMEOUT, Http, TlsRoots};
use crate::credentials::{Credentials, ProjectState, Resolved};
use crate::env::ALLOWED_ENDPOINTS_ENV;
use crate::env::{CREDENTIALS_ENV, EnvSource, LEGACY_PROJECT_ENV, PROJECT_ENV, QUOTA_PROJECT_ENV};
use crate::explain::{Explanation, Outcome, ProjectIdSource, QuotaProjectSource, Step};
use crate::kinds::{self, Context, CredentialType, Source};
use crate::url_policy::EndpointPolicy;

/// The name of gcloud's Application Default Credentials file.
pub const GCLOUD_CREDENTIALS_FILE: &str = "application_default_credentials.json";

const NOT_FOUND_HINT: &str = "run `gcloud auth application-default login`, set \
    GOOGLE_APPLICATION_CREDENTIALS to a credentials file, or run on Google Cloud (elsewhere, set \
    GCE_METADATA_HOST to a metadata server such as the workload-auth emulator)";

#[derive(Clone)]
enum Explicit {
    File(PathBuf),
    Json(SecretString),
}

/// Builds [`Credentials`] the way Application Default Credentials finds them.
///
/// ```no_run
/// use workload_auth_adc::Builder;
/// # async fn run() -> workload_auth_core::Result<()> {
/// let credentials = Builder::new()
///     .with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
///     .build()?;
/// let token = credentials.access_token().await?;
/// # let _ = token; Ok(()) }
/// ```
///
/// Building reads files and the environment and, when it gets that far, decides whether this is
/// Google Cloud (without a network probe when a local fact decides, otherwise with one probe of a
/// few tens of milliseconds). It needs no async runtime and makes no token request.
#[derive(Clone)]
pub struct Builder {
    scopes: Option<Vec<String>>,
    quota_project: Option<String>,
    explicit: Option<Explicit>,
    metadata_host: Option<String>,
    metadata_mtls_mode: Option<MdsMtlsMode>,
    metadata_mtls_dir: Option<PathBuf>,
    env: EnvSource,
    detection: Option<DetectionInput>,
    roots: TlsRoots,
    http_client: Option<reqwest::Client>,
    cache: CacheConfig,
    timeout: Duration,
    self_signed_jwt: bool,
    token_lifetime: Option<Duration>,
    allowed_endpoints: Vec<String>,
    allowed_types: Option<Vec<CredentialType>>,
    regional: crate::regional::Options,
    resource_manager: Option<String>,
    binding_form: workload_auth_metadata::BindingForm,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("scopes", &self.scopes)
            .field("quota_project", &self.quota_project)
            .field(
                "explicit",
                &match &self.explicit {
                    None => "none".to_owned(),
                    Some(Explicit::File(p)) => format!("file {}", p.display()),
                    Some(Explicit::Json(_)) => "JSON (redacted)".to_owned(),
                },
            )
            .field("metadata_host", &self.metadata_host)
            .field("metadata_mtls_mode", &self.metadata_mtls_mode)
            .field("metadata_mtls_dir", &self.metadata_mtls_dir)
            .field("env", &self.env)
            .field("roots", &self.roots)
            .field("http_client", &self.http_client.is_some())
            .field("timeout", &self.timeout)
            .field("self_signed_jwt", &self.self_signed_jwt)
            .field("allowed_endpoints", &self.allowed_endpoints)
            .field("allowed_types", &self.allowed_types)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Application Default Credentials from the process environment.
    pub fn new() -> Self {
        Self {
            scopes: None,
            quota_project: None,
            explicit: None,
            metadata_host: None,
            metadata_mtls_mode: None,
            metadata_mtls_dir: None,
            env: EnvSource::process(),
            detection: None,
            roots: TlsRoots::default(),
            http_client: None,
            cache: CacheConfig::default(),
            timeout: DEFAULT_TIMEOUT,
            self_signed_jwt: false,
            token_lifetime: None,
            allowed_endpoints: Vec::new(),
            allowed_types: None,
            regional: crate::regional::Options::default(),
            resource_manager: None,
            binding_form: workload_auth_metadata::BindingForm::default(),
        }
    }

    /// How metadata-server token requests carry an Agent Identity certificate binding: the POST
    /// with the certificate chain (default, as google-auth 2.61+), or the older
    /// `?bindCertificateFingerprint=` query parameter for servers that do not take the POST.
    pub fn with_binding_form(mut self, form: workload_auth_metadata::BindingForm) -> Self {
        self.binding_form = form;
        self
    }

    /// Looks up the credential's regional access boundary and sends `x-allowed-locations` with
    /// [`Credentials::request_headers`] (`true`), or never (`false`), whatever the environment
    /// says. Without this, `GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED` or
    /// `GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED` (`true` or `1`)
    /// turn it on.
    pub fn with_regional_access_boundary(mut self, enabled: bool) -> Self {
        self.regional.enabled = Some(enabled);
        self
    }

    /// The IAM Service Account Credentials API the regional access boundary is looked up at
    /// and [`Credentials::sign_blob`](crate::Credentials::sign_blob) signs through, instead of
    /// `https://iamcredentials.{universe}/v1/` (for an emulator). Must be `https://`, or
    /// `http://` to this machine.
    pub fn with_iam_credentials_endpoint(mut self, base: impl Into<String>) -> Self {
        let mut base = base.into();
        if !base.ends_with('/') {
            base.push('/');
        }
        self.regional.endpoint = Some(base);
        self
    }

    /// Cloud Resource Manager's base URL, instead of `https://cloudresourcemanager.{universe}/v1/`
    /// (for an emulator): where workload identity federation's project id is looked up.
    pub fn with_resource_manager_endpoint(mut self, base: impl Into<String>) -> Self {
        let mut base = base.into();
        if !base.ends_with('/') {
            base.push('/');
        }
        self.resource_manager = Some(base);
        self
    }

    /// The scopes of [`Credentials::access_token`]. Without this, each credential type asks for
    /// what Google's libraries ask for: `cloud-platform` for service accounts, impersonation and
    /// federation; the scopes granted at login for user credentials; the VM's scopes on the
    /// metadata server.
    #[must_use]
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// The project billed for quota (sent as `x-goog-user-project`); overrides
    /// `GOOGLE_CLOUD_QUOTA_PROJECT` and the file's `quota_project_id`.
    #[must_use]
    pub fn with_quota_project(mut self, project: impl Into<String>) -> Self {
        self.quota_project = Some(project.into());
        self
    }

    /// Uses this credentials file instead of searching.
    #[must_use]
    pub fn with_credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.explicit = Some(Explicit::File(path.into()));
        self
    }

    /// Uses these credentials (the JSON of a credentials file) instead of searching.
    #[must_use]
    pub fn with_json(mut self, json: impl Into<SecretString>) -> Self {
        self.explicit = Some(Explicit::Json(json.into()));
        self
    }

    /// Uses the metadata server at `host` (`host:port`) instead of `GCE_METADATA_HOST` or
    /// `metadata.google.internal`, and treats it as present (no detection).
    #[must_use]
    pub fn with_metadata_host(mut self, host: impl Into<String>) -> Self {
        self.metadata_host = Some(host.into());
        self
    }

    /// How the metadata server is reached: plain HTTP ([`MdsMtlsMode::None`], the default),
    /// mTLS when its files exist ([`MdsMtlsMode::Default`]) or mTLS only
    /// ([`MdsMtlsMode::Strict`]), whatever `GCE_METADATA_MTLS_MODE` says.
    /// [`Credentials::explain`] reports the transport chosen and why.
    #[must_use]
    pub fn with_metadata_mtls_mode(mut self, mode: MdsMtlsMode) -> Self {
        self.metadata_mtls_mode = Some(mode);
        self
    }

    /// The directory holding the metadata server's `root.crt` and `client.key` instead of
    /// `WORKLOAD_AUTH_MDS_MTLS_DIR` or `/run/google-mds-mtls`.
    #[must_use]
    pub fn with_metadata_mtls_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.metadata_mtls_dir = Some(dir.into());
        self
    }

    /// Reads environment variables and the home directory from `env` instead of the process.
    #[must_use]
    pub fn with_env(mut self, env: EnvSource) -> Self {
        self.env = env;
        self
    }

    /// How to detect Google Cloud (default: the rules of `workload-auth-metadata` over the
    /// [`EnvSource`]). Tests use it to point the probe at a closed loopback port.
    #[must_use]
    pub fn with_detection(mut self, input: DetectionInput) -> Self {
        self.detection = Some(input);
        self
    }

    /// Trusts exactly these roots for `https://` token endpoints instead of the platform's.
    #[must_use]
    pub fn with_tls_root_certificates(
        mut self,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Self {
        self.roots = TlsRoots::only(roots.into_iter().collect());
        self
    }

    /// Sends token requests (OAuth, STS, IAM credentials, Resource Manager, the URLs of
    /// URL-sourced credentials) with this client instead of one built here. The client then owns the proxy, TLS
    /// roots and connection settings: the proxy variables of the environment and
    /// [`Builder::with_tls_root_certificates`] no longer apply to these requests (the
    /// [`Builder::with_http_timeout`] limit still does, per request). Requests that present a
    /// client certificate (X.509 workload identity federation) still use a client built here,
    /// and the metadata server is always reached directly, without this client.
    ///
    /// **Build it with redirects off**, `.redirect(reqwest::redirect::Policy::none())`: the
    /// library refuses every redirect (credentials are never forwarded to another URL), but a
    /// client that follows them has already re-sent the request, body included, by the time the
    /// answer arrives. Such an answer is still refused, with an error that says so.
    ///
    /// ```
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    /// let tls = rustls::ClientConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(rustls::RootCertStore::empty()) // yours
    ///     .with_no_client_auth();
    /// let client = reqwest::Client::builder()
    ///     .tls_backend_preconfigured(tls)
    ///     .redirect(reqwest::redirect::Policy::none())
    ///     .proxy(reqwest::Proxy::https("http://proxy.corp.example:3128")?)
    ///     .build()?;
    /// let builder = workload_auth_adc::Builder::new().with_http_client(client);
    /// # let _ = builder; Ok(()) }
    /// # run().unwrap();
    /// ```
    #[must_use]
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// The trust anchors and route of token requests: the caller's client, or the proxies the
    /// environment names (checked here, so a bad proxy variable fails the build).
    /// Where [`Credentials::sign_blob`] signs: the builder's IAM Credentials endpoint (checked
    /// by the endpoint policy now, before any request), with the builder's network settings.
    fn blob_signing(&self) -> Result<crate::kinds::impersonated::iam::BlobSigning> {
        let base = self
            .regional
            .endpoint
            .as_deref()
            .map(|raw| {
                crate::url_policy::caller_endpoint(raw, "iam_credentials_endpoint", "the builder")
            })
            .transpose()?;
        Ok(crate::kinds::impersonated::iam::BlobSigning {
            base,
            http: crate::credential_client::Http::new(&self.network()?, None, self.timeout),
            email: tokio::sync::OnceCell::new(),
        })
    }

    fn network(&self) -> Result<TlsRoots> {
        if self.timeout.is_zero() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "Builder::with_http_timeout: a timeout of zero would fail every request",
            )
            .with_hint("give a positive duration (the default is 30 s)"));
        }
        let proxy = crate::proxy::ProxySettings::from_env(&self.env)?;
        Ok(self
            .roots
            .clone()
            .with_proxy(proxy)
            .with_client(self.http_client.clone()))
    }

    /// When and how tokens are refreshed (default: [`CacheConfig::default`]).
    #[must_use]
    pub fn with_cache_config(mut self, config: CacheConfig) -> Self {
        self.cache = config;
        self
    }

    /// The limit for one HTTP request to a token endpoint (default 30 s).
    #[must_use]
    pub fn with_http_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Service-account keys sign their own access tokens (a self-signed JWT with a `scope`
    /// claim, AIP-4111) instead of calling the token endpoint. Always so outside the
    /// `googleapis.com` universe.
    #[must_use]
    pub fn with_self_signed_jwt(mut self, enabled: bool) -> Self {
        self.self_signed_jwt = enabled;
        self
    }

    /// The lifetime asked of impersonated access tokens (default one hour, or the file's
    /// `service_account_impersonation.token_lifetime_seconds`).
    #[must_use]
    pub fn with_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = Some(lifetime);
        self
    }

    /// Allows credentials files to send credentials to these hosts too, for private
    /// deployments (a token endpoint of your own, a private universe).
    ///
    /// By default a credentials file may only name Google's token endpoints (`sts`, `oauth2`,
    /// `iamcredentials` of `googleapis.com`, with their `mtls.`, regional and Private Service
    /// Connect forms, and `accounts.google.com`) or this machine; anything else is refused when
    /// the file is loaded, so that a file from an untrusted source cannot send this machine's
    /// credentials to its author. Each entry is a host name (`token.corp.example`), an IP
    /// address, or `*.` and a domain of at least two labels (`*.corp.example`: every host under
    /// it). A malformed entry — `*`, `*.com`, a URL, a port — makes [`Builder::build`] fail
    /// rather than being ignored. The hosts are added to those of
    /// [`ALLOWED_ENDPOINTS_ENV`](crate::ALLOWED_ENDPOINTS_ENV) (the same syntax,
    /// comma-separated); only `https://` is allowed to them.
    #[must_use]
    pub fn with_allowed_endpoints<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_endpoints
            .extend(hosts.into_iter().map(Into::into));
        self
    }

    /// Accepts only credentials of these types: a credentials file (given, named by
    /// `GOOGLE_APPLICATION_CREDENTIALS`, or gcloud's) of another type is refused before anything
    /// in it is used, and the metadata server is only used if
    /// [`CredentialType::MetadataServer`] is listed.
    ///
    /// For a file from a source you do not control, accept exactly the type you expect (or use
    /// a typed loader such as [`Credentials::from_service_account_json`]): a
    /// `service_account` key is inert data, while an `external_account` file makes this library
    /// read local files, call URLs and (when allowed) run programs.
    #[must_use]
    pub fn with_allowed_types<I>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = CredentialType>,
    {
        self.allowed_types = Some(types.into_iter().collect());
        self
    }

    /// Runs the search and returns the credentials. Fails when no credentials are found (the
    /// error lists every place looked at), when a credentials file is unusable (the error names
    /// the file and what is wrong), or when an option is invalid.
    pub fn build(self) -> Result<Credentials> {
        let (resolved, _) = self.resolve();
        resolved
    }

    /// Runs the search and reports it, whether or not credentials were found; with credentials
    /// it also looks up the project id and universe domain (which may ask the metadata server).
    pub async fn explain(self) -> Explanation {
        let (resolved, steps) = self.resolve();
        match resolved {
            Ok(credentials) => credentials.explain().await,
            Err(error) => Explanation::failed(steps, error.to_string()),
        }
    }

    /// [`Builder::explain`] for callers without an async runtime.
    pub fn explain_blocking(self) -> Explanation {
        let (resolved, steps) = self.resolve();
        match resolved {
            Ok(credentials) => credentials.explain_blocking(),
            Err(error) => Explanation::failed(steps, error.to_string()),
        }
    }

    fn context(&self) -> Result<Context> {
        let mut endpoints = EndpointPolicy::default();
        if let Some(list) = self.env.var(ALLOWED_ENDPOINTS_ENV) {
            endpoints.add_list(&list, ALLOWED_ENDPOINTS_ENV)?;
        }
        for host in &self.allowed_endpoints {
            endpoints.add(host, "Builder::with_allowed_endpoints")?;
        }
        let network = self.network()?;
        Ok(Context {
            endpoints: Arc::new(endpoints),
            allowed_types: self.allowed_types.as_deref().map(Arc::from),
            env: self.env.clone(),
            http: Http::new(&network, None, self.timeout),
            roots: network,
            timeout: self.timeout,
            self_signed_jwt: self.self_signed_jwt,
            token_lifetime: self.token_lifetime,
        })
    }

    fn resolve(&self) -> (Result<Credentials>, Vec<Step>) {
        let mut steps = Vec::new();
        let result = self.search(&mut steps).and_then(|found| {
            let (project, project_steps) = self.project_id(&found)?;
            let quota = self.quota_project(&found.source);
            let regional = crate::regional::Regional::new(
                &self.regional,
                &self.env,
                &found.source,
                found.metadata.clone(),
                crate::credential_client::Http::new(&self.network()?, None, self.timeout),
            )?;
            let signing = self.blob_signing()?;
            Ok(Credentials::new(Resolved {
                source: found.source,
                origin: found.origin,
                steps: steps.clone(),
                scopes: self.scopes.clone(),
                project,
                project_steps,
                quota,
                cache: self.cache.clone(),
                metadata: found.metadata,
                regional,
                signing,
            }))
        });
        (result, steps)
    }

    /// Application Default Credentials' search: the credentials given to the builder, else the
    /// ADC steps in order (environment variable, gcloud's file, metadata server), each recorded
    /// in `steps` with what it found or why the search moved on.
    fn search(&self, steps: &mut Vec<Step>) -> Result<Found> {
        let ctx = self.context()?;
        if let Some(explicit) = &self.explicit {
            return explicit_step(explicit, &ctx, steps);
        }
        let gcloud_file = self
            .env
            .gcloud_config_dir()
            .map(|dir| dir.join(GCLOUD_CREDENTIALS_FILE));
        if let ControlFlow::Break(found) = self.env_var_step(&ctx, gcloud_file.as_deref(), steps) {
            return found;
        }
        if let ControlFlow::Break(found) = gcloud_file_step(&ctx, gcloud_file.as_deref(), steps) {
            return found;
        }
        self.metadata_step(steps)
    }

    /// Step 1, `GOOGLE_APPLICATION_CREDENTIALS`: continues when it is unset; otherwise the file it
    /// names decides (a missing or broken file is an error, not a reason to look further).
    fn env_var_step(
        &self,
        ctx: &Context,
        gcloud_file: Option<&Path>,
        steps: &mut Vec<Step>,
    ) -> ControlFlow<Result<Found>> {
        let Some(value) = self.env.var(CREDENTIALS_ENV).filter(|v| !v.is_empty()) else {
            steps.push(Step::new(
                CREDENTIALS_ENV,
                None,
                Outcome::NotFound,
                "not set",
            ));
            return ControlFlow::Continue(());
        };
        let path = PathBuf::from(&value);
        let what = format!("the file named by {CREDENTIALS_ENV}");
        let loaded = load_file(&path, ctx, &what).and_then(|r| {
            r.ok_or_else(|| {
                Error::new(
                    ErrorKind::CredentialsNotFound,
                    format!("{CREDENTIALS_ENV} is set to {value}, which does not exist"),
                )
                .with_endpoint(value.clone())
                .with_hint(format!("fix the path, or unset {CREDENTIALS_ENV}"))
            })
        });
        let chosen = record(steps, CREDENTIALS_ENV, value.clone(), loaded);
        not_tried(steps, gcloud_file);
        ControlFlow::Break(chosen.map(|source| Found {
            source,
            gcloud: gcloud_file == Some(path.as_path()),
            origin: value,
            metadata: None,
        }))
    }

    /// Step 3, the metadata server: refused when the caller does not accept it, not found off
    /// Google Cloud (the search's final error), otherwise a client for the host found.
    fn metadata_step(&self, steps: &mut Vec<Step>) -> Result<Found> {
        if let Some(allowed) = self
            .allowed_types
            .as_ref()
            .filter(|a| !a.contains(&CredentialType::MetadataServer))
        {
            let error = kinds::type_not_allowed(CredentialType::MetadataServer.as_str(), allowed);
            steps.push(Step::new(
                "metadata server",
                None,
                Outcome::NotTried,
                error.message().to_owned(),
            ));
            return Err(error);
        }
        let host = self.metadata_host(steps)?;
        let fail = |steps: &mut Vec<Step>, e: &Error| {
            if let Some(last) = steps.last_mut() {
                last.outcome = Outcome::Failed;
                last.detail = e.to_string();
            }
        };
        let client = self
            .metadata_mtls()
            .and_then(|(mode, dir)| {
                MetadataClient::builder()
                    .host(host)
                    .mtls_mode(mode)
                    .mtls_dir(dir)
                    .retry_policy(workload_auth_core::RetryPolicy::none())
                    .binding_form(self.binding_form)
                    .build()
            })
            .inspect_err(|e| fail(steps, e))?;
        let binding = self.agent_binding().inspect_err(|e| fail(steps, e))?;
        Ok(Found {
            source: Source::Metadata(Arc::new(kinds::metadata_server::MetadataServer {
                client: client.clone(),
                binding,
            })),
            origin: format!("metadata server at {}", client.host().base_url()),
            gcloud: false,
            metadata: Some(client),
        })
    }

    /// The metadata server's host: the builder's, else the one detection finds on Google Cloud;
    /// off Google Cloud, the search's "not found" error listing every step.
    fn metadata_host(&self, steps: &mut Vec<Step>) -> Result<String> {
        if let Some(host) = &self.metadata_host {
            steps.push(Step::new(
                "metadata server",
                Some(host.clone()),
                Outcome::Chosen,
                "host given to the builder",
            ));
            return Ok(host.clone());
        }
        let env = self.env.clone();
        let input = self
            .detection
            .clone()
            .unwrap_or_else(|| DetectionInput::with_env(move |name| env.var(name)));
        let detection = detect(&input);
        let summary = detection
            .checks()
            .iter()
            .map(|c| format!("{}: {}", c.rule, c.outcome))
            .collect::<Vec<_>>()
            .join("; ");
        if !detection.is_on_google_cloud() {
            steps.push(Step::new(
                "metadata server",
                None,
                Outcome::NotFound,
                format!("not on Google Cloud ({summary})"),
            ));
            return Err(self.not_found(steps));
        }
        let host = detection
            .metadata_host()
            .map(str::to_owned)
            .or_else(|| self.env.nonempty(METADATA_HOST_ENV))
            .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned());
        steps.push(Step::new(
            "metadata server",
            Some(host.clone()),
            Outcome::Chosen,
            format!("on Google Cloud ({summary})"),
        ));
        Ok(host)
    }

    /// The Agent Identity certificate the metadata server's tokens are to be bound to: found,
    /// loaded once now (so a broken one is an error naming the file), and kept only when its
    /// trust domain is an agent-identity one.
    fn agent_binding(&self) -> Result<Option<crate::agent_identity::CertificateFiles>> {
        let Some(files) = crate::agent_identity::CertificateFiles::find(&self.env)? else {
            return Ok(None);
        };
        Ok(files.load()?.map(|_| files))
    }

    /// The metadata server's mTLS mode and directory: the builder's, else the environment's.
    fn metadata_mtls(&self) -> Result<(MdsMtlsMode, PathBuf)> {
        let mode = match self.metadata_mtls_mode {
            Some(mode) => mode,
            None => MdsMtlsMode::from_env_value(self.env.var(MDS_MTLS_MODE_ENV).as_deref())?,
        };
        let dir = self
            .metadata_mtls_dir
            .clone()
            .or_else(|| self.env.nonempty(MDS_MTLS_DIR_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MDS_MTLS_DIR));
        Ok((mode, dir))
    }

    fn not_found(&self, steps: &[Step]) -> Error {
        let looked = steps
            .iter()
            .map(|s| match &s.place {
                Some(place) => format!("{} ({place}): {}", s.name, s.detail),
                None => format!("{}: {}", s.name, s.detail),
            })
            .collect::<Vec<_>>()
            .join("; ");
        Error::new(
            ErrorKind::CredentialsNotFound,
            format!("no Application Default Credentials found; looked at {looked}"),
        )
        .with_hint(NOT_FOUND_HINT)
    }

    fn project_id(&self, found: &Found) -> Result<(ProjectState, Vec<Step>)> {
        let mut steps = Vec::new();
        let mut decided = None;
        for (name, source) in [
            (PROJECT_ENV, ProjectIdSource::GoogleCloudProjectEnv),
            (LEGACY_PROJECT_ENV, ProjectIdSource::GcloudProjectEnv),
        ] {
            if decided.is_some() {
                steps.push(Step::new(name, None, Outcome::NotTried, ""));
                continue;
            }
            match self.env.nonempty(name) {
                Some(value) => {
                    steps.push(Step::new(name, None, Outcome::Chosen, value.clone()));
                    decided = Some((value, source));
                }
                None => steps.push(Step::new(name, None, Outcome::NotFound, "not set")),
            }
        }
        if !matches!(found.source, Source::Metadata(_)) {
            if decided.is_some() {
                steps.push(Step::new("credentials file", None, Outcome::NotTried, ""));
            } else {
                decided = file_project_step(found, &mut steps);
            }
        }
        if found.gcloud {
            if decided.is_some() {
                steps.push(Step::new(
                    "gcloud configuration",
                    None,
                    Outcome::NotTried,
                    "",
                ));
            } else {
                decided = gcloud_project_step(&self.env, &mut steps);
            }
        }
        if let Some(client) = &found.metadata {
            if decided.is_some() {
                steps.push(Step::new("metadata server", None, Outcome::NotTried, ""));
            } else {
                return Ok((ProjectState::metadata(client.clone()), steps));
            }
        }
        // Workload identity federation: google-auth asks Cloud Resource Manager, only with scopes.
        if let (None, Some(_), Source::External(external)) = (&decided, &self.scopes, &found.source)
            && let Some(number) = external.project_number()
        {
            let lookup = crate::project_lookup::ResourceManager::new(
                number,
                self.resource_manager.as_deref(),
                &external.universe_domain,
                crate::credential_client::Http::new(&self.network()?, None, self.timeout),
            )?;
            return Ok((ProjectState::resource_manager(lookup), steps));
        }
        Ok((ProjectState::Known(decided), steps))
    }

    fn quota_project(&self, source: &Source) -> Option<(String, QuotaProjectSource)> {
        if let Some(p) = self.quota_project.as_ref().filter(|p| !p.is_empty()) {
            return Some((p.clone(), QuotaProjectSource::Builder));
        }
        if let Some(p) = self.env.nonempty(QUOTA_PROJECT_ENV) {
            return Some((p, QuotaProjectSource::GoogleCloudQuotaProjectEnv));
        }
        source
            .file_quota_project()
            .map(|p| (p.to_owned(), QuotaProjectSource::CredentialsFile))
    }
}

/// Typed loaders: credentials of one expected type from a file or its JSON, refusing any other
/// type before anything in the file is used. Use them for files from sources you do not control
/// (see the crate documentation); for scopes and other options, use
/// `Builder::new().with_json(..).with_allowed_types([..])`, which they are shorthand for.
impl Credentials {
    /// Credentials from the JSON of a service-account key file (`"type": "service_account"`); any other type is refused.
    pub fn from_service_account_json(json: impl Into<SecretString>) -> Result<Self> {
        Builder::new()
            .with_json(json)
            .with_allowed_types([CredentialType::ServiceAccount])
            .build()
    }

    /// Credentials from the file at `path`, which must be a service-account key file (`"type": "service_account"`); any other type is refused.
    pub fn from_service_account_file(path: impl Into<PathBuf>) -> Result<Self> {
        Builder::new()
            .with_credentials_file(path)
            .with_allowed_types([CredentialType::ServiceAccount])
            .build()
    }

    /// Credentials from the JSON of a user's refresh token (`"type": "authorized_user"`, as gcloud writes it); any other type is refused.
    pub fn from_authorized_user_json(json: impl Into<SecretString>) -> Result<Self> {
        Builder::new()
            .with_json(json)
            .with_allowed_types([CredentialType::AuthorizedUser])
            .build()
    }

    /// Credentials from the file at `path`, which must be a user's refresh token (`"type": "authorized_user"`, as gcloud writes it); any other type is refused.
    pub fn from_authorized_user_file(path: impl Into<PathBuf>) -> Result<Self> {
        Builder::new()
            .with_credentials_file(path)
            .with_allowed_types([CredentialType::AuthorizedUser])
            .build()
    }

    /// Credentials from the JSON of service-account impersonation (`"type": "impersonated_service_account"`); any other type is refused.
    pub fn from_impersonated_service_account_json(json: impl Into<SecretString>) -> Result<Self> {
        Builder::new()
            .with_json(json)
            .with_allowed_types([CredentialType::ImpersonatedServiceAccount])
            .build()
    }

    /// Credentials from the file at `path`, which must be service-account impersonation (`"type": "impersonated_service_account"`); any other type is refused.
    pub fn from_impersonated_service_account_file(path: impl Into<PathBuf>) -> Result<Self> {
        Builder::new()
            .with_credentials_file(path)
            .with_allowed_types([CredentialType::ImpersonatedServiceAccount])
            .build()
    }

    /// Credentials from the JSON of workload or workforce identity federation (`"type": "external_account"`); any other type is refused.
    pub fn from_external_account_json(json: impl Into<SecretString>) -> Result<Self> {
        Builder::new()
            .with_json(json)
            .with_allowed_types([CredentialType::ExternalAccount])
            .build()
    }

    /// Credentials from the file at `path`, which must be workload or workforce identity federation (`"type": "external_account"`); any other type is refused.
    pub fn from_external_account_file(path: impl Into<PathBuf>) -> Result<Self> {
        Builder::new()
            .with_credentials_file(path)
            .with_allowed_types([CredentialType::ExternalAccount])
            .build()
    }

    /// Credentials from the JSON of a workforce identity federation user's refresh token (`"type": "external_account_authorized_user"`); any other type is refused.
    pub fn from_external_account_authorized_user_json(
        json: impl Into<SecretString>,
    ) -> Result<Self> {
        Builder::new()
            .with_json(json)
            .with_allowed_types([CredentialType::ExternalAccountAuthorizedUser])
            .build()
    }

    /// Credentials from the file at `path`, which must be a workforce identity federation user's refresh token (`"type": "external_account_authorized_user"`); any other type is refused.
    pub fn from_external_account_authorized_user_file(path: impl Into<PathBuf>) -> Result<Self> {
        Builder::new()
            .with_credentials_file(path)
            .with_allowed_types([CredentialType::ExternalAccountAuthorizedUser])
            .build()
    }
}

/// What the search found.
struct Found {
    source: Source,
    origin: String,
    /// Whether it is gcloud's file (then gcloud's configured project applies).
    gcloud: bool,
    metadata: Option<MetadataClient>,
}

/// The credentials given to the builder (a file or JSON), which replace the search: they are
/// chosen, or their error is the search's.
fn explicit_step(explicit: &Explicit, ctx: &Context, steps: &mut Vec<Step>) -> Result<Found> {
    let (name, place, loaded) = match explicit {
        Explicit::File(path) => (
            "credentials file given to the builder",
            path.display().to_string(),
            load_file(path, ctx, "the credentials file given to the builder").and_then(|r| {
                r.ok_or_else(|| {
                    Error::new(
                        ErrorKind::CredentialsNotFound,
                        "the credentials file given to the builder does not exist",
                    )
                    .with_endpoint(path.display().to_string())
                })
            }),
        ),
        Explicit::Json(json) => (
            "credentials JSON given to the builder",
            "JSON given to Builder::with_json".to_owned(),
            load_json(
                json.expose().as_bytes(),
                "JSON given to Builder::with_json",
                ctx,
            ),
        ),
    };
    let source = record(steps, name, place.clone(), loaded)?;
    Ok(Found {
        source,
        origin: place,
        gcloud: false,
        metadata: None,
    })
}

/// Step 2, gcloud's well-known file: continues when there is no such file (or no place for
/// one); otherwise the file decides.
fn gcloud_file_step(
    ctx: &Context,
    gcloud_file: Option<&Path>,
    steps: &mut Vec<Step>,
) -> ControlFlow<Result<Found>> {
    const NAME: &str = "gcloud credentials file";
    let Some(path) = gcloud_file else {
        steps.push(Step::new(
            NAME,
            None,
            Outcome::NotFound,
            "neither CLOUDSDK_CONFIG nor a home directory is set",
        ));
        return ControlFlow::Continue(());
    };
    let place = path.display().to_string();
    let loaded = match load_file(path, ctx, "gcloud's credentials file") {
        Ok(None) => {
            steps.push(Step::new(
                NAME,
                Some(place),
                Outcome::NotFound,
                "does not exist",
            ));
            return ControlFlow::Continue(());
        }
        Ok(Some(source)) => Ok(source),
        Err(e) => Err(e),
    };
    let chosen = record(steps, NAME, place.clone(), loaded);
    steps.push(Step::new("metadata server", None, Outcome::NotTried, ""));
    ControlFlow::Break(chosen.map(|source| Found {
        source,
        origin: place,
        gcloud: true,
        metadata: None,
    }))
}

/// Records the step `name` at `place` as chosen (with the credential type) or failed (with the
/// error), and passes `loaded` on.
fn record(
    steps: &mut Vec<Step>,
    name: &str,
    place: String,
    loaded: Result<Source>,
) -> Result<Source> {
    let (outcome, detail) = match &loaded {
        Ok(source) => (
            Outcome::Chosen,
            source.credential_type().as_str().to_owned(),
        ),
        Err(e) => (Outcome::Failed, e.to_string()),
    };
    steps.push(Step::new(name, Some(place), outcome, detail));
    loaded
}

/// The project step of a credentials file: its `project_id`, when its type has one.
fn file_project_step(found: &Found, steps: &mut Vec<Step>) -> Option<(String, ProjectIdSource)> {
    project_step(
        steps,
        ("credentials file", Some(found.origin.clone())),
        found.source.file_project_id().map(str::to_owned),
        |id| format!("project_id {id}"),
        format!(
            "{} files carry no project id",
            found.source.credential_type()
        ),
        ProjectIdSource::CredentialsFile,
    )
}

/// The project step of gcloud's configuration (for gcloud's credentials file): its `project`.
fn gcloud_project_step(
    env: &EnvSource,
    steps: &mut Vec<Step>,
) -> Option<(String, ProjectIdSource)> {
    let (id, place) = gcloud_config_project(env);
    project_step(
        steps,
        ("gcloud configuration", place),
        id,
        str::to_owned,
        "no project set".to_owned(),
        ProjectIdSource::GcloudConfig,
    )
}

/// Records a project step that was tried at `(name, place)`: chosen (described by `chosen`) when
/// it found `id`, else not found because of `missing`.
fn project_step(
    steps: &mut Vec<Step>,
    (name, place): (&str, Option<String>),
    id: Option<String>,
    chosen: impl FnOnce(&str) -> String,
    missing: String,
    source: ProjectIdSource,
) -> Option<(String, ProjectIdSource)> {
    match id {
        Some(id) => {
            steps.push(Step::new(name, place, Outcome::Chosen, chosen(&id)));
            Some((id, source))
        }
        None => {
            steps.push(Step::new(name, place, Outcome::NotFound, missing));
            None
        }
    }
}

/// Records the steps after the one that decided as not tried.
fn not_tried(steps: &mut Vec<Step>, gcloud_file: Option<&Path>) {
    steps.push(Step::new(
        "gcloud credentials file",
        gcloud_file.map(|p| p.display().to_string()),
        Outcome::NotTried,
        "",
    ));
    steps.push(Step::new("metadata server", None, Outcome::NotTried, ""));
}

/// Reads and parses a credentials file. `Ok(None)` when it does not exist.
fn load_file(path: &Path, ctx: &Context, what: &str) -> Result<Option<Source>> {
    let place = path.display().to_string();
    let content = match read_bounded(path, MAX_JSON_FILE_BYTES, what) {
        Ok(content) => content,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) if e.kind() == ErrorKind::Io => {
            return Err(e.with_hint("check the file's permissions"));
        }
        Err(e) => return Err(e),
    };
    load_json(&content, &place, ctx).map(Some)
}

fn load_json(content: &[u8], place: &str, ctx: &Context) -> Result<Source> {
    let map = workload_auth_core::json::parse_object(
        content,
        place,
        ErrorKind::InvalidCredentials,
        "the credentials file",
    )?;
    kinds::from_json(&map, place, ctx)
}

/// gcloud's configured project: `CLOUDSDK_CORE_PROJECT`, else `[core] project` of the active
/// configuration (`CLOUDSDK_ACTIVE_CONFIG_NAME`, else the `active_config` file, else `default`).
/// This is what `gcloud config get project` prints, read without running gcloud.
fn gcloud_config_project(env: &EnvSource) -> (Option<String>, Option<String>) {
    if let Some(project) = env.nonempty("CLOUDSDK_CORE_PROJECT") {
        return (Some(project), Some("CLOUDSDK_CORE_PROJECT".to_owned()));
    }
    let Some(dir) = env.gcloud_config_dir() else {
        return (None, None);
    };
    let name = env
        .nonempty("CLOUDSDK_ACTIVE_CONFIG_NAME")
        .or_else(|| {
            read_bounded(
                &dir.join("active_config"),
                MAX_SMALL_FILE_BYTES,
                "gcloud's active_config",
            )
            .ok()
            .map(|s| String::from_utf8_lossy(&s).trim().to_owned())
            .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "default".to_owned());
    if name.contains(['/', '\\']) || name.starts_with('.') {
        return (None, None);
    }
    let path = dir.join("configurations").join(format!("config_{name}"));
    let place = Some(path.display().to_string());
    let Ok(bytes) = read_bounded(&path, MAX_SMALL_FILE_BYTES, "gcloud's configuration") else {
        return (None, place);
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return (None, place);
    };
    let mut in_core = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') && line.ends_with(']') {
            in_core = line[1..line.len() - 1].trim() == "core";
        } else if in_core
            && let Some((key, value)) = line.split_once(['=', ':'])
            && key.trim() == "project"
            && !value.trim().is_empty()
        {
            return (Some(value.trim().to_owned()), place);
        }
    }
    (None, place)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcloud_config_project_reads_the_active_configuration() {
        let dir = std::env::temp_dir().join(format!("wa-adc-gcloud-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("configurations")).unwrap();
        std::fs::write(
            dir.join("configurations/config_default"),
            "[core]\naccount = a@b.c\nproject = proj-default\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("configurations/config_work"),
            "[compute]\nproject = wrong\n[core]\nproject=proj-work\n",
        )
        .unwrap();
        let env = EnvSource::from_vars([("CLOUDSDK_CONFIG", dir.display().to_string())]);
        assert_eq!(
            gcloud_config_project(&env).0.as_deref(),
            Some("proj-default")
        );
        std::fs::write(dir.join("active_config"), "work\n").unwrap();
        assert_eq!(gcloud_config_project(&env).0.as_deref(), Some("proj-work"));
        let env = env.with_var("CLOUDSDK_CORE_PROJECT", "from-env");
        assert_eq!(gcloud_config_project(&env).0.as_deref(), Some("from-env"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
