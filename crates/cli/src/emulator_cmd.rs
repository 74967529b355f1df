//! `workload-auth emulator`: the emulator as a server for local development and other languages' tests.

use std::time::Duration;

use clap::Args;
use workload_auth_emulator::ca::{IssuedSvid, TrustDomainCa};
use workload_auth_emulator::credentials_writer::{
    CredentialsContents, CredentialsDirWriter, Layout, Rotation,
};
use workload_auth_emulator::{
    Emulator, EmulatorConfig, Endpoint, Fault, OAuthClient, RefreshTokenGrant,
};

use crate::output::say;

#[derive(Debug, Args)]
pub(crate) struct EmulatorArgs {
    /// Address to listen on (loopback by default; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = crate::parse_listen)]
    listen: std::net::SocketAddr,
    /// Project id the metadata server reports.
    #[arg(long)]
    project: Option<String>,
    /// Numeric project id the metadata server reports.
    #[arg(long)]
    project_number: Option<u64>,
    /// Email of the attached service account.
    #[arg(long)]
    email: Option<String>,
    /// Scopes of the attached service account (comma separated).
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
    /// Universe domain to report (unset: 404, which means googleapis.com).
    #[arg(long)]
    universe_domain: Option<String>,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long)]
    token_lifetime: Option<u64>,
    /// A configuration file, TOML (`.toml`) or JSON: project, project_number, email, scopes,
    /// universe_domain, token_lifetime_secs, id_token_lifetime_secs, `[[faults]]` (endpoint,
    /// and one of status, delay_ms, reset; optional times), `[[oauth_clients]]` (client_id,
    /// client_secret), `[[refresh_tokens]]` (refresh_token, client_id; optional scopes, rotate),
    /// impersonable (service account emails) and `[[projects]]` (number, project_id). Options
    /// given on the command line win.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Write a SPIFFE credentials directory (as the node agent does) under DIR, issued by the
    /// emulator's CA for --trust-domain, which also serves the metadata server's workload
    /// certificate endpoints.
    #[arg(long, value_name = "DIR", requires_all = ["trust_domain", "spiffe_id"])]
    workload_identity: Option<std::path::PathBuf>,
    /// The trust domain of the emulator's CA (`example.test`).
    #[arg(long, value_name = "TD", requires = "workload_identity")]
    trust_domain: Option<String>,
    /// The SPIFFE ID of the workload (`spiffe://TD/ns/NS/sa/SA`).
    #[arg(long, value_name = "ID", requires = "workload_identity")]
    spiffe_id: Option<String>,
    /// Issue a new certificate and rewrite the directory this often (`30s`, `5m`; not 0).
    #[arg(long, value_name = "DUR", requires = "workload_identity",
          value_parser = crate::token_cmd::parse_timeout)]
    rotate_every: Option<Duration>,
    /// Which files to write the credentials as: `gke` (the node agent's `certificates.pem`,
    /// `private_key.pem` and the rest), `combined` (`x509.credential-bundle.private-key.pem`),
    /// `spiffe-fs` (SPIFFE filesystem delivery: `credential-bundle.private-key.pem` and
    /// `<td>.spiffe-trust-bundle.pem`) or `no-key` (the certificate without its key, as a
    /// platform that keeps the key hidden delivers it).
    #[arg(long, value_name = "LAYOUT", default_value = "gke", requires = "workload_identity",
          value_parser = parse_layout)]
    layout: Layout,

    /// Also serve the metadata endpoints over mutual TLS on the same port, as Shielded VMs do,
    /// and write its CA and a client certificate to DIR as `root.crt` and `client.key` (for
    /// `GCE_METADATA_MTLS_MODE=strict WORKLOAD_AUTH_MDS_MTLS_DIR=DIR`).
    #[arg(long, value_name = "DIR")]
    mds_mtls: Option<std::path::PathBuf>,
}

fn parse_layout(name: &str) -> Result<Layout, String> {
    Layout::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Layout::ALL.iter().map(|l| l.name()).collect();
        format!("unknown layout {name:?}; one of {}", names.join(", "))
    })
}

/// What `--workload-identity` serves, checked before the emulator starts.
struct WorkloadIdentityPlan {
    dir: std::path::PathBuf,
    ca: std::sync::Arc<TrustDomainCa>,
    spiffe_id: String,
    first: IssuedSvid,
    layout: Layout,
}

impl EmulatorArgs {
    fn workload_identity(&self) -> Result<Option<WorkloadIdentityPlan>, String> {
        let (Some(dir), Some(td), Some(id)) =
            (&self.workload_identity, &self.trust_domain, &self.spiffe_id)
        else {
            return Ok(None);
        };
        let in_domain = id
            .strip_prefix("spiffe://")
            .and_then(|rest| rest.strip_prefix(td.as_str()))
            .is_some_and(|path| path.starts_with('/') && path.len() > 1);
        if !in_domain {
            return Err(format!(
                "--spiffe-id {id} is not in --trust-domain {td}\nuse spiffe://{td}/PATH"
            ));
        }
        let ca = TrustDomainCa::new(td)
            .map_err(|e| format!("--trust-domain {td}: {}", crate::token_cmd::report(&e)))?;
        let first = ca
            .issue(id)
            .map_err(|e| format!("--spiffe-id {id}: {}", crate::token_cmd::report(&e)))?;
        Ok(Some(WorkloadIdentityPlan {
            dir: dir.clone(),
            ca: std::sync::Arc::new(ca),
            spiffe_id: id.clone(),
            first,
            layout: self.layout,
        }))
    }
}

/// The `--config` file. Unknown keys and wrong types are refused before the emulator starts.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    project: Option<String>,
    project_number: Option<u64>,
    email: Option<String>,
    scopes: Option<Vec<String>>,
    universe_domain: Option<String>,
    token_lifetime_secs: Option<u64>,
    id_token_lifetime_secs: Option<u64>,
    #[serde(default)]
    faults: Vec<FaultSpec>,
    /// OAuth clients of the refresh-token grant (authorized_user credentials).
    #[serde(default)]
    oauth_clients: Vec<OAuthClientSpec>,
    /// Refresh tokens the token endpoint accepts, each for one of `oauth_clients`.
    #[serde(default)]
    refresh_tokens: Vec<RefreshTokenSpec>,
    /// Service accounts IAM lets callers impersonate.
    #[serde(default)]
    impersonable: Vec<String>,
    /// Projects Cloud Resource Manager knows by number, besides the emulator's own.
    #[serde(default)]
    projects: Vec<ProjectSpec>,
}

/// `[[oauth_clients]]`: `client_id` and `client_secret`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OAuthClientSpec {
    client_id: String,
    client_secret: workload_auth_core::SecretString,
}

/// `[[refresh_tokens]]`: `refresh_token`, `client_id`, optional `scopes` (default
/// cloud-platform and userinfo.email) and `rotate` (a new refresh token on each use).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshTokenSpec {
    refresh_token: workload_auth_core::SecretString,
    client_id: String,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    rotate: bool,
}

/// `[[projects]]`: `number` and `project_id`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectSpec {
    number: u64,
    project_id: String,
}

impl ConfigFile {
    /// The checks serde cannot make: lifetimes of zero, empty names, refresh tokens of unknown
    /// clients. Messages name the entry, never a secret.
    fn check(&self) -> Result<(), String> {
        for (key, secs) in [
            ("token_lifetime_secs", self.token_lifetime_secs),
            ("id_token_lifetime_secs", self.id_token_lifetime_secs),
        ] {
            match secs {
                Some(0) => return Err(format!("{key} = 0: tokens would expire as issued")),
                Some(s) if s > 7 * 24 * 3600 => {
                    return Err(format!("{key} = {s}: more than a week"));
                }
                _ => {}
            }
        }
        for (i, client) in self.oauth_clients.iter().enumerate() {
            if client.client_id.is_empty() || client.client_secret.expose().is_empty() {
                return Err(format!(
                    "oauth_clients[{i}]: client_id and client_secret must not be empty"
                ));
            }
        }
        for (i, grant) in self.refresh_tokens.iter().enumerate() {
            if grant.refresh_token.expose().is_empty() {
                return Err(format!(
                    "refresh_tokens[{i}]: refresh_token must not be empty"
                ));
            }
            if !self
                .oauth_clients
                .iter()
                .any(|c| c.client_id == grant.client_id)
            {
                return Err(format!(
                    "refresh_tokens[{i}]: client_id `{}` is not one of oauth_clients",
                    grant.client_id
                ));
            }
            if grant.scopes.as_ref().is_some_and(Vec::is_empty) {
                return Err(format!("refresh_tokens[{i}]: scopes must not be empty"));
            }
        }
        if let Some(i) = self.impersonable.iter().position(|e| !e.contains('@')) {
            return Err(format!("impersonable[{i}]: not a service account email"));
        }
        if let Some(i) = self.projects.iter().position(|p| p.project_id.is_empty()) {
            return Err(format!("projects[{i}]: project_id must not be empty"));
        }
        Ok(())
    }

    /// The accounts and projects of the file, into `config`.
    fn apply_identities(&self, config: &mut EmulatorConfig) {
        let identity = &mut config.identity;
        for client in &self.oauth_clients {
            identity.oauth_clients.push(OAuthClient::new(
                &client.client_id,
                client.client_secret.expose(),
            ));
        }
        for grant in &self.refresh_tokens {
            let mut g = RefreshTokenGrant::new(grant.refresh_token.expose(), &grant.client_id);
            if let Some(scopes) = &grant.scopes {
                g.scopes.clone_from(scopes);
            }
            g.rotate = grant.rotate;
            identity.refresh_tokens.push(g);
        }
        identity
            .impersonable
            .extend(self.impersonable.iter().cloned());
        identity.projects.extend(
            self.projects
                .iter()
                .map(|p| (p.number.to_string(), p.project_id.clone())),
        );
        if let Some(secs) = self.id_token_lifetime_secs {
            config.id_token_lifetime = Duration::from_secs(secs);
        }
    }
}

/// One fault of the `--config` file: on `endpoint`, for `times` requests (every one if absent).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultSpec {
    endpoint: String,
    status: Option<u16>,
    delay_ms: Option<u64>,
    #[serde(default)]
    reset: bool,
    times: Option<u64>,
}

/// The endpoints a `--config` fault may name.
const FAULT_ENDPOINTS: &[(&str, Endpoint)] = &[
    ("root", Endpoint::Root),
    ("token", Endpoint::Token),
    ("identity", Endpoint::Identity),
    ("email", Endpoint::Email),
    ("scopes", Endpoint::Scopes),
    ("project_id", Endpoint::ProjectId),
    ("numeric_project_id", Endpoint::NumericProjectId),
    ("universe_domain", Endpoint::UniverseDomain),
    ("oauth_token", Endpoint::OAuthToken),
    ("sts_token", Endpoint::StsToken),
    (
        "iam_generate_access_token",
        Endpoint::IamGenerateAccessToken,
    ),
    ("iam_generate_id_token", Endpoint::IamGenerateIdToken),
];

impl FaultSpec {
    fn resolve(&self, i: usize) -> Result<(Endpoint, Fault, Option<u64>), String> {
        let at = format!("faults[{i}]");
        let endpoint = FAULT_ENDPOINTS
            .iter()
            .find(|(name, _)| *name == self.endpoint)
            .map(|(_, e)| *e)
            .ok_or_else(|| {
                let names: Vec<&str> = FAULT_ENDPOINTS.iter().map(|(n, _)| *n).collect();
                format!(
                    "{at}: unknown endpoint `{}`\nknown endpoints: {}",
                    self.endpoint,
                    names.join(", ")
                )
            })?;
        let fault = match (self.status, self.delay_ms, self.reset) {
            (Some(status), None, false) if (100..=599).contains(&status) => Fault::Status(status),
            (Some(status), None, false) => {
                return Err(format!("{at}: status {status} is not an HTTP status"));
            }
            (None, Some(ms), false) => Fault::Delay(Duration::from_millis(ms)),
            (None, None, true) => Fault::Reset,
            _ => return Err(format!("{at}: give exactly one of status, delay_ms, reset")),
        };
        if self.times == Some(0) {
            return Err(format!("{at}: times = 0 would never apply"));
        }
        Ok((endpoint, fault, self.times))
    }
}

/// Reads and checks the `--config` file.
fn read_config(path: &std::path::Path) -> Result<ConfigFile, String> {
    let bytes = workload_auth_core::fs::read_bounded(
        path,
        workload_auth_core::fs::MAX_SMALL_FILE_BYTES,
        "the --config file",
    )
    .map_err(|e| crate::token_cmd::report(&e))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("--config {}: not UTF-8 text", path.display()))?;
    let toml = path.extension().is_some_and(|e| e == "toml");
    let parsed = if toml {
        toml::from_str::<ConfigFile>(text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str::<ConfigFile>(text).map_err(|e| e.to_string())
    };
    let file = parsed.map_err(|e| {
        let e = e.trim_end().replace('\n', "\n  ");
        format!("--config {}: {e}", path.display())
    })?;
    file.check()
        .map_err(|e| format!("--config {}: {e}", path.display()))?;
    Ok(file)
}

impl EmulatorArgs {
    fn config(&self, file: &ConfigFile) -> EmulatorConfig {
        let mut config = EmulatorConfig::default();
        if let Some(project) = &file.project {
            config.project_id.clone_from(project);
        }
        if let Some(number) = file.project_number {
            config.numeric_project_id = number;
        }
        if let Some(email) = &file.email {
            config.email.clone_from(email);
        }
        if let Some(scopes) = &file.scopes {
            config.scopes.clone_from(scopes);
        }
        if file.universe_domain.is_some() {
            config.universe_domain.clone_from(&file.universe_domain);
        }
        if let Some(secs) = file.token_lifetime_secs {
            config.token_lifetime = Duration::from_secs(secs);
        }
        file.apply_identities(&mut config);
        if let Some(project) = &self.project {
            config.project_id.clone_from(project);
        }
        if let Some(number) = self.project_number {
            config.numeric_project_id = number;
        }
        if let Some(email) = &self.email {
            config.email.clone_from(email);
        }
        if !self.scopes.is_empty() {
            config.scopes.clone_from(&self.scopes);
        }
        if self.universe_domain.is_some() {
            config.universe_domain.clone_from(&self.universe_domain);
        }
        if let Some(secs) = self.token_lifetime {
            config.token_lifetime = Duration::from_secs(secs);
        }
        config
    }
}

pub(crate) async fn run(args: EmulatorArgs) -> Result<(), String> {
    // Everything in the file is checked before the emulator listens.
    let file = match &args.config {
        Some(path) => read_config(path)?,
        None => ConfigFile::default(),
    };
    let faults = file
        .faults
        .iter()
        .enumerate()
        .map(|(i, f)| f.resolve(i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            let path = args.config.as_deref().unwrap_or(std::path::Path::new(""));
            format!("--config {}: {e}", path.display())
        })?;
    if args.token_lifetime == Some(0) {
        return Err(
            "--token-lifetime 0: tokens would expire as issued\ngive seconds, at least 1".into(),
        );
    }
    let identity = args.workload_identity()?;
    let mut config = args.config(&file);
    if let Some(plan) = &identity {
        config.workload_certificates = Some(plan.first.workload_certificates([&*plan.ca]));
    }
    let emulator = Emulator::start_on(args.listen, config)
        .await
        // The emulator's hint already says what to do; name the option that does it.
        .map_err(|e| {
            crate::token_cmd::report(
                &e.with_hint("choose another address with --listen, or free the port"),
            )
        })?;
    for (endpoint, fault, times) in faults {
        emulator.inject(endpoint, fault, times);
    }
    let shutdown = crate::shutdown::wait_for_shutdown();
    say(&format!("listening on {}", emulator.addr()));
    if let Some(dir) = &args.mds_mtls {
        emulator
            .enable_mds_mtls(dir)
            .map_err(|e| format!("--mds-mtls: {}", crate::token_cmd::report(&e)))?;
        say(&format!(
            "metadata server over mTLS on the same port; root.crt and client.key in {0}\n\
             use it with: export GCE_METADATA_MTLS_MODE=strict WORKLOAD_AUTH_MDS_MTLS_DIR={0}",
            dir.display()
        ));
    }
    let _rotation = match identity {
        None => None,
        Some(plan) => Some(write_credentials(plan, args.rotate_every)?),
    };
    say(&format!(
        "point clients at it with: export GCE_METADATA_HOST={} GCE_METADATA_IP={}",
        emulator.host(),
        emulator.host()
    ));
    shutdown.await;
    emulator.shutdown().await;
    Ok(())
}

/// Writes the credentials directory now (and every `rotate_every`); the rotation stops when the
/// returned handle is dropped.
fn write_credentials(
    plan: WorkloadIdentityPlan,
    rotate_every: Option<Duration>,
) -> Result<Option<Rotation>, String> {
    let writer = CredentialsDirWriter::new(&plan.dir);
    let layout = plan.layout;
    writer
        .write(&CredentialsContents::with_layout(
            layout,
            &plan.first,
            &plan.ca,
            [],
        ))
        .map_err(|e| crate::token_cmd::report(&e))?;
    say(&format!(
        "workload credentials for {} in {} (layout {layout})",
        plan.spiffe_id,
        writer.link_path().display()
    ));
    let Some(interval) = rotate_every else {
        return Ok(None);
    };
    let (ca, id) = (plan.ca, plan.spiffe_id);
    // The rotation writes a fresh generation at once, then every `interval`.
    let rotation = writer
        .rotate_every(interval, move || {
            let svid = ca.issue(&id)?;
            Ok(CredentialsContents::with_layout(layout, &svid, &ca, []))
        })
        .map_err(|e| crate::token_cmd::report(&e))?;
    Ok(Some(rotation))
}
