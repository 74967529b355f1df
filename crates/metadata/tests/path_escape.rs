//! Issue 8, finding 4: a caller-supplied metadata path or query value cannot make the client
//! send a request anywhere but the configured host, under `/computeMetadata/v1/`. Hostile paths
//! are refused before anything is sent; query values arrive exactly as given, encoded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{client, start};
use workload_auth_core::ErrorKind;
use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint};

const PREFIX: &str = "/computeMetadata/v1/";

/// Every request `emu` saw was for a path under [`PREFIX`] without a dot segment.
fn assert_all_under_prefix(emu: &Emulator) {
    for request in emu.recent_requests() {
        assert!(request.path.starts_with(PREFIX), "{request:?}");
        assert!(
            request.path.split('/').all(|s| s != ".." && s != "."),
            "{request:?}"
        );
    }
}

#[tokio::test]
async fn finding_4_hostile_metadata_paths_send_nothing_anywhere() {
    let emu = start(EmulatorConfig::default()).await;
    // Where an escaping request would go: another server on loopback.
    let elsewhere = start(EmulatorConfig::default()).await;
    let other = elsewhere.host();
    let hostile = [
        "../../x".to_owned(),
        "instance/../../../x".to_owned(),
        "..".to_owned(),
        "./instance/zone".to_owned(),
        "instance/%2e%2e/%2e%2e/x".to_owned(),
        "instance/%2E%2E/%2E%2E/computeMetadata/v1/project/project-id".to_owned(),
        "instance/.%2e/x".to_owned(),
        "..%2f..%2fx".to_owned(),
        "/computeMetadata/v1/project/project-id".to_owned(),
        format!("//{other}/computeMetadata/v1/project/project-id"),
        format!("http://{other}/computeMetadata/v1/project/project-id"),
        format!("http:{other}/computeMetadata/v1/project/project-id"),
        format!("http:/{other}/computeMetadata/v1/project/project-id"),
        format!("\\\\{other}\\computeMetadata\\v1\\project\\project-id"),
        format!("instance\\..\\..\\{other}"),
        "instance/zone?recursive=true".to_owned(),
        "instance/zone#fragment".to_owned(),
        "instance/zone?".to_owned(),
        "instance/ zone".to_owned(),
        " instance/zone".to_owned(),
        "instance/zone\r\nHost: evil.example".to_owned(),
        "instance/zone\u{0}".to_owned(),
        "instance/\tzone".to_owned(),
        "instance//zone".to_owned(),
        String::new(),
    ];
    let c = client(&emu);
    for path in &hostile {
        let err = c.get_text(path).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{path:?}: {err}");
        assert!(err.message().contains("invalid metadata path"), "{err}");
        assert!(!err.is_transient(), "{path:?}");
    }
    assert_eq!(emu.total_requests(), 0, "a refused path sent a request");
    assert_eq!(elsewhere.total_requests(), 0, "a request left the host");

    // Paths that are fine go to the configured host, under the prefix, and nowhere else.
    let zone = c.get_text("instance/zone").await.unwrap();
    assert!(
        zone.ends_with(&format!("/zones/{}", emu.config().zone)),
        "{zone}"
    );
    for path in [
        "instance/attributes/a..b",
        "instance/service-accounts/sa@p.iam.gserviceaccount.com/email",
        "instance/",
    ] {
        // Not every one exists; each must reach this server, under the prefix.
        let _ = c.get_text(path).await;
    }
    assert_eq!(emu.total_requests(), 4);
    assert_all_under_prefix(&emu);
    assert_eq!(elsewhere.total_requests(), 0);
}

#[tokio::test]
async fn finding_4_query_values_are_encoded_not_concatenated() {
    let emu = start(EmulatorConfig::default()).await;
    let c = client(&emu);
    let audience = "https://a.example/x?audience=evil&format=full&licenses=TRUE#frag y%2e";
    let token = c.id_token(audience, false, false).await.unwrap();
    assert!(!token.secret().is_empty());
    let requests = emu.recent_requests();
    let request = requests
        .iter()
        .rfind(|r| r.endpoint == Endpoint::Identity)
        .unwrap();
    assert_eq!(
        request.query,
        [("audience".to_owned(), audience.to_owned())],
        "one parameter, exactly the audience given"
    );
    assert_all_under_prefix(&emu);

    // Scopes go through the same encoder (and are refused when they hold a separator).
    let scope = "https://www.googleapis.com/auth/x?y=1&scopes=evil#z";
    c.access_token(&[scope]).await.unwrap();
    let requests = emu.recent_requests();
    let request = requests
        .iter()
        .rfind(|r| r.endpoint == Endpoint::Token)
        .unwrap();
    assert_eq!(request.query, [("scopes".to_owned(), scope.to_owned())]);
    let before = emu.total_requests();
    let err = c.access_token(&["a,b"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(emu.total_requests(), before, "nothing sent");
}
