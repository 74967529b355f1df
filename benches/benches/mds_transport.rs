//! One metadata-server request (`project/project-id`) on a reused connection, over mutual TLS
//! (`GCE_METADATA_MTLS_MODE=strict`) against the emulator on loopback. Baseline in the same run:
//! the same request over plain HTTP to the same emulator. Also: the first request of a fresh
//! strict client (a full TLS 1.3 handshake with a client certificate) against a fresh plain one.
//!
//! `cargo bench -p workload-auth-benches --bench mds_transport`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use workload_auth_core::RetryPolicy;
use workload_auth_emulator::{Emulator, EmulatorConfig};
use workload_auth_metadata::{MdsMtlsMode, MetadataClient};

fn client(emu: &Emulator, mode: MdsMtlsMode, dir: &Path) -> MetadataClient {
    MetadataClient::builder()
        .host(emu.host())
        .mtls_mode(mode)
        .mtls_dir(dir)
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap()
}

fn mds_transport(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let emu = runtime
        .block_on(Emulator::start(EmulatorConfig::default()))
        .unwrap();
    emu.enable_mds_mtls(dir.path()).unwrap();
    let http = client(&emu, MdsMtlsMode::None, dir.path());
    let mtls = client(&emu, MdsMtlsMode::Strict, dir.path());
    runtime.block_on(async {
        assert!(mtls.mds_transport().await.is_mtls());
        assert!(!http.mds_transport().await.is_mtls());
    });

    let mut group = c.benchmark_group("mds_request_reused_connection");
    group.bench_function("plain_http (baseline)", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(http.project_id().await.unwrap()) });
    });
    group.bench_function("mtls_strict", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(mtls.project_id().await.unwrap()) });
    });
    group.finish();

    let mut group = c.benchmark_group("mds_first_request_new_client");
    group.bench_function("plain_http (baseline)", |b| {
        b.to_async(&runtime).iter(|| async {
            let fresh = client(&emu, MdsMtlsMode::None, dir.path());
            black_box(fresh.project_id().await.unwrap())
        });
    });
    group.bench_function("mtls_strict", |b| {
        b.to_async(&runtime).iter(|| async {
            let fresh = client(&emu, MdsMtlsMode::Strict, dir.path());
            black_box(fresh.project_id().await.unwrap())
        });
    });
    group.finish();
    assert!(emu.plain_http_requests() > 0 && emu.mds_mtls_requests() > 0);
}

criterion_group!(benches, mds_transport);
criterion_main!(benches);
