//! Two workloads authenticate each other over mutual TLS with SPIFFE certificates.
//!
//! `cargo run -p workload-auth --example mtls_echo`
//!
//! Runs anywhere: the emulator's CA issues both certificates and writes each workload's credentials
//! directory the way Google's node agent does. On GCE or GKE, use
//! `WorkloadIdentity::from_directory(None)` instead.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workload_auth::WorkloadIdentity;
use workload_auth::mtls::{Authorizer, SpiffeId};
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};

const SERVER: &str = "spiffe://example.test/ns/prod/sa/server";
const CLIENT: &str = "spiffe://example.test/ns/prod/sa/client";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ca = TrustDomainCa::new("example.test")?;
    let scratch = tempfile::tempdir()?;
    let identity = |name: &str, id: &str| -> Result<WorkloadIdentity, Box<dyn std::error::Error>> {
        let writer = CredentialsDirWriter::new(scratch.path().join(name));
        writer.write(&CredentialsContents::new(&ca.issue(id)?, &ca, []))?;
        Ok(WorkloadIdentity::from_directory(Some(&writer.link_path()))?)
    };
    let server = identity("server", SERVER)?;
    let client = identity("client", CLIENT)?;

    // The server accepts only the client's SPIFFE ID; the client only the server's.
    let acceptor = server.acceptor(Authorizer::exact(SpiffeId::parse(CLIENT)?))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let serve = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let (mut tls, peer) = acceptor.accept(tcp).await?;
        let mut buf = vec![0; 64];
        let n = tls.read(&mut buf).await?;
        tls.write_all(format!("{peer} said {:?}", String::from_utf8_lossy(&buf[..n])).as_bytes())
            .await?;
        tls.shutdown().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    });

    let connector = client.connector(Authorizer::exact(SpiffeId::parse(SERVER)?))?;
    let (mut tls, peer) = connector.connect(addr).await?;
    tls.write_all(b"hello").await?;
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await?;
    serve.await?.map_err(|e| e.to_string())?;

    use std::io::Write as _;
    writeln!(
        std::io::stdout(),
        "connected to {peer}; it answered: {reply}"
    )?;
    Ok(())
}
