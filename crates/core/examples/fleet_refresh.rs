//! Prints the fleet-scale refresh table: what one shared token endpoint (STS) and one metadata
//! server see from 10,000 processes started within a minute, over six simulated hours, with the
//! cache's real refresh schedule — steady state, and recovery from a five-minute outage.
//!
//! ```text
//! cargo run --release -p workload-auth-core --example fleet_refresh
//! ```
#![allow(clippy::print_stdout, clippy::unwrap_used)]

#[path = "../tests/fleet/mod.rs"]
#[allow(dead_code, unreachable_pub)]
mod fleet;

fn main() {
    let started = std::time::Instant::now();
    let reports: Vec<_> = fleet::scenarios().iter().map(fleet::run).collect();
    println!("{}", fleet::table(&reports));
    let requests: u64 = reports.iter().map(|r| r.requests).sum();
    println!(
        "{} scenarios, {requests} simulated requests in {:.2?}",
        reports.len(),
        started.elapsed()
    );
}
