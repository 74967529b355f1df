//! The library's own small tokio runtime, on which every background refresh and every blocking call
//! runs.
//!
//! Running fetches here, rather than on whatever runtime the caller happens to use, means a caller
//! needs no runtime at all, a caller's runtime shutting down cannot strand a refresh, and pooled HTTP
//! connections always belong to a runtime that is still alive.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

use crate::error::{Error, ErrorKind, Result};

/// How many nested `fork()`s get a runtime of their own (a process, its child, grandchild, ...).
const GENERATIONS: usize = 32;

/// One runtime per process: a slot is claimed by the first process (pid) that needs a runtime and
/// finds no slot of its own. After `fork()` the child inherits its parent's slots, whose worker
/// threads do not exist in it, so it claims the next one. Inherited runtimes are never dropped
/// (dropping waits for threads that are gone). Lock-free once a process has its slot.
static RUNTIMES: [OnceLock<(u32, std::result::Result<Runtime, String>)>; GENERATIONS] =
    [const { OnceLock::new() }; GENERATIONS];

fn start() -> std::result::Result<Runtime, String> {
    Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("workload-auth")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// A handle to this process's runtime, started on first use (two worker threads named
/// `workload-auth`); a forked child gets a new one on its first call.
pub fn handle() -> Result<Handle> {
    let pid = std::process::id();
    for slot in &RUNTIMES {
        let (owner, runtime) = slot.get_or_init(|| (pid, start()));
        if *owner != pid {
            continue;
        }
        return match runtime {
            Ok(rt) => Ok(rt.handle().clone()),
            Err(e) => Err(Error::new(
                ErrorKind::Setup,
                format!("could not start the workload-auth runtime: {e}"),
            )),
        };
    }
    Err(Error::new(
        ErrorKind::Setup,
        format!("no workload-auth runtime after {GENERATIONS} nested fork()s"),
    ))
}

/// Runs `future` on the shared runtime and blocks the calling thread until it finishes.
///
/// Works from any thread, including one that is itself running a tokio runtime (it then blocks that
/// worker, so async callers should use the async API instead).
pub fn block_on<F>(future: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle()?.spawn(async move {
        // The receiver only goes away if the caller's thread died; nothing to do then.
        let _ = tx.send(future.await);
    });
    rx.recv().map_err(|_| {
        Error::new(
            ErrorKind::Io,
            "the workload-auth runtime stopped before the operation finished",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_works_without_a_runtime() {
        let v = block_on(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            41 + 1
        })
        .unwrap();
        assert_eq!(v, 42);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn block_on_works_inside_a_runtime() {
        let v = tokio::task::spawn_blocking(|| block_on(async { 7 }).unwrap())
            .await
            .unwrap();
        assert_eq!(v, 7);
        assert_eq!(block_on(async { 8 }).unwrap(), 8);
    }
}
