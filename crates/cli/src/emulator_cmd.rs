//! `workload-auth emulator`: the emulator as a server for local development and other languages' tests.

use std::time::Duration;

use clap::Args;
use workload_auth_emulator::{Emulator, EmulatorConfig};

use crate::output::say;

#[derive(Debug, Args)]
pub(crate) struct EmulatorArgs {
    /// Address to listen on (loopback by default; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = crate::parse_listen)]
    listen: std::net::SocketAddr,
    /// Project id the metadata server reports.
    #[arg(long)]
    project: Option<String>,
    /// Numeric project id the metadata server reports.
    #[arg(long)]
    project_number: Option<u64>,
    /// Email of the attached service account.
    #[arg(long)]
    email: Option<String>,
    /// Scopes of the attached service account (comma separated).
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
    /// Universe domain to report (unset: 404, which means googleapis.com).
    #[arg(long)]
    universe_domain: Option<String>,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long)]
    token_lifetime: Option<u64>,
}

impl EmulatorArgs {
    fn config(&self) -> EmulatorConfig {
        let mut config = EmulatorConfig::default();
        if let Some(project) = &self.project {
            config.project_id.clone_from(project);
        }
        if let Some(number) = self.project_number {
            config.numeric_project_id = number;
        }
        if let Some(email) = &self.email {
            config.email.clone_from(email);
        }
        if !self.scopes.is_empty() {
            config.scopes.clone_from(&self.scopes);
        }
        if self.universe_domain.is_some() {
            config.universe_domain.clone_from(&self.universe_domain);
        }
        if let Some(secs) = self.token_lifetime {
            config.token_lifetime = Duration::from_secs(secs);
        }
        config
    }
}

pub(crate) async fn run(args: EmulatorArgs) -> Result<(), String> {
    let emulator = Emulator::start_on(args.listen, args.config())
        .await
        // The emulator's hint already says what to do; name the option that does it.
        .map_err(|e| {
            crate::token_cmd::report(
                &e.with_hint("choose another address with --listen, or free the port"),
            )
        })?;
    say(&format!("listening on {}", emulator.addr()));
    say(&format!(
        "point clients at it with: export GCE_METADATA_HOST={} GCE_METADATA_IP={}",
        emulator.host(),
        emulator.host()
    ));
    wait_for_shutdown().await;
    emulator.shutdown().await;
    Ok(())
}

async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
