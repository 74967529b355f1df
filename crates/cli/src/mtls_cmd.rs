//! `workload-auth mtls serve` and `workload-auth mtls connect`: mutual TLS between workloads with
//! their SPIFFE credentials, from the command line.
//!
//! `serve` is an echo server that prints `peer SPIFFE_ID connected` for each peer it accepts and
//! keeps its credentials current as the node agent rotates them; `connect` sends standard input to
//! such a server and prints what comes back. Both verify the peer as an X509-SVID against the bundle
//! of its trust domain and authorize it with `--allow`.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use workload_auth::core::Error;
use workload_auth::mtls::{
    Authorizer, CredentialsDir, MtlsAcceptor, MtlsConfig, MtlsConnector, SvidSource, SvidStore,
    VerificationError, VerifiedChainCache, WatchOptions, Watcher, handshake_error,
};

use crate::output::say;

/// How long a peer may take to complete the handshake before the server gives up on it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub(crate) struct MtlsArgs {
    #[command(subcommand)]
    command: MtlsCommand,
}

#[derive(Debug, Subcommand)]
enum MtlsCommand {
    /// Run an mTLS echo server that prints the SPIFFE ID of each peer it accepts.
    Serve(ServeArgs),
    /// Connect to an mTLS server, send standard input and print what comes back.
    Connect(ConnectArgs),
}

#[derive(Debug, Args)]
struct Identity {
    /// The credentials directory, in any layout (the node agent's files, the combined
    /// `x509.credential-bundle.private-key.pem`, SPIFFE filesystem delivery, or a certificate
    /// whose key the platform keeps hidden). Default: the directory `SPIFFE_CREDENTIAL_FOLDER`
    /// names, else the node agent's `/var/run/secrets/workload-spiffe-credentials`.
    #[arg(long, value_name = "DIR")]
    credentials: Option<PathBuf>,
    /// Which peers to accept: `any`, a SPIFFE ID, `td:TRUST_DOMAIN` or `prefix:SPIFFE_ID`.
    /// Repeat to accept a peer that any of them allows.
    #[arg(long, value_name = "POLICY", required = true)]
    allow: Vec<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", value_parser = crate::parse_listen)]
    listen: SocketAddr,
    #[command(flatten)]
    identity: Identity,
}

#[derive(Debug, Args)]
struct ConnectArgs {
    /// The server's address, `host:port`.
    #[arg(value_name = "ADDR")]
    addr: String,
    #[command(flatten)]
    identity: Identity,
}

/// Runs `workload-auth mtls ...`.
pub(crate) async fn run(args: MtlsArgs) -> Result<(), String> {
    match args.command {
        MtlsCommand::Serve(args) => serve(args).await,
        MtlsCommand::Connect(args) => connect(args).await,
    }
}

impl Identity {
    fn authorizer(&self) -> Result<Authorizer, String> {
        Authorizer::from_policies(&self.allow).map_err(|e| format!("--allow: {e}"))
    }

    fn dir(&self) -> CredentialsDir {
        match &self.credentials {
            Some(dir) => CredentialsDir::new(dir),
            None => CredentialsDir::from_environment(),
        }
    }

    async fn load(&self) -> Result<SvidStore, String> {
        let dir = self.dir();
        let material = dir.load().await.map_err(|e| {
            format!(
                "cannot load X.509 credentials from {}: {e}; pass the credentials directory with \
                 --credentials DIR",
                dir.path().display()
            )
        })?;
        for warning in material.warnings() {
            warn(&format!("warning: {warning}"));
        }
        Ok(SvidStore::new(material))
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let authorizer = args.identity.authorizer()?;
    let store = args.identity.load().await?;
    let source: Arc<dyn SvidSource> = Arc::new(args.identity.dir());
    let _watcher = Watcher::spawn(store.clone(), source, WatchOptions::default())
        .map_err(|e| format!("cannot watch the credentials for rotation: {e}"))?;
    let reports = tokio::spawn(report_reloads(store.clone()));

    // Repeat clients skip path validation; expiry, bundles and --allow are still checked each time.
    let config =
        MtlsConfig::new(store.clone(), authorizer).with_chain_cache(VerifiedChainCache::default());
    let acceptor =
        MtlsAcceptor::from_config(&config).map_err(|e| format!("cannot set up TLS: {e}"))?;
    let listener = TcpListener::bind(args.listen).await.map_err(|e| {
        format!(
            "cannot listen on {}: {e}; pick another address with --listen",
            args.listen
        )
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let shutdown = crate::shutdown::wait_for_shutdown();
    say(&format!("listening on {local}"));
    say(&format!(
        "serving as {}",
        store.current().svid().spiffe_id()
    ));
    let current = store.current();
    if let Some(layout) = current.layout() {
        say(&format!(
            "credentials layout {layout} ({}) in {}",
            layout.certificate_file(),
            current.origin()
        ));
    }

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, from)) => {
                    tokio::spawn(serve_one(acceptor.clone(), tcp, from));
                }
                Err(e) => {
                    warn(&format!("accepting a connection failed: {e}"));
                    // E.g. out of file descriptors: let some close before trying again.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    reports.abort();
    Ok(())
}

async fn serve_one(acceptor: MtlsAcceptor, tcp: tokio::net::TcpStream, from: SocketAddr) {
    let (stream, peer) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(e)) => {
            warn(&format!("refused a connection from {from}: {e}"));
            return;
        }
        Err(_) => {
            warn(&format!(
                "refused a connection from {from}: no handshake within {}s",
                HANDSHAKE_TIMEOUT.as_secs()
            ));
            return;
        }
    };
    say(&format!("peer {peer} connected"));
    let (mut reader, mut writer) = tokio::io::split(stream);
    if let Err(e) = tokio::io::copy(&mut reader, &mut writer).await {
        warn(&format!("connection with {peer} ({from}) ended: {e}"));
        return;
    }
    let _ = writer.shutdown().await;
}

/// Tells the operator on standard error when the credentials rotate or a reload fails.
async fn report_reloads(store: SvidStore) {
    let mut generations = store.subscribe();
    let mut failures = store.status().failures;
    loop {
        tokio::select! {
            changed = generations.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = store.current();
                warn(&format!(
                    "credentials reloaded from {}: serving as {} until {}",
                    current.origin(),
                    current.svid().spiffe_id(),
                    rfc3339(current.svid().not_after())
                ));
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                let status = store.status();
                if status.failures > failures {
                    failures = status.failures;
                    if let Some(e) = status.last_error {
                        warn(&format!("reloading the credentials failed, keeping the last good ones: {e}"));
                    }
                }
            }
        }
    }
}

async fn connect(args: ConnectArgs) -> Result<(), String> {
    // Checked before any file is read or name resolved.
    let port = args.addr.rsplit_once(':').and_then(|(host, port)| {
        (!host.is_empty()).then_some(())?;
        port.parse::<u16>().ok().filter(|p| *p != 0)
    });
    if port.is_none() {
        return Err(format!(
            "`{}` is not an address like server.example:8443",
            args.addr
        ));
    }
    let authorizer = args.identity.authorizer()?;
    let store = args.identity.load().await?;
    let connector = MtlsConnector::from_config(&MtlsConfig::new(store, authorizer))
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let failed = |e: Error| format!("mTLS with {} failed: {}", args.addr, explain(&e));
    let (stream, _server) = connector
        .connect(args.addr.as_str())
        .await
        .map_err(failed)?;
    echo_stdin(stream)
        .await
        .map_err(|e| failed(handshake_error(e)))
}

/// Sends standard input over `stream` (closing our direction at its end) while copying what comes
/// back to standard output, until the server closes.
///
/// With TLS 1.3 a server's refusal of our certificate arrives after our side of the handshake has
/// finished, as an alert on the first read; so a read error is the more telling one and wins.
async fn echo_stdin<S>(stream: S) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut input = stdin_chunks();
    let send = async move {
        while let Some(chunk) = input.recv().await {
            writer.write_all(&chunk).await?;
        }
        writer.shutdown().await
    };
    let receive = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            let mut out = std::io::stdout().lock();
            out.write_all(&buf[..n])?;
            out.flush()?;
        }
    };
    tokio::pin!(send, receive);
    tokio::select! {
        received = &mut receive => received,
        sent = &mut send => match sent {
            Ok(()) => receive.await,
            // Writing failed: the reason (an alert) is most likely waiting to be read.
            Err(e) => match tokio::time::timeout(Duration::from_secs(2), receive).await {
                Ok(Err(read_error)) => Err(read_error),
                _ => Err(e),
            },
        },
    }
}

/// Standard input in chunks, read on a thread of its own so that an interactive terminal never
/// keeps the process from exiting once the server has closed.
fn stdin_chunks() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(4);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    if spawned.is_err() {
        // No thread, no input: an empty receiver closes our direction at once.
        let (_, rx) = mpsc::channel(1);
        return rx;
    }
    rx
}

/// The error as one line, with what to do about it.
fn explain(e: &Error) -> String {
    let hint = match VerificationError::find(e) {
        Some(VerificationError::Unauthorized { .. }) => {
            "the peer is genuine but not allowed: check --allow"
        }
        Some(VerificationError::UnknownTrustDomain(_) | VerificationError::UntrustedChain(_)) => {
            "the trust bundles in --credentials do not vouch for the peer: check that they \
             include the peer's trust domain and its current root"
        }
        Some(_) => "the peer's certificate is not a valid X509-SVID",
        None => return e.to_string(),
    };
    format!("{e}; {hint}")
}

fn warn(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "workload-auth: {line}");
}

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC, for messages (a time before the epoch or past year 9999 is
/// written as the epoch).
fn rfc3339(t: std::time::SystemTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_writes_utc_seconds() {
        assert_eq!(super::rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(super::rfc3339(leap), "2024-02-29T23:59:59Z");
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(super::rfc3339(before), "1970-01-01T00:00:00Z");
    }
}
