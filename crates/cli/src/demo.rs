//! `workload-auth demo`: the whole story on an in-process emulator, with nothing to set up.
//!
//! 1. Application Default Credentials resolve to the (emulated) metadata server, and explain why.
//! 2. An access token and an ID token are fetched once and then served from the cache: a thousand
//!    concurrent callers cause no further request, and a hit costs nanoseconds.
//! 3. Two workloads with different SPIFFE IDs complete an mTLS handshake; a third, not allowed by
//!    the server's policy, is refused; certificates rotate mid-run without a failed handshake.
//! 4. A SPIFFE agent serves the frontend's credentials over the Workload API on a Unix socket; a
//!    Workload API client takes its identity from there and completes the same handshake.
//!
//! Also: the metadata server over mutual TLS in `strict` mode, on an emulator of its own, with a
//! client certificate rotated mid-run and not one plain-HTTP request.

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
use workload_auth_emulator::credentials_dir::{CredentialsContents, CredentialsDirWriter};
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
    metadata_over_mtls(scratch.path()).await?;
    workloads(scratch.path()).await?;
    say("\ndemo complete: every step succeeded");
    Ok(())
}

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
    say("\n-- Metadata server over mTLS (strict) --");
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

async fn workloads(root: &std::path::Path) -> Result<(), String> {
    say("\n-- 3. Workloads authenticate each other over mTLS --");
    let ca = TrustDomainCa::new(TRUST_DOMAIN).map_err(err("creating the demo CA"))?;
    let backend = workload(&ca, root, "backend")?;
    let frontend = workload(&ca, root, "frontend")?;
    let intruder = workload(&ca, root, "intruder")?;
    for w in [&backend, &frontend, &intruder] {
        say(&format!("   workload {}", w.identity.spiffe_id()));
    }

    let frontend_id = SpiffeId::parse(&id("frontend")).map_err(|e| e.to_string())?;
    let backend_id = SpiffeId::parse(&id("backend")).map_err(|e| e.to_string())?;
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
    let server = tokio::spawn(async move {
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

    let call = |who: &Workload| {
        let connector = who
            .identity
            .connector(Authorizer::exact(backend_id.clone()))
            .map_err(err("building a client"));
        async move {
            let (mut tls, peer) = connector?.connect(addr).await.map_err(|e| e.to_string())?;
            tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
            let mut reply = String::new();
            tls.read_to_string(&mut reply)
                .await
                .map_err(|e| format!("the server closed the connection: {e}"))?;
            if reply.is_empty() {
                return Err("the server closed the connection without answering".to_owned());
            }
            Ok::<_, String>((peer, reply))
        }
    };

    let (peer, reply) = call(&frontend).await?;
    say(&format!(
        "   frontend -> backend: verified {peer}; \"{reply}\""
    ));

    match call(&intruder).await {
        Ok((_, reply)) => return Err(format!("the intruder was let in: {reply}")),
        Err(client_side) => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let server_side = refusals
                .lock()
                .map(|l| l.last().cloned().unwrap_or_default())
                .unwrap_or_default();
            say(&format!(
                "   intruder -> backend: refused (server: {server_side}; client: {client_side})"
            ));
        }
    }

    say("   rotating every certificate while the frontend keeps calling…");
    let (old_front, old_back) = (
        frontend.identity.store().generation(),
        backend.identity.store().generation(),
    );
    let mut ok = 0;
    for round in 0..40 {
        if round == 10 {
            rotate(&ca, &frontend)?;
            rotate(&ca, &backend)?;
        }
        call(&frontend)
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
    let (peer, reply) = call(&via_agent).await?;
    say(&format!(
        "   frontend (identity from the agent) -> backend: verified {peer}; \"{reply}\""
    ));
    let _ = stop_agent.send(());
    let _ = agent_task.await;
    server.abort();
    Ok(())
}
