//! Our `WorkloadApiSource` against our agent over real Unix sockets, including the agent stopped
//! and restarted mid-stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use workload_auth_core::{ErrorKind, RetryPolicy};
use workload_auth_mtls::{SvidSource, SvidStore, TrustDomain, WatchOptions, Watcher};
use workload_auth_workload_api::{Endpoint, WorkloadApiOptions, WorkloadApiSource};

fn fast() -> WorkloadApiOptions {
    WorkloadApiOptions {
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..RetryPolicy::default()
        },
        initial_timeout: Duration::from_secs(5),
        ..WorkloadApiOptions::default()
    }
}

async fn wait_for_leaf(source: &WorkloadApiSource, leaf: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if source.current().unwrap().svid().leaf().as_ref() == leaf {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the client never got the new SVID"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn our_client_gets_the_material_and_follows_a_rotation() {
    let world = World::new();
    let first = world.rotate();
    let agent = Agent::start(world.builder()).await;
    let source = WorkloadApiSource::connect(Endpoint::unix(&agent.path), fast())
        .await
        .unwrap();
    let m = source.current().unwrap();
    assert_eq!(m.svid().spiffe_id().as_str(), ID);
    assert_eq!(m.svid().leaf().as_ref(), first.leaf_der());
    assert_eq!(m.svid().chain().len(), 2);
    let partner = m
        .bundles()
        .for_domain(&TrustDomain::new("partner.example").unwrap())
        .expect("federated bundle");
    assert_eq!(partner.roots()[0].as_ref(), world.federated.root_der());
    let local = m
        .bundles()
        .for_domain(&TrustDomain::new("example.org").unwrap())
        .unwrap();
    assert_eq!(local.roots()[0].as_ref(), world.local.root_der());

    // Through the mtls crate's watcher, as WorkloadIdentity uses it.
    let source = Arc::new(source);
    let store = SvidStore::new(source.load().await.unwrap());
    let _watcher = Watcher::spawn(
        store.clone(),
        source.clone(),
        WatchOptions {
            poll_interval: Duration::from_millis(20),
            ..WatchOptions::default()
        },
    )
    .unwrap();
    let second = world.rotate();
    wait_for_leaf(&source, second.leaf_der()).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.current().svid().leaf().as_ref() != second.leaf_der() {
        assert!(
            Instant::now() < deadline,
            "the store never got the rotation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn our_client_survives_the_agent_stopped_and_restarted_mid_stream() {
    let world = World::new();
    let first = world.rotate();
    let agent = Agent::start(world.builder()).await;
    let source = WorkloadApiSource::connect(Endpoint::unix(&agent.path), fast())
        .await
        .unwrap();
    let generation = source.generation();
    agent.stop().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The agent is gone: the last good material stays.
    assert_eq!(
        source.current().unwrap().svid().leaf().as_ref(),
        first.leaf_der()
    );
    // The directory rotates while the agent is down; a new agent comes up on the same socket.
    let second = world.rotate();
    let _agent = Agent::start(world.builder()).await;
    wait_for_leaf(&source, second.leaf_der()).await;
    assert!(source.generation() > generation);
}

#[tokio::test]
async fn hint_selects_the_svid_and_an_unknown_hint_is_a_typed_error() {
    let world = World::new();
    world.rotate();
    let agent = Agent::start(world.builder().hint("internal")).await;
    let ok = WorkloadApiSource::connect(
        Endpoint::unix(&agent.path),
        WorkloadApiOptions {
            hint: Some("internal".into()),
            ..fast()
        },
    )
    .await
    .unwrap();
    assert_eq!(ok.current().unwrap().svid().spiffe_id().as_str(), ID);

    let err = WorkloadApiSource::connect(
        Endpoint::unix(&agent.path),
        WorkloadApiOptions {
            hint: Some("external".into()),
            initial_timeout: Duration::from_millis(500),
            ..fast()
        },
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::CredentialsNotFound);
    let chain = format!("{err:?}");
    assert!(chain.contains("external"), "{chain}");
}

#[tokio::test]
async fn no_agent_is_a_typed_error_not_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let err = WorkloadApiSource::connect(
        Endpoint::unix(tmp.path().join("nobody.sock")),
        WorkloadApiOptions {
            initial_timeout: Duration::from_millis(300),
            ..fast()
        },
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::CredentialsNotFound);
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_agent_without_identity_yet_is_waited_for() {
    let world = World::new();
    let agent = Agent::start(world.builder()).await;
    let path = agent.path.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        world.rotate();
        world
    });
    let source = WorkloadApiSource::connect(Endpoint::unix(&path), fast())
        .await
        .unwrap();
    let world = writer.await.unwrap();
    assert_eq!(source.current().unwrap().svid().spiffe_id().as_str(), ID);
    drop(world);
}
