//! How the command reports failure: one line on standard error, non-zero exit.

use std::io::Write;
use std::process::ExitCode;

/// Prints `workload-auth: MESSAGE` as one line on stderr and returns the failure exit code.
pub(crate) fn fail(message: &str) -> ExitCode {
    let one_line = message.replace('\n', " ");
    let _ = writeln!(std::io::stderr(), "workload-auth: {one_line}");
    ExitCode::FAILURE
}

/// Writes `text` and a newline to standard output; a closed pipe is not an error worth a panic.
pub(crate) fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
