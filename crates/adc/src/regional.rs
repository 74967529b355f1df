//! Regional access boundaries (formerly "trust boundaries"): the locations a credential may be
//! used from, looked up once at the IAM Service Account Credentials API and sent to Google APIs
//! as `x-allowed-locations`.
//!
//! Off unless enabled (`GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED=true|1`,
//! `GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED=true|1`, or
//! [`crate::Builder::with_regional_access_boundary`]). Once on, it never stands in the way of a
//! request: lookups run in the background, a request made before the first answer (or while the
//! lookup fails or hangs) simply goes without the header — the server then enforces nothing
//! extra — and the last answer is kept until its hard expiry (6 h). Refreshes start 1 h before
//! it; after a failure the next try waits 15 min, doubling up to 6 h, with jitter. One log line
//! per change of state, never per request.
//!
//! Skipped: a universe other than `googleapis.com`, credentials without a service account or pool
//! (user credentials, a metadata-server account that is not `*.gserviceaccount.com`), and
//! requests to regional endpoints (`*.rep.googleapis.com`, `rep.sandbox`, `rep.mtls`) or to the
//! IAM and STS hosts themselves.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use url::Url;
use workload_auth_core::json::Fields;
use workload_auth_core::{AccessToken, Error, ErrorKind, Result};
use workload_auth_metadata::MetadataClient;

use crate::credential_client::{Auth, Body, Http};
use crate::env::EnvSource;
use crate::kinds::{DEFAULT_UNIVERSE_DOMAIN, Source};
use crate::url_policy::caller_endpoint;

/// The opt-in variables (Go and older Python; Python 2.56+).
pub const TRUST_BOUNDARY_ENV: &str = "GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED";
/// See [`TRUST_BOUNDARY_ENV`].
pub const REGIONAL_ACCESS_BOUNDARY_ENV: &str =
    "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED";

/// `WORKLOAD_AUTH_IAM_CREDENTIALS_ENDPOINT`: the IAM Service Account Credentials API base the
/// boundary is looked up at, as [`crate::Builder::with_iam_credentials_endpoint`] (which wins),
/// for an emulator reached from a binding or the CLI. Must be `https://`, or `http://` to this
/// machine.
pub const IAM_CREDENTIALS_ENDPOINT_ENV: &str = "WORKLOAD_AUTH_IAM_CREDENTIALS_ENDPOINT";

/// The header Google APIs read.
pub const ALLOWED_LOCATIONS_HEADER: &str = "x-allowed-locations";

/// The encoded value that means "no restriction": nothing is sent for it.
const NO_RESTRICTION: &str = "0x0";
/// Longest `encodedLocations` accepted (it goes into a header).
const MAX_ENCODED_LEN: usize = 1024;

/// How long answers live and how lookups back off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) ttl: Duration,
    pub(crate) refresh_before: Duration,
    pub(crate) first_backoff: Duration,
    pub(crate) max_backoff: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(6 * 3600),
            refresh_before: Duration::from_secs(3600),
            first_backoff: Duration::from_secs(15 * 60),
            max_backoff: Duration::from_secs(6 * 3600),
        }
    }
}

/// The builder's regional access boundary settings.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    /// The builder's choice; `None`: the environment decides.
    pub(crate) enabled: Option<bool>,
    /// The IAM Service Account Credentials API's base (`https://iamcredentials.{universe}/v1/`).
    pub(crate) endpoint: Option<String>,
    pub(crate) timing: Timing,
}

fn truthy(value: Option<String>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        v == "1" || v.eq_ignore_ascii_case("true")
    })
}

/// google-auth's reading of its own variable: `y`, `yes`, `t`, `true`, `on` or `1`, in any
/// case, surrounding spaces ignored.
fn python_truthy(value: Option<String>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        matches!(v.as_str(), "y" | "yes" | "t" | "true" | "on" | "1")
    })
}

impl Options {
    pub(crate) fn is_enabled(&self, env: &EnvSource) -> bool {
        self.enabled.unwrap_or_else(|| {
            truthy(env.var(TRUST_BOUNDARY_ENV))
                || python_truthy(env.var(REGIONAL_ACCESS_BOUNDARY_ENV))
        })
    }
}

/// Whose allowed locations to look up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Subject {
    /// `projects/-/serviceAccounts/{email}/allowedLocations`.
    ServiceAccount(String),
    /// The metadata server's default account, once its email is known.
    MetadataAccount,
    /// `projects/{number}/locations/global/workloadIdentityPools/{pool}/allowedLocations`.
    WorkloadPool { number: String, pool: String },
    /// `locations/global/workforcePools/{pool}/allowedLocations`.
    WorkforcePool(String),
}

impl Subject {
    /// The subject named by a federation audience
    /// (`//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X`,
    /// `//iam.googleapis.com/locations/global/workforcePools/P/providers/X`).
    pub(crate) fn of_audience(audience: &str) -> Option<Self> {
        let path = audience.strip_prefix("//iam.googleapis.com/")?;
        let parts: Vec<&str> = path.split('/').collect();
        let safe = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        match parts.as_slice() {
            [
                "projects",
                number,
                "locations",
                "global",
                "workloadIdentityPools",
                pool,
                ..,
            ] if number.bytes().all(|b| b.is_ascii_digit()) && safe(number) && safe(pool) => {
                Some(Self::WorkloadPool {
                    number: (*number).to_owned(),
                    pool: (*pool).to_owned(),
                })
            }
            ["locations", "global", "workforcePools", pool, ..] if safe(pool) => {
                Some(Self::WorkforcePool((*pool).to_owned()))
            }
            _ => None,
        }
    }

    fn path(&self, email: Option<&str>) -> Option<String> {
        match self {
            Self::ServiceAccount(email) => Some(format!(
                "projects/-/serviceAccounts/{email}/allowedLocations"
            )),
            Self::MetadataAccount => {
                email.map(|email| format!("projects/-/serviceAccounts/{email}/allowedLocations"))
            }
            Self::WorkloadPool { number, pool } => Some(format!(
                "projects/{number}/locations/global/workloadIdentityPools/{pool}/allowedLocations"
            )),
            Self::WorkforcePool(pool) => Some(format!(
                "locations/global/workforcePools/{pool}/allowedLocations"
            )),
        }
    }
}

/// A service-account email as it may appear in a URL path.
fn is_service_account_email(email: &str) -> bool {
    email.ends_with(".gserviceaccount.com")
        && email
            .split_once('@')
            .is_some_and(|(user, _)| !user.is_empty())
        && email
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@.-_".contains(&b))
}

/// What the boundary state is, for `explain` and for logging changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegionalState {
    /// Not enabled.
    Disabled,
    /// Enabled, but this credential or universe has no boundary to look up.
    NotApplicable(String),
    /// Enabled, no answer yet (no header is sent).
    Pending,
    /// The credential may be used from these locations; the header is sent.
    Restricted {
        /// The `encodedLocations` sent as `x-allowed-locations`.
        encoded: String,
        /// The locations, as the lookup named them.
        locations: Vec<String>,
    },
    /// No restriction (`0x0`): no header is sent.
    Unrestricted,
    /// The last lookup failed (no header is sent until one succeeds, unless an earlier answer
    /// is still valid).
    Failing(String),
}

impl std::fmt::Display for RegionalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Disabled => f.write_str("disabled"),
            Self::NotApplicable(why) => write!(f, "not applicable ({why})"),
            Self::Pending => f.write_str("pending (no header until the lookup answers)"),
            Self::Restricted { encoded, locations } => {
                write!(f, "x-allowed-locations: {encoded}")?;
                if !locations.is_empty() {
                    write!(f, " ({})", locations.join(", "))?;
                }
                Ok(())
            }
            Self::Unrestricted => f.write_str("no restriction (0x0; no header)"),
            Self::Failing(error) => write!(f, "lookup failing, no header ({error})"),
        }
    }
}

/// The allowed locations of the last successful lookup, and when they are forgotten.
struct AllowedLocations {
    encoded: String,
    locations: Vec<String>,
    expires: Instant,
}

struct Machine {
    answer: Option<AllowedLocations>,
    next_attempt: Option<Instant>,
    backoff: Duration,
    in_flight: bool,
    /// Why there is nothing to look up, once known (non-default universe, foreign email).
    not_applicable: Option<String>,
    last_error: Option<String>,
    /// The state last logged, so each change is logged once.
    logged: Option<RegionalState>,
    /// Changes whenever the header value may have (each recorded outcome, each forgotten
    /// answer), so a caller can keep header values built from it until it moves.
    generation: u64,
}

/// One credential's regional access boundary.
pub(crate) struct Regional {
    subject: Subject,
    base: Option<Url>,
    http: Http,
    mtls: bool,
    source: Source,
    metadata: Option<MetadataClient>,
    timing: Timing,
    machine: Mutex<Machine>,
}

impl std::fmt::Debug for Regional {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regional")
            .field("subject", &self.subject)
            .field("mtls", &self.mtls)
            .finish_non_exhaustive()
    }
}

impl Regional {
    /// The boundary of `source`, if enabled and the credential has one to look up.
    pub(crate) fn new(
        options: &Options,
        env: &EnvSource,
        source: &Source,
        metadata: Option<MetadataClient>,
        http: Http,
    ) -> Result<Option<Arc<Self>>> {
        if !options.is_enabled(env) {
            return Ok(None);
        }
        let Some((subject, lookup_http)) = source.regional_subject() else {
            return Ok(None);
        };
        let base = match (&options.endpoint, env.var(IAM_CREDENTIALS_ENDPOINT_ENV)) {
            (Some(raw), _) => Some(caller_endpoint(
                raw,
                "iam_credentials_endpoint",
                "the builder",
            )?),
            (None, Some(raw)) if !raw.trim().is_empty() => {
                let mut raw = raw.trim().to_owned();
                if !raw.ends_with('/') {
                    raw.push('/');
                }
                Some(caller_endpoint(
                    &raw,
                    "iam_credentials_endpoint",
                    IAM_CREDENTIALS_ENDPOINT_ENV,
                )?)
            }
            _ => None,
        };
        let mtls = lookup_http.is_some();
        Ok(Some(Arc::new(Self {
            subject,
            base,
            http: lookup_http.unwrap_or(http),
            mtls,
            source: source.clone(),
            metadata,
            timing: options.timing,
            machine: Mutex::new(Machine {
                answer: None,
                next_attempt: None,
                backoff: options.timing.first_backoff,
                in_flight: false,
                not_applicable: None,
                last_error: None,
                logged: None,
                generation: 0,
            }),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lends `f` the header value to send now, if any, with its generation (a caller that kept
    /// header values built at the same generation reuses them: the request hot path copies
    /// nothing); starts a background lookup when one is due. Never waits for the network.
    pub(crate) fn with_header<R>(
        this: &Arc<Self>,
        token: &AccessToken,
        f: impl FnOnce(u64, Option<&str>) -> R,
    ) -> R {
        let now = Instant::now();
        let mut m = this.lock();
        let start = decide(&mut m, now, &this.timing);
        if start && let Ok(handle) = workload_auth_core::runtime::handle() {
            m.in_flight = true;
            let weak = Arc::downgrade(this);
            let token = token.clone();
            handle.spawn(lookup_task(weak, token));
        }
        f(m.generation, header_value(&m))
    }

    /// Looks up now (for `explain`, which may wait), unless an answer is already known.
    pub(crate) async fn settle(&self, token: &AccessToken) -> RegionalState {
        if matches!(
            self.state(),
            RegionalState::Pending | RegionalState::Failing(_)
        ) {
            let outcome = self.lookup(token).await;
            self.finish(outcome, Instant::now());
        }
        self.state()
    }

    /// The state, for `explain`.
    pub(crate) fn state(&self) -> RegionalState {
        let m = self.lock();
        Self::state_of(&m, Instant::now())
    }

    fn state_of(m: &Machine, now: Instant) -> RegionalState {
        if let Some(why) = &m.not_applicable {
            return RegionalState::NotApplicable(why.clone());
        }
        match (m.answer.as_ref().filter(|a| now < a.expires), &m.last_error) {
            (Some(a), _) if a.encoded == NO_RESTRICTION => RegionalState::Unrestricted,
            (Some(a), _) => RegionalState::Restricted {
                encoded: a.encoded.clone(),
                locations: a.locations.clone(),
            },
            (None, Some(e)) => RegionalState::Failing(e.clone()),
            (None, None) => RegionalState::Pending,
        }
    }

    /// Records a lookup's outcome and logs the state if it changed.
    fn finish(&self, outcome: Outcome, now: Instant) {
        let mut m = self.lock();
        record(&mut m, outcome, now, &self.timing);
        let state = Self::state_of(&m, now);
        // A new failure message alone is not a change of state worth a line.
        let changed = match (&m.logged, &state) {
            (Some(RegionalState::Failing(_)), RegionalState::Failing(_)) => false,
            (old, new) => old.as_ref() != Some(new),
        };
        if changed {
            match &state {
                RegionalState::Restricted { encoded, locations } => tracing::info!(
                    encoded = %encoded,
                    locations = ?locations,
                    "regional access boundary: requests carry x-allowed-locations"
                ),
                RegionalState::Unrestricted => {
                    tracing::info!("regional access boundary: no restriction")
                }
                RegionalState::NotApplicable(why) => {
                    tracing::info!(reason = %why, "regional access boundary: not applicable")
                }
                RegionalState::Failing(error) => tracing::warn!(
                    %error,
                    "regional access boundary lookup failed; requests go without \
                     x-allowed-locations until it succeeds"
                ),
                RegionalState::Pending | RegionalState::Disabled => {}
            }
            m.logged = Some(state);
        }
    }

    async fn lookup(&self, token: &AccessToken) -> Outcome {
        let universe = match self.source.known_universe_domain() {
            Some(u) => u.to_owned(),
            None => match &self.metadata {
                Some(client) => match client.universe_domain().await {
                    Ok(u) => u,
                    Err(e) => return Outcome::Failed(e),
                },
                None => DEFAULT_UNIVERSE_DOMAIN.to_owned(),
            },
        };
        if universe != DEFAULT_UNIVERSE_DOMAIN {
            return Outcome::NotApplicable(format!("the universe domain is {universe}"));
        }
        let email = match (&self.subject, &self.metadata) {
            (Subject::MetadataAccount, Some(client)) => match client.email().await {
                Ok(email) if is_service_account_email(email.trim()) => {
                    Some(email.trim().to_owned())
                }
                Ok(_) => {
                    return Outcome::NotApplicable(
                        "the metadata server's account is not a *.gserviceaccount.com service \
                         account"
                            .to_owned(),
                    );
                }
                Err(e) => return Outcome::Failed(e),
            },
            (Subject::ServiceAccount(email), _) if !is_service_account_email(email) => {
                return Outcome::NotApplicable(
                    "the account is not a *.gserviceaccount.com service account".to_owned(),
                );
            }
            _ => None,
        };
        let Some(path) = self.subject.path(email.as_deref()) else {
            return Outcome::NotApplicable("no account to look up".to_owned());
        };
        let base = match &self.base {
            Some(base) => base.clone(),
            None => match default_base(self.mtls, &universe) {
                Some(url) => url,
                None => return Outcome::NotApplicable(format!("bad universe {universe}")),
            },
        };
        let url = match base.join(&path) {
            Ok(url) => url,
            Err(_) => return Outcome::NotApplicable("bad lookup path".to_owned()),
        };
        match self.fetch(&url, token).await {
            Ok((encoded, locations)) => Outcome::Answer(encoded, locations),
            Err(e) => Outcome::Failed(e),
        }
    }

    async fn fetch(&self, url: &Url, token: &AccessToken) -> Result<(String, Vec<String>)> {
        let reply = self
            .http
            .send(
                reqwest::Method::GET,
                url,
                Auth::Bearer(token.secret()),
                &[],
                Body::Empty,
            )
            .await?
            .ok_or_http_error("the regional access boundary lookup failed")?;
        let map = reply.json("the allowed locations answer")?;
        let fields = Fields::of_response(&map, &reply.endpoint);
        let encoded = fields.str("encodedLocations")?.trim().to_owned();
        if encoded.is_empty()
            || encoded.len() > MAX_ENCODED_LEN
            || !encoded.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::new(
                ErrorKind::MalformedResponse,
                "the allowed locations answer's `encodedLocations` is empty, too long or not \
                 printable ASCII",
            )
            .with_endpoint(reply.endpoint.clone()));
        }
        let locations = fields.opt_str_list("locations")?.unwrap_or_default();
        Ok((encoded, locations))
    }
}

/// The IAM Service Account Credentials API of `universe`: its mTLS host
/// (`iamcredentials.mtls.{universe}`) when the credential authenticates with a client
/// certificate, as google-auth does, else `iamcredentials.{universe}`.
fn default_base(mtls: bool, universe: &str) -> Option<Url> {
    let host = if mtls {
        format!("iamcredentials.mtls.{universe}")
    } else {
        format!("iamcredentials.{universe}")
    };
    Url::parse(&format!("https://{host}/v1/")).ok()
}

/// Whether to start a lookup at `now`. Forgets an answer past its hard expiry.
fn decide(m: &mut Machine, now: Instant, timing: &Timing) -> bool {
    if m.not_applicable.is_some() {
        return false;
    }
    if m.answer.as_ref().is_some_and(|a| now >= a.expires) {
        m.answer = None;
        m.generation = m.generation.wrapping_add(1);
    }
    let due = match &m.answer {
        None => true,
        Some(a) => a
            .expires
            .checked_sub(timing.refresh_before)
            .is_none_or(|t| now >= t),
    };
    due && !m.in_flight && m.next_attempt.is_none_or(|t| now >= t)
}

/// The header value to send, once [`decide`] has forgotten an expired answer.
fn header_value(m: &Machine) -> Option<&str> {
    if m.not_applicable.is_some() {
        return None;
    }
    m.answer
        .as_ref()
        .filter(|a| a.encoded != NO_RESTRICTION)
        .map(|a| a.encoded.as_str())
}

/// Records a lookup's outcome: a new answer (valid for the TTL), or a failure (the last answer
/// is kept; the next try waits 15 min, doubling to 6 h, each wait drawn from [50 %, 100 %]).
fn record(m: &mut Machine, outcome: Outcome, now: Instant, timing: &Timing) {
    m.in_flight = false;
    m.generation = m.generation.wrapping_add(1);
    match outcome {
        Outcome::Answer(encoded, locations) => {
            m.answer = now.checked_add(timing.ttl).map(|expires| AllowedLocations {
                encoded,
                locations,
                expires,
            });
            m.last_error = None;
            m.backoff = timing.first_backoff;
            m.next_attempt = None;
        }
        Outcome::NotApplicable(why) => m.not_applicable = Some(why),
        Outcome::Failed(error) => {
            let wait = m.backoff.mul_f64(0.5 + random_unit() / 2.0);
            m.next_attempt = now.checked_add(wait);
            m.backoff = m.backoff.saturating_mul(2).min(timing.max_backoff);
            m.last_error = Some(error.to_string());
        }
    }
}

enum Outcome {
    Answer(String, Vec<String>),
    NotApplicable(String),
    Failed(Error),
}

fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        return 0.5;
    }
    // 53 random bits in [0, 1).
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

async fn lookup_task(weak: Weak<Regional>, token: AccessToken) {
    let Some(regional) = weak.upgrade() else {
        return;
    };
    let outcome = regional.lookup(&token).await;
    regional.finish(outcome, Instant::now());
}

/// Whether requests to `host` carry `x-allowed-locations`: not regional endpoints
/// (`*.rep.googleapis.com`, `*.rep.sandbox.googleapis.com`, `*.rep.mtls.googleapis.com`), and
/// not the IAM credentials and STS hosts.
pub(crate) fn applies_to_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let regional = [
        ".rep.googleapis.com",
        ".rep.sandbox.googleapis.com",
        ".rep.mtls.googleapis.com",
    ];
    if regional.iter().any(|suffix| host.ends_with(suffix)) {
        return false;
    }
    let first = host.split('.').next().unwrap_or("");
    !matches!(first, "iamcredentials" | "sts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_name_their_pools() {
        assert_eq!(
            Subject::of_audience(
                "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/p-1/providers/x"
            ),
            Some(Subject::WorkloadPool {
                number: "123".into(),
                pool: "p-1".into()
            })
        );
        assert_eq!(
            Subject::of_audience(
                "//iam.googleapis.com/locations/global/workforcePools/wf/providers/x"
            ),
            Some(Subject::WorkforcePool("wf".into()))
        );
        for bad in [
            "//iam.googleapis.com/projects/abc/locations/global/workloadIdentityPools/p/providers/x",
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/../providers/x",
            "//example.com/locations/global/workforcePools/wf",
            "",
        ] {
            assert_eq!(Subject::of_audience(bad), None, "{bad}");
        }
    }

    #[test]
    fn hosts_that_skip_the_header() {
        for skip in [
            "storage.us-central1.rep.googleapis.com",
            "x.rep.sandbox.googleapis.com",
            "x.eu.rep.mtls.googleapis.com",
            "iamcredentials.googleapis.com",
            "sts.googleapis.com",
            "STS.mtls.googleapis.com.",
        ] {
            assert!(!applies_to_host(skip), "{skip}");
        }
        for apply in [
            "storage.googleapis.com",
            "pubsub.googleapis.com",
            "127.0.0.1",
        ] {
            assert!(applies_to_host(apply), "{apply}");
        }
    }

    #[test]
    fn certificate_credentials_look_up_on_the_mtls_host() {
        let path = "projects/-/serviceAccounts/a@p.iam.gserviceaccount.com/allowedLocations";
        let mtls = default_base(true, DEFAULT_UNIVERSE_DOMAIN)
            .unwrap()
            .join(path)
            .unwrap();
        assert_eq!(
            mtls.as_str(),
            format!("https://iamcredentials.mtls.googleapis.com/v1/{path}")
        );
        let plain = default_base(false, DEFAULT_UNIVERSE_DOMAIN).unwrap();
        assert_eq!(plain.as_str(), "https://iamcredentials.googleapis.com/v1/");
        assert!(default_base(true, "bad universe/").is_none());
    }

    #[test]
    fn service_account_emails_only() {
        assert!(is_service_account_email("a@p.iam.gserviceaccount.com"));
        assert!(is_service_account_email(
            "123-compute@developer.gserviceaccount.com"
        ));
        assert!(!is_service_account_email("user@example.com"));
        assert!(!is_service_account_email(
            "a/../b@p.iam.gserviceaccount.com"
        ));
        assert!(!is_service_account_email("@gserviceaccount.com"));
    }

    fn machine() -> Machine {
        Machine {
            answer: None,
            next_attempt: None,
            backoff: Timing::default().first_backoff,
            in_flight: false,
            not_applicable: None,
            last_error: None,
            logged: None,
            generation: 0,
        }
    }

    /// [`super::decide`] with the header value it leaves, as these tests read it.
    fn decide(m: &mut Machine, now: Instant, t: &Timing) -> (Option<String>, bool) {
        let start = super::decide(m, now, t);
        (header_value(m).map(str::to_owned), start)
    }

    #[test]
    fn the_generation_moves_whenever_the_header_value_may_have() {
        let t = Timing::default();
        let mut m = machine();
        let t0 = Instant::now();
        let h = |n: u64| t0 + Duration::from_secs(n * 60);
        let mut seen = vec![m.generation];
        let moved = |seen: &mut Vec<u64>, m: &Machine| {
            assert!(!seen.contains(&m.generation), "{seen:?}");
            seen.push(m.generation);
        };
        record(&mut m, Outcome::Answer("0xA30".into(), vec![]), t0, &t);
        moved(&mut seen, &m);
        // Asking again changes nothing while the answer lives.
        decide(&mut m, h(1), &t);
        assert_eq!(Some(&m.generation), seen.last());
        record(&mut m, failed(), h(300), &t);
        moved(&mut seen, &m);
        // The hard expiry forgets the answer: the value changed without a lookup.
        assert_eq!(decide(&mut m, h(360), &t).0, None);
        moved(&mut seen, &m);
        record(&mut m, Outcome::Answer("0xB40".into(), vec![]), h(361), &t);
        moved(&mut seen, &m);
        assert_eq!(decide(&mut m, h(362), &t).0.as_deref(), Some("0xB40"));
    }

    fn failed() -> Outcome {
        Outcome::Failed(Error::new(ErrorKind::Transport, "down"))
    }

    #[test]
    fn failures_back_off_from_15_minutes_doubling_to_6_hours_with_jitter() {
        let t = Timing::default();
        let mut m = machine();
        let t0 = Instant::now();
        let (value, start) = decide(&mut m, t0, &t);
        assert_eq!((value, start), (None, true));
        let mut expected = 15 * 60;
        for _ in 0..8 {
            m.in_flight = true;
            record(&mut m, failed(), t0, &t);
            let wait = m.next_attempt.unwrap() - t0;
            assert!(
                wait >= Duration::from_secs(expected / 2) && wait <= Duration::from_secs(expected),
                "{wait:?} for {expected}"
            );
            assert!(!decide(&mut m, t0 + wait - Duration::from_secs(1), &t).1);
            assert!(decide(&mut m, t0 + wait, &t).1);
            expected = (expected * 2).min(6 * 3600);
        }
        assert_eq!(m.backoff, Duration::from_secs(6 * 3600));
    }

    #[test]
    fn answers_live_6_hours_refresh_from_the_fifth_and_survive_failures() {
        let t = Timing::default();
        let mut m = machine();
        let t0 = Instant::now();
        record(&mut m, Outcome::Answer("0xA30".into(), vec![]), t0, &t);
        let h = |n: u64| t0 + Duration::from_secs(n * 60);
        assert_eq!(decide(&mut m, h(299), &t), (Some("0xA30".into()), false));
        assert_eq!(decide(&mut m, h(300), &t), (Some("0xA30".into()), true));
        // A failed refresh keeps the answer until its hard expiry, and backs off.
        record(&mut m, failed(), h(300), &t);
        assert_eq!(decide(&mut m, h(301), &t), (Some("0xA30".into()), false));
        assert_eq!(decide(&mut m, h(359), &t).0, Some("0xA30".into()));
        assert_eq!(decide(&mut m, h(360), &t), (None, true));
        // 0x0: known, and no header.
        record(&mut m, Outcome::Answer("0x0".into(), vec![]), h(360), &t);
        assert_eq!(decide(&mut m, h(361), &t), (None, false));
        // Nothing applies: never a lookup.
        record(&mut m, Outcome::NotApplicable("x".into()), h(400), &t);
        assert_eq!(decide(&mut m, h(2000), &t), (None, false));
    }

    #[test]
    fn opt_in_values() {
        let env = |k: &str, v: &str| EnvSource::from_vars([(k.to_owned(), v.to_owned())]);
        let o = Options::default();
        assert!(!o.is_enabled(&EnvSource::from_vars::<String, String>([])));
        assert!(o.is_enabled(&env(TRUST_BOUNDARY_ENV, "true")));
        assert!(o.is_enabled(&env(TRUST_BOUNDARY_ENV, "1")));
        assert!(o.is_enabled(&env(REGIONAL_ACCESS_BOUNDARY_ENV, "TRUE")));
        // Python's variable, read as google-auth reads it.
        for yes in ["yes", " On ", "t", "Y"] {
            assert!(
                o.is_enabled(&env(REGIONAL_ACCESS_BOUNDARY_ENV, yes)),
                "{yes}"
            );
        }
        assert!(!o.is_enabled(&env(REGIONAL_ACCESS_BOUNDARY_ENV, "enabled")));
        assert!(!o.is_enabled(&env(TRUST_BOUNDARY_ENV, "yes")));
        assert!(!o.is_enabled(&env(TRUST_BOUNDARY_ENV, "0")));
        let forced = Options {
            enabled: Some(false),
            ..Options::default()
        };
        assert!(!forced.is_enabled(&env(TRUST_BOUNDARY_ENV, "1")));
    }
}
