//! Token requests through an HTTP proxy (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`), and a
//! `reqwest::Client` of the caller's own, against a `CONNECT` proxy written here that counts its
//! tunnels and the emulator's token endpoint over https, all on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rustls_pki_types::CertificateDer;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use workload_auth_adc::Builder;
use workload_auth_core::ErrorKind;
use workload_auth_emulator::{Emulator, Endpoint, MtlsListener};

/// What the test proxy does with a connection.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Opens the `CONNECT` tunnel (to loopback targets only).
    Tunnel,
    /// Accepts the connection and never answers.
    Hang,
    /// Answers `403 Forbidden` to the `CONNECT`.
    Deny,
}

/// A `CONNECT` proxy on loopback that counts connections and tunnels.
struct Proxy {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    tunnels: Arc<AtomicUsize>,
    /// The `Proxy-Authorization` headers it saw.
    auth: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proxy {
    async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            connections: Arc::default(),
            tunnels: Arc::default(),
            auth: Arc::default(),
        };
        let (connections, tunnels, auth) = (
            Arc::clone(&proxy.connections),
            Arc::clone(&proxy.tunnels),
            Arc::clone(&proxy.auth),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                connections.fetch_add(1, Ordering::SeqCst);
                let (tunnels, auth) = (Arc::clone(&tunnels), Arc::clone(&auth));
                tokio::spawn(serve(stream, mode, tunnels, auth));
            }
        });
        proxy
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut client: TcpStream,
    mode: Mode,
    tunnels: Arc<AtomicUsize>,
    auth: Arc<std::sync::Mutex<Vec<String>>>,
) {
    if mode == Mode::Hang {
        tokio::time::sleep(Duration::from_secs(60)).await;
        return;
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    for line in head.lines() {
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("proxy-authorization")
        {
            auth.lock().unwrap().push(value.trim().to_owned());
        }
    }
    let mut words = head.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    // `localhost:PORT` resolves from /etc/hosts; only loopback targets are tunnelled.
    let resolved = tokio::net::lookup_host(target)
        .await
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.ip().is_loopback() && a.is_ipv4()));
    let target: SocketAddr = match resolved {
        Some(t) if mode == Mode::Tunnel => t,
        _ => {
            let _ = client
                .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        }
    };
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    tunnels.fetch_add(1, Ordering::SeqCst);
    let _ = client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// An authorized-user credentials file whose token endpoint is the emulator over https.
fn user_file(home: &TempDir, tls: &MtlsListener, host: &str) -> std::path::PathBuf {
    let mut user = json!({
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "type": "authorized_user",
    });
    user["token_uri"] = json!(format!("https://{host}:{}/token", tls.addr().port()));
    home.write_json("user.json", &user)
}

fn root(tls: &MtlsListener) -> CertificateDer<'static> {
    CertificateDer::from(tls.server_root_der().to_vec())
}

/// A builder for the user file with `vars` besides GOOGLE_APPLICATION_CREDENTIALS, trusting the
/// emulator's TLS root.
fn builder_with(
    home: &TempDir,
    tls: &MtlsListener,
    host: &str,
    vars: &[(&str, String)],
) -> Builder {
    let file = user_file(home, tls, host);
    let mut all = vars.to_vec();
    all.push(("GOOGLE_APPLICATION_CREDENTIALS", file.display().to_string()));
    builder(home, &all).with_tls_root_certificates([root(tls)])
}

async fn tls_emulator() -> (Emulator, MtlsListener) {
    let emu = emulator().await;
    let tls = emu.start_tls().await.unwrap();
    (emu, tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_tunnel_through_the_https_proxy() {
    let (emu, tls) = tls_emulator().await;
    let home = TempDir::new("proxy-https");
    for variable in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        let proxy = Proxy::start(Mode::Tunnel).await;
        let creds = builder_with(&home, &tls, "127.0.0.1", &[(variable, proxy.url())])
            .build()
            .unwrap();
        let token = creds.access_token().await.unwrap();
        assert!(emu.issued_token(token.secret().expose()).is_some());
        assert_eq!(proxy.tunnels(), 1, "{variable}: one tunnel");
    }
    // Credentials in the proxy URL become Proxy-Authorization; they appear in no Debug output.
    let proxy = Proxy::start(Mode::Tunnel).await;
    let url = format!("http://proxyuser:hunter2@{}", proxy.addr);
    let builder = builder_with(&home, &tls, "127.0.0.1", &[("HTTPS_PROXY", url)]);
    let creds = builder.clone().build().unwrap();
    creds.access_token().await.unwrap();
    assert_eq!(proxy.tunnels(), 1);
    assert_eq!(
        proxy.auth.lock().unwrap().as_slice(),
        ["Basic cHJveHl1c2VyOmh1bnRlcjI="]
    );
    assert!(!format!("{builder:?} {creds:?}").contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_sends_requests_directly() {
    let (emu, tls) = tls_emulator().await;
    let home = TempDir::new("proxy-no");
    let proxy = Proxy::start(Mode::Tunnel).await;
    for (host, no_proxy) in [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1", "example.com, 127.0.0.0/8"),
        ("localhost", "localhost"),
        ("localhost", "*"),
    ] {
        let vars = [
            ("HTTPS_PROXY", proxy.url()),
            ("NO_PROXY", no_proxy.to_owned()),
        ];
        let creds = builder_with(&home, &tls, host, &vars).build().unwrap();
        let token = creds.access_token().await.unwrap();
        assert!(emu.issued_token(token.secret().expose()).is_some());
    }
    assert_eq!(proxy.connections(), 0, "NO_PROXY bypasses the proxy");
    // An entry that does not name the host leaves it proxied.
    let vars = [
        ("HTTPS_PROXY", proxy.url()),
        ("no_proxy", "localhost.example".to_owned()),
    ];
    builder_with(&home, &tls, "localhost", &vars)
        .build()
        .unwrap()
        .access_token()
        .await
        .unwrap();
    assert_eq!(proxy.tunnels(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_requests_never_go_through_the_proxy() {
    let emu = emulator().await;
    let home = TempDir::new("proxy-mds");
    let proxy = Proxy::start(Mode::Tunnel).await;
    let vars: Vec<(&str, String)> = [
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "ALL_PROXY",
        "https_proxy",
        "http_proxy",
    ]
    .into_iter()
    .map(|v| (v, proxy.url()))
    .chain([("GCE_METADATA_HOST", emu.host())])
    .collect();
    let creds = builder(&home, &vars).build().unwrap();
    let token = creds.access_token().await.unwrap();
    assert!(emu.issued_token(token.secret().expose()).is_some());
    creds.id_token("https://backend.example").await.unwrap();
    assert!(creds.project_id().await.unwrap().is_some());
    assert!(emu.requests(Endpoint::Token) >= 1);
    assert_eq!(
        proxy.connections(),
        0,
        "the metadata server is reached directly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_refuses_hangs_or_denies_is_a_clear_error_in_time() {
    let (_emu, tls) = tls_emulator().await;
    let home = TempDir::new("proxy-bad");
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let hanging = Proxy::start(Mode::Hang).await;
    let denying = Proxy::start(Mode::Deny).await;
    let timeout = Duration::from_millis(700);
    for (what, url) in [
        ("refusing", format!("http://u:hunter2@{closed}")),
        ("hanging", format!("http://u:hunter2@{}", hanging.addr)),
        ("denying", format!("http://u:hunter2@{}", denying.addr)),
    ] {
        let creds = builder_with(&home, &tls, "127.0.0.1", &[("HTTPS_PROXY", url)])
            .with_http_timeout(timeout)
            .build()
            .unwrap();
        let started = Instant::now();
        let err = creds.access_token().await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::Transport, "{what}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("through the proxy http://127.0.0.1:"),
            "{what}: {text}"
        );
        assert!(
            text.contains("(HTTPS_PROXY)") && text.contains("NO_PROXY"),
            "{text}"
        );
        assert!(!format!("{text} {err:?}").contains("hunter2"), "{err:?}");
        // Three attempts (the test cache's retry policy), each bounded by the timeout.
        assert!(
            took < timeout * 3 + Duration::from_secs(2),
            "{what}: {took:?}"
        );
    }
    assert!(hanging.connections() >= 1 && denying.connections() >= 1);
}

#[test]
fn unusable_proxy_variables_fail_the_build() {
    let home = TempDir::new("proxy-invalid");
    for (variable, value) in [
        ("HTTPS_PROXY", "socks5://u:hunter2@127.0.0.1:1080"),
        ("ALL_PROXY", "ftp://127.0.0.1"),
        ("https_proxy", "http://u:hunter2@"),
    ] {
        let file = home.write_json(
            "user.json",
            &json!({"type": "authorized_user", "client_id": "c", "client_secret": "s",
                    "refresh_token": "r"}),
        );
        let err = builder(
            &home,
            &[
                (variable, value.to_owned()),
                ("GOOGLE_APPLICATION_CREDENTIALS", file.display().to_string()),
            ],
        )
        .build()
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{value}: {err}");
        assert!(err.to_string().contains(variable), "{err}");
        assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
    }
}

#[test]
fn a_zero_http_timeout_fails_the_build() {
    let home = TempDir::new("zero-timeout");
    let file = home.write_json(
        "user.json",
        &json!({"type": "authorized_user", "client_id": "c", "client_secret": "s",
                "refresh_token": "r"}),
    );
    let err = builder_for(&home, &file)
        .with_http_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("zero"), "{err}");
}

/// A reqwest client builder trusting `roots` only, on the ring provider.
fn client_builder(roots: &[CertificateDer<'static>]) -> reqwest::ClientBuilder {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_own_client_owns_the_proxy_and_tls_settings() {
    let (emu, tls) = tls_emulator().await;
    let home = TempDir::new("own-client");
    let proxy = Proxy::start(Mode::Tunnel).await;
    // The environment names a proxy, but the caller's client goes direct.
    let direct = client_builder(&[root(&tls)])
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let creds = builder_with(&home, &tls, "127.0.0.1", &[("HTTPS_PROXY", proxy.url())])
        // Roots given to the builder do not apply to the caller's client...
        .with_tls_root_certificates([])
        .with_http_client(direct)
        .build()
        .unwrap();
    let token = creds.access_token().await.unwrap();
    assert!(emu.issued_token(token.secret().expose()).is_some());
    assert_eq!(proxy.connections(), 0);
    // ...and the caller's proxy applies without any variable.
    let proxied = client_builder(&[root(&tls)])
        .proxy(reqwest::Proxy::https(proxy.url()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let creds = builder_with(&home, &tls, "127.0.0.1", &[])
        .with_http_client(proxied)
        .build()
        .unwrap();
    creds.access_token().await.unwrap();
    assert_eq!(proxy.tunnels(), 1);
    // A client that does not trust the server fails as TLS does.
    let untrusting = client_builder(&[]).no_proxy().build().unwrap();
    let err = builder_with(&home, &tls, "127.0.0.1", &[])
        .with_http_client(untrusting)
        .build()
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
}

/// A plain-HTTP server that answers every request with `307` to `location`.
async fn redirector(location: String) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let location = location.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let _ = stream.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\n\
                     content-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_refused_with_an_own_client() {
    let emu = emulator().await;
    let home = TempDir::new("own-client-redirect");
    let (addr, _hits) = redirector(format!("{}/token", emu.url())).await;
    let mut user = authorized_user_json(&emu);
    user["token_uri"] = json!(format!("http://{addr}/token"));
    let file = home.write_json("user.json", &user);
    // Redirects off, as documented: the 307 itself is refused and nothing reaches the target.
    let client = client_builder(&[])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let err = builder_for(&home, &file)
        .with_http_client(client)
        .build()
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(307), "{err}");
    assert!(err.message().contains("redirect"), "{err}");
    assert!(!err.is_transient());
    assert_eq!(emu.requests(Endpoint::OAuthToken), 0);
    // A client that follows redirects: the answer from elsewhere is refused, and the error says
    // how to build the client.
    let following = client_builder(&[]).build().unwrap();
    let err = builder_for(&home, &file)
        .with_http_client(following)
        .build()
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert!(err.message().contains("followed a redirect"), "{err}");
    assert!(err.hint().unwrap().contains("Policy::none()"), "{err}");
    assert!(!err.is_transient());
}
