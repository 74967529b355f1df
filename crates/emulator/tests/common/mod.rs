//! Helpers shared by the emulator's integration tests: a real HTTP client and raw sockets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A reqwest client with the ring rustls provider, no proxy and no redirects followed.
pub(crate) fn client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GET `path` (relative to the server root) with `Metadata-Flavor: Google`.
pub(crate) async fn get(client: &reqwest::Client, base: &str, path: &str) -> reqwest::Response {
    client
        .get(format!("{base}{path}"))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
}

/// GET `path` and return status and body text.
pub(crate) async fn get_text(client: &reqwest::Client, base: &str, path: &str) -> (u16, String) {
    let response = get(client, base, path).await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Sends `raw` on a fresh connection and returns everything the server sends until it closes
/// (or `Err` with the I/O error, e.g. a reset).
pub(crate) async fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(raw).await?;
    read_to_close(&mut stream).await
}

/// Reads until the server closes, with a 10 s guard.
pub(crate) async fn read_to_close(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("server did not close the connection")?;
    Ok(out)
}

/// Reads exactly one response (head plus `Content-Length` body) from a kept-alive connection.
pub(crate) async fn read_one_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> (String, Vec<u8>) {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).unwrap();
            let len: usize = header_value(&head, "content-length")
                .map(|v| v.parse().unwrap())
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                read_some(stream, buf).await;
            }
            let body = buf[end + 4..total].to_vec();
            buf.drain(..total);
            return (head, body);
        }
        read_some(stream, buf).await;
    }
}

async fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
        .await
        .expect("server did not answer")
        .unwrap();
    assert!(n > 0, "server closed before a full response");
    buf.extend_from_slice(&chunk[..n]);
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of a header in a raw response head (name matched case-insensitively).
pub(crate) fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The status code of a raw response head.
pub(crate) fn status_of(head: &str) -> u16 {
    head.split(' ').nth(1).unwrap().parse().unwrap()
}
