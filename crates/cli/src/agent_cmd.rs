//! `workload-auth agent`: a SPIFFE Workload API agent on a Unix socket, serving this workload's
//! managed identity (credentials directory or metadata server) to any SPIFFE client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use workload_auth::metadata::MetadataClient;
use workload_auth::mtls::{
    CredentialsDir, DEFAULT_CREDENTIALS_DIR, MetadataSource, SvidSource, WatchOptions,
};
use workload_auth::workload_api::{Endpoint, WorkloadApiServer};

use crate::output::say;

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// Where to serve: `unix:///absolute/path/agent.sock`.
    #[arg(long, value_name = "ADDR")]
    socket: String,
    /// Serve the credentials directory the node agent keeps (the default).
    #[arg(long, value_name = "DIR", conflicts_with = "metadata")]
    credentials: Option<PathBuf>,
    /// Serve the workload certificates of the metadata server instead.
    #[arg(long)]
    metadata: bool,
    /// Allow callers running as this uid (repeatable). Without any --allow-uid/--allow-gid, every
    /// process that can open the socket (mode 0600: this user) may call.
    #[arg(long = "allow-uid", value_name = "UID")]
    allow_uid: Vec<u32>,
    /// Allow callers whose primary group is this gid (repeatable).
    #[arg(long = "allow-gid", value_name = "GID")]
    allow_gid: Vec<u32>,
    /// Give the socket to this group with mode 0660 (instead of 0600).
    #[arg(long = "socket-group", value_name = "GID")]
    socket_group: Option<u32>,
    /// How often to look for rotated credentials, e.g. `500ms`, `1s` (10ms to 1h).
    #[arg(long = "poll-interval", value_name = "DUR", default_value = "1s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// The most Workload API streams open at once.
    #[arg(long = "max-streams", value_name = "N", default_value_t = workload_auth::workload_api::DEFAULT_MAX_STREAMS)]
    max_streams: usize,
}

/// Parses `250ms`, `2s`, `1m`, `1h` (a bare number is seconds), between 10 ms and 1 h.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 1s, 2m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("`{s}` has an unknown unit; use ms, s, m or h")),
    };
    if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
        return Err(format!("`{s}` is outside 10ms..1h"));
    }
    Ok(d)
}

/// Runs `workload-auth agent`. Every argument is checked before any file or socket is touched.
pub(crate) async fn run(args: AgentArgs) -> Result<(), String> {
    let endpoint = Endpoint::parse(&args.socket).map_err(|e| format!("--socket: {e}"))?;
    if !matches!(endpoint, Endpoint::Unix(_)) {
        return Err(
            "--socket: the agent serves on unix:// sockets only (a TCP caller's process cannot \
             be identified)"
                .into(),
        );
    }
    if args.max_streams == 0 {
        return Err("--max-streams must be at least 1".into());
    }
    let source: Arc<dyn SvidSource> = if args.metadata {
        let client = MetadataClient::builder()
            .build()
            .map_err(|e| format!("cannot set up the metadata client: {e}"))?;
        Arc::new(MetadataSource::new(client))
    } else {
        let dir = args
            .credentials
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CREDENTIALS_DIR));
        Arc::new(CredentialsDir::new(dir))
    };
    let describe = source.describe();
    let options = WatchOptions {
        poll_interval: args.poll_interval,
        ..WatchOptions::default()
    };
    let mut builder = WorkloadApiServer::builder(source)
        .endpoint(endpoint.clone())
        .watch_options(options)
        .max_streams(args.max_streams);
    for uid in &args.allow_uid {
        builder = builder.allow_uid(*uid);
    }
    for gid in &args.allow_gid {
        builder = builder.allow_gid(*gid);
    }
    if let Some(gid) = args.socket_group {
        builder = builder.socket_group(gid);
    }
    let server = builder
        .bind()
        .await
        .map_err(|e| format!("cannot start the agent: {e}"))?;
    let shutdown = crate::shutdown::wait_for_shutdown();
    say(&format!("agent serving {endpoint} from {describe}"));
    server
        .serve_until(shutdown)
        .await
        .map_err(|e| e.to_string())?;
    say("agent stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5ms").is_err());
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("").is_err());
    }
}
