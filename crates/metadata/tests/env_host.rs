//! `MetadataClientBuilder::build` reads `GCE_METADATA_HOST` when no host is given. The variable is
//! set only in a child process (the test re-executes itself), never in this one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint};
use workload_auth_metadata::MetadataClient;

const MARKER: &str = "WORKLOAD_AUTH_METADATA_ENV_CHILD";
const TEST_NAME: &str = "gce_metadata_host_is_read_at_build_time";

#[test]
fn gce_metadata_host_is_read_at_build_time() {
    if std::env::var_os(MARKER).is_some() {
        let client = MetadataClient::builder().build().unwrap();
        let host = std::env::var("GCE_METADATA_HOST").unwrap();
        assert_eq!(
            client.host().authority(),
            host.trim_start_matches("http://")
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(
            runtime.block_on(client.project_id()).unwrap(),
            "env-project"
        );
        return;
    }
    let emu = Emulator::start_in_thread(EmulatorConfig {
        project_id: "env-project".into(),
        ..EmulatorConfig::default()
    })
    .unwrap();
    for value in [emu.host(), emu.url()] {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(MARKER, "1")
            .env("GCE_METADATA_HOST", &value)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{value}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");
    }
    assert_eq!(emu.requests(Endpoint::ProjectId), 2);
}
