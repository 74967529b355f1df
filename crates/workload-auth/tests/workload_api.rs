//! `WorkloadIdentity::from_workload_api` against our agent over a real Unix socket: the identity a
//! workload on a SPIFFE agent gets, kept current through a rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use workload_auth::WorkloadIdentity;
use workload_auth::mtls::{CredentialsDir, WatchOptions};
use workload_auth::workload_api::WorkloadApiServer;
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};

const ID: &str = "spiffe://example.org/ns/prod/sa/spire-workload";

#[test]
fn workload_identity_from_the_workload_api_follows_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = TrustDomainCa::new("example.org").unwrap();
    let writer = CredentialsDirWriter::new(tmp.path().join("creds"));
    let write = || {
        let svid = ca.issue(ID).unwrap();
        writer
            .write(&CredentialsContents::new(&svid, &ca, []))
            .unwrap();
        svid
    };
    let first = write();
    let socket = tmp.path().join("agent.sock");

    // The agent runs on its own runtime, as a separate process would.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = runtime
        .block_on(
            WorkloadApiServer::builder(Arc::new(CredentialsDir::new(writer.link_path())))
                .socket(&socket)
                .watch_options(WatchOptions {
                    poll_interval: Duration::from_millis(50),
                    ..WatchOptions::default()
                })
                .bind(),
        )
        .unwrap();
    runtime.spawn(server.serve_until(async {
        let _ = stop_rx.await;
    }));

    let identity =
        WorkloadIdentity::from_workload_api(Some(&format!("unix://{}", socket.display()))).unwrap();
    assert_eq!(identity.spiffe_id().as_str(), ID);
    assert_eq!(
        identity.store().current().svid().leaf().as_ref(),
        first.leaf_der()
    );

    let second = write();
    let deadline = Instant::now() + Duration::from_secs(10);
    while identity.store().current().svid().leaf().as_ref() != second.leaf_der() {
        assert!(Instant::now() < deadline, "the identity never rotated");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = stop_tx.send(());
}

#[test]
fn a_bad_endpoint_is_refused_before_connecting() {
    let err = WorkloadIdentity::from_workload_api(Some("http://example.org")).err();
    assert_eq!(
        err.map(|e| e.kind()),
        Some(workload_auth::ErrorKind::InvalidArgument)
    );
}
