//! The one shutdown signal the long-running commands (`emulator`, `mtls serve`, `agent`) stop on.

use std::future::Future;

/// Installs the handlers for SIGINT (Ctrl-C) and, on Unix, SIGTERM (what service managers and
/// `docker stop` send) now, and returns a future that resolves when either arrives.
///
/// The handlers are installed before this returns, not when the future is first polled: a command
/// calls this before it announces that it is serving, so a signal sent right after the announcement
/// stops it cleanly instead of killing it with the default action. Must be called inside a Tokio
/// runtime. A handler that cannot be installed is skipped; the other still stops the command.
#[cfg(unix)]
pub(crate) fn wait_for_shutdown() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt()).ok();
    let terminate = signal(SignalKind::terminate()).ok();
    async move {
        match (interrupt, terminate) {
            (Some(mut interrupt), Some(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (Some(mut only), None) | (None, Some(mut only)) => {
                only.recv().await;
            }
            (None, None) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Off Unix, Ctrl-C is the only shutdown signal.
#[cfg(not(unix))]
pub(crate) fn wait_for_shutdown() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
