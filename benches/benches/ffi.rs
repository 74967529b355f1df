//! A cached access token through the Rust facade and through the C ABI, in one run.
//!
//! `cargo bench -p workload-auth-benches --bench ffi`
//!
//! - `rust facade`: `Credentials::access_token_cached_blocking()` (the cached token is lent, read
//!   and released, as a Rust caller attaching it to a request does).
//! - `C ABI`: `wa_credentials_access_token(c, NULL, &token, &expires)` then `wa_string_free(token)`,
//!   the entry points of `bindings/c` called from Rust exactly as a C program calls them (the
//!   token crosses the boundary as a NUL-terminated copy, which the caller frees; the free zeroes
//!   it). Target: no more than the Rust call + 50 ns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::c_char;
use std::hint::black_box;
use std::io::Write as _;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use workload_auth::{CredentialsBuilder, EnvSource};
use workload_auth_c::{wa_credentials, wa_credentials_access_token, wa_result, wa_string_free};
use workload_auth_emulator::{Emulator, EmulatorConfig};

/// A paired comparison printed after the criterion figures, the source of BENCHMARKS.md: in each
/// round both variants run a batch back to back (the first one alternating), and each round gives
/// one difference; the median and quartiles over the rounds are reported, so changes in the
/// machine's speed slower than a round (other builds on a shared machine) cancel out.
fn paired_report(rust: &dyn Fn(), c: &dyn Fn()) {
    let quick = std::env::args().any(|a| a == "--test" || a == "--list");
    let (rounds, batch) = if quick { (2, 10) } else { (400, 20_000) };
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..batch {
            f();
        }
        start.elapsed().as_secs_f64() * 1e9 / f64::from(batch)
    };
    let (mut r, mut cs, mut diffs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (a, b) = if round % 2 == 0 {
            let a = time(rust);
            (a, time(c))
        } else {
            let b = time(c);
            (time(rust), b)
        };
        r.push(a);
        cs.push(b);
        diffs.push(b - a);
    }
    let quartiles = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
        (at(0.25), at(0.5), at(0.75))
    };
    let mut out = std::io::stderr().lock();
    let _ = writeln!(
        out,
        "\npaired comparison, {rounds} rounds of {batch} (ns per call; median [p25, p75]):"
    );
    for (label, xs) in [
        ("rust facade", r),
        ("C ABI", cs),
        ("C ABI - rust facade", diffs),
    ] {
        let (lo, mid, hi) = quartiles(xs);
        let _ = writeln!(out, "  {label:<22} {mid:>7.1} [{lo:.1}, {hi:.1}]");
    }
}

fn cached_token(c: &mut Criterion) {
    let emu = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    let home = std::env::temp_dir().join(format!("wa-bench-ffi-{}", std::process::id()));
    let credentials = CredentialsBuilder::new()
        .with_env(EnvSource::from_vars([("GCE_METADATA_HOST", emu.host())]).with_home(&home))
        .with_metadata_host(emu.host())
        .build()
        .unwrap();
    credentials.access_token_blocking().unwrap();
    let handle = wa_credentials::new(credentials.clone());
    let c_handle: *const wa_credentials = &handle;

    let rust = || {
        let token = credentials.access_token_cached_blocking().unwrap();
        black_box(token.secret().len());
    };
    let c_abi = || {
        let mut token: *mut c_char = std::ptr::null_mut();
        let mut expires = 0i64;
        // SAFETY: a live handle and writable out-parameters; the token is freed once.
        let result = unsafe {
            wa_credentials_access_token(c_handle, std::ptr::null(), &mut token, &mut expires)
        };
        assert_eq!(result, wa_result::WA_OK);
        black_box((token, expires));
        // SAFETY: `token` came from the call above and is freed once.
        unsafe { wa_string_free(token) };
    };

    let mut group = c.benchmark_group("cached access token");
    group.bench_function("rust facade: access_token_cached_blocking", |b| {
        b.iter(rust)
    });
    group.bench_function("C ABI: wa_credentials_access_token + wa_string_free", |b| {
        b.iter(c_abi)
    });
    group.finish();
    paired_report(&rust, &c_abi);
    drop(handle);
    let _ = std::fs::remove_dir_all(&home);
}

criterion_group!(benches, cached_token);
criterion_main!(benches);
