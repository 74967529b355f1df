//! Is this process running on Google Cloud? Answered from local facts first, with at most one
//! short network probe.
//!
//! The rules, in order (the first that decides wins):
//!
//! 1. `GCE_METADATA_HOST` set (not blank) → yes, use that host.
//! 2. `NO_GCE_CHECK=true` (any case) → no.
//! 3. `/sys/class/dmi/id/product_name` starts with `Google` → yes.
//! 4. `K_SERVICE`, `CLOUD_RUN_JOB`, `FUNCTION_TARGET` or `GAE_SERVICE` set → yes (serverless).
//! 5. One probe: a TCP connect to the metadata IP (tens of milliseconds at most; on Google Cloud
//!    it takes well under one) and `GET /`, whose answer must carry `Metadata-Flavor: Google`.
//!    With `GCE_METADATA_MTLS_MODE=strict` the probe goes over mutual TLS to port 443 (the server
//!    verified as `169.254.169.254`, the files from `WORKLOAD_AUTH_MDS_MTLS_DIR` or
//!    `/run/google-mds-mtls`), never plain HTTP.
//!
//! Off Google Cloud with nothing configured this takes one failed connect: milliseconds.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use workload_auth_core::fs::{is_not_found, read_bounded};
use workload_auth_core::{Error, ErrorKind};

use crate::host::{METADATA_HOST_ENV, MetadataHost};
use crate::mds_mtls::{MDS_MTLS_DIR_ENV, MDS_MTLS_MODE_ENV, MdsMtlsMode, resolve_dir};
use crate::request::{FLAVOR_HEADER, FLAVOR_VALUE};
use workload_auth_core::text::snippet;

/// Set to `true` to declare that this is not Google Cloud and skip the probe.
pub const NO_GCE_CHECK_ENV: &str = "NO_GCE_CHECK";

/// An IP address (optionally `ip:port`) to probe instead of the metadata IP, as google-auth
/// reads it.
pub const METADATA_IP_ENV: &str = "GCE_METADATA_IP";

/// Environment variables set by Google Cloud's serverless platforms.
pub const SERVERLESS_ENV: [&str; 4] = [
    "K_SERVICE",
    "CLOUD_RUN_JOB",
    "FUNCTION_TARGET",
    "GAE_SERVICE",
];

/// The file whose content starts with `Google` on Compute Engine and GKE nodes.
pub const DMI_PRODUCT_NAME_PATH: &str = "/sys/class/dmi/id/product_name";

/// The metadata server's link-local address, port 80.
pub const METADATA_IP_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)), 80);

/// Default limit for the probe's connect.
pub const DEFAULT_PROBE_CONNECT_TIMEOUT: Duration = Duration::from_millis(50);

/// Default limit for the probe's answer once connected.
pub const DEFAULT_PROBE_RESPONSE_TIMEOUT: Duration = Duration::from_millis(300);

/// The largest probe answer read (headers only matter).
const PROBE_MAX_RESPONSE: usize = 16 * 1024;

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What detection looks at. [`DetectionInput::from_process`] reads the real process; tests inject
/// an environment, a DMI file and a probe address.
#[derive(Clone)]
pub struct DetectionInput {
    env: EnvLookup,
    dmi_product_name_path: PathBuf,
    probe_addr: Option<SocketAddr>,
    probe_enabled: bool,
    probe_connect_timeout: Duration,
    probe_response_timeout: Duration,
}

impl DetectionInput {
    /// The real process: its environment, [`DMI_PRODUCT_NAME_PATH`], the metadata IP.
    pub fn from_process() -> Self {
        Self::with_env(|name| std::env::var(name).ok())
    }

    /// Looks variables up with `env` (everything else as [`DetectionInput::from_process`]).
    pub fn with_env(env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            env: Arc::new(env),
            dmi_product_name_path: PathBuf::from(DMI_PRODUCT_NAME_PATH),
            probe_addr: None,
            probe_enabled: true,
            probe_connect_timeout: DEFAULT_PROBE_CONNECT_TIMEOUT,
            probe_response_timeout: DEFAULT_PROBE_RESPONSE_TIMEOUT,
        }
    }

    /// An environment holding exactly `vars`.
    pub fn with_env_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let map: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::with_env(move |name| map.get(name).cloned())
    }

    /// Reads the DMI product name from `path` instead of [`DMI_PRODUCT_NAME_PATH`].
    #[must_use]
    pub fn with_dmi_product_name_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.dmi_product_name_path = path.into();
        self
    }

    /// Probes `addr` instead of `GCE_METADATA_IP` or [`METADATA_IP_ADDR`].
    #[must_use]
    pub fn with_probe_addr(mut self, addr: SocketAddr) -> Self {
        self.probe_addr = Some(addr);
        self
    }

    /// Never probe: when no local fact decides, the answer is "not on Google Cloud".
    #[must_use]
    pub fn without_probe(mut self) -> Self {
        self.probe_enabled = false;
        self
    }

    /// The probe's connect limit (default [`DEFAULT_PROBE_CONNECT_TIMEOUT`]).
    #[must_use]
    pub fn with_probe_connect_timeout(mut self, timeout: Duration) -> Self {
        self.probe_connect_timeout = timeout;
        self
    }

    /// The limit for the probe's answer after connecting (default
    /// [`DEFAULT_PROBE_RESPONSE_TIMEOUT`]).
    #[must_use]
    pub fn with_probe_response_timeout(mut self, timeout: Duration) -> Self {
        self.probe_response_timeout = timeout;
        self
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }
}

// By hand: the environment is a closure (no `Debug`), and its values are not printed anyway.
impl fmt::Debug for DetectionInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetectionInput")
            .field("dmi_product_name_path", &self.dmi_product_name_path)
            .field("probe_addr", &self.probe_addr)
            .field("probe_enabled", &self.probe_enabled)
            .field("probe_connect_timeout", &self.probe_connect_timeout)
            .field("probe_response_timeout", &self.probe_response_timeout)
            .finish_non_exhaustive()
    }
}

/// One detection rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// `GCE_METADATA_HOST` names a metadata server.
    MetadataHostEnv,
    /// `NO_GCE_CHECK=true` rules Google Cloud out.
    NoGceCheck,
    /// The DMI product name says `Google`.
    DmiProductName,
    /// A serverless platform's environment variable is set.
    ServerlessEnv,
    /// The network probe of the metadata server.
    Probe,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MetadataHostEnv => METADATA_HOST_ENV,
            Self::NoGceCheck => NO_GCE_CHECK_ENV,
            Self::DmiProductName => "DMI product name",
            Self::ServerlessEnv => "serverless environment variables",
            Self::Probe => "metadata server probe",
        })
    }
}

/// What one rule found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Check {
    /// The rule.
    pub rule: Rule,
    /// What it found, in words (e.g. `/sys/class/dmi/id/product_name does not exist`).
    pub outcome: String,
    /// Whether this rule decided the answer.
    pub decided: bool,
}

/// The answer of [`detect`]: on Google Cloud or not, which rule decided, and every check made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    on_google_cloud: bool,
    metadata_host: Option<String>,
    checks: Vec<Check>,
    elapsed: Duration,
}

impl Detection {
    /// Whether the process runs on Google Cloud (or was pointed at a metadata server).
    pub fn is_on_google_cloud(&self) -> bool {
        self.on_google_cloud
    }

    /// The rule that decided.
    pub fn decided_by(&self) -> Rule {
        self.checks
            .iter()
            .find(|c| c.decided)
            .map_or(Rule::Probe, |c| c.rule)
    }

    /// The value of `GCE_METADATA_HOST` when that decided: the host a client must use.
    pub fn metadata_host(&self) -> Option<&str> {
        self.metadata_host.as_deref()
    }

    /// Every rule consulted, in order, with its outcome.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// How long detection took.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// One line per rule consulted, e.g. for an "explain" listing.
    pub fn explain(&self) -> String {
        let verdict = if self.on_google_cloud {
            "on Google Cloud"
        } else {
            "not on Google Cloud"
        };
        let mut out = format!("{verdict} (decided by {})", self.decided_by());
        for check in &self.checks {
            out.push_str(&format!("\n  {}: {}", check.rule, check.outcome));
        }
        out
    }

    /// An [`ErrorKind::NotOnGoogleCloud`] error listing every check, when not on Google Cloud.
    pub fn not_on_google_cloud_error(&self) -> Option<Error> {
        if self.on_google_cloud {
            return None;
        }
        let checked: Vec<String> = self
            .checks
            .iter()
            .map(|c| format!("{}: {}", c.rule, c.outcome))
            .collect();
        Some(
            Error::new(
                ErrorKind::NotOnGoogleCloud,
                format!("no metadata server ({})", checked.join("; ")),
            )
            .with_hint(
                "on Google Cloud, check the VM's network; elsewhere, set GCE_METADATA_HOST to a \
                 metadata server (e.g. the workload-auth emulator) or use other credentials",
            ),
        )
    }
}

impl fmt::Display for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explain())
    }
}

/// Decides whether this process runs on Google Cloud, looking at `input`.
///
/// Blocking, but bounded: at most one connect (limit:
/// [`DetectionInput::with_probe_connect_timeout`]) plus one answer (limit:
/// [`DetectionInput::with_probe_response_timeout`]), and only when no local fact decides. Needs no async runtime; from
/// async code, run it where blocking is allowed (e.g. `tokio::task::spawn_blocking`) if those
/// few milliseconds matter.
pub fn detect(input: &DetectionInput) -> Detection {
    let start = Instant::now();
    let mut checks = Vec::new();
    // The local facts in order, then the probe, which always decides.
    let local: [(Rule, LocalRule); 4] = [
        (Rule::MetadataHostEnv, check_metadata_host_env),
        (Rule::NoGceCheck, check_no_gce_check),
        (Rule::DmiProductName, check_dmi_product_name),
        (Rule::ServerlessEnv, check_serverless_env),
    ];
    let mut verdict = None;
    for (rule, check) in local {
        let finding = check(input);
        checks.push(Check {
            rule,
            outcome: finding.outcome,
            decided: finding.verdict.is_some(),
        });
        if finding.verdict.is_some() {
            verdict = finding.verdict;
            break;
        }
    }
    let (on_google_cloud, metadata_host) = verdict.unwrap_or_else(|| {
        let (on, outcome) = check_probe(input);
        checks.push(Check {
            rule: Rule::Probe,
            outcome,
            decided: true,
        });
        (on, None)
    });
    Detection {
        on_google_cloud,
        metadata_host,
        checks,
        elapsed: start.elapsed(),
    }
}

/// One of the local rules: reads `input`, sends nothing.
type LocalRule = fn(&DetectionInput) -> Finding;

/// What one local rule saw: its answer (on Google Cloud or not, and the metadata host it names)
/// when it decides, and in words what it found.
struct Finding {
    verdict: Option<(bool, Option<String>)>,
    outcome: String,
}

impl Finding {
    fn decides(on: bool, host: Option<String>, outcome: String) -> Self {
        Self {
            verdict: Some((on, host)),
            outcome,
        }
    }

    fn moves_on(outcome: String) -> Self {
        Self {
            verdict: None,
            outcome,
        }
    }
}

/// Rule 1: `GCE_METADATA_HOST` set means on Google Cloud, at that host (even an invalid one:
/// the client's error names it).
fn check_metadata_host_env(input: &DetectionInput) -> Finding {
    let Some(host) = input.var(METADATA_HOST_ENV) else {
        return Finding::moves_on("not set".to_owned());
    };
    let outcome = match MetadataHost::parse(&host, METADATA_HOST_ENV) {
        Ok(_) => format!("set to {:?}", snippet(&host, 100)),
        Err(e) => format!(
            "set to {:?}, which is invalid: {}",
            snippet(&host, 100),
            e.message()
        ),
    };
    Finding::decides(true, Some(host), outcome)
}

/// Rule 2: `NO_GCE_CHECK=true` rules Google Cloud out.
fn check_no_gce_check(input: &DetectionInput) -> Finding {
    match input.var(NO_GCE_CHECK_ENV) {
        Some(v) if v.trim().eq_ignore_ascii_case("true") => {
            Finding::decides(false, None, "set to true".to_owned())
        }
        Some(v) => Finding::moves_on(format!("set to {:?}, not \"true\"", snippet(&v, 40))),
        None => Finding::moves_on("not set".to_owned()),
    }
}

/// Rule 3: a DMI product name starting with `Google` means on Google Cloud.
fn check_dmi_product_name(input: &DetectionInput) -> Finding {
    let path = &input.dmi_product_name_path;
    match read_product_name(path) {
        Ok(name) if name.starts_with("Google") => Finding::decides(
            true,
            None,
            format!("{} is {:?}", path.display(), snippet(&name, 60)),
        ),
        Ok(name) => Finding::moves_on(format!(
            "{} is {:?}, not Google",
            path.display(),
            snippet(&name, 60)
        )),
        Err(e) if is_not_found(&e) => {
            Finding::moves_on(format!("{} does not exist", path.display()))
        }
        Err(e) => Finding::moves_on(format!(
            "{} cannot be read: {}",
            path.display(),
            e.message()
        )),
    }
}

/// Rule 4: a serverless platform's environment variable means on Google Cloud.
fn check_serverless_env(input: &DetectionInput) -> Finding {
    match SERVERLESS_ENV.iter().find(|n| input.var(n).is_some()) {
        Some(name) => Finding::decides(true, None, format!("{name} is set")),
        None => Finding::moves_on(format!("none of {} is set", SERVERLESS_ENV.join(", "))),
    }
}

/// Rule 5, the last: the probe of the metadata server (when enabled) decides.
fn check_probe(input: &DetectionInput) -> (bool, String) {
    if !input.probe_enabled {
        return (false, "disabled".to_owned());
    }
    let (addr, source, mtls_dir) = match probe_target(input) {
        Ok(target) => target,
        Err(outcome) => return (false, outcome),
    };
    let probe_start = Instant::now();
    let result = probe(
        addr,
        input.probe_connect_timeout,
        input.probe_response_timeout,
        mtls_dir.as_deref(),
    );
    let took = probe_start.elapsed();
    match result {
        Ok(()) => (
            true,
            format!(
                "{addr}{source} answered with Metadata-Flavor: Google in {}",
                millis(took)
            ),
        ),
        Err(why) => (
            false,
            format!("{addr}{source}: {why} (after {})", millis(took)),
        ),
    }
}

/// Where the probe goes, how that was chosen (for the outcome), and the mTLS directory when
/// `GCE_METADATA_MTLS_MODE=strict` makes the probe go over mTLS (port 443), never plain HTTP.
/// An unusable `GCE_METADATA_IP` is the outcome to report instead.
fn probe_target(input: &DetectionInput) -> Result<(SocketAddr, String, Option<PathBuf>), String> {
    let strict = input.var(MDS_MTLS_MODE_ENV).is_some_and(|v| {
        MdsMtlsMode::parse(&v, MDS_MTLS_MODE_ENV).ok() == Some(MdsMtlsMode::Strict)
    });
    let mtls_dir = strict.then(|| resolve_dir(None, input.var(MDS_MTLS_DIR_ENV).as_deref()));
    let default_port = if strict { 443 } else { 80 };
    let (addr, source) = match input.probe_addr {
        Some(addr) => (addr, ""),
        None => match input.var(METADATA_IP_ENV) {
            Some(value) => match parse_probe_addr(&value, default_port) {
                Some(addr) => (addr, " (from GCE_METADATA_IP)"),
                None => {
                    return Err(format!(
                        "GCE_METADATA_IP is {:?}, not an IP address or ip:port; not probed",
                        snippet(&value, 60)
                    ));
                }
            },
            None => (SocketAddr::new(METADATA_IP_ADDR.ip(), default_port), ""),
        },
    };
    let over = if strict { " over mTLS" } else { "" };
    Ok((addr, format!("{source}{over}"), mtls_dir))
}

/// [`detect`] on the real process.
pub fn detect_environment() -> Detection {
    detect(&DetectionInput::from_process())
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The DMI product name is a short line ("Google Compute Engine"); a longer file is not it.
const MAX_PRODUCT_NAME_BYTES: u64 = 4096;

fn read_product_name(path: &Path) -> Result<String, Error> {
    let bytes = read_bounded(path, MAX_PRODUCT_NAME_BYTES, "the DMI product name")?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
}

/// `ip` (port `default_port`) or `ip:port`.
fn parse_probe_addr(value: &str, default_port: u16) -> Option<SocketAddr> {
    let value = value.trim();
    value.parse::<SocketAddr>().ok().or_else(|| {
        value
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, default_port))
    })
}

/// Connects to `addr`, sends `GET /` and checks the answer's `Metadata-Flavor` header; over
/// mutual TLS with the files in `mtls_dir` when given (the server verified as
/// `169.254.169.254`).
fn probe(
    addr: SocketAddr,
    connect_timeout: Duration,
    response_timeout: Duration,
    mtls_dir: Option<&Path>,
) -> Result<(), String> {
    let stream =
        TcpStream::connect_timeout(&addr, connect_timeout).map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => {
                format!("no connection within {} ms", connect_timeout.as_millis())
            }
            _ => format!("cannot connect: {e}"),
        })?;
    let _ = stream.set_nodelay(true);
    let Some(dir) = mtls_dir else {
        return exchange(stream, addr, response_timeout);
    };
    let config = crate::mds_mtls::tls_config(dir)
        .map_err(|e| format!("the mTLS files are unusable: {e}"))?;
    let name = rustls::pki_types::ServerName::IpAddress(
        IpAddr::V4(crate::mds_mtls::METADATA_IP_NAME).into(),
    );
    let connection = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| format!("cannot start TLS: {e}"))?;
    exchange(
        TimedStream(rustls::StreamOwned::new(connection, stream)),
        addr,
        response_timeout,
    )
}

/// A stream whose socket read timeout can be set: plain TCP, or TLS over TCP.
trait Timed: Read + Write {
    fn set_timeouts(&mut self, read: Duration) -> std::io::Result<()>;
}

impl Timed for TcpStream {
    fn set_timeouts(&mut self, read: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(read))?;
        self.set_write_timeout(Some(read))
    }
}

struct TimedStream(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl Read for TimedStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TimedStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Timed for TimedStream {
    fn set_timeouts(&mut self, read: Duration) -> std::io::Result<()> {
        self.0.sock.set_timeouts(read)
    }
}

/// Sends `GET /` on `stream` and checks the answer, within `response_timeout`.
fn exchange(
    mut stream: impl Timed,
    addr: SocketAddr,
    response_timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + response_timeout;
    let host = match addr {
        SocketAddr::V4(a) if a.port() == 80 => a.ip().to_string(),
        other => other.to_string(),
    };
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\n{FLAVOR_HEADER}: {FLAVOR_VALUE}\r\nConnection: close\r\n\r\n"
    );
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
            "connected, but no answer within {} ms",
            response_timeout.as_millis()
        ),
        _ => format!("connected, then the exchange failed: {e}"),
    };
    stream.set_timeouts(response_timeout).map_err(io)?;
    stream.write_all(request.as_bytes()).map_err(io)?;
    stream.flush().map_err(io)?;

    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io(std::io::ErrorKind::TimedOut.into()));
        }
        stream.set_timeouts(remaining).map_err(io)?;
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 {
            return Err("connected, but the connection closed before a complete answer".to_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let status = response.code.unwrap_or(0);
                let flavors: Vec<&[u8]> = response
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case(FLAVOR_HEADER))
                    .map(|h| h.value)
                    .collect();
                return match flavors.as_slice() {
                    [v] if *v == FLAVOR_VALUE.as_bytes() => Ok(()),
                    [] => Err(format!(
                        "answered HTTP {status} without Metadata-Flavor: Google, so it is not a metadata server"
                    )),
                    _ => Err(format!(
                        "answered HTTP {status} with a Metadata-Flavor other than Google, so it is not a metadata server"
                    )),
                };
            }
            Ok(httparse::Status::Partial) if buf.len() < PROBE_MAX_RESPONSE => {}
            Ok(httparse::Status::Partial) => {
                return Err(
                    "answered with oversized headers, so it is not a metadata server".to_owned(),
                );
            }
            Err(e) => return Err(format!("answered, but not with HTTP ({e})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dmi() -> PathBuf {
        PathBuf::from("/nonexistent/workload-auth/product_name")
    }

    fn input(vars: &[(&str, &str)]) -> DetectionInput {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        DetectionInput::with_env_vars(vars)
            .with_dmi_product_name_path(no_dmi())
            .without_probe()
    }

    #[test]
    fn metadata_host_env_decides_first() {
        let d = detect(&input(&[
            ("GCE_METADATA_HOST", "127.0.0.1:9"),
            ("NO_GCE_CHECK", "true"),
        ]));
        assert!(d.is_on_google_cloud());
        assert_eq!(d.decided_by(), Rule::MetadataHostEnv);
        assert_eq!(d.metadata_host(), Some("127.0.0.1:9"));
        assert_eq!(d.checks().len(), 1);
        assert!(d.not_on_google_cloud_error().is_none());
    }

    #[test]
    fn blank_metadata_host_counts_as_unset() {
        let d = detect(&input(&[("GCE_METADATA_HOST", " ")]));
        assert!(!d.is_on_google_cloud());
        assert_eq!(d.checks()[0].outcome, "not set");
    }

    #[test]
    fn no_gce_check_true_in_any_case_rules_out() {
        for v in ["true", "TRUE", "True", " true "] {
            let d = detect(&input(&[("NO_GCE_CHECK", v), ("K_SERVICE", "svc")]));
            assert!(!d.is_on_google_cloud(), "{v}");
            assert_eq!(d.decided_by(), Rule::NoGceCheck);
        }
        let d = detect(&input(&[("NO_GCE_CHECK", "1"), ("K_SERVICE", "svc")]));
        assert!(d.is_on_google_cloud());
        assert_eq!(d.decided_by(), Rule::ServerlessEnv);
        assert!(d.checks()[1].outcome.contains("not \"true\""));
    }

    #[test]
    fn dmi_product_name_google_decides() {
        let dir = std::env::temp_dir().join(format!("wa-meta-dmi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let google = dir.join("google");
        std::fs::write(&google, "Google Compute Engine\n").unwrap();
        let other = dir.join("other");
        std::fs::write(&other, "Standard PC (Q35 + ICH9, 2009)\n").unwrap();

        let d = detect(&input(&[]).with_dmi_product_name_path(&google));
        assert!(d.is_on_google_cloud());
        assert_eq!(d.decided_by(), Rule::DmiProductName);
        assert!(d.checks()[2].outcome.contains("Google Compute Engine"));

        let d = detect(&input(&[]).with_dmi_product_name_path(&other));
        assert!(!d.is_on_google_cloud());
        assert!(d.explain().contains("Standard PC"), "{}", d.explain());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_serverless_marker_decides() {
        for name in SERVERLESS_ENV {
            let d = detect(&input(&[(name, "x")]));
            assert!(d.is_on_google_cloud(), "{name}");
            assert_eq!(d.decided_by(), Rule::ServerlessEnv);
            assert!(d.checks().last().unwrap().outcome.contains(name));
        }
        let d = detect(&input(&[("K_SERVICE", "")]));
        assert!(!d.is_on_google_cloud());
    }

    #[test]
    fn not_found_lists_every_check() {
        let d = detect(&input(&[]));
        assert!(!d.is_on_google_cloud());
        assert_eq!(d.decided_by(), Rule::Probe);
        let rules: Vec<Rule> = d.checks().iter().map(|c| c.rule).collect();
        assert_eq!(
            rules,
            [
                Rule::MetadataHostEnv,
                Rule::NoGceCheck,
                Rule::DmiProductName,
                Rule::ServerlessEnv,
                Rule::Probe
            ]
        );
        let err = d.not_on_google_cloud_error().unwrap();
        assert_eq!(err.kind(), ErrorKind::NotOnGoogleCloud);
        let text = err.to_string();
        for needle in [
            "GCE_METADATA_HOST",
            "NO_GCE_CHECK",
            "product_name",
            "K_SERVICE",
            "probe",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert_eq!(d.explain().lines().count(), 6);
    }

    #[test]
    fn probe_addresses_parse() {
        assert_eq!(
            parse_probe_addr("169.254.169.254", 80),
            Some(METADATA_IP_ADDR)
        );
        assert_eq!(
            parse_probe_addr("127.0.0.1:8080", 80),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(parse_probe_addr("metadata.google.internal", 80), None);
        let d = detect(
            &DetectionInput::with_env_vars([("GCE_METADATA_IP", "not-an-ip")])
                .with_dmi_product_name_path(no_dmi()),
        );
        assert!(!d.is_on_google_cloud());
        assert!(d.checks().last().unwrap().outcome.contains("not probed"));
    }
}
