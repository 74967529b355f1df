//! Lets gRPC C-core clients (py-spiffe, grpc-python, grpc-ruby, C++) and grpc-java call us over a
//! Unix socket.
//!
//! Those clients send the socket path, percent-encoded, as the HTTP/2 `:authority`
//! (`tmp%2Fagent.sock`). The `h2` crate under tonic rejects a `%` in a host name as malformed and
//! resets the stream (`PROTOCOL_ERROR`) before any of our code runs, so no such client could use
//! the agent. This reader sits between the socket and `h2` and, in request header blocks, replaces
//! each `%` of a literal `:authority` value with `_`. The value keeps its length, so the HPACK
//! dynamic table (whose accounting counts value lengths) stays in step with the client's; later
//! requests that refer to the indexed entry see the rewritten value. The authority means nothing
//! to a Unix-socket server: nothing reads it.
//!
//! Only what is needed is parsed: frame headers, and the header block of a `HEADERS` frame that
//! carries `END_HEADERS`. A Huffman-coded authority, a header block split over `CONTINUATION`
//! frames, an oversized frame or anything unexpected pass through unchanged (and `h2` judges them
//! as before).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::Connected;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
/// Frames above this are passed on without parsing (h2's default limit is 16 KiB).
const MAX_PARSED_FRAME: usize = 1 << 16;
const HEADERS: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// A Unix stream whose incoming HTTP/2 request headers get a valid `:authority`.
#[derive(Debug)]
pub(crate) struct AuthorityFix {
    inner: UnixStream,
    /// Bytes read but not yet examined.
    pending: Vec<u8>,
    /// Bytes examined, ready for h2.
    ready: Vec<u8>,
    ready_at: usize,
    preface_seen: bool,
    passthrough: bool,
    eof: bool,
}

impl AuthorityFix {
    pub(crate) fn new(inner: UnixStream) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
            preface_seen: false,
            passthrough: false,
            eof: false,
        }
    }

    /// Moves whatever complete units `pending` holds into `ready`.
    fn process(&mut self) {
        if self.passthrough || self.eof {
            self.ready.append(&mut self.pending);
            return;
        }
        if !self.preface_seen {
            if self.pending.len() < PREFACE.len() {
                if !PREFACE.starts_with(&self.pending) {
                    self.passthrough = true;
                    self.ready.append(&mut self.pending);
                }
                return;
            }
            if &self.pending[..PREFACE.len()] != PREFACE {
                self.passthrough = true;
                self.ready.append(&mut self.pending);
                return;
            }
            self.ready.extend(self.pending.drain(..PREFACE.len()));
            self.preface_seen = true;
        }
        let mut at = 0;
        while self.pending.len() - at >= FRAME_HEADER {
            let header = &self.pending[at..at + FRAME_HEADER];
            let len = (usize::from(header[0]) << 16)
                | (usize::from(header[1]) << 8)
                | usize::from(header[2]);
            if len > MAX_PARSED_FRAME {
                // Not ours to judge: hand everything on and stop parsing this connection.
                self.passthrough = true;
                break;
            }
            let total = FRAME_HEADER + len;
            if self.pending.len() - at < total {
                break;
            }
            let frame = &self.pending[at..at + total];
            match rewrite_headers_frame(frame) {
                Some(rewritten) => self.ready.extend_from_slice(&rewritten),
                None => self.ready.extend_from_slice(frame),
            }
            at += total;
        }
        self.pending.drain(..at);
        if self.passthrough {
            self.ready.append(&mut self.pending);
        }
    }
}

/// A HEADERS frame with END_HEADERS whose block holds a literal `:authority` with a `%`,
/// rewritten; `None` for every other frame.
fn rewrite_headers_frame(frame: &[u8]) -> Option<Vec<u8>> {
    let kind = frame[3];
    let flags = frame[4];
    if kind != HEADERS || flags & END_HEADERS == 0 {
        return None;
    }
    let payload = &frame[FRAME_HEADER..];
    let (pad, mut start) = if flags & PADDED != 0 {
        (usize::from(*payload.first()?), 1)
    } else {
        (0, 0)
    };
    if flags & PRIORITY != 0 {
        start += 5;
    }
    let end = payload.len().checked_sub(pad)?;
    let block = payload.get(start..end)?;
    let new_block = rewrite_block(block)?;
    // Same length by construction; the frame is re-emitted byte for byte but for the block.
    let mut out = frame.to_vec();
    out[FRAME_HEADER + start..FRAME_HEADER + end].copy_from_slice(&new_block);
    Some(out)
}

/// Decodes an HPACK integer with an `n`-bit prefix at `block[*at]`.
fn integer(block: &[u8], at: &mut usize, n: u32) -> Option<usize> {
    let mask = (1u16 << n) as u8 - 1;
    let first = *block.get(*at)? & mask;
    *at += 1;
    if first < mask {
        return Some(usize::from(first));
    }
    let mut value = usize::from(mask);
    let mut shift = 0u32;
    loop {
        let b = *block.get(*at)?;
        *at += 1;
        value = value.checked_add(usize::from(b & 0x7f).checked_shl(shift)?)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// A string literal at `block[*at]`: (Huffman-coded?, range of its bytes).
fn string(block: &[u8], at: &mut usize) -> Option<(bool, std::ops::Range<usize>)> {
    let huffman = *block.get(*at)? & 0x80 != 0;
    let len = integer(block, at, 7)?;
    let start = *at;
    let end = start.checked_add(len)?;
    if end > block.len() {
        return None;
    }
    *at = end;
    Some((huffman, start..end))
}

/// The header block with `%` → `_` in raw literal `:authority` values; `None` when there was
/// nothing to change or the block does not parse.
fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut at = 0;
    while at < block.len() {
        let b = block[at];
        let prefix = if b & 0x80 != 0 {
            integer(block, &mut at, 7)?; // indexed field
            continue;
        } else if b & 0xc0 == 0x40 {
            6 // literal with incremental indexing
        } else if b & 0xe0 == 0x20 {
            integer(block, &mut at, 5)?; // dynamic table size update
            continue;
        } else {
            4 // literal without indexing / never indexed
        };
        let name_index = integer(block, &mut at, prefix)?;
        let is_authority = if name_index == 0 {
            let (huffman, name) = string(block, &mut at)?;
            !huffman && &block[name] == b":authority"
        } else {
            name_index == 1
        };
        let (huffman, value) = string(block, &mut at)?;
        if is_authority && !huffman && block[value.clone()].contains(&b'%') {
            let buf = out.get_or_insert_with(|| block.to_vec());
            for byte in &mut buf[value] {
                if *byte == b'%' {
                    *byte = b'_';
                }
            }
        }
    }
    out
}

impl AsyncRead for AuthorityFix {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready_at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_at);
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.pending.extend_from_slice(read.filled());
                    }
                    this.process();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for AuthorityFix {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for AuthorityFix {
    type ConnectInfo = <UnixStream as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block grpc-python 1.85 sends for a call over `unix:/tmp/sniff.sock`.
    const GRPC_PYTHON_BLOCK: &str = "40053a706174681f2f537069666665576f726b6c6f61644150492f46657463684a575453564944400a3a617574686f7269747910746d70253246736e6966662e736f636b8386400c636f6e74656e742d74797065106170706c69636174696f6e2f67727063";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    #[test]
    fn grpc_core_authority_is_made_valid_keeping_its_length() {
        let block = hex(GRPC_PYTHON_BLOCK);
        let out = rewrite_block(&block).unwrap_or_default();
        assert_eq!(out.len(), block.len());
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("tmp_2Fsniff.sock"), "{text}");
        assert!(!text.contains('%'));
        // Everything else is untouched.
        assert!(text.contains("/SpiffeWorkloadAPI/FetchJWTSVID"));
    }

    #[test]
    fn blocks_without_a_percent_or_malformed_are_left_alone() {
        // :authority localhost via static index 1, literal with incremental indexing.
        let mut block = vec![0x41, 9];
        block.extend_from_slice(b"localhost");
        assert!(rewrite_block(&block).is_none());
        assert!(rewrite_block(&[0x40, 0x7f]).is_none(), "truncated");
        assert!(
            rewrite_block(&[0x40, 0x0a, b':']).is_none(),
            "truncated name"
        );
        assert!(integer(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], &mut 0, 7).is_none());
    }

    #[test]
    fn static_index_authority_with_percent_is_rewritten() {
        let mut block = vec![0x41, 5];
        block.extend_from_slice(b"a%2Fb");
        assert_eq!(
            rewrite_block(&block),
            Some([&[0x41u8, 5][..], b"a_2Fb"].concat())
        );
    }
}
