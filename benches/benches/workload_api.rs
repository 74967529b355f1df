//! The SPIFFE Workload API agent, with its baseline, in one run.
//!
//! `cargo bench -p workload-auth-benches --bench workload_api`
//!
//! - `workload_api_first_message/agent: connect + FetchX509SVID`: what a SPIFFE client pays to get
//!   its SVID from the agent: a new Unix-socket connection, the HTTP/2 handshake, the call, and the
//!   first message decoded (the client's own parsing of the DER is not included).
//! - `workload_api_first_message/agent: FetchX509SVID on an open channel`: the same on a channel
//!   already connected.
//! - `workload_api_first_message/baseline: load the directory in process`: reading and parsing
//!   the same credentials directory in the caller's process (`CredentialsDir::load_blocking`:
//!   five files, PEM, certificates, the key check, the bundle map).
//!
//! Rotation latency (node agent's symlink swap → new SVID at a streaming client) is measured after
//! the group, for two poll intervals, and printed: it is a latency distribution, not a throughput.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use workload_auth::workload_api::proto::X509svidRequest;
use workload_auth::workload_api::{Endpoint, WorkloadApiServer, connect_client, request};
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};
use workload_auth_mtls::{CredentialsDir, WatchOptions};

const ID: &str = "spiffe://example.org/ns/prod/sa/api";

struct Setup {
    _tmp: tempfile::TempDir,
    ca: TrustDomainCa,
    partner: TrustDomainCa,
    writer: CredentialsDirWriter,
    socket: std::path::PathBuf,
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let ca = TrustDomainCa::new("example.org").unwrap();
        let partner = TrustDomainCa::new("partner.example").unwrap();
        let writer = CredentialsDirWriter::new(tmp.path().join("creds"));
        let socket = tmp.path().join("agent.sock");
        let setup = Self {
            _tmp: tmp,
            ca,
            partner,
            writer,
            socket,
        };
        setup.rotate();
        setup
    }

    fn rotate(&self) -> Vec<u8> {
        let svid = self.ca.issue(ID).unwrap();
        self.writer
            .write(&CredentialsContents::new(&svid, &self.ca, [&self.partner]))
            .unwrap();
        svid.leaf_der().to_vec()
    }

    fn start(
        &self,
        rt: &tokio::runtime::Runtime,
        poll: Duration,
    ) -> tokio::sync::oneshot::Sender<()> {
        let _ = std::fs::remove_file(&self.socket);
        let server = rt
            .block_on(
                WorkloadApiServer::builder(Arc::new(CredentialsDir::new(self.writer.link_path())))
                    .socket(&self.socket)
                    .watch_options(WatchOptions {
                        poll_interval: poll,
                        ..WatchOptions::default()
                    })
                    .bind(),
            )
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(server.serve_until(async {
            let _ = rx.await;
        }));
        tx
    }
}

fn first_message(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let setup = Setup::new();
    let stop = setup.start(&rt, Duration::from_secs(1));
    let endpoint = Endpoint::unix(&setup.socket);
    let open = rt.block_on(connect_client(&endpoint)).unwrap();

    let mut group = c.benchmark_group("workload_api_first_message");
    group.bench_function("agent: connect + FetchX509SVID", |b| {
        b.to_async(&rt).iter(|| async {
            let mut client = connect_client(&endpoint).await.unwrap();
            let mut stream = client
                .fetch_x509svid(request(X509svidRequest {}))
                .await
                .unwrap()
                .into_inner();
            std::hint::black_box(stream.message().await.unwrap().unwrap());
        });
    });
    group.bench_function("agent: FetchX509SVID on an open channel", |b| {
        b.to_async(&rt).iter(|| {
            let mut client = open.clone();
            async move {
                let mut stream = client
                    .fetch_x509svid(request(X509svidRequest {}))
                    .await
                    .unwrap()
                    .into_inner();
                std::hint::black_box(stream.message().await.unwrap().unwrap());
            }
        });
    });
    let dir = CredentialsDir::new(setup.writer.link_path());
    group.bench_function("baseline: load the directory in process", |b| {
        b.iter(|| std::hint::black_box(dir.load_blocking().unwrap()));
    });
    group.finish();
    let _ = stop.send(());

    rotation_latency(&rt, &setup);
}

/// Swap → new message at a client streaming FetchX509SVID, for two poll intervals.
fn rotation_latency(rt: &tokio::runtime::Runtime, setup: &Setup) {
    let mut out = std::io::stderr().lock();
    let _ = writeln!(
        out,
        "\nrotation latency (symlink swap -> new SVID at a streaming client), ms:"
    );
    for poll in [Duration::from_millis(100), Duration::from_secs(1)] {
        let stop = setup.start(rt, poll);
        let rounds = if poll < Duration::from_millis(500) {
            20
        } else {
            8
        };
        let mut samples: Vec<f64> = rt.block_on(async {
            let mut client = connect_client(&Endpoint::unix(&setup.socket))
                .await
                .unwrap();
            let mut stream = client
                .fetch_x509svid(request(X509svidRequest {}))
                .await
                .unwrap()
                .into_inner();
            stream.message().await.unwrap().unwrap();
            let mut samples = Vec::new();
            for _ in 0..rounds {
                let swapped = Instant::now();
                let leaf = setup.rotate();
                loop {
                    let m = tokio::time::timeout(Duration::from_secs(10), stream.message())
                        .await
                        .unwrap()
                        .unwrap()
                        .unwrap();
                    if m.svids[0].x509_svid.starts_with(&leaf) {
                        break;
                    }
                }
                samples.push(swapped.elapsed().as_secs_f64() * 1e3);
                // Land the next swap at a random point of the poll cycle.
                tokio::time::sleep(poll.mul_f64(fastrand_fraction())).await;
            }
            samples
        });
        let _ = stop.send(());
        samples.sort_by(f64::total_cmp);
        let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        let _ = writeln!(
            out,
            "  poll {:>5} ms: median {:>6.1}  p90 {:>6.1}  max {:>6.1}  (n={}, target <= poll + 50)",
            poll.as_millis(),
            pick(0.5),
            pick(0.9),
            pick(1.0),
            samples.len()
        );
    }
}

fn fastrand_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

criterion_group!(benches, first_message);
criterion_main!(benches);
