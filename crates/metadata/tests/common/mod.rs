//! Shared by the integration tests: an emulator and a client pointed at it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use workload_auth_core::RetryPolicy;
use workload_auth_emulator::{Emulator, EmulatorConfig};
use workload_auth_metadata::MetadataClient;

/// Test PEM material: the client passes it through without parsing the DER.
pub const CERT_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBdTCCARugAwIBAgIUTESTONLY\n-----END CERTIFICATE-----\n";
pub const KEY_PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49TESTONLY\n-----END PRIVATE KEY-----\n";

pub async fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.unwrap()
}

/// The default policy's five attempts, without the wait.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..RetryPolicy::default()
    }
}

/// A client for `emu`, configured explicitly (never through the process environment).
pub fn client(emu: &Emulator) -> MetadataClient {
    MetadataClient::builder()
        .host(emu.host())
        .retry_policy(fast_retry())
        .build()
        .unwrap()
}
