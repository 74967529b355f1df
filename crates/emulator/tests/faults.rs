//! Each fault, as a client sees it on the wire, and the counters that record it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint, Fault};

use common::{client, find, get, get_text, header_value, raw_exchange, status_of};

const TOKEN: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const PROJECT: &str = "/computeMetadata/v1/project/project-id";

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default()).await.unwrap()
}

fn raw_get(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn status_fault_applies_the_given_number_of_times() {
    let emu = emulator().await;
    let http = client();
    emu.inject(Endpoint::Token, Fault::Status(503), Some(2));
    for _ in 0..2 {
        let response = get(&http, &emu.url(), TOKEN).await;
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["metadata-flavor"], "Google");
    }
    assert_eq!(get(&http, &emu.url(), TOKEN).await.status(), 200);
    assert_eq!(emu.requests(Endpoint::Token), 3);
    // Other endpoints are untouched.
    emu.inject(Endpoint::Token, Fault::Status(500), Some(1));
    assert_eq!(get(&http, &emu.url(), PROJECT).await.status(), 200);
    assert_eq!(get(&http, &emu.url(), TOKEN).await.status(), 500);
}

#[tokio::test]
async fn unbounded_faults_last_until_cleared_and_queue_in_order() {
    let emu = emulator().await;
    let http = client();
    emu.inject(Endpoint::ProjectId, Fault::Status(429), Some(1));
    emu.inject(Endpoint::ProjectId, Fault::Status(404), None);
    assert_eq!(get(&http, &emu.url(), PROJECT).await.status(), 429);
    for _ in 0..3 {
        assert_eq!(get(&http, &emu.url(), PROJECT).await.status(), 404);
    }
    emu.clear_faults();
    assert_eq!(get(&http, &emu.url(), PROJECT).await.status(), 200);

    emu.inject(Endpoint::Root, Fault::Status(500), None);
    emu.inject(Endpoint::ProjectId, Fault::Status(500), None);
    emu.clear_faults_for(Endpoint::Root);
    assert_eq!(get(&http, &emu.url(), "/").await.status(), 200);
    assert_eq!(get(&http, &emu.url(), PROJECT).await.status(), 500);
}

#[tokio::test]
async fn delay_waits_then_answers() {
    let emu = emulator().await;
    emu.inject(
        Endpoint::Token,
        Fault::Delay(Duration::from_millis(300)),
        Some(1),
    );
    let started = Instant::now();
    let response = get(&client(), &emu.url(), TOKEN).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(response.status(), 200);

    // A client with a shorter timeout gives up.
    emu.inject(
        Endpoint::Token,
        Fault::Delay(Duration::from_secs(5)),
        Some(1),
    );
    let err = client()
        .get(format!("{}{TOKEN}", emu.url()))
        .header("Metadata-Flavor", "Google")
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn reset_closes_the_connection_without_an_answer() {
    let emu = emulator().await;
    emu.inject(Endpoint::Token, Fault::Reset, Some(2));
    let err = raw_exchange(emu.addr(), &raw_get(TOKEN)).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    let err = client()
        .get(format!("{}{TOKEN}", emu.url()))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_request() || err.is_connect(), "{err:?}");
    assert_eq!(emu.requests(Endpoint::Token), 2);
}

#[tokio::test]
async fn truncate_announces_the_full_length_and_sends_half() {
    let emu = emulator().await;
    emu.inject(Endpoint::Token, Fault::Truncate, Some(1));
    let raw = raw_exchange(emu.addr(), &raw_get(TOKEN)).await.unwrap();
    let end = find(&raw, b"\r\n\r\n").unwrap();
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    assert_eq!(status_of(head), 200);
    let declared: usize = header_value(head, "content-length")
        .unwrap()
        .parse()
        .unwrap();
    let received = raw.len() - end - 4;
    assert!(declared > 0);
    assert_eq!(received, declared / 2);

    emu.inject(Endpoint::Token, Fault::Truncate, Some(1));
    let response = get(&client(), &emu.url(), TOKEN).await;
    assert!(response.text().await.is_err(), "a short body is an error");
}

#[tokio::test]
async fn malformed_replaces_the_body_and_keeps_the_content_type() {
    let emu = emulator().await;
    emu.inject(
        Endpoint::Token,
        Fault::Malformed("{\"access_tok".into()),
        Some(1),
    );
    let response = get(&client(), &emu.url(), TOKEN).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), "{\"access_tok");
}

#[tokio::test]
async fn flavor_faults_drop_or_change_the_response_header() {
    let emu = emulator().await;
    let http = client();
    emu.inject(Endpoint::Root, Fault::MissingFlavor, Some(1));
    emu.inject(Endpoint::Root, Fault::WrongFlavor, Some(1));
    let missing = get(&http, &emu.url(), "/").await;
    assert_eq!(missing.status(), 200);
    assert!(missing.headers().get("metadata-flavor").is_none());
    let wrong = get(&http, &emu.url(), "/").await;
    assert_eq!(wrong.headers()["metadata-flavor"], "NotGoogle");
    let normal = get(&http, &emu.url(), "/").await;
    assert_eq!(normal.headers()["metadata-flavor"], "Google");
    assert_eq!(emu.requests(Endpoint::Root), 3);
}

#[tokio::test]
async fn redirect_points_elsewhere() {
    let emu = emulator().await;
    emu.inject(
        Endpoint::Email,
        Fault::Redirect("http://127.0.0.1:9/elsewhere".into()),
        Some(1),
    );
    let path = "/computeMetadata/v1/instance/service-accounts/default/email";
    let response = get(&client(), &emu.url(), path).await;
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        "http://127.0.0.1:9/elsewhere"
    );
    assert_eq!(response.headers()["metadata-flavor"], "Google");
}

#[tokio::test]
async fn oversize_sends_a_body_of_the_given_length() {
    let emu = emulator().await;
    emu.inject(
        Endpoint::ProjectId,
        Fault::Oversize(3 * 1024 * 1024 + 7),
        Some(1),
    );
    let (status, body) = get_text(&client(), &emu.url(), PROJECT).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), 3 * 1024 * 1024 + 7);
    let (_, body) = get_text(&client(), &emu.url(), PROJECT).await;
    assert_eq!(body, "emulated-project");
}

#[tokio::test]
async fn faults_override_refusals_and_not_found() {
    let emu = emulator().await;
    emu.inject(Endpoint::Other, Fault::Malformed("x".into()), Some(1));
    let (status, body) = get_text(&client(), &emu.url(), "/no/such/path").await;
    assert_eq!((status, body.as_str()), (200, "x"));
    assert_eq!(emu.requests(Endpoint::Other), 1);
}
