//! Reading files that come from outside: credentials, keys, tokens, configuration.
//!
//! A size taken from metadata proves nothing: a FIFO, `/dev/zero` or a `/proc` file reports 0
//! bytes and then streams forever, and opening a FIFO without a writer blocks the reader for good.
//! [`read_bounded`] therefore opens without blocking, checks the *opened* handle (not the path,
//! which may be swapped in between) is a regular file, and reads at most `limit + 1` bytes, so
//! anything larger is refused without being read in full.
//!
//! ```
//! use workload_auth_core::fs::{MAX_JSON_FILE_BYTES, read_bounded};
//! use workload_auth_core::ErrorKind;
//!
//! let err = read_bounded("/dev/zero".as_ref(), MAX_JSON_FILE_BYTES, "the credentials file")
//!     .unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
//! assert_eq!(err.endpoint(), Some("/dev/zero"));
//! ```

use std::io::Read as _;
use std::path::Path;

use zeroize::Zeroizing;

use crate::{Error, ErrorKind, Result};

/// Largest JSON document read from a file: credentials files, `certificate_config.json`, trust
/// bundle maps, an executable source's output file. Real ones are a few KiB.
pub const MAX_JSON_FILE_BYTES: u64 = 1024 * 1024;
/// Largest PEM file read: certificate chains, private keys, CA bundles.
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;
/// Largest subject-token file (an OIDC token or SAML assertion).
pub const MAX_TOKEN_FILE_BYTES: u64 = 1024 * 1024;
/// Largest one-line status or configuration file (the node agent's `config_status`, gcloud's
/// `active_config` and configuration files).
pub const MAX_SMALL_FILE_BYTES: u64 = 64 * 1024;

/// Reads the regular file at `path`, refusing it if it holds more than `limit` bytes.
///
/// `what` names the file in errors (`"the credentials file"`); the error's
/// [`endpoint`](Error::endpoint) is the path. The bytes are zeroed when dropped, and so is every
/// buffer outgrown while reading, since these files hold keys and tokens.
///
/// Errors:
/// - [`ErrorKind::Io`] when the file cannot be opened or read (see [`is_not_found`]);
/// - [`ErrorKind::InvalidCredentials`] when it is not a regular file (a directory, FIFO, socket
///   or device) or is larger than `limit`. Nothing is read from a non-regular file, and opening a
///   FIFO does not wait for a writer.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let place = || path.display().to_string();
    let io = |action: &str, e: std::io::Error| {
        let message = if e.kind() == std::io::ErrorKind::NotFound {
            format!("{what} does not exist")
        } else {
            format!("{what} cannot be {action} ({})", e.kind())
        };
        Error::new(ErrorKind::Io, message)
            .with_endpoint(place())
            .with_source(e)
    };
    let file = open_nonblocking(path).map_err(|e| io("opened", e))?;
    let file_type = file.metadata().map_err(|e| io("read", e))?.file_type();
    if !file_type.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidCredentials,
            format!("{what} is {}, not a regular file", describe(&file_type)),
        )
        .with_endpoint(place()));
    }
    let mut buf = Zeroizing::new(Vec::new());
    let mut chunk = Chunk([0u8; 8192]);
    let mut reader = file.take(limit.saturating_add(1));
    loop {
        let n = match reader.read(&mut chunk.0) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io("read", e)),
        };
        if (buf.len() + n) as u64 > limit {
            return Err(Error::new(
                ErrorKind::InvalidCredentials,
                format!("{what} is larger than {limit} bytes"),
            )
            .with_endpoint(place()));
        }
        // Grow by hand so no outgrown buffer is freed without being zeroed.
        if buf.len() + n > buf.capacity() {
            let capacity = (buf.len() + n).max(buf.capacity() * 2);
            let mut bigger = Zeroizing::new(Vec::with_capacity(capacity));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk.0[..n]);
    }
    Ok(buf)
}

/// [`read_bounded`]'s read buffer, wiped with one `memset` when dropped, on every path out.
/// (`Zeroizing<[u8; N]>` writes one volatile byte at a time: 8 KiB of them per file read.)
struct Chunk([u8; 8192]);

impl Drop for Chunk {
    fn drop(&mut self) {
        crate::secret::wipe(&mut self.0);
    }
}

/// Whether `error` (from [`read_bounded`]) says the file does not exist: the case callers that
/// look in several places treat as "not here".
pub fn is_not_found(error: &Error) -> bool {
    use std::error::Error as _;
    error.kind() == ErrorKind::Io
        && error
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting forever.
    // O_NOCTTY: opening a terminal must not make it the process's controlling terminal.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

fn describe(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wa-core-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_a_file_up_to_the_limit_and_refuses_one_byte_more() {
        let dir = temp_dir("limit");
        let path = dir.join("f");
        std::fs::write(&path, vec![b'x'; 20_000]).unwrap();
        assert_eq!(read_bounded(&path, 20_000, "f").unwrap().len(), 20_000);
        let err = read_bounded(&path, 19_999, "the file").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
        assert_eq!(err.message(), "the file is larger than 19999 bytes");
        assert_eq!(err.endpoint(), Some(path.display().to_string().as_str()));
        std::fs::write(&path, b"").unwrap();
        assert!(read_bounded(&path, 0, "f").unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn special_files_are_refused_at_once() {
        let dir = temp_dir("special");
        let fifo = dir.join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        for (path, kind) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a character device"),
            (dir.as_path(), "a directory"),
        ] {
            let started = Instant::now();
            let err = read_bounded(path, MAX_JSON_FILE_BYTES, "the file").unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(2));
            assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
            assert_eq!(
                err.message(),
                format!("the file is {kind}, not a regular file")
            );
            assert_eq!(err.endpoint(), Some(path.display().to_string().as_str()));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_file_is_recognisable() {
        let err = read_bounded("/nonexistent/wa/f".as_ref(), 10, "the key").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(err.message(), "the key does not exist");
        assert!(is_not_found(&err));
        let err = read_bounded("/dev/zero".as_ref(), 10, "the key").unwrap_err();
        assert!(!is_not_found(&err));
    }
}
