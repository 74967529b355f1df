//! The HTTP layer under stress: garbage, slow and hostile clients, keep-alive, pipelining,
//! bodies, concurrency and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint, Limits};

use common::{
    client, get, header_value, raw_exchange, read_one_response, read_to_close, status_of,
};

const PROJECT: &str = "/computeMetadata/v1/project/project-id";
const TOKEN: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

async fn emulator_with(limits: Limits) -> Emulator {
    Emulator::start(EmulatorConfig {
        limits,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap()
}

fn head_of(raw: &[u8]) -> String {
    let end = common::find(raw, b"\r\n\r\n").expect("a full response head");
    String::from_utf8(raw[..end].to_vec()).unwrap()
}

fn form_post(body: &str) -> String {
    format!(
        "POST /token HTTP/1.1\r\ncontent-type: application/x-www-form-urlencoded\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Finding 8: an escape that is not `%` and two hex digits (`%+1` parsed as the number 1 by
/// `u8::from_str_radix`) is a 400 in the path, the query and a form body, over a real socket.
#[tokio::test]
async fn finding_8_malformed_percent_escapes_get_400() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    for request in [
        format!("GET {TOKEN}%+1 HTTP/1.1\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n"),
        format!(
            "GET {TOKEN}?scopes=a%+1b HTTP/1.1\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n"
        ),
        format!(
            "GET {PROJECT}%-1 HTTP/1.1\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n"
        ),
        form_post("grant_type=refresh_token&refresh_token=%+1"),
        form_post("grant_type=refresh_token&refresh_token%+1=x"),
    ] {
        let raw = raw_exchange(emu.addr(), request.as_bytes()).await.unwrap();
        let head = head_of(&raw);
        assert_eq!(status_of(&head), 400, "{request:?} -> {head}");
        let answer = String::from_utf8_lossy(&raw);
        assert!(answer.contains("malformed"), "{request:?} -> {answer}");
    }
    // The target is refused before routing; the form bodies were routed, then refused.
    assert_eq!(emu.requests(Endpoint::Token), 0);
    assert_eq!(emu.requests(Endpoint::OAuthToken), 2);
    // The same requests, well escaped, are served.
    let ok = format!(
        "GET {TOKEN}?scopes=a%2Cb HTTP/1.1\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n"
    );
    let raw = raw_exchange(emu.addr(), ok.as_bytes()).await.unwrap();
    assert_eq!(status_of(&head_of(&raw)), 200);
}

#[tokio::test]
async fn garbage_gets_400_and_the_server_keeps_serving() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /%zz HTTP/1.1\r\n\r\n",
    ] {
        let raw = raw_exchange(emu.addr(), garbage).await.unwrap();
        let head = head_of(&raw);
        assert_eq!(status_of(&head), 400, "{garbage:?} -> {head}");
        assert_eq!(header_value(&head, "connection"), Some("close"));
    }
    let raw = raw_exchange(emu.addr(), b"\0\0\0\0\0\0\0\0").await.unwrap();
    assert_eq!(status_of(&head_of(&raw)), 400);
    assert_eq!(
        emu.total_requests(),
        0,
        "unparsable requests are not counted"
    );
    assert_eq!(get(&client(), &emu.url(), "/").await.status(), 200);
}

#[tokio::test]
async fn keep_alive_and_pipelining_serve_requests_in_order() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let mut stream = TcpStream::connect(emu.addr()).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..3 {
        stream
            .write_all(
                format!("GET {PROJECT} HTTP/1.1\r\nHost: x\r\nMetadata-Flavor: Google\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let (head, body) = read_one_response(&mut stream, &mut buf).await;
        assert_eq!(status_of(&head), 200);
        assert_eq!(body, b"emulated-project");
        assert_eq!(header_value(&head, "connection"), None);
    }
    // Three requests in one write, the last asking to close.
    let pipelined = format!(
        "GET {PROJECT} HTTP/1.1\r\nMetadata-Flavor: Google\r\n\r\n\
         GET /computeMetadata/v1/project/numeric-project-id HTTP/1.1\r\nMetadata-Flavor: Google\r\n\r\n\
         GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(pipelined.as_bytes()).await.unwrap();
    let (_, first) = read_one_response(&mut stream, &mut buf).await;
    let (_, second) = read_one_response(&mut stream, &mut buf).await;
    let (head, third) = read_one_response(&mut stream, &mut buf).await;
    assert_eq!(first, b"emulated-project");
    assert_eq!(second, b"123456789012");
    assert_eq!(third, b"computeMetadata/\n");
    assert_eq!(header_value(&head, "connection"), Some("close"));
    assert!(read_to_close(&mut stream).await.unwrap().is_empty());
    assert_eq!(emu.total_requests(), 6);
}

#[tokio::test]
async fn http_1_0_closes_after_the_answer() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let raw = raw_exchange(emu.addr(), b"GET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\ncomputeMetadata/\n"), "{text}");
}

#[tokio::test]
async fn slow_clients_time_out_without_blocking_others() {
    let emu = emulator_with(Limits {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    // Half a request, then silence: 408 after the header timeout.
    let mut slow = TcpStream::connect(emu.addr()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Meanwhile other clients are served at once.
    let started = Instant::now();
    assert_eq!(get(&client(), &emu.url(), "/").await.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(250));
    let raw = read_to_close(&mut slow).await.unwrap();
    assert_eq!(status_of(&head_of(&raw)), 408);

    // A connection that never sends anything is closed after the idle timeout.
    let mut idle = TcpStream::connect(emu.addr()).await.unwrap();
    let started = Instant::now();
    assert!(read_to_close(&mut idle).await.unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A slow body is cut off too.
    let mut slow_body = TcpStream::connect(emu.addr()).await.unwrap();
    slow_body
        .write_all(
            format!(
                "POST {TOKEN} HTTP/1.1\r\nMetadata-Flavor: Google\r\nContent-Length: 10\r\n\r\nabc"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let raw = read_to_close(&mut slow_body).await.unwrap();
    assert_eq!(status_of(&head_of(&raw)), 408);
}

#[tokio::test]
async fn oversized_heads_and_bodies_are_refused() {
    let emu = emulator_with(Limits {
        max_head_bytes: 1024,
        max_headers: 8,
        max_body_bytes: 100,
        ..Limits::default()
    })
    .await;
    let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(2000));
    let raw = raw_exchange(emu.addr(), long.as_bytes()).await.unwrap();
    assert_eq!(status_of(&head_of(&raw)), 431);

    let many: String = (0..20).map(|i| format!("X-{i}: v\r\n")).collect();
    let raw = raw_exchange(
        emu.addr(),
        format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(status_of(&head_of(&raw)), 431);

    // A head that never ends is refused at the limit, not after the header timeout.
    let endless = format!("GET / HTTP/1.1\r\nX-Endless: {}", "a".repeat(2000));
    let started = Instant::now();
    let raw = raw_exchange(emu.addr(), endless.as_bytes()).await.unwrap();
    assert_eq!(status_of(&head_of(&raw)), 431);
    assert!(started.elapsed() < Duration::from_secs(5));

    let big_body = format!(
        "POST {TOKEN} HTTP/1.1\r\nMetadata-Flavor: Google\r\nContent-Length: 101\r\n\r\n{}",
        "b".repeat(101)
    );
    let raw = raw_exchange(emu.addr(), big_body.as_bytes()).await.unwrap();
    assert_eq!(status_of(&head_of(&raw)), 413);

    let chunked = format!(
        "POST {TOKEN} HTTP/1.1\r\nMetadata-Flavor: Google\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    );
    let raw = raw_exchange(emu.addr(), chunked.as_bytes()).await.unwrap();
    assert_eq!(status_of(&head_of(&raw)), 501);

    let conflicting =
        format!("POST {TOKEN} HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
    let raw = raw_exchange(emu.addr(), conflicting.as_bytes())
        .await
        .unwrap();
    assert_eq!(status_of(&head_of(&raw)), 400);
    assert_eq!(emu.total_requests(), 0);
}

#[tokio::test]
async fn bodies_are_read_and_expect_continue_is_honoured() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let mut stream = TcpStream::connect(emu.addr()).await.unwrap();
    // No chain (null): an unbound token; a malformed chain would be a 400.
    let body = r#"{"certificate_chain":null}"#;
    stream
        .write_all(
            format!(
                "POST {TOKEN} HTTP/1.1\r\nMetadata-Flavor: Google\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (interim, _) = read_one_response(&mut stream, &mut buf).await;
    assert_eq!(status_of(&interim), 100);
    stream.write_all(body.as_bytes()).await.unwrap();
    // The body was consumed: the next request on the connection parses cleanly.
    stream
        .write_all(format!("GET {PROJECT} HTTP/1.1\r\nMetadata-Flavor: Google\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (head, token) = read_one_response(&mut stream, &mut buf).await;
    assert_eq!(status_of(&head), 200);
    assert!(String::from_utf8(token).unwrap().contains("access_token"));
    let (_, project) = read_one_response(&mut stream, &mut buf).await;
    assert_eq!(project, b"emulated-project");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients_are_all_served_and_counted() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let http = client();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let http = http.clone();
        let url = format!("{}{TOKEN}", emu.url());
        tasks.push(tokio::spawn(async move {
            let mut tokens = Vec::new();
            for _ in 0..10 {
                let response = http
                    .get(&url)
                    .header("Metadata-Flavor", "Google")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let json: serde_json::Value =
                    serde_json::from_str(&response.text().await.unwrap()).unwrap();
                tokens.push(json["access_token"].as_str().unwrap().to_owned());
            }
            tokens
        }));
    }
    let mut all = HashSet::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len(), 400, "every token is new");
    assert_eq!(emu.requests(Endpoint::Token), 400);
    assert_eq!(emu.total_requests(), 400);
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let addr = emu.addr();
    // An idle kept-alive connection (one answered request, then silence) does not hold shutdown up.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let (head, _) = read_one_response(&mut idle, &mut Vec::new()).await;
    assert_eq!(status_of(&head), 200);
    let started = Instant::now();
    emu.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(read_to_close(&mut idle).await.unwrap().is_empty());
    assert!(TcpStream::connect(addr).await.is_err());

    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let addr = emu.addr();
    drop(emu);
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener closes after drop");
}

#[tokio::test]
async fn start_on_reports_a_taken_port() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let err = workload_auth_emulator::serve(emu.addr(), EmulatorConfig::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), workload_auth_core::ErrorKind::Io);
    assert!(err.to_string().contains(&emu.host()), "{err}");
}

#[test]
fn start_in_thread_serves_blocking_clients() {
    let emu = Emulator::start_in_thread(EmulatorConfig::default()).unwrap();
    let mut stream = std::net::TcpStream::connect(emu.addr()).unwrap();
    stream
        .write_all(
            format!(
                "GET {PROJECT} HTTP/1.1\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("emulated-project"), "{text}");
    assert_eq!(emu.requests(Endpoint::ProjectId), 1);
}
