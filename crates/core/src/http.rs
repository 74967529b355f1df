//! The client-independent part of reading an HTTP answer: a body bounded while it streams in
//! and zeroed when dropped, one-line snippets of untrusted text for error messages, and transport
//! errors that say what failed without quoting the request.
//!
//! The credential crates plug their HTTP client in (they feed [`BoundedBody`] the chunks they
//! read), so this crate needs no HTTP client and does no I/O of its own.
//!
//! ```
//! use workload_auth_core::http::{BoundedBody, snippet};
//!
//! // With reqwest: `while let Some(chunk) = response.chunk().await.map_err(..)? { .. }`.
//! let mut body = BoundedBody::new(None, 8, "http://127.0.0.1:1/x")?;
//! body.push(b"{\"a\":")?;
//! body.push(b"1}")?;
//! assert!(body.push(b"more").is_err()); // over 8 bytes
//! assert_eq!(&body.finish()[..], b"{\"a\":1}");
//! assert_eq!(snippet("  Not\nFound ", 120), "Not Found");
//! # Ok::<(), workload_auth_core::Error>(())
//! ```

use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::{Error, ErrorKind, Result};

/// A response body read chunk by chunk and refused as soon as it grows past a limit.
///
/// The buffer is zeroed when dropped, and so is every buffer it outgrows, because token and key
/// answers pass through it. Reserving the declared size up front avoids most reallocations.
pub struct BoundedBody {
    buf: Zeroizing<Vec<u8>>,
    limit: usize,
    endpoint: String,
}

impl BoundedBody {
    /// An empty body of at most `limit` bytes from `endpoint`. `declared_len` is the
    /// Content-Length, if any: a larger one is refused at once.
    pub fn new(declared_len: Option<u64>, limit: usize, endpoint: &str) -> Result<Self> {
        let mut body = Self {
            buf: Zeroizing::new(Vec::new()),
            limit,
            endpoint: endpoint.to_owned(),
        };
        let capacity = match declared_len.map(usize::try_from) {
            Some(Ok(n)) if n <= limit => n,
            Some(_) => return Err(body.too_large()),
            None => 4096.min(limit),
        };
        body.buf = Zeroizing::new(Vec::with_capacity(capacity));
        Ok(body)
    }

    /// Appends `chunk`; an [`ErrorKind::MalformedResponse`] naming the endpoint once the body
    /// would be larger than the limit.
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        let needed = self.buf.len() + chunk.len();
        if needed > self.limit {
            return Err(self.too_large());
        }
        if needed > self.buf.capacity() {
            let capacity = needed.max(self.buf.capacity() * 2).min(self.limit);
            let mut bigger = Zeroizing::new(Vec::with_capacity(capacity));
            bigger.extend_from_slice(&self.buf);
            self.buf = bigger;
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// The whole body.
    pub fn finish(self) -> Zeroizing<Vec<u8>> {
        self.buf
    }

    fn too_large(&self) -> Error {
        Error::new(
            ErrorKind::MalformedResponse,
            format!("the response body is larger than {} bytes", self.limit),
        )
        .with_endpoint(self.endpoint.clone())
    }
}

impl fmt::Debug for BoundedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedBody")
            .field("len", &self.buf.len())
            .field("limit", &self.limit)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// The first `max` characters of `text` on one line: trimmed, control characters replaced by
/// spaces, `…` appended when cut. For putting untrusted text (error bodies, header values) into
/// an error message.
pub fn snippet(text: &str, max: usize) -> String {
    let trimmed = text.trim();
    let mut out: String = trimmed
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if trimmed.chars().count() > max {
        out.push('…');
    }
    out
}

/// How a request failed before a complete answer arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportFailure {
    /// No complete answer within the request's time limit.
    Timeout(Duration),
    /// No connection could be made.
    Connect,
    /// The connection failed while the body was read (truncated or reset).
    Body,
    /// Anything else: the connection was closed or reset before an answer.
    Other,
}

/// A transient [`ErrorKind::Transport`] error for `failure` of a request to `endpoint`.
///
/// `peer` names the server in the message (`Some("the metadata server")`), `cause` is the
/// client's error: its innermost source (what the socket reported) becomes the error's source,
/// as text; the client's own text, which may quote the URL, is not used.
pub fn transport_error(
    failure: TransportFailure,
    peer: Option<&str>,
    endpoint: &str,
    cause: &(dyn std::error::Error + 'static),
) -> Error {
    let (from, to) = match peer {
        Some(peer) => (format!(" from {peer}"), format!(" to {peer}")),
        None => (String::new(), String::new()),
    };
    let message = match failure {
        TransportFailure::Timeout(limit) => {
            format!("no complete answer{from} within {} ms", limit.as_millis())
        }
        TransportFailure::Connect => format!("could not connect{to}"),
        TransportFailure::Body => {
            "the connection failed while reading the response body (truncated or reset)".to_owned()
        }
        TransportFailure::Other => format!("the request{to} failed (connection closed or reset)"),
    };
    let mut innermost = None;
    let mut source = cause.source();
    while let Some(s) = source {
        innermost = Some(s);
        source = s.source();
    }
    let error = Error::new(ErrorKind::Transport, message).with_endpoint(endpoint.to_owned());
    match innermost.map(ToString::to_string) {
        Some(detail) if !detail.is_empty() => error.with_source(Cause(detail)),
        _ => error,
    }
}

/// The innermost cause of a transport failure, as text.
#[derive(Debug)]
struct Cause(String);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn read(declared: Option<u64>, limit: usize, chunks: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>> {
        let mut body = BoundedBody::new(declared, limit, "e")?;
        for chunk in chunks {
            body.push(chunk)?;
        }
        Ok(body.finish())
    }

    #[test]
    fn bodies_are_bounded_while_they_stream_in() {
        assert_eq!(&read(None, 6, &[b"abc", b"def"]).unwrap()[..], b"abcdef");
        assert_eq!(&read(Some(6), 6, &[b"abcdef"]).unwrap()[..], b"abcdef");
        assert_eq!(&read(Some(1), 6, &[b"abc", b"def"]).unwrap()[..], b"abcdef");
        assert!(read(None, 6, &[]).unwrap().is_empty());
        for (declared, chunks) in [
            (None, &[&b"abc"[..], b"defg"][..]),
            (Some(7), &[&b"a"[..]][..]),
            (Some(u64::MAX), &[][..]),
        ] {
            let err = read(declared, 6, chunks).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse);
            assert_eq!(err.endpoint(), Some("e"));
            assert!(err.message().contains("larger than 6 bytes"), "{err}");
        }
    }

    #[test]
    fn snippets_are_short_single_lines() {
        assert_eq!(snippet("  Not Found\n", 120), "Not Found");
        assert_eq!(snippet("a\nb\r\nc", 120), "a b  c");
        assert_eq!(snippet("abcdef", 3), "abc…");
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn transport_errors_are_transient_and_keep_the_innermost_cause() {
        let cause = Layer(
            "error sending request for url (http://127.0.0.1:1/?secret)",
            Some(Box::new(Layer(
                "client error",
                Some(Box::new(Layer("Connection refused (os error 111)", None))),
            ))),
        );
        let e = transport_error(
            TransportFailure::Connect,
            Some("the metadata server"),
            "e",
            &cause,
        );
        assert_eq!(e.kind(), ErrorKind::Transport);
        assert!(e.is_transient());
        assert_eq!(e.endpoint(), Some("e"));
        assert_eq!(e.message(), "could not connect to the metadata server");
        let shown = format!(
            "{e} {:?}",
            std::error::Error::source(&e).map(ToString::to_string)
        );
        assert!(shown.contains("Connection refused"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
        let e = transport_error(
            TransportFailure::Timeout(Duration::from_millis(200)),
            None,
            "e",
            &Layer("x", None),
        );
        assert_eq!(e.message(), "no complete answer within 200 ms");
        assert!(std::error::Error::source(&e).is_none());
        let e = transport_error(TransportFailure::Body, None, "e", &Layer("x", None));
        assert!(e.message().contains("truncated"), "{e}");
    }
}
