//! The `workload-auth` command.
//!
//! Every subcommand exits 0 on success; on failure it prints one line on standard error naming what
//! failed and what to do (`--verbose` adds the causes below it), and exits non-zero. Arguments are
//! checked before anything is looked up or any connection is made.
#![forbid(unsafe_code)]

mod agent_cmd;
mod demo;
mod emulator_cmd;
mod mtls_cmd;
mod output;
mod shutdown;
mod token_cmd;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::fail;

#[derive(Debug, Parser)]
#[command(
    name = "workload-auth",
    version,
    about = "Prove a workload's identity to Google APIs (ADC tokens) and to other workloads (SPIFFE mTLS)"
)]
struct Cli {
    /// On failure, print the details (causes) under the first line.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the whole story on an in-process emulator: ADC, cached tokens, mTLS between workloads.
    Demo,
    /// Print an access token found through Application Default Credentials.
    Token(token_cmd::TokenArgs),
    /// Print an ID token for a receiving service.
    IdToken(token_cmd::IdTokenArgs),
    /// Explain how Application Default Credentials were (or were not) found.
    Explain(token_cmd::ExplainArgs),
    /// Run the local emulator of the metadata server, OAuth/STS/IAM endpoints and workload CA.
    Emulator(emulator_cmd::EmulatorArgs),
    /// Mutual TLS with SPIFFE credentials: an echo server and a client.
    Mtls(mtls_cmd::MtlsArgs),
    /// Serve this workload's identity to SPIFFE clients over the SPIFFE Workload API.
    Agent(agent_cmd::AgentArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::VERBOSE.store(cli.verbose, std::sync::atomic::Ordering::Relaxed);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("could not start the async runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo => demo::run().await,
            Command::Token(args) => token_cmd::token(args).await,
            Command::IdToken(args) => token_cmd::id_token(args).await,
            Command::Explain(args) => token_cmd::explain(args).await,
            Command::Emulator(args) => emulator_cmd::run(args).await,
            Command::Mtls(args) => mtls_cmd::run(args).await,
            Command::Agent(args) => agent_cmd::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Parses `host:port`, with `localhost` accepted for `127.0.0.1`.
pub(crate) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let s = s
        .strip_prefix("localhost:")
        .map_or_else(|| s.to_owned(), |port| format!("127.0.0.1:{port}"));
    s.parse()
        .map_err(|_| format!("`{s}` is not an address like 127.0.0.1:8080"))
}
