//! A deterministic fleet simulation of token refresh: many processes, each with the cache's own
//! [`RefreshSchedule`] (the code `TokenCache` runs, not a model of it), against one upstream token
//! endpoint, on a simulated clock. No network, no real time: six simulated hours of 10,000 processes
//! take well under a second.
//!
//! Each process is busy (a call arrives at every instant), so it starts a fetch exactly when its
//! schedule says a caller would ([`RefreshSchedule::next_fetch_at`]); each attempt of the fetch is
//! one request to the upstream, answered at once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use workload_auth_core::cache::{Attempt, Step};
use workload_auth_core::{CacheConfig, RefreshRng, RefreshSchedule};

const SEC: u64 = 1_000_000_000;
/// Simulated monotonic time starts here, so that 0 never means "now".
const ORIGIN: u64 = SEC;

/// Who answers the fleet's token requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// STS, OAuth, IAM credentials: every request mints a fresh one-hour token.
    Shared,
    /// The metadata server: one cached token for the whole fleet, replaced by a fresh one-hour token
    /// only when less than 5 minutes of it remain.
    MetadataServer,
}

impl Upstream {
    pub fn label(self) -> &'static str {
        match self {
            Self::Shared => "STS",
            Self::MetadataServer => "MDS",
        }
    }
}

/// One simulation run.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub upstream: Upstream,
    pub config: CacheConfig,
    pub processes: u32,
    /// Processes start uniformly within this window.
    pub start_window: Duration,
    pub duration: Duration,
    pub lifetime: Duration,
    /// The upstream answers every request with a transient error (503) during `[start, start + len)`.
    pub outage: Option<(Duration, Duration)>,
    pub seed: u64,
}

impl Scenario {
    /// 10,000 processes started within one minute, six hours, one-hour tokens.
    pub fn fleet(name: &'static str, upstream: Upstream, config: CacheConfig) -> Self {
        Self {
            name,
            upstream,
            config,
            processes: 10_000,
            start_window: Duration::from_secs(60),
            duration: Duration::from_secs(6 * 3600),
            lifetime: Duration::from_secs(3600),
            outage: None,
            seed: 0x5eed_f1ee7,
        }
    }

    /// The same with a five-minute outage starting at `start`.
    pub fn with_outage(mut self, start: Duration) -> Self {
        self.outage = Some((start, Duration::from_secs(300)));
        self
    }
}

/// What the upstream saw.
#[derive(Clone, Debug)]
pub struct Report {
    pub name: &'static str,
    pub upstream: Upstream,
    /// Requests per simulated second.
    pub per_second: Vec<u32>,
    pub requests: u64,
    pub fetches_per_process: f64,
    /// Requests per second over the steady window (the last five hours without an outage; after an
    /// outage, from two minutes after it ended for four hours).
    pub steady: Load,
    pub recovery: Option<Recovery>,
}

/// Mean and peaks of the request rate over a window.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub mean: f64,
    /// The busiest single second.
    pub peak_1s: f64,
    /// The busiest ten seconds, per second.
    pub peak_10s: f64,
}

impl Load {
    pub fn ratio_1s(&self) -> f64 {
        self.peak_1s / self.mean
    }
    pub fn ratio_10s(&self) -> f64 {
        self.peak_10s / self.mean
    }
}

/// How the processes that saw the outage came back after it ended.
#[derive(Clone, Copy, Debug)]
pub struct Recovery {
    /// Processes with at least one failed request during the outage.
    pub affected: u32,
    /// Of those, processes that had no usable token when the outage ended.
    pub without_token: u32,
    /// Requests per second the down upstream received during the outage.
    pub outage_rate: f64,
    /// Seconds after the outage ended at which the 5th, 50th and 95th percentile, and the last, of
    /// the affected processes got their first token.
    pub p5: f64,
    pub p50: f64,
    pub p95: f64,
    pub last: f64,
    /// The busiest second in the two minutes after the outage ended.
    pub peak_1s: u32,
}

impl Recovery {
    /// The time over which the middle 90% of the recovery load arrived.
    pub fn spread(&self) -> f64 {
        self.p95 - self.p5
    }
}

struct Process {
    schedule: RefreshSchedule,
    rng: RefreshRng,
    attempt: u32,
    fetches: u32,
    failed_in_outage: bool,
    recovered_at: Option<u64>,
}

pub fn run(scenario: &Scenario) -> Report {
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let end = ORIGIN + nanos(scenario.duration);
    let lifetime = nanos(scenario.lifetime);
    let outage = scenario
        .outage
        .map(|(start, len)| (ORIGIN + nanos(start), ORIGIN + nanos(start + len)));
    let mut starts = RefreshRng::with_seed(scenario.seed);
    let mut queue = BinaryHeap::new();
    let mut fleet: Vec<Process> = (0..scenario.processes)
        .map(|i| {
            let mut rng = RefreshRng::with_seed(
                scenario.seed ^ u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            let schedule = RefreshSchedule::new(scenario.config.clone(), Duration::ZERO, &mut rng);
            queue.push(Reverse((
                ORIGIN + starts.up_to(nanos(scenario.start_window)),
                i,
            )));
            Process {
                schedule,
                rng,
                attempt: 0,
                fetches: 0,
                failed_in_outage: false,
                recovered_at: None,
            }
        })
        .collect();
    let seconds = usize::try_from(scenario.duration.as_secs()).unwrap_or(0) + 1;
    let mut per_second = vec![0u32; seconds];
    let mut mds_expiry = 0u64;
    let mut without_token = 0u32;
    let mut counted_without_token = false;

    while let Some(Reverse((now, i))) = queue.pop() {
        if now >= end {
            break;
        }
        if let Some((_, outage_end)) = outage
            && now >= outage_end
            && !counted_without_token
        {
            counted_without_token = true;
            without_token = fleet
                .iter()
                .filter(|p| p.failed_in_outage && !p.schedule.has_usable(outage_end))
                .count() as u32;
        }
        let process = &mut fleet[i as usize];
        per_second[((now - ORIGIN) / SEC) as usize] += 1;
        process.fetches += 1;
        let down = outage.is_some_and(|(start, stop)| now >= start && now < stop);
        let answer = if down {
            process.failed_in_outage = true;
            Attempt::Failed { transient: true }
        } else {
            if process.failed_in_outage && process.recovered_at.is_none() {
                process.recovered_at = Some(now);
            }
            let expiry = match scenario.upstream {
                Upstream::Shared => now + lifetime,
                Upstream::MetadataServer => {
                    if mds_expiry < now + 300 * SEC {
                        mds_expiry = now + lifetime;
                    }
                    mds_expiry
                }
            };
            Attempt::Token {
                remaining: Duration::from_nanos(expiry - now),
            }
        };
        let step = process
            .schedule
            .after_attempt(now, process.attempt, answer, &mut process.rng);
        let next = match step {
            Step::Retry(delay) => {
                process.attempt += 1;
                now.saturating_add(nanos(delay))
            }
            Step::Done => {
                process.attempt = 0;
                process.schedule.next_fetch_at()
            }
        };
        // A schedule never asks for a fetch in the past; the simulation must not loop if one did.
        assert!(
            next > now,
            "{}: process {i} would fetch again at once",
            scenario.name
        );
        queue.push(Reverse((next, i)));
    }

    let requests: u64 = per_second.iter().map(|&n| u64::from(n)).sum();
    let fetches_per_process =
        fleet.iter().map(|p| f64::from(p.fetches)).sum::<f64>() / f64::from(scenario.processes);
    let (steady_from, steady_to) = match outage {
        None => (3600, seconds - 1),
        Some((_, stop)) => {
            let from = ((stop - ORIGIN) / SEC) as usize + 120;
            (from, (from + 4 * 3600).min(seconds - 1))
        }
    };
    let steady = load(&per_second[steady_from..steady_to]);
    let recovery = outage.map(|(start, stop)| {
        let mut delays: Vec<f64> = fleet
            .iter()
            .filter(|p| p.failed_in_outage)
            .filter_map(|p| p.recovered_at)
            .map(|at| (at - stop) as f64 / SEC as f64)
            .collect();
        delays.sort_by(f64::total_cmp);
        let pct = |q: f64| {
            let k = ((delays.len() as f64 - 1.0) * q).round() as usize;
            delays.get(k).copied().unwrap_or(f64::NAN)
        };
        let (s, e) = (
            ((start - ORIGIN) / SEC) as usize,
            ((stop - ORIGIN) / SEC) as usize,
        );
        let outage_requests: u64 = per_second[s..e].iter().map(|&n| u64::from(n)).sum();
        Recovery {
            affected: fleet.iter().filter(|p| p.failed_in_outage).count() as u32,
            without_token,
            outage_rate: outage_requests as f64 / (e - s) as f64,
            p5: pct(0.05),
            p50: pct(0.5),
            p95: pct(0.95),
            last: delays.last().copied().unwrap_or(f64::NAN),
            peak_1s: per_second[e..(e + 120).min(seconds)]
                .iter()
                .copied()
                .max()
                .unwrap_or(0),
        }
    });
    Report {
        name: scenario.name,
        upstream: scenario.upstream,
        per_second,
        requests,
        fetches_per_process,
        steady,
        recovery,
    }
}

fn load(window: &[u32]) -> Load {
    let total: u64 = window.iter().map(|&n| u64::from(n)).sum();
    let mean = total as f64 / window.len() as f64;
    let peak_1s = f64::from(window.iter().copied().max().unwrap_or(0));
    let peak_10s = window
        .windows(10)
        .map(|w| w.iter().map(|&n| u64::from(n)).sum::<u64>())
        .max()
        .unwrap_or(0) as f64
        / 10.0;
    Load {
        mean,
        peak_1s,
        peak_10s,
    }
}

/// The configurations the report compares.
pub mod configs {
    use super::*;

    /// Jitter off everywhere: late refresh at exactly 240 s before expiry, no spread, un-jittered
    /// failure backoff.
    pub fn jitter_off(base: CacheConfig) -> CacheConfig {
        let mut config = CacheConfig {
            refresh_jitter: Duration::ZERO,
            refresh_spread: 0.0,
            ..base
        };
        config.failure_backoff.jitter = 0.0;
        config
    }

    /// The policy before the fleet work: late refresh with 15 s of jitter, no spread.
    pub fn late_only() -> CacheConfig {
        CacheConfig {
            refresh_spread: 0.0,
            ..CacheConfig::default()
        }
    }
}

/// Every row of the table: steady state, then recovery from a five-minute outage.
pub fn scenarios() -> Vec<Scenario> {
    use configs::*;
    // The un-spread fleet refreshes together at about 3360 s and 6720 s: the outage covers the
    // second of those.
    let sts_outage = Duration::from_secs(6600);
    // The metadata server's token is minted at the fleet's first request; the outage begins just
    // before the whole fleet's refresh window (240-255 s before that token's expiry) and ends after
    // every token has expired, the worst case.
    let mds_outage = Duration::from_secs(3600 - 300);
    vec![
        Scenario::fleet(
            "default (spread + jitter)",
            Upstream::Shared,
            CacheConfig::default(),
        ),
        Scenario::fleet("late + 15 s jitter (before)", Upstream::Shared, late_only()),
        Scenario::fleet(
            "jitter off",
            Upstream::Shared,
            jitter_off(CacheConfig::default()),
        ),
        Scenario::fleet(
            "metadata_server()",
            Upstream::MetadataServer,
            CacheConfig::metadata_server(),
        ),
        Scenario::fleet(
            "jitter off",
            Upstream::MetadataServer,
            jitter_off(CacheConfig::metadata_server()),
        ),
        Scenario::fleet(
            "metadata_server(), outage",
            Upstream::MetadataServer,
            CacheConfig::metadata_server(),
        )
        .with_outage(mds_outage),
        Scenario::fleet(
            "jitter off, outage",
            Upstream::MetadataServer,
            jitter_off(CacheConfig::metadata_server()),
        )
        .with_outage(mds_outage),
        Scenario::fleet("default, outage", Upstream::Shared, CacheConfig::default())
            .with_outage(sts_outage),
        Scenario::fleet(
            "jitter off, outage",
            Upstream::Shared,
            jitter_off(CacheConfig::default()),
        )
        .with_outage(sts_outage),
    ]
}

/// The report as a Markdown table.
pub fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    out.push_str("| upstream | policy | mean req/s | peak 1 s | peak/mean 1 s | peak 10 s | peak/mean 10 s | fetches/process | outage: affected (no token) | req/s while down | recovery p5 / p50 / p95 / last (s) | spread p5-p95 (s) | peak 1 s after |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in reports {
        let s = r.steady;
        let rec = match r.recovery {
            Some(v) => format!(
                "{} ({}) | {:.0} | {:.1} / {:.1} / {:.1} / {:.1} | {:.1} | {}",
                v.affected,
                v.without_token,
                v.outage_rate,
                v.p5,
                v.p50,
                v.p95,
                v.last,
                v.spread(),
                v.peak_1s
            ),
            None => "- | - | - | - | -".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.0} | {:.1}x | {:.1} | {:.2}x | {:.2} | {} |\n",
            r.upstream.label(),
            r.name,
            s.mean,
            s.peak_1s,
            s.ratio_1s(),
            s.peak_10s,
            s.ratio_10s(),
            r.fetches_per_process,
            rec
        ));
    }
    out
}
