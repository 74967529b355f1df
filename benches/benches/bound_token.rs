//! A certificate-bound token from the cache (Agent Identity): `bound_access_token()` reads and
//! checks the certificate file on every call (so a rotation is seen at once) before the cache
//! hit. Baseline in the same run: `access_token()` from the cache of the same kind of credentials
//! without a binding, and reading the certificate file alone.
//!
//! `cargo bench -p workload-auth-benches --bench bound_token`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use workload_auth_adc::{Builder, EnvSource};
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::{Emulator, EmulatorConfig};

const TD: &str = "agents.global.org-1.system.id.goog";

fn bound_token(c: &mut Criterion) {
    let emulator = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let svid = TrustDomainCa::new(TD)
        .unwrap()
        .issue(&format!("spiffe://{TD}/ns/bench/sa/agent"))
        .unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, svid.chain_pem()).unwrap();
    std::fs::write(&key, svid.private_key_pem().expose()).unwrap();
    let config = dir.path().join("certificate_config.json");
    std::fs::write(
        &config,
        serde_json::json!({"cert_configs": {"workload": {"cert_path": cert, "key_path": key}}})
            .to_string(),
    )
    .unwrap();
    let build = |vars: Vec<(&str, String)>| {
        Builder::new()
            .with_env(EnvSource::from_vars(vars).with_home(dir.path()))
            .with_metadata_host(emulator.host())
            .build()
            .unwrap()
    };
    let bound = build(vec![(
        "GOOGLE_API_CERTIFICATE_CONFIG",
        config.display().to_string(),
    )]);
    let plain = build(vec![]);
    assert!(bound.is_bound() && !plain.is_bound());
    bound.bound_access_token_blocking().unwrap();
    plain.access_token_blocking().unwrap();

    let mut group = c.benchmark_group("bound_token");
    group.bench_function("access_token_unbound_baseline", |b| {
        b.iter(|| black_box(plain.access_token_blocking().unwrap()));
    });
    group.bench_function("read_certificate_file_baseline", |b| {
        b.iter(|| black_box(std::fs::read(black_box(&cert)).unwrap()));
    });
    group.bench_function("bound_access_token", |b| {
        b.iter(|| black_box(bound.bound_access_token_blocking().unwrap()));
    });
    group.finish();
}

criterion_group!(benches, bound_token);
criterion_main!(benches);
