//! The agent over real Unix sockets, with our generated tonic client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::time::{Duration, Instant};

use common::*;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_stream::StreamExt as _;
use tonic::Code;
use workload_auth_core::ErrorKind;
use workload_auth_emulator::ca::KeyFormat;
use workload_auth_mtls::X509Svid;
use workload_auth_workload_api::proto::{
    JwtBundlesRequest, JwtsvidRequest, ValidateJwtsvidRequest, X509BundlesRequest, X509svidRequest,
    X509svidResponse,
};

/// Splits concatenated DER certificates.
fn split(mut der: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !der.is_empty() {
        let (rest, _) = x509_parser::parse_x509_certificate(der).expect("DER certificate");
        let len = der.len() - rest.len();
        out.push(der[..len].to_vec());
        der = rest;
    }
    out
}

fn check_against(response: &X509svidResponse, world: &World, issued_leaf: &[u8]) {
    assert_eq!(response.svids.len(), 1);
    let svid = &response.svids[0];
    assert_eq!(svid.spiffe_id, ID);
    let chain = split(&svid.x509_svid);
    assert_eq!(chain.len(), 2, "leaf and intermediate");
    assert_eq!(chain[0], issued_leaf);
    assert_eq!(chain[1], world.local.intermediate_der());
    // The key is PKCS#8 and belongs to the leaf (X509Svid checks that they match).
    let parsed = X509Svid::from_der(
        chain.into_iter().map(CertificateDer::from).collect(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.x509_svid_key.to_vec())),
    )
    .expect("key matches the certificate");
    assert_eq!(parsed.spiffe_id().as_str(), ID);
    assert_eq!(split(&svid.bundle), vec![world.local.root_der().to_vec()]);
    assert_eq!(response.federated_bundles.len(), 1);
    assert_eq!(
        split(&response.federated_bundles["spiffe://partner.example"]),
        vec![world.federated.root_der().to_vec()]
    );
}

#[tokio::test]
async fn first_message_is_the_complete_state_of_the_directory() {
    let world = World::new();
    let issued = world.rotate();
    let agent = Agent::start(world.builder()).await;
    let mut client = client(&agent.path).await;

    let mut stream = client
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    check_against(&first, &world, issued.leaf_der());

    let mut bundles = client
        .fetch_x509_bundles(req(X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner();
    let b = bundles.next().await.unwrap().unwrap();
    assert_eq!(b.bundles.len(), 2);
    assert_eq!(
        split(&b.bundles["spiffe://example.org"]),
        vec![world.local.root_der().to_vec()]
    );
    assert_eq!(
        split(&b.bundles["spiffe://partner.example"]),
        vec![world.federated.root_der().to_vec()]
    );
}

#[tokio::test]
async fn sec1_key_is_served_as_pkcs8() {
    let world = World::new();
    let issued = world
        .local
        .svid(ID)
        .key_format(KeyFormat::Sec1)
        .issue()
        .unwrap();
    assert!(issued.private_key_pem().expose().contains("EC PRIVATE KEY"));
    world.write(&issued);
    let agent = Agent::start(world.builder()).await;
    let mut stream = client(&agent.path)
        .await
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    check_against(&first, &world, issued.leaf_der());
}

#[tokio::test]
async fn every_rpc_without_the_security_header_is_invalid_argument() {
    let world = World::new();
    world.rotate();
    let agent = Agent::start(world.builder()).await;
    let mut c = client(&agent.path).await;
    let codes = [
        c.fetch_x509svid(X509svidRequest {})
            .await
            .err()
            .map(|s| s.code()),
        c.fetch_x509_bundles(X509BundlesRequest {})
            .await
            .err()
            .map(|s| s.code()),
        c.fetch_jwt_bundles(JwtBundlesRequest {})
            .await
            .err()
            .map(|s| s.code()),
        c.fetch_jwtsvid(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        })
        .await
        .err()
        .map(|s| s.code()),
        c.validate_jwtsvid(ValidateJwtsvidRequest {
            audience: "a".into(),
            svid: "x.y.z".into(),
        })
        .await
        .err()
        .map(|s| s.code()),
    ];
    assert!(
        codes.iter().all(|c| *c == Some(Code::InvalidArgument)),
        "{codes:?}"
    );
    // `true` is the only accepted value.
    let mut r = tonic::Request::new(X509svidRequest {});
    r.metadata_mut()
        .insert("workload.spiffe.io", "yes".parse().unwrap());
    assert_eq!(
        c.fetch_x509svid(r).await.err().map(|s| s.code()),
        Some(Code::InvalidArgument)
    );
}

#[tokio::test]
async fn a_caller_whose_uid_is_not_allowed_is_permission_denied() {
    let world = World::new();
    world.rotate();
    let other = my_uid().wrapping_add(4242);
    let agent = Agent::start(world.builder().allow_uid(other).allow_gid(other)).await;
    let status = client(&agent.path)
        .await
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::PermissionDenied);
    drop(agent);

    // The same caller, allowed by uid, is served.
    let world = World::new();
    world.rotate();
    let agent = Agent::start(world.builder().allow_uid(my_uid())).await;
    let mut stream = client(&agent.path)
        .await
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.next().await.unwrap().is_ok());
}

#[tokio::test]
async fn jwt_rpcs_answer_as_the_spec_says_for_an_agent_without_jwt_authority() {
    let world = World::new();
    world.rotate();
    let agent = Agent::start(world.builder()).await;
    let mut c = client(&agent.path).await;
    let s = c
        .fetch_jwtsvid(req(JwtsvidRequest {
            audience: vec!["aud".into()],
            spiffe_id: String::new(),
        }))
        .await
        .err()
        .unwrap();
    assert_eq!(s.code(), Code::PermissionDenied);
    let s = c
        .fetch_jwt_bundles(req(JwtBundlesRequest {}))
        .await
        .err()
        .unwrap();
    assert_eq!(s.code(), Code::PermissionDenied);
    let s = c
        .validate_jwtsvid(req(ValidateJwtsvidRequest {
            audience: "aud".into(),
            svid: "a.b.c".into(),
        }))
        .await
        .err()
        .unwrap();
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = c
        .fetch_jwtsvid(req(JwtsvidRequest::default()))
        .await
        .err()
        .unwrap();
    assert_eq!(s.code(), Code::InvalidArgument, "audience is mandatory");
}

#[tokio::test]
async fn rotation_by_symlink_swap_pushes_a_new_message() {
    let world = World::new();
    let first_issued = world.rotate();
    let agent = Agent::start(world.builder()).await;
    let mut stream = client(&agent.path)
        .await
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    check_against(&first, &world, first_issued.leaf_der());

    let swapped = Instant::now();
    let second_issued = world.rotate();
    let second = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a new message after rotation")
        .unwrap()
        .unwrap();
    let latency = swapped.elapsed();
    check_against(&second, &world, second_issued.leaf_der());
    assert_ne!(first.svids[0].x509_svid, second.svids[0].x509_svid);
    // Poll interval 50 ms + 50 ms, with slack for a loaded machine.
    assert!(latency < Duration::from_secs(2), "{latency:?}");
}

#[tokio::test]
async fn a_broken_rotation_keeps_the_last_good_material() {
    let world = World::new();
    let good = world.rotate();
    let agent = Agent::start(world.builder()).await;
    let mut stream = client(&agent.path)
        .await
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();

    // A key that does not match the certificate.
    let a = world.local.issue(ID).unwrap();
    let b = world.local.issue(ID).unwrap();
    let mut contents = workload_auth_emulator::credentials_writer::CredentialsContents::new(
        &a,
        &world.local,
        [&world.federated],
    );
    contents.private_key_pem = Some(b.private_key_pem().clone());
    contents.combined_pem = None;
    world.writer.write(&contents).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(600), stream.next())
            .await
            .is_err(),
        "no message for a mismatched key"
    );
    // Then the directory disappears altogether.
    std::fs::remove_file(world.writer.link_path()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A new caller still gets the last good SVID.
    let mut again = client(&agent.path)
        .await
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let m = again.next().await.unwrap().unwrap();
    check_against(&m, &world, good.leaf_der());

    // And a good rotation is pushed to the first stream.
    let next = world.rotate();
    let pushed = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    check_against(&pushed, &world, next.leaf_der());
}

#[tokio::test]
async fn no_identity_yet_is_permission_denied_until_the_directory_appears() {
    let world = World::new();
    let agent = Agent::start(world.builder()).await;
    let status = client(&agent.path)
        .await
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("no identity issued"),
        "{status:?}"
    );

    let issued = world.rotate();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client(&agent.path)
            .await
            .fetch_x509svid(req(X509svidRequest {}))
            .await
        {
            Ok(r) => {
                let m = r.into_inner().next().await.unwrap().unwrap();
                check_against(&m, &world, issued.leaf_der());
                break;
            }
            Err(s) => {
                assert_eq!(s.code(), Code::PermissionDenied);
                assert!(Instant::now() < deadline, "never served");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn streams_beyond_the_bound_are_resource_exhausted() {
    let world = World::new();
    world.rotate();
    let agent = Agent::start(world.builder().max_streams(2)).await;
    let mut c = client(&agent.path).await;
    let mut s1 = c
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let mut s2 = c
        .fetch_x509_bundles(req(X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner();
    s1.next().await.unwrap().unwrap();
    s2.next().await.unwrap().unwrap();
    let third = c
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .err()
        .unwrap();
    assert_eq!(third.code(), Code::ResourceExhausted);
    // Closing a stream frees its slot.
    drop(s1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match c.fetch_x509svid(req(X509svidRequest {})).await {
            Ok(_) => break,
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted);
                assert!(Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_socket_path_that_is_a_regular_file_is_refused_and_left_alone() {
    let world = World::new();
    world.rotate();
    std::fs::write(world.socket(), b"precious").unwrap();
    let err = world.builder().bind().await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(world.socket()).unwrap(), b"precious");
}

#[tokio::test]
async fn a_stale_socket_is_replaced_but_a_live_one_is_not() {
    let world = World::new();
    world.rotate();
    // A stale socket: bound, then its listener dropped.
    drop(std::os::unix::net::UnixListener::bind(world.socket()).unwrap());
    assert!(
        std::fs::symlink_metadata(world.socket())
            .unwrap()
            .file_type()
            .is_socket()
    );
    let agent = Agent::start(world.builder()).await;
    // A second agent must not steal the live socket.
    let err = world.builder().bind().await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let mut stream = client(&agent.path)
        .await
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.next().await.unwrap().is_ok());
}

#[tokio::test]
async fn the_socket_is_created_0600_or_0660_for_a_group() {
    let world = World::new();
    world.rotate();
    let agent = Agent::start(world.builder()).await;
    let mode = std::fs::metadata(&agent.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(agent);

    let world = World::new();
    world.rotate();
    let gid = {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self").unwrap().gid()
    };
    let agent = Agent::start(world.builder().socket_group(gid)).await;
    let meta = std::fs::metadata(&agent.path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    {
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(meta.gid(), gid);
    }
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_removes_the_socket() {
    let world = World::new();
    world.rotate();
    let agent = Agent::start(world.builder()).await;
    let path = agent.path.clone();
    let mut stream = client(&path)
        .await
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), agent.stop())
        .await
        .expect("graceful shutdown completes")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // The stream ended (cleanly or with an error), and the socket is gone.
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(!matches!(end, Some(Ok(_))));
    assert!(!path.exists());
}

#[tokio::test]
async fn rpcs_of_newer_protos_are_unimplemented() {
    let world = World::new();
    world.rotate();
    let agent = Agent::start(world.builder()).await;
    let mut grpc = tonic::client::Grpc::new(channel(&agent.path).await);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<X509svidRequest, X509svidResponse>::default();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/SpiffeWorkloadAPI/FetchWITSVID");
    let status = grpc
        .unary(req(X509svidRequest {}), path, codec)
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::Unimplemented);
}
