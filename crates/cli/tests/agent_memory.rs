//! The agent's memory with 1,000 open `FetchX509SVID` streams, measured on the real binary
//! (resident set from /proc), and bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};

use workload_auth::workload_api::proto::X509svidRequest;
use workload_auth::workload_api::{Endpoint, connect_client, request};
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};

const STREAMS: usize = 1000;
/// Streams share connections as processes' gRPC channels would not: each connection stands for a
/// workload process, opening several streams (SVIDs, bundles) is common.
const CONNECTIONS: usize = 100;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn agent_memory_with_1000_open_streams_is_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = TrustDomainCa::new("example.org").unwrap();
    let partner = TrustDomainCa::new("partner.example").unwrap();
    let writer = CredentialsDirWriter::new(tmp.path().join("creds"));
    writer
        .write(&CredentialsContents::new(
            &ca.issue("spiffe://example.org/w").unwrap(),
            &ca,
            [&partner],
        ))
        .unwrap();
    let socket = tmp.path().join("agent.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_workload-auth"))
        .args([
            "agent",
            "--socket",
            &format!("unix://{}", socket.display()),
            "--credentials",
            &writer.link_path().display().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("agent serving"), "{first}");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let endpoint = Endpoint::unix(&socket);
    let (idle, open, streams) = runtime.block_on(async {
        // One call first, so the idle figure includes the runtime's and TLS-free gRPC's warm-up.
        let mut warm = connect_client(&endpoint).await.unwrap();
        let mut s = warm
            .fetch_x509svid(request(X509svidRequest {}))
            .await
            .unwrap()
            .into_inner();
        s.message().await.unwrap().unwrap();
        drop(s);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let idle = rss_kib(child.id());

        let mut streams = Vec::with_capacity(STREAMS);
        let mut clients = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            clients.push(connect_client(&endpoint).await.unwrap());
        }
        for i in 0..STREAMS {
            let client = &mut clients[i % CONNECTIONS];
            let mut s = client
                .fetch_x509svid(request(X509svidRequest {}))
                .await
                .unwrap()
                .into_inner();
            assert!(s.message().await.unwrap().is_some());
            streams.push(s);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let open = rss_kib(child.id());
        (idle, open, (streams, clients))
    });
    let delta = open.saturating_sub(idle);
    let _ = writeln!(
        std::io::stderr(),
        "agent RSS: idle {idle} KiB, with {STREAMS} open streams over {CONNECTIONS} connections \
         {open} KiB (+{delta} KiB, {:.1} KiB per stream)",
        delta as f64 / STREAMS as f64
    );
    drop(streams);
    let _ = child.kill();
    let _ = child.wait();
    // A stream is a small task and an HTTP/2 stream: well under 64 KiB each.
    assert!(delta < 64 * 1024, "+{delta} KiB for {STREAMS} streams");
}
