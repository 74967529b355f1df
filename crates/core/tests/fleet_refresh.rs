//! Fleet-scale refresh (issue 8, section 4): 10,000 processes started within one minute, six hours
//! of simulated time, each running the cache's own `RefreshSchedule` against one upstream. The full
//! table: `cargo run --release -p workload-auth-core --example fleet_refresh`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[allow(dead_code, unreachable_pub)]
mod fleet;

use fleet::{Scenario, Upstream, configs, run};
use std::time::Duration;
use workload_auth_core::CacheConfig;

#[test]
fn a_shared_endpoint_sees_at_most_twice_its_mean_load_in_steady_state() {
    let spread = run(&Scenario::fleet(
        "default",
        Upstream::Shared,
        CacheConfig::default(),
    ));
    let before = run(&Scenario::fleet(
        "late only",
        Upstream::Shared,
        configs::late_only(),
    ));
    let off = run(&Scenario::fleet(
        "jitter off",
        Upstream::Shared,
        configs::jitter_off(CacheConfig::default()),
    ));
    println!(
        "{}",
        fleet::table(&[spread.clone(), before.clone(), off.clone()])
    );
    // The target, over ten-second windows (a single second at ~3 requests/s is Poisson noise).
    assert!(spread.steady.ratio_10s() <= 2.0, "{:?}", spread.steady);
    // The same fleet without the spread stays synchronized: the simulation can tell.
    assert!(before.steady.ratio_10s() > 10.0, "{:?}", before.steady);
    assert!(off.steady.ratio_10s() > 10.0, "{:?}", off.steady);
    // The price: about one extra fetch per process over six hours, not a higher refresh rate.
    let extra = spread.fetches_per_process - before.fetches_per_process;
    assert!(
        (0.0..=1.5).contains(&extra),
        "{extra} extra fetches per process"
    );
}

#[test]
fn recovery_from_a_metadata_server_outage_is_spread_over_thirty_seconds() {
    let outage = Duration::from_secs(3300);
    let on = run(&Scenario::fleet(
        "metadata_server()",
        Upstream::MetadataServer,
        CacheConfig::metadata_server(),
    )
    .with_outage(outage));
    let off = run(&Scenario::fleet(
        "jitter off",
        Upstream::MetadataServer,
        configs::jitter_off(CacheConfig::metadata_server()),
    )
    .with_outage(outage));
    println!("{}", fleet::table(&[on.clone(), off.clone()]));
    let r = on.recovery.unwrap();
    // The whole fleet was refreshing when the server went down, and had no token when it came back.
    assert_eq!(r.affected, 10_000);
    assert_eq!(r.without_token, 10_000);
    assert!(r.spread() >= 30.0, "{r:?}");
    // ... and every process is back within the backoff cap (60 s).
    assert!(r.last <= 60.0, "{r:?}");
    assert!(f64::from(r.peak_1s) <= 10_000.0 / 30.0, "{r:?}");
    // Without jitter the fleet comes back as one herd.
    let herd = off.recovery.unwrap();
    assert!(herd.spread() < 1.0, "{herd:?}");
    assert!(herd.peak_1s > 9_000, "{herd:?}");
}

#[test]
fn recovery_from_a_shared_endpoint_outage_is_spread_and_the_fleet_stays_spread() {
    let on = run(
        &Scenario::fleet("default", Upstream::Shared, CacheConfig::default())
            .with_outage(Duration::from_secs(6600)),
    );
    println!("{}", fleet::table(std::slice::from_ref(&on)));
    let r = on.recovery.unwrap();
    assert!(r.affected > 500, "{r:?}");
    assert!(r.spread() >= 30.0, "{r:?}");
    assert!(r.last <= 60.0, "{r:?}");
    // The processes that came back together are spread again by their phase.
    assert!(on.steady.ratio_10s() <= 2.0, "{:?}", on.steady);
}

#[test]
fn the_simulation_is_deterministic() {
    let a = run(&Scenario::fleet(
        "a",
        Upstream::Shared,
        CacheConfig::default(),
    ));
    let b = run(&Scenario::fleet(
        "a",
        Upstream::Shared,
        CacheConfig::default(),
    ));
    assert_eq!(a.per_second, b.per_second);
}
