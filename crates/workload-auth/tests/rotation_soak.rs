//! Rotation soak (issue 8, section 3): the emulator's node-agent writer swaps the credentials
//! directory every 200 ms while four clients make mTLS handshakes to a server; the server and every
//! client are `WorkloadIdentity`s watching that same directory.
//!
//! Asserted: no handshake fails; no torn key/certificate pair is ever loaded or presented (a
//! handshake proves the presented certificate's key, every presented certificate is one the CA
//! issued, and direct reloads of the directory during the rotation never fail); a handshake that
//! starts after a side has swapped in a generation presents that generation or a newer one; and a
//! trust-bundle change that drops a peer's trust domain makes that peer's next handshakes fail,
//! naming the reason.
//!
//! 1,000 handshakes by default (a few seconds); `WORKLOAD_AUTH_SOAK=long` makes 10,000. Each run
//! also stops after a time limit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workload_auth::WorkloadIdentity;
use workload_auth::mtls::{Authorizer, CredentialsDir, SpiffeId, VerificationError, WatchOptions};
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};

const WORKLOAD: &str = "spiffe://prod.example/ns/backend/sa/api";
const PARTNER: &str = "spiffe://partner.example/ns/peer/sa/client";
const CLIENTS: usize = 4;
const ROTATE_EVERY: Duration = Duration::from_millis(200);
/// Marks a leaf the CA of the rotation did not issue.
const UNKNOWN: u64 = u64::MAX;

fn long() -> bool {
    std::env::var("WORKLOAD_AUTH_SOAK").is_ok_and(|v| v == "long")
}

fn watch() -> WatchOptions {
    WatchOptions {
        poll_interval: Duration::from_millis(20),
        max_reload_interval: Duration::from_secs(600),
        retry_backoff: Duration::from_millis(20),
    }
}

/// Every generation the writer produced: leaf DER to (generation, when it was made).
#[derive(Default)]
struct Issued(Mutex<HashMap<Vec<u8>, (u64, Instant)>>);

impl Issued {
    fn generation(&self, leaf: &[u8]) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(leaf)
            .map_or(UNKNOWN, |(g, _)| *g)
    }

    fn made_at(&self, generation: u64) -> Option<Instant> {
        self.0
            .lock()
            .unwrap()
            .values()
            .find(|(g, _)| *g == generation)
            .map(|(_, t)| *t)
    }
}

fn leaf_of(identity: &WorkloadIdentity) -> Vec<u8> {
    identity.store().with_current(|m| m.svid().leaf().to_vec())
}

#[derive(Default, Debug)]
struct ClientTally {
    handshakes: u64,
    failed: Vec<String>,
    /// Server certificates the CA never issued (a torn or foreign pair).
    unknown_server_leaf: u64,
    /// Client certificates the server saw that the CA never issued.
    unknown_client_leaf: u64,
    /// Handshakes that presented an older generation than the presenting side had swapped in
    /// when the handshake started.
    stale_server: u64,
    stale_client: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_soak() {
    let total = if long() { 10_000 } else { 1_000 };
    let time_limit = if long() {
        Duration::from_secs(600)
    } else {
        Duration::from_secs(60)
    };
    let tmp = tempfile::tempdir().unwrap();
    let prod = Arc::new(TrustDomainCa::new("prod.example").unwrap());
    let partner = Arc::new(TrustDomainCa::new("partner.example").unwrap());
    let issued = Arc::new(Issued::default());
    let trust_partner = Arc::new(AtomicBool::new(true));
    let generation = Arc::new(AtomicU64::new(0));

    let make = {
        let (prod, partner, issued, trust_partner, generation) = (
            Arc::clone(&prod),
            Arc::clone(&partner),
            Arc::clone(&issued),
            Arc::clone(&trust_partner),
            Arc::clone(&generation),
        );
        move || {
            let svid = prod.issue(WORKLOAD)?;
            let g = generation.fetch_add(1, Ordering::SeqCst);
            issued
                .0
                .lock()
                .unwrap()
                .insert(svid.leaf_der().to_vec(), (g, Instant::now()));
            let federated: Vec<&TrustDomainCa> = if trust_partner.load(Ordering::SeqCst) {
                vec![&*partner]
            } else {
                Vec::new()
            };
            Ok(CredentialsContents::new(&svid, &prod, federated))
        }
    };
    let writer = CredentialsDirWriter::new(tmp.path().join("workload"));
    writer.write(&make().unwrap()).unwrap();
    let link = writer.link_path();

    // The partner: its own directory, trusting prod.example.
    let partner_writer = CredentialsDirWriter::new(tmp.path().join("partner"));
    partner_writer
        .write(&CredentialsContents::new(
            &partner.issue(PARTNER).unwrap(),
            &partner,
            [&*prod],
        ))
        .unwrap();

    let server = WorkloadIdentity::from_directory_with(Some(&link), watch()).unwrap();
    let prod_td = SpiffeId::parse(WORKLOAD).unwrap().trust_domain().clone();
    let partner_td = SpiffeId::parse(PARTNER).unwrap().trust_domain().clone();
    let acceptor = server
        .acceptor(Authorizer::member_of_any([
            prod_td.clone(),
            partner_td.clone(),
        ]))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (refusals_tx, mut refusals) = tokio::sync::mpsc::unbounded_channel();
    let server_issued = Arc::clone(&issued);
    let accept_loop = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let issued = Arc::clone(&server_issued);
            let refusals = refusals_tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok((mut tls, _peer)) => {
                        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
                        let generation = issued.generation(&leaf);
                        // Tells the client which of its certificates the server saw.
                        let _ = tls.write_all(&generation.to_be_bytes()).await;
                        let _ = tls.shutdown().await;
                    }
                    Err(error) => {
                        let _ = refusals.send(error);
                    }
                }
            });
        }
    });

    // Every time the server swaps in a generation, how long after it was made.
    let pickup_lags = Arc::new(Mutex::new(Vec::new()));
    let lag_task = {
        let mut changes = server.store().subscribe();
        let (server, issued, lags) = (
            server.clone(),
            Arc::clone(&issued),
            Arc::clone(&pickup_lags),
        );
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let g = issued.generation(&leaf_of(&server));
                if let Some(made) = issued.made_at(g) {
                    lags.lock().unwrap().push(made.elapsed());
                }
            }
        })
    };

    // Direct reloads of the directory while it rotates: a torn generation would fail to load
    // (the loader checks that the key matches the certificate).
    let stop_loading = Arc::new(AtomicBool::new(false));
    let loader = {
        let (link, stop) = (link.clone(), Arc::clone(&stop_loading));
        tokio::task::spawn_blocking(move || {
            let dir = CredentialsDir::new(link);
            let (mut loads, mut failures) = (0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match dir.load_blocking() {
                    Ok(_) => loads += 1,
                    Err(e) => failures.push(e.to_string()),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (loads, failures)
        })
    };

    let rotation = writer
        .clone()
        .rotate_every(ROTATE_EVERY, make.clone())
        .unwrap();
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let identity = WorkloadIdentity::from_directory_with(Some(&link), watch()).unwrap();
            let (server, issued, addr) = (server.clone(), Arc::clone(&issued), addr.clone());
            let share = total / CLIENTS + usize::from(c < total % CLIENTS);
            tokio::spawn(async move {
                let connector = identity
                    .connector(Authorizer::exact(SpiffeId::parse(WORKLOAD).unwrap()))
                    .unwrap();
                let mut tally = ClientTally::default();
                for _ in 0..share {
                    if started.elapsed() > time_limit {
                        break;
                    }
                    let server_swapped = issued.generation(&leaf_of(&server));
                    let client_swapped = issued.generation(&leaf_of(&identity));
                    tally.handshakes += 1;
                    let result = async {
                        let (mut tls, _peer) = connector.connect(&addr).await?;
                        let server_leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
                        let mut seen = [0u8; 8];
                        tls.read_exact(&mut seen)
                            .await
                            .map_err(workload_auth_mtls_error)?;
                        Ok::<_, workload_auth::Error>((
                            issued.generation(&server_leaf),
                            u64::from_be_bytes(seen),
                        ))
                    }
                    .await;
                    match result {
                        Ok((server_gen, client_gen)) => {
                            tally.unknown_server_leaf += u64::from(server_gen == UNKNOWN);
                            tally.unknown_client_leaf += u64::from(client_gen == UNKNOWN);
                            tally.stale_server += u64::from(server_gen < server_swapped);
                            tally.stale_client += u64::from(client_gen < client_swapped);
                        }
                        Err(error) => tally.failed.push(error.to_string()),
                    }
                }
                (tally, identity.status())
            })
        })
        .collect();
    let mut tally = ClientTally::default();
    let mut client_reload_failures = 0;
    let mut client_reloads = 0;
    for client in clients {
        let (t, status) = client.await.expect("a client panicked");
        tally.handshakes += t.handshakes;
        tally.failed.extend(t.failed);
        tally.unknown_server_leaf += t.unknown_server_leaf;
        tally.unknown_client_leaf += t.unknown_client_leaf;
        tally.stale_server += t.stale_server;
        tally.stale_client += t.stale_client;
        client_reload_failures += status.failures;
        client_reloads += status.reloads;
    }
    let elapsed = started.elapsed();
    let rotations = rotation.written();
    let rotation_failures = rotation.failed();

    // The trust-bundle change: partner.example is trusted, then dropped from the bundle map.
    let partner_identity =
        WorkloadIdentity::from_directory_with(Some(&partner_writer.link_path()), watch()).unwrap();
    let partner_connector = partner_identity
        .connector(Authorizer::exact(SpiffeId::parse(WORKLOAD).unwrap()))
        .unwrap();
    let partner_handshake = || async {
        let (mut tls, _) = partner_connector.connect(&addr).await?;
        let mut seen = [0u8; 8];
        tls.read_exact(&mut seen)
            .await
            .map_err(workload_auth_mtls_error)?;
        Ok::<_, workload_auth::Error>(())
    };
    partner_handshake()
        .await
        .expect("the partner is trusted before the change");
    trust_partner.store(false, Ordering::SeqCst);
    let change_started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), async {
        while server
            .store()
            .with_current(|m| m.bundles().for_domain(&partner_td).is_some())
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the server never dropped the partner's bundle");
    let bundle_change_settled = change_started.elapsed();
    while refusals.try_recv().is_ok() {}
    let mut refused = 0;
    let mut reasons = Vec::new();
    for _ in 0..20 {
        let client_error = partner_handshake().await.expect_err("the partner got in");
        let server_error = tokio::time::timeout(Duration::from_secs(5), refusals.recv())
            .await
            .unwrap()
            .unwrap();
        let reason = VerificationError::find(&server_error).cloned();
        assert!(
            matches!(&reason, Some(VerificationError::UnknownTrustDomain(td)) if td == "partner.example"),
            "server: {server_error}; client: {client_error}"
        );
        refused += 1;
        if reasons.is_empty() {
            reasons.push(format!("server: {server_error}"));
            reasons.push(format!("client: {client_error}"));
        }
    }
    // The workload itself is still fine.
    let own = server
        .connector(Authorizer::exact(SpiffeId::parse(WORKLOAD).unwrap()))
        .unwrap();
    own.connect(&addr).await.unwrap();

    drop(rotation);
    stop_loading.store(true, Ordering::SeqCst);
    let (loads, load_failures) = loader.await.unwrap();
    accept_loop.abort();
    lag_task.abort();
    let mut lags = pickup_lags.lock().unwrap().clone();
    lags.sort_unstable();
    let max_lag = lags.last().copied().unwrap_or_default();
    let server_status = server.status();

    println!(
        "rotation soak: {} handshakes by {CLIENTS} clients in {elapsed:.1?} ({:.0}/s), {rotations} rotations every {ROTATE_EVERY:?}",
        tally.handshakes,
        tally.handshakes as f64 / elapsed.as_secs_f64()
    );
    println!(
        "failed handshakes {}, unknown server leaves {}, unknown client leaves {}, stale server {}, stale client {}",
        tally.failed.len(),
        tally.unknown_server_leaf,
        tally.unknown_client_leaf,
        tally.stale_server,
        tally.stale_client
    );
    println!(
        "server reloads {} (failures {}), client reloads {client_reloads} (failures {client_reload_failures}), direct loads {loads} (failures {})",
        server_status.reloads,
        server_status.failures,
        load_failures.len()
    );
    println!(
        "server pickup after a rotation: median {:?}, max {max_lag:?}",
        lags.get(lags.len() / 2).copied().unwrap_or_default()
    );
    println!(
        "bundle change settled in {bundle_change_settled:?}; {refused} partner handshakes refused: {reasons:?}"
    );

    assert!(
        tally.failed.is_empty(),
        "{} handshakes failed: {:?}",
        tally.failed.len(),
        &tally.failed[..tally.failed.len().min(5)]
    );
    assert_eq!(
        tally.handshakes as usize, total,
        "the time limit cut the run short"
    );
    assert_eq!(tally.unknown_server_leaf, 0);
    assert_eq!(tally.unknown_client_leaf, 0);
    assert_eq!(
        tally.stale_server, 0,
        "a handshake presented a replaced server certificate"
    );
    assert_eq!(
        tally.stale_client, 0,
        "a handshake presented a replaced client certificate"
    );
    assert!(
        load_failures.is_empty(),
        "torn generations: {load_failures:?}"
    );
    assert!(loads > 100, "{loads}");
    assert_eq!(rotation_failures, 0);
    assert!(rotations >= 3, "{rotations}");
    assert_eq!(server_status.failures, 0, "{:?}", server_status.last_error);
    assert_eq!(client_reload_failures, 0);
    // Every rotation reached the server, each well within a second.
    assert!(
        server_status.reloads + 2 >= rotations,
        "{} of {rotations}",
        server_status.reloads
    );
    assert!(max_lag < Duration::from_secs(1), "{max_lag:?}");
}

/// An I/O error from a TLS stream, as the library reports it.
fn workload_auth_mtls_error(error: std::io::Error) -> workload_auth::Error {
    workload_auth::mtls::handshake_error(error)
}
