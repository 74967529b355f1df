//! The one shutdown signal the long-running commands (`emulator`, `mtls serve`, `agent`) stop on.

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM (what service managers and `docker stop`
/// send). If the SIGTERM handler cannot be installed, Ctrl-C alone still stops the command.
pub(crate) async fn wait_for_shutdown() {
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
