//! The detection probe against loopback peers: the emulator (a metadata server), a web server
//! that is not one, a port nobody listens on, and a peer that never answers.
//!
//! The probe address is injected, so nothing here goes near 169.254.169.254.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use workload_auth_core::ErrorKind;
use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint, Fault};
use workload_auth_metadata::{Detection, DetectionInput, Rule, detect};

fn no_dmi() -> PathBuf {
    PathBuf::from("/nonexistent/workload-auth/product_name")
}

fn probe(addr: SocketAddr) -> Detection {
    detect(
        &DetectionInput::with_env_vars(Vec::<(String, String)>::new())
            .with_dmi_product_name_path(no_dmi())
            .with_probe_addr(addr),
    )
}

fn probe_outcome(d: &Detection) -> &str {
    let last = d.checks().last().unwrap();
    assert_eq!(last.rule, Rule::Probe);
    assert!(last.decided);
    &last.outcome
}

#[test]
fn the_emulator_answers_the_probe() {
    let emu = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    let d = probe(emu.addr());
    assert!(d.is_on_google_cloud(), "{d}");
    assert_eq!(d.decided_by(), Rule::Probe);
    assert!(probe_outcome(&d).contains("Metadata-Flavor: Google"), "{d}");
    assert_eq!(emu.requests(Endpoint::Root), 1);
    assert!(d.not_on_google_cloud_error().is_none());
}

#[test]
fn a_root_answer_without_the_flavor_is_not_a_metadata_server() {
    let emu = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    emu.inject(Endpoint::Root, Fault::MissingFlavor, None);
    let d = probe(emu.addr());
    assert!(!d.is_on_google_cloud(), "{d}");
    assert!(probe_outcome(&d).contains("without Metadata-Flavor"), "{d}");

    emu.clear_faults();
    emu.inject(Endpoint::Root, Fault::WrongFlavor, None);
    let d = probe(emu.addr());
    assert!(!d.is_on_google_cloud(), "{d}");
    assert!(probe_outcome(&d).contains("other than Google"), "{d}");
}

#[test]
fn a_reset_probe_is_not_a_metadata_server() {
    let emu = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    emu.inject(Endpoint::Root, Fault::Reset, None);
    let d = probe(emu.addr());
    assert!(!d.is_on_google_cloud(), "{d}");
}

#[test]
fn a_closed_port_fails_fast_and_explains_every_check() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let start = Instant::now();
    let d = probe(addr);
    assert!(start.elapsed() < Duration::from_millis(100), "{d}");
    assert!(!d.is_on_google_cloud());
    assert!(probe_outcome(&d).contains("cannot connect"), "{d}");
    let err = d.not_on_google_cloud_error().unwrap();
    assert_eq!(err.kind(), ErrorKind::NotOnGoogleCloud);
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert_eq!(d.checks().len(), 5);
}

#[test]
fn a_silent_peer_is_given_up_on_after_the_response_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let start = Instant::now();
    let d = detect(
        &DetectionInput::with_env_vars(Vec::<(String, String)>::new())
            .with_dmi_product_name_path(no_dmi())
            .with_probe_addr(addr)
            .with_probe_response_timeout(Duration::from_millis(100)),
    );
    let elapsed = start.elapsed();
    drop(listener);
    assert!(!d.is_on_google_cloud());
    assert!(probe_outcome(&d).contains("no answer within 100 ms"), "{d}");
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

#[test]
fn another_web_server_is_not_a_metadata_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 2048];
        let n = conn.read(&mut buf).unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\nServer: EC2ws\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let d = probe(addr);
    let request = server.join().unwrap();
    assert!(request.starts_with("GET / HTTP/1.1\r\n"), "{request}");
    assert!(!d.is_on_google_cloud());
    assert!(
        probe_outcome(&d).contains("HTTP 200 without Metadata-Flavor"),
        "{d}"
    );
}

#[test]
fn gce_metadata_ip_from_the_environment_is_probed() {
    let emu = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    let d = detect(
        &DetectionInput::with_env_vars([("GCE_METADATA_IP", emu.addr().to_string())])
            .with_dmi_product_name_path(no_dmi()),
    );
    assert!(d.is_on_google_cloud(), "{d}");
    assert!(probe_outcome(&d).contains("GCE_METADATA_IP"), "{d}");
}

#[test]
fn local_rules_decide_without_probing() {
    let emu = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    for vars in [
        vec![("GCE_METADATA_HOST", emu.host())],
        vec![("NO_GCE_CHECK", "true".to_owned())],
        vec![("CLOUD_RUN_JOB", "job".to_owned())],
    ] {
        let d = detect(
            &DetectionInput::with_env_vars(vars.clone())
                .with_dmi_product_name_path(no_dmi())
                .with_probe_addr(emu.addr()),
        );
        assert_ne!(d.decided_by(), Rule::Probe, "{vars:?}");
    }
    assert_eq!(
        emu.total_requests(),
        0,
        "a local rule decided, yet the probe ran"
    );
}
