//! Access and ID tokens through Application Default Credentials.
//!
//! `cargo run -p workload-auth --example access_token`
//!
//! Runs anywhere: it starts the built-in emulator of the metadata server on loopback and points ADC
//! at it, exactly as `GCE_METADATA_HOST` would. On Google Cloud, drop the emulator and use
//! `workload_auth::default_credentials()`.

use workload_auth::{CredentialsBuilder, EnvSource};
use workload_auth_emulator::{Emulator, EmulatorConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = Emulator::start(EmulatorConfig::default()).await?;
    let home = tempfile::tempdir()?;
    let credentials = CredentialsBuilder::new()
        .with_env(
            EnvSource::from_vars([("GCE_METADATA_HOST", emulator.host())]).with_home(home.path()),
        )
        .with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
        .build()?;

    let token = credentials.access_token().await?;
    let headers = credentials.request_headers().await?;
    let id_token = credentials
        .id_token("https://my-service.example.run.app")
        .await?;
    let explanation = credentials.explain().await;

    let mut out = std::io::stdout().lock();
    use std::io::Write as _;
    writeln!(out, "{explanation}")?;
    writeln!(
        out,
        "access token: {} bytes, {} s left; headers: {}",
        token.secret().len(),
        token.expires_in().as_secs(),
        headers
            .iter()
            .map(|(name, _)| name)
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(out, "ID token: {} bytes", id_token.secret().len())?;
    Ok(())
}
