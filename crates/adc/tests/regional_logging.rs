//! Regional access boundaries log one line per change of state, never one per request (the
//! Python peer logged a 403 on every request): many requests and repeated failed lookups give
//! one warning; recovery gives one info line; nothing logged carries the token. A test
//! subscriber of its own (this binary's global one) captures what the library logs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::TempDir;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber, span};
use workload_auth_adc::RegionalState;
use workload_auth_emulator::{Endpoint, Fault};

/// Every event of the regional module: its level and its text (message and fields).
static LINES: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());

struct Capture;

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        if meta.target().starts_with("workload_auth_adc::regional") {
            let mut text = Text(String::new());
            event.record(&mut text);
            LINES.lock().unwrap().push((*meta.level(), text.0));
        }
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

fn count(level: Level) -> usize {
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, _)| *l == level)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_state_change_never_per_request() {
    tracing::subscriber::set_global_default(Capture).unwrap();
    let emu = common::emulator().await;
    emu.inject(Endpoint::AllowedLocations, Fault::Status(403), None);
    let home = TempDir::new("rab-logging");
    let credentials = common::builder(
        &home,
        &[
            ("GCE_METADATA_HOST", emu.host()),
            ("GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED", "true".into()),
        ],
    )
    .with_iam_credentials_endpoint(format!("{}/v1/", emu.url()))
    .build()
    .unwrap();
    let token = credentials.access_token().await.unwrap();

    // Many requests while the lookup fails: the first starts a lookup, the rest wait out its
    // backoff; `explain` forces three more lookups, each failing again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !matches!(
        credentials.regional_access_boundary(),
        RegionalState::Failing(_)
    ) {
        assert!(Instant::now() < deadline, "the lookup never failed");
        credentials.request_headers().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..100 {
        let headers = credentials.request_headers().await.unwrap();
        assert_eq!(headers.allowed_locations(), None, "fail open");
    }
    for _ in 0..3 {
        credentials.explain().await;
    }
    assert_eq!(emu.requests(Endpoint::AllowedLocations), 4);
    assert_eq!(count(Level::WARN), 1, "{:?}", LINES.lock().unwrap());
    assert_eq!(count(Level::INFO), 0, "{:?}", LINES.lock().unwrap());

    // Recovery: one info line, then silence however many requests follow.
    emu.clear_faults();
    credentials.explain().await;
    for _ in 0..100 {
        let headers = credentials.request_headers().await.unwrap();
        assert_eq!(headers.allowed_locations(), Some("0xA30"));
    }
    let lines = LINES.lock().unwrap().clone();
    assert_eq!(count(Level::WARN), 1, "{lines:?}");
    assert_eq!(count(Level::INFO), 1, "{lines:?}");
    assert!(lines[1].1.contains("0xA30"), "{lines:?}");
    let secret = token.secret().expose();
    assert!(
        lines.iter().all(|(_, text)| !text.contains(secret)),
        "{lines:?}"
    );
    emu.shutdown().await;
}
