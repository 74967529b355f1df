//! `workload-auth demo`: the whole story on an in-process emulator, with nothing to set up.
//!
//! 1. Application Default Credentials resolve to the (emulated) metadata server, and explain why.
//! 2. An access token and an ID token are fetched once and then served from the cache: a thousand
//!    concurrent callers cause no further request, and a hit costs nanoseconds.
//! 3. Two workloads with different SPIFFE IDs complete an mTLS handshake; a third, not allowed by
//!    the server's policy, is refused; certificates rotate mid-run without a failed handshake.
//! 4. A SPIFFE agent serves the frontend's credentials over the Workload API on a Unix socket; a
//!    Workload API client takes its identity from there and completes the same handshake.
//! 5. The frontend's certificate in each credential layout a platform delivers (the node agent's
//!    files, the combined file, SPIFFE filesystem delivery, a hidden key): each is found and
//!    handshakes, except the hidden key, which still names the workload and is refused with a
//!    clear error.
//! 6. Agent Identity: with an agent-identity workload certificate, tokens are bound to it, handed
//!    out only together with it, refused with any other certificate, and renewed on rotation.
//! 7. Boundaries: the regional access boundary header, downscoped tokens made server-side and
//!    minted client-side (each checked by the emulator), and the federated project id.
//! 8. The metadata server over mutual TLS in `strict` mode, on an emulator of its own, with a
//!    client certificate rotated mid-run and not one plain-HTTP request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workload_auth::mtls::{
    Authorizer, CredentialsDir, SpiffeId, SvidStore, VerificationError, WatchOptions,
};
use workload_auth::workload_api::{
    Endpoint as ApiEndpoint, WorkloadApiOptions, WorkloadApiServer, WorkloadApiSource,
};
use workload_auth::{CredentialsBuilder, EnvSource, WorkloadIdentity};
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{
    CredentialsContents, CredentialsDirWriter, Layout,
};
use workload_auth_emulator::{Emulator, EmulatorConfig, Endpoint};

use crate::output::say;

const TRUST_DOMAIN: &str = "demo-pool.global.123456789012.workload.id.goog";

fn id(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/demo/sa/{name}")
}

fn err(context: &str) -> impl Fn(workload_auth::Error) -> String + '_ {
    move |e| format!("{context}: {e}")
}

pub(crate) async fn run() -> Result<(), String> {
    let emulator = Emulator::start(EmulatorConfig {
        project_id: "demo-project".into(),
        ..EmulatorConfig::default()
    })
    .await
    .map_err(err("starting the emulator"))?;
    say(&format!(
        "== workload-auth demo (emulator on {}) ==",
        emulator.addr()
    ));
    let scratch =
        tempfile::tempdir().map_err(|e| format!("creating a scratch directory failed: {e}"))?;

    google_apis(&emulator, scratch.path()).await?;
    workloads(scratch.path()).await?;
    agent_identity(&emulator, scratch.path()).await?;
    boundaries(&emulator, scratch.path()).await?;
    metadata_over_mtls(scratch.path()).await?;
    say("\ndemo complete: every step succeeded");
    Ok(())
}

/// Steps 1 and 2 of the demo: ADC resolved and explained, then tokens fetched once and served
/// from the cache.
async fn google_apis(emulator: &Emulator, home: &std::path::Path) -> Result<(), String> {
    say("\n-- 1. Application Default Credentials --");
    // The demo sees only the emulator: an empty home and nothing but GCE_METADATA_HOST.
    let builder = CredentialsBuilder::new()
        .with_env(EnvSource::from_vars([("GCE_METADATA_HOST", emulator.host())]).with_home(home))
        .with_metadata_host(emulator.host());
    let credentials = builder.build().map_err(err("resolving ADC"))?;
    let explanation = credentials.explain().await;
    for line in explanation.to_string().lines() {
        say(&format!("   {line}"));
    }

    say("\n-- 2. Tokens, fetched once and cached --");
    let started = Instant::now();
    let token = credentials
        .access_token()
        .await
        .map_err(err("fetching an access token"))?;
    say(&format!(
        "   access token: {}… ({} bytes, {} s left), fetched in {:.1} ms",
        token.secret().expose().chars().take(18).collect::<String>(),
        token.secret().len(),
        token.expires_in().as_secs(),
        started.elapsed().as_secs_f64() * 1e3
    ));
    cache_under_load(emulator, &credentials).await?;
    id_tokens(emulator, &credentials).await
}

/// A thousand concurrent callers get the one cached token without reaching the server, and the
/// cost of a cached hit.
async fn cache_under_load(
    emulator: &Emulator,
    credentials: &workload_auth::Credentials,
) -> Result<(), String> {
    let callers = 1000;
    let before = emulator.requests(Endpoint::Token);
    let served = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let credentials = credentials.clone();
            let served = Arc::clone(&served);
            tokio::spawn(async move {
                if credentials.access_token().await.is_ok() {
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| format!("a concurrent caller failed: {e}"))?;
    }
    let after = emulator.requests(Endpoint::Token);
    say(&format!(
        "   {callers} concurrent callers: {} served, {} new token request(s) reached the server",
        served.load(Ordering::Relaxed),
        after - before
    ));
    if after != before {
        return Err("the cache let concurrent callers through to the server".into());
    }

    let hits = 200_000u32;
    let started = Instant::now();
    for _ in 0..hits {
        let token = credentials
            .access_token()
            .await
            .map_err(err("reading the cached token"))?;
        std::hint::black_box(token.secret().len());
    }
    say(&format!(
        "   cached hits: {:.0} ns each (the cache refreshes in the background ~4 min before expiry)",
        started.elapsed().as_nanos() as f64 / f64::from(hits)
    ));
    Ok(())
}

/// An ID token for an audience, its claims shown, and a second call served from the cache.
async fn id_tokens(
    emulator: &Emulator,
    credentials: &workload_auth::Credentials,
) -> Result<(), String> {
    let audience = "https://backend.demo.run.app";
    let id_token = credentials
        .id_token(audience)
        .await
        .map_err(err("fetching an ID token"))?;
    let claims = id_token
        .secret()
        .expose()
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .ok_or("the ID token is not a JWT")?;
    say(&format!(
        "   ID token for {audience}: aud={} iss={} (signed RS256 by the emulator; verify with its JWKS)",
        claims["aud"], claims["iss"]
    ));
    credentials
        .id_token(audience)
        .await
        .map_err(err("reading the cached ID token"))?;
    say(&format!(
        "   a second ID-token call was served from the cache ({} identity request(s) in all)",
        emulator.requests(Endpoint::Identity)
    ));
    Ok(())
}

/// ADC against a metadata server that speaks mTLS (`GCE_METADATA_MTLS_MODE=strict`): tokens over
/// mTLS only, the transport in `explain`, a rotated client certificate picked up without a
/// restart, and the count of plain-HTTP requests (none).
async fn metadata_over_mtls(home: &std::path::Path) -> Result<(), String> {
    say("\n-- 8. The metadata server over mTLS (strict) --");
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .map_err(err("starting the mTLS emulator"))?;
    let dir = home.join("mds-mtls");
    let ca = emulator
        .enable_mds_mtls(&dir)
        .map_err(err("enabling MDS mTLS"))?;
    say(&format!(
        "   the emulator wrote root.crt and client.key to {} (as the guest agent does)",
        dir.display()
    ));
    let env = EnvSource::from_vars([
        ("GCE_METADATA_HOST", emulator.host()),
        ("GCE_METADATA_MTLS_MODE", "strict".to_owned()),
        ("WORKLOAD_AUTH_MDS_MTLS_DIR", dir.display().to_string()),
    ])
    .with_home(home);
    let credentials = CredentialsBuilder::new()
        .with_env(env)
        .with_metadata_host(emulator.host())
        .build()
        .map_err(err("resolving ADC over mTLS"))?;
    let token = credentials
        .access_token()
        .await
        .map_err(err("fetching a token over mTLS"))?;
    say(&format!(
        "   access token over mTLS: {} bytes",
        token.secret().len()
    ));
    let explanation = credentials.explain().await;
    for detail in explanation
        .details
        .iter()
        .filter(|d| d.name.starts_with("metadata_"))
    {
        say(&format!("   explain: {} = {}", detail.name, detail.value));
    }
    let rotated = ca
        .issue_client(workload_auth_emulator::mds_mtls::CLIENT_CERT_LIFETIME)
        .and_then(|client| ca.write_dir(&dir, &client).map(|()| client))
        .map_err(err("rotating the MDS client certificate"))?;
    credentials
        .id_token("https://backend.demo.run.app")
        .await
        .map_err(err("fetching an ID token after rotation"))?;
    let seen = emulator.mds_mtls_client_certs();
    if seen.last().map(Vec::as_slice) != Some(rotated.cert_der()) {
        return Err("the rotated MDS client certificate was not used".into());
    }
    say("   client certificate rotated on disk; the next request presented the new one");
    say(&format!(
        "   {} request(s) over mTLS, {} over plain HTTP",
        emulator.mds_mtls_requests(),
        emulator.plain_http_requests()
    ));
    if emulator.plain_http_requests() != 0 {
        return Err("strict mode sent a plain-HTTP request".into());
    }
    Ok(())
}

struct Workload {
    writer: CredentialsDirWriter,
    identity: WorkloadIdentity,
}

fn workload(ca: &TrustDomainCa, root: &std::path::Path, name: &str) -> Result<Workload, String> {
    let writer = CredentialsDirWriter::new(root.join(name));
    let svid = ca.issue(&id(name)).map_err(err("issuing a certificate"))?;
    writer
        .write(&CredentialsContents::new(&svid, ca, []))
        .map_err(err("writing a credentials directory"))?;
    let options = WatchOptions {
        poll_interval: Duration::from_millis(25),
        ..WatchOptions::default()
    };
    let identity = WorkloadIdentity::from_directory_with(Some(&writer.link_path()), options)
        .map_err(err("loading a workload identity"))?;
    Ok(Workload { writer, identity })
}

fn rotate(ca: &TrustDomainCa, w: &Workload) -> Result<(), String> {
    let svid = ca
        .issue(w.identity.spiffe_id().as_str())
        .map_err(err("issuing a certificate"))?;
    w.writer
        .write(&CredentialsContents::new(&svid, ca, []))
        .map(|_| ())
        .map_err(err("rotating a credentials directory"))
}

/// Step 3 of the demo: three workloads of one trust domain; the backend lets in only the
/// frontend, across a rotation of every certificate; then step 4 (the agent) and 5 (layouts)
/// against the same backend.
async fn workloads(root: &std::path::Path) -> Result<(), String> {
    say("\n-- 3. Workloads authenticate each other over mTLS --");
    let ca = TrustDomainCa::new(TRUST_DOMAIN).map_err(err("creating the demo CA"))?;
    let backend = workload(&ca, root, "backend")?;
    let frontend = workload(&ca, root, "frontend")?;
    let intruder = workload(&ca, root, "intruder")?;
    for w in [&backend, &frontend, &intruder] {
        say(&format!("   workload {}", w.identity.spiffe_id()));
    }
    let backend_id = SpiffeId::parse(&id("backend")).map_err(|e| e.to_string())?;
    let server = Backend::serve(&backend).await?;
    let target = (&backend_id, server.addr);

    let (peer, reply) = call(&frontend, target).await?;
    say(&format!(
        "   frontend -> backend: verified {peer}; \"{reply}\""
    ));
    match call(&intruder, target).await {
        Ok((_, reply)) => return Err(format!("the intruder was let in: {reply}")),
        Err(client_side) => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            say(&format!(
                "   intruder -> backend: refused (server: {}; client: {client_side})",
                server.last_refusal()
            ));
        }
    }
    rotate_while_calling(&ca, &frontend, &backend, target).await?;
    agent(root, &frontend, target).await?;
    layouts(&ca, root, server.addr, &backend_id).await?;
    server.task.abort();
    Ok(())
}

/// The backend's mTLS server for the demo: where it listens, and why it refused each
/// handshake it refused.
struct Backend {
    addr: std::net::SocketAddr,
    refusals: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Serves `backend` on loopback, letting in only the frontend and answering each
    /// connection with how many bytes it got.
    async fn serve(backend: &Workload) -> Result<Self, String> {
        let frontend_id = SpiffeId::parse(&id("frontend")).map_err(|e| e.to_string())?;
        let acceptor = backend
            .identity
            .acceptor(Authorizer::exact(frontend_id))
            .map_err(err("building the backend's server"))?;
        say(&format!(
            "   backend serves mTLS and allows only {}",
            id("frontend")
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the backend: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("binding the backend: {e}"))?;
        let refusals = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let server_refusals = Arc::clone(&refusals);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let refusals = Arc::clone(&server_refusals);
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok((mut tls, peer)) => {
                            let mut buf = [0u8; 64];
                            if let Ok(n) = tls.read(&mut buf).await {
                                let reply = format!("backend to {peer}: got {n} bytes");
                                let _ = tls.write_all(reply.as_bytes()).await;
                                let _ = tls.shutdown().await;
                            }
                        }
                        Err(e) => {
                            let reason = VerificationError::find(&e)
                                .map_or_else(|| e.to_string(), ToString::to_string);
                            if let Ok(mut list) = refusals.lock() {
                                list.push(reason);
                            }
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            refusals,
            task,
        })
    }

    /// Why the server refused its last refused handshake (empty if none).
    fn last_refusal(&self) -> String {
        self.refusals
            .lock()
            .map(|l| l.last().cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

/// One call of `who` to the backend `(id, addr)`: the verified peer and the backend's reply.
async fn call(
    who: &Workload,
    (backend_id, addr): (&SpiffeId, std::net::SocketAddr),
) -> Result<(SpiffeId, String), String> {
    let connector = who
        .identity
        .connector(Authorizer::exact(backend_id.clone()))
        .map_err(err("building a client"))?;
    let (mut tls, peer) = connector.connect(addr).await.map_err(|e| e.to_string())?;
    tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut reply = String::new();
    tls.read_to_string(&mut reply)
        .await
        .map_err(|e| format!("the server closed the connection: {e}"))?;
    if reply.is_empty() {
        return Err("the server closed the connection without answering".to_owned());
    }
    Ok((peer, reply))
}

/// Rotates both certificates while the frontend keeps calling; every handshake must succeed
/// and both sides must have picked up the new material.
async fn rotate_while_calling(
    ca: &TrustDomainCa,
    frontend: &Workload,
    backend: &Workload,
    target: (&SpiffeId, std::net::SocketAddr),
) -> Result<(), String> {
    say("   rotating every certificate while the frontend keeps calling…");
    let (old_front, old_back) = (
        frontend.identity.store().generation(),
        backend.identity.store().generation(),
    );
    let mut ok = 0;
    for round in 0..40 {
        if round == 10 {
            rotate(ca, frontend)?;
            rotate(ca, backend)?;
        }
        call(frontend, target)
            .await
            .map_err(|e| format!("a handshake failed during rotation: {e}"))?;
        ok += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (new_front, new_back) = (
        frontend.identity.store().generation(),
        backend.identity.store().generation(),
    );
    if new_front == old_front || new_back == old_back {
        return Err("the rotation was not picked up".into());
    }
    say(&format!(
        "   {ok} handshakes, 0 failed; frontend material generation {old_front} -> {new_front}, backend {old_back} -> {new_back}"
    ));
    Ok(())
}

/// Section 4: an agent serves the frontend's credentials directory over the Workload API, and
/// the frontend, its identity taken from the agent, calls the backend.
async fn agent(
    root: &std::path::Path,
    frontend: &Workload,
    target: (&SpiffeId, std::net::SocketAddr),
) -> Result<(), String> {
    say("\n-- 4. A SPIFFE agent: the Workload API on a Unix socket --");
    let socket = root.join("agent.sock");
    let agent =
        WorkloadApiServer::builder(Arc::new(CredentialsDir::new(frontend.writer.link_path())))
            .socket(&socket)
            .bind()
            .await
            .map_err(err("starting the agent"))?;
    let (stop_agent, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent_task = tokio::spawn(agent.serve_until(async {
        let _ = stopped.await;
    }));
    say(&format!(
        "   agent serving unix://{} from the frontend's credentials directory",
        socket.display()
    ));
    let source =
        WorkloadApiSource::connect(ApiEndpoint::unix(&socket), WorkloadApiOptions::default())
            .await
            .map_err(err("fetching the SVID from the agent"))?;
    let material = source
        .load_now()
        .map_err(err("fetching the SVID from the agent"))?;
    say(&format!(
        "   Workload API client received {} and {} trust bundle(s)",
        material.svid().spiffe_id(),
        material.bundles().len()
    ));
    let via_agent = Workload {
        writer: frontend.writer.clone(),
        identity: WorkloadIdentity::watching(
            SvidStore::new(material),
            Arc::new(source),
            WatchOptions::default(),
        )
        .map_err(err("watching the Workload API"))?,
    };
    let (peer, reply) = call(&via_agent, target).await?;
    say(&format!(
        "   frontend (identity from the agent) -> backend: verified {peer}; \"{reply}\""
    ));
    let _ = stop_agent.send(());
    let _ = agent_task.await;
    Ok(())
}

/// Section 5: the frontend's identity written in each layout, loaded, and used against the
/// backend still serving at `addr`.
async fn layouts(
    ca: &TrustDomainCa,
    root: &std::path::Path,
    addr: std::net::SocketAddr,
    backend_id: &SpiffeId,
) -> Result<(), String> {
    say("\n-- 5. Credential layouts: the same identity however the platform delivers it --");
    for layout in Layout::ALL {
        let writer = CredentialsDirWriter::new(root.join("layouts").join(layout.name()));
        let svid = ca
            .issue(&id("frontend"))
            .map_err(err("issuing a certificate"))?;
        writer
            .write(&CredentialsContents::with_layout(layout, &svid, ca, []))
            .map_err(err("writing a credentials directory"))?;
        let identity = WorkloadIdentity::from_directory(Some(&writer.link_path()))
            .map_err(err("loading a credentials directory"))?;
        let found = identity.layout().map_or("(none)", |l| l.certificate_file());
        let outcome = match identity.connector(Authorizer::exact(backend_id.clone())) {
            Ok(connector) => {
                let (mut tls, peer) = connector.connect(addr).await.map_err(|e| e.to_string())?;
                tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
                let mut reply = String::new();
                let _ = tls.read_to_string(&mut reply).await;
                format!("verified {peer}")
            }
            Err(e) if !identity.has_private_key() => {
                let reason = workload_auth::mtls::CredentialError::find(&e)
                    .map_or_else(|| e.to_string(), ToString::to_string);
                format!("no handshake: {reason}")
            }
            Err(e) => return Err(format!("layout {layout}: {e}")),
        };
        say(&format!(
            "   {:<9} {} from {found}: {outcome}",
            layout.name(),
            identity.spiffe_id()
        ));
    }
    Ok(())
}
const AGENT_TRUST_DOMAIN: &str = "agents.global.org-123456789012.system.id.goog";

/// Writes an agent-identity certificate and the `certificate_config.json` naming it.
fn agent_certificate(
    ca: &TrustDomainCa,
    dir: &std::path::Path,
) -> Result<(std::path::PathBuf, String), String> {
    let svid = ca
        .issue(&format!("spiffe://{AGENT_TRUST_DOMAIN}/ns/demo/sa/agent"))
        .map_err(err("issuing the agent certificate"))?;
    let write = |name: &str, content: &str| {
        std::fs::write(dir.join(name), content).map_err(|e| format!("writing {name}: {e}"))
    };
    write("agent.pem", svid.chain_pem())?;
    write("agent.key", svid.private_key_pem().expose())?;
    let config = serde_json::json!({"cert_configs": {"workload": {
        "cert_path": dir.join("agent.pem"), "key_path": dir.join("agent.key")}}});
    write("certificate_config.json", &config.to_string())?;
    let digest = workload_auth::adc::agent_identity::certificate_fingerprint(svid.leaf_der());
    Ok((dir.join("certificate_config.json"), digest))
}

/// GETs the emulator's protected resource over mutual TLS presenting `certificate`: the status.
async fn call_protected(
    listener: &workload_auth_emulator::MtlsListener,
    certificate: &workload_auth::BoundCertificate,
    token: &str,
) -> Result<u16, String> {
    let root = workload_auth::adc::CertificateDer::from(listener.server_root_der().to_vec());
    let tls = certificate
        .rustls_config([root])
        .map_err(err("configuring mutual TLS"))?;
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| format!("building an HTTP client: {e}"))?;
    let response = http
        .get(format!(
            "{}{}",
            listener.url(),
            workload_auth_emulator::PROTECTED_RESOURCE_PATH
        ))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("calling the protected resource: {e}"))?;
    Ok(response.status().as_u16())
}

/// Presents `bound` over mutual TLS with its own certificate (accepted) and with another agent's
/// (refused) to the emulator's protected resource.
async fn refused_with_another_certificate(
    emulator: &Emulator,
    ca: &TrustDomainCa,
    home: &std::path::Path,
    bound: &workload_auth::BoundAccessToken,
) -> Result<(), String> {
    let stranger_ca = TrustDomainCa::new(AGENT_TRUST_DOMAIN).map_err(err("creating a CA"))?;
    let listener = emulator
        .start_mtls(&[ca.root_der().to_vec(), stranger_ca.root_der().to_vec()])
        .await
        .map_err(err("starting the mTLS listener"))?;
    let token = bound.token().secret().expose();
    let own = call_protected(&listener, bound.certificate(), token).await?;
    let stranger_dir = home.join("stranger");
    std::fs::create_dir_all(&stranger_dir).map_err(|e| format!("creating a directory: {e}"))?;
    let (stranger_config, _) = agent_certificate(&stranger_ca, &stranger_dir)?;
    let stranger = CredentialsBuilder::new()
        .with_env(
            EnvSource::from_vars([(
                "GOOGLE_API_CERTIFICATE_CONFIG",
                stranger_config.display().to_string(),
            )])
            .with_home(home),
        )
        .with_metadata_host(emulator.host())
        .build()
        .and_then(|c| c.bound_certificate())
        .map_err(err("loading another agent certificate"))?
        .ok_or("the other certificate is not an agent certificate")?;
    let other = call_protected(&listener, &stranger, token).await?;
    say(&format!(
        "   over mTLS with its own certificate: HTTP {own}; with another agent's: HTTP {other}"
    ));
    if own != 200 || other != 401 {
        return Err("the protected resource did not honour the binding".into());
    }
    Ok(())
}

async fn agent_identity(emulator: &Emulator, home: &std::path::Path) -> Result<(), String> {
    say("\n-- 6. Agent Identity: tokens bound to the workload certificate --");
    let dir = home.join("agent");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let ca = TrustDomainCa::new(AGENT_TRUST_DOMAIN).map_err(err("creating the agent CA"))?;
    let (config, fingerprint) = agent_certificate(&ca, &dir)?;
    let env = EnvSource::from_vars([
        ("GCE_METADATA_HOST", emulator.host()),
        (
            "GOOGLE_API_CERTIFICATE_CONFIG",
            config.display().to_string(),
        ),
    ])
    .with_home(home);
    let credentials = CredentialsBuilder::new()
        .with_env(env)
        .with_metadata_host(emulator.host())
        .build()
        .map_err(err("resolving ADC with an agent certificate"))?;
    let explanation = credentials.explain().await;
    say(&format!("   token binding: {}", explanation.token_binding));
    match credentials.access_token().await {
        Ok(_) => return Err("a bound token was handed out without its certificate".into()),
        Err(e) => say(&format!("   access_token() refuses: {}", e.message())),
    }
    let bound = credentials
        .bound_access_token()
        .await
        .map_err(err("fetching a bound token"))?;
    if bound.fingerprint() != fingerprint {
        return Err("the token is bound to another certificate".into());
    }
    say(&format!(
        "   bound_access_token(): a token bound to {} (the metadata server recorded the same)",
        bound.fingerprint()
    ));
    refused_with_another_certificate(emulator, &ca, home, &bound).await?;
    let (_, rotated) = agent_certificate(&ca, &dir)?;
    let fresh = credentials
        .bound_access_token()
        .await
        .map_err(err("fetching a token after rotation"))?;
    if fresh.fingerprint() != rotated || fresh.token() == bound.token() {
        return Err("rotation did not give a token bound to the new certificate".into());
    }
    say(&format!(
        "   certificate rotated: the next call got a new token bound to {}",
        fresh.fingerprint()
    ));
    Ok(())
}
/// Issue 11 on the emulator: regional access boundaries, credential access boundaries
/// (downscoped tokens), and workload identity federation's project id.
async fn boundaries(emulator: &Emulator, home: &std::path::Path) -> Result<(), String> {
    say("\n-- 7. Boundaries: regional access, downscoped tokens, the federated project --");
    let credentials = CredentialsBuilder::new()
        .with_env(EnvSource::from_vars([("GCE_METADATA_HOST", emulator.host())]).with_home(home))
        .with_metadata_host(emulator.host())
        .with_regional_access_boundary(true)
        .with_iam_credentials_endpoint(format!("{}/v1/", emulator.url()))
        .build()
        .map_err(err("resolving ADC"))?;
    // Never waited for: the first requests go without the header while the lookup runs.
    let deadline = Instant::now() + Duration::from_secs(5);
    let header = loop {
        let headers = credentials
            .request_headers()
            .await
            .map_err(err("request headers"))?;
        if let Some(value) = headers.allowed_locations() {
            break value.to_owned();
        }
        if Instant::now() > deadline {
            return Err("the regional access boundary lookup never answered".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let regional = credentials
        .request_headers_for("https://storage.us-central1.rep.googleapis.com/b")
        .await
        .map_err(err("request headers"))?;
    if regional.allowed_locations().is_some() {
        return Err("a request to a regional endpoint carried x-allowed-locations".into());
    }
    say(&format!(
        "   regional access boundary: requests carry x-allowed-locations: {header} ({}); \
         requests to regional endpoints carry none",
        credentials.regional_access_boundary()
    ));
    downscoped(emulator, &credentials).await?;
    federated_project(emulator, home).await
}

/// A server-side and a client-side downscoped token, each checked by the emulator.
async fn downscoped(
    emulator: &Emulator,
    credentials: &workload_auth::Credentials,
) -> Result<(), String> {
    use workload_auth::{
        AccessBoundary, AccessBoundaryRule, AvailabilityCondition, ClientSideDownscoper,
        DownscopedCredentials,
    };
    let boundary = AccessBoundary::new(vec![
        AccessBoundaryRule::new(
            "//storage.googleapis.com/projects/_/buckets/demo-bucket",
            ["inRole:roles/storage.objectViewer"],
        )
        .with_condition(AvailabilityCondition::new(
            "resource.name.startsWith('projects/_/buckets/demo-bucket/objects/customer-a/')",
        )),
    ])
    .map_err(err("the access boundary"))?;
    let sts = format!("{}/v1/token", emulator.url());
    let server_side = DownscopedCredentials::builder(credentials.clone())
        .with_sts_endpoint(&sts)
        .build(boundary.clone())
        .map_err(err("downscoped credentials"))?
        .access_token()
        .await
        .map_err(err("a server-side downscoped token"))?;
    say(&format!(
        "   server-side downscoped token: the emulator reads {}",
        carried_boundary(emulator, server_side.secret().expose()).await?
    ));
    let downscoper = ClientSideDownscoper::builder(credentials.clone())
        .with_sts_endpoint(&sts)
        .build_client_side()
        .map_err(err("a client-side downscoper"))?;
    let prepared = downscoper
        .prepare(&boundary)
        .map_err(err("the access boundary"))?;
    let first = downscoper
        .token(&prepared)
        .await
        .map_err(err("a client-side downscoped token"))?;
    let count = 10_000u32;
    let started = Instant::now();
    for _ in 0..count {
        let token = downscoper
            .token(&prepared)
            .await
            .map_err(err("a client-side downscoped token"))?;
        std::hint::black_box(token.secret().len());
    }
    say(&format!(
        "   client-side downscoped tokens: {:.1} µs each, minted locally ({} exchange(s) for {} \
         tokens); the emulator reads {}",
        started.elapsed().as_secs_f64() * 1e6 / f64::from(count),
        downscoper.exchange_count(),
        count + 1,
        carried_boundary(emulator, first.secret().expose()).await?
    ));
    Ok(())
}

/// What the emulator's check endpoint says a downscoped token carries, in a few words.
async fn carried_boundary(emulator: &Emulator, token: &str) -> Result<String, String> {
    let io = |e: std::io::Error| format!("asking the emulator about a downscoped token: {e}");
    let mut stream = tokio::net::TcpStream::connect(emulator.addr())
        .await
        .map_err(io)?;
    let request = format!(
        "GET /emulator/v1/downscoped-boundary HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer \
         {token}\r\nConnection: close\r\n\r\n",
        emulator.host()
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .await
        .map_err(io)?;
    let answer = String::from_utf8_lossy(&answer);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let json: serde_json::Value = serde_json::from_str(body)
        .map_err(|_| format!("the emulator did not accept the token: {answer}"))?;
    let rule = &json["accessBoundary"]["accessBoundaryRules"][0];
    Ok(format!(
        "{} token, {} with {} if {}",
        json["kind"].as_str().unwrap_or("?"),
        rule["availableResource"].as_str().unwrap_or("?"),
        rule["availablePermissions"][0].as_str().unwrap_or("?"),
        rule["availabilityCondition"]["expression"]
            .as_str()
            .unwrap_or("true")
    ))
}

/// Workload identity federation: the project id from Cloud Resource Manager, with the
/// federated token, once.
async fn federated_project(emulator: &Emulator, home: &std::path::Path) -> Result<(), String> {
    const AUDIENCE: &str = "//iam.googleapis.com/projects/123456789012/locations/global/\
                            workloadIdentityPools/demo-pool/providers/demo";
    let subject = "demo-oidc-subject-token";
    emulator.update_config(|c| {
        c.identity.sts.audiences.push(AUDIENCE.into());
        c.identity.sts.subject_tokens.push(subject.into());
        c.identity
            .projects
            .push(("123456789012".into(), "demo-federated-project".into()));
    });
    let token_file = home.join("oidc-token");
    let write = |path: &std::path::Path, text: &str| {
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write(&token_file, subject)?;
    let config = serde_json::json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{}/v1/token", emulator.url()),
        "credential_source": {"file": token_file.display().to_string()},
    });
    let config_file = home.join("federation.json");
    write(&config_file, &config.to_string())?;
    let federated = CredentialsBuilder::new()
        .with_env(EnvSource::from_vars::<String, String>([]).with_home(home))
        .with_credentials_file(&config_file)
        .with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
        .with_resource_manager_endpoint(format!("{}/v1/", emulator.url()))
        .build()
        .map_err(err("federated credentials"))?;
    let project = federated
        .project_id()
        .await
        .map_err(err("the federated project id"))?;
    federated
        .project_id()
        .await
        .map_err(err("the federated project id"))?;
    say(&format!(
        "   workload identity federation: project {} from Cloud Resource Manager (project \
         number 123456789012; {} lookup(s), then cached)",
        project.as_deref().unwrap_or("unknown"),
        emulator.requests(Endpoint::ResourceManagerProject)
    ));
    if project.as_deref() != Some("demo-federated-project") {
        return Err("the federated project id did not come from Cloud Resource Manager".into());
    }
    Ok(())
}
