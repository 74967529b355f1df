//! How the command reports failure: one line on standard error, non-zero exit.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether `--verbose` was given: failures then show their details, not only their first line.
pub(crate) static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Prints `workload-auth: FIRST LINE` on stderr (and, with `--verbose`, the following lines of
/// `message`: causes and details) and returns the failure exit code.
pub(crate) fn fail(message: &str) -> ExitCode {
    let mut lines = message.lines();
    let first = lines.next().unwrap_or("failed");
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "workload-auth: {first}");
    if VERBOSE.load(Ordering::Relaxed) {
        for line in lines {
            let _ = writeln!(err, "  {line}");
        }
    } else if lines.next().is_some() {
        let _ = writeln!(err, "  (--verbose shows the details)");
    }
    ExitCode::FAILURE
}

/// Writes `text` and a newline to standard output; a closed pipe is not an error worth a panic.
pub(crate) fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
