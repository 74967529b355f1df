//! The facade end to end against the emulator: tokens, ID tokens, headers, explain and a workload
//! identity that completes an mTLS handshake and follows a rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workload_auth::mtls::{Authorizer, SpiffeId, WatchOptions};
use workload_auth::{CredentialType, CredentialsBuilder, EnvSource, ErrorKind, WorkloadIdentity};
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{
    CredentialsContents, CredentialsDirWriter, Layout,
};
use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint};

/// ADC that sees nothing but the emulator: an empty environment and an empty home directory.
fn builder(emu: &Emulator, home: &tempfile::TempDir) -> CredentialsBuilder {
    CredentialsBuilder::new()
        .with_env(EnvSource::from_vars([("GCE_METADATA_HOST", emu.host())]).with_home(home.path()))
        .with_metadata_host(emu.host())
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_headers_and_explain_through_the_facade() {
    let emu = Emulator::start(EmulatorConfig {
        project_id: "facade-project".into(),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let credentials = builder(&emu, &home)
        .with_quota_project("billing-project")
        .build()
        .unwrap();
    assert_eq!(
        credentials.credential_type(),
        CredentialType::MetadataServer
    );

    let token = credentials.access_token().await.unwrap();
    assert!(emu.issued_token(token.secret().expose()).is_some());
    // Cached: a second call makes no request.
    let again = credentials.access_token().await.unwrap();
    assert_eq!(token.secret(), again.secret());
    assert_eq!(emu.requests(Endpoint::Token), 1);

    let id = credentials
        .id_token("https://svc.example.run.app")
        .await
        .unwrap();
    assert_eq!(id.secret().expose().split('.').count(), 3);

    let headers = credentials.request_headers().await.unwrap();
    let names: Vec<_> = headers.iter().map(|(name, _)| name).collect();
    assert!(names.contains(&"authorization"), "{names:?}");
    assert_eq!(headers.user_project(), Some("billing-project"));
    assert!(!format!("{headers:?}").contains(token.secret().expose()));

    assert_eq!(
        credentials.project_id().await.unwrap().as_deref(),
        Some("facade-project")
    );
    let explanation = credentials.explain().await;
    let text = explanation.to_string();
    assert!(text.contains("facade-project"), "{text}");
}

#[test]
fn the_blocking_api_needs_no_runtime() {
    let emu = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let credentials = builder(&emu, &home).build().unwrap();
    let token = credentials.access_token_blocking().unwrap();
    assert!(token.expires_in() > Duration::from_secs(3000));
    let id = credentials.id_token_blocking("aud").unwrap();
    assert!(id.expires_at() > std::time::SystemTime::now());
}

#[test]
fn nothing_configured_off_google_cloud_fails_fast_and_says_where_it_looked() {
    let home = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let err = CredentialsBuilder::new()
        .with_env(EnvSource::from_vars([("NO_GCE_CHECK", "true")]).with_home(home.path()))
        .build()
        .unwrap_err();
    let elapsed = started.elapsed();
    // Milliseconds, not the seconds other libraries spend pinging (generous for a loaded CI box).
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
    assert_eq!(err.kind(), ErrorKind::CredentialsNotFound);
    let text = err.to_string();
    assert!(text.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{text}");
    assert!(
        text.contains("application_default_credentials.json"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_identity_handshakes_and_follows_rotation() {
    let ca = TrustDomainCa::new("facade.test").unwrap();
    let server_id = "spiffe://facade.test/ns/prod/sa/server";
    let client_id = "spiffe://facade.test/ns/prod/sa/client";
    let dirs = tempfile::tempdir().unwrap();
    let write = |dir: &str, id: &str| {
        let writer = CredentialsDirWriter::new(dirs.path().join(dir));
        let svid = ca.issue(id).unwrap();
        writer
            .write(&CredentialsContents::new(&svid, &ca, []))
            .unwrap();
        (writer, svid)
    };
    let (server_writer, _) = write("server", server_id);
    let (client_writer, first) = write("client", client_id);

    let fast = WatchOptions {
        poll_interval: Duration::from_millis(20),
        ..WatchOptions::default()
    };
    let server =
        WorkloadIdentity::from_directory_with(Some(&server_writer.link_path()), fast).unwrap();
    let client =
        WorkloadIdentity::from_directory_with(Some(&client_writer.link_path()), fast).unwrap();
    assert_eq!(client.spiffe_id().as_str(), client_id);

    let acceptor = server
        .acceptor(Authorizer::exact(SpiffeId::parse(client_id).unwrap()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok((mut tls, peer)) = acceptor.accept(tcp).await {
                    let reply = format!("hello {peer}");
                    tls.write_all(reply.as_bytes()).await.unwrap();
                    tls.shutdown().await.unwrap();
                }
            });
        }
    });

    let connector = client
        .connector(Authorizer::member_of(
            SpiffeId::parse(server_id).unwrap().trust_domain().clone(),
        ))
        .unwrap();
    let (mut tls, peer) = connector.connect(&addr.to_string()).await.unwrap();
    assert_eq!(peer.as_str(), server_id);
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await.unwrap();
    assert_eq!(reply, format!("hello {client_id}"));

    // The node agent rotates the client's certificate; the identity follows.
    let second = ca.issue(client_id).unwrap();
    assert_ne!(first.leaf_der(), second.leaf_der());
    client_writer
        .write(&CredentialsContents::new(&second, &ca, []))
        .unwrap();
    let mut rotated = false;
    for _ in 0..200 {
        if client
            .store()
            .with_current(|m| m.svid().leaf().as_ref() == second.leaf_der())
        {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        rotated,
        "the new certificate was not picked up: {:?}",
        client.status()
    );
    let (_tls, peer) = connector.connect(&addr.to_string()).await.unwrap();
    assert_eq!(peer.as_str(), server_id);
}

#[test]
fn finding_5_td_policy_with_a_path_is_refused_not_widened() {
    use workload_auth::mtls::Authorizer;
    for policies in [
        vec!["td:spiffe://prod.example/ns/admin"],
        vec!["any", "td:spiffe://prod.example/ns/admin"],
    ] {
        let err = Authorizer::from_policies(&policies).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{policies:?}");
        assert!(err.to_string().contains("/ns/admin"), "{err}");
    }
    let web = SpiffeId::parse("spiffe://prod.example/ns/web/sa/a").unwrap();
    for policy in ["td:spiffe://prod.example", "td:prod.example"] {
        assert!(
            Authorizer::from_policies([policy]).unwrap().allows(&web),
            "{policy}"
        );
    }
}

/// Every layout loads through the facade and says which it is; a hidden key still names the
/// workload but refuses to make mTLS clients or servers, with the typed reason.
#[test]
fn each_credential_layout_through_the_facade() {
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let svid = ca.issue("spiffe://prod.example/ns/a/sa/b").unwrap();
    for layout in Layout::ALL {
        let tmp = tempfile::tempdir().unwrap();
        let writer = CredentialsDirWriter::new(tmp.path());
        writer
            .write(&CredentialsContents::with_layout(layout, &svid, &ca, []))
            .unwrap();
        let identity = WorkloadIdentity::from_directory(Some(&writer.link_path())).unwrap();
        assert_eq!(
            identity.layout().map(|l| l.name()),
            Some(layout.name()),
            "{layout}"
        );
        assert_eq!(
            identity.spiffe_id(),
            SpiffeId::parse("spiffe://prod.example/ns/a/sa/b").unwrap()
        );
        let hidden = layout == Layout::NoKey;
        assert_eq!(identity.has_private_key(), !hidden, "{layout}");
        let connector = identity.connector(Authorizer::any());
        let acceptor = identity.acceptor(Authorizer::any());
        if hidden {
            for err in [connector.unwrap_err(), acceptor.unwrap_err()] {
                assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
                assert_eq!(
                    workload_auth::mtls::CredentialError::find(&err),
                    Some(&workload_auth::mtls::CredentialError::PrivateKeyHidden)
                );
            }
        } else {
            connector.unwrap();
            acceptor.unwrap();
        }
    }
}
