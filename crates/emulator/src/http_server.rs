//! HTTP/1.1 over any byte stream (TCP, TLS, mTLS), with every byte under the emulator's control.
//!
//! Requests are parsed with `httparse` under size and time limits; responses are written by hand so
//! faults can drop headers, cut bodies short or reset the connection.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use crate::config::Limits;

/// The value of the `Server` header of the real metadata server.
const SERVER: &str = "Metadata Server for VM";

/// A parsed request. Header names are lower case; the path is percent-decoded.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    /// HTTP/1.`minor_version`.
    pub(crate) minor_version: u8,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lower case).
    pub(crate) fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers_named(name).next()
    }

    /// Every header called `name` (lower case).
    pub(crate) fn headers_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a str> + use<'a> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter called `name`.
    pub(crate) fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after this request.
    pub(crate) fn keep_alive(&self) -> bool {
        let connection = self.header("connection").map(str::to_ascii_lowercase);
        let says = |token: &str| {
            connection
                .as_deref()
                .is_some_and(|c| c.split(',').any(|t| t.trim() == token))
        };
        if self.minor_version == 0 {
            says("keep-alive")
        } else {
            !says("close")
        }
    }

    pub(crate) fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The client closed, went idle or failed before a request began: close without answering.
    Closed,
    /// The request was bad or too slow: send this answer, then close.
    Reject(Response),
}

/// Reads one request from `stream`. `buf` carries bytes a pipelining client sent ahead across calls.
pub(crate) async fn read_request<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> Result<Request, ReadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The idle timeout runs until the first byte of a request; then the whole request must arrive
    // within the header timeout.
    let mut deadline = (!buf.is_empty()).then(|| Instant::now() + limits.header_timeout);
    let (mut request, head_len) = loop {
        if !buf.is_empty()
            && let Some(parsed) = parse_head(buf, limits)?
        {
            break parsed;
        }
        let until = deadline.unwrap_or_else(|| Instant::now() + limits.idle_timeout);
        read_more(stream, buf, until, deadline.is_some()).await?;
        deadline.get_or_insert_with(|| Instant::now() + limits.header_timeout);
    };
    buf.drain(..head_len);

    let body_len = content_length(&request)?;
    if body_len > limits.max_body_bytes {
        return Err(reject(413, "request body too large"));
    }
    if body_len > 0
        && request
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| ReadError::Closed)?;
    }
    let until = Instant::now() + limits.header_timeout;
    while buf.len() < body_len {
        read_more(stream, buf, until, true).await?;
    }
    request.body = buf.drain(..body_len).collect();
    Ok(request)
}

/// Reads what the client sent next into `buf`, before `until`.
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    until: Instant,
    in_request: bool,
) -> Result<(), ReadError> {
    let mut chunk = [0u8; 4096];
    match timeout_at(until, stream.read(&mut chunk)).await {
        Err(_elapsed) if in_request => Err(reject(408, "request not received in time")),
        Err(_) | Ok(Ok(0)) | Ok(Err(_)) => Err(ReadError::Closed),
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

/// Parses the request line and headers, or says more bytes are needed (`None`).
fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, ReadError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= limits.max_head_bytes => n,
        Ok(httparse::Status::Partial) if buf.len() <= limits.max_head_bytes => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Err(reject(431, "request headers too large"));
        }
        Err(_) => return Err(reject(400, "malformed request")),
    };
    let (Some(method), Some(target), Some(minor_version)) =
        (parsed.method, parsed.path, parsed.version)
    else {
        return Err(reject(400, "malformed request"));
    };
    let (path, query) =
        split_target(target).ok_or_else(|| reject(400, "malformed request target"))?;
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();
    let request = Request {
        method: method.to_owned(),
        path,
        query,
        minor_version,
        headers,
        body: Vec::new(),
    };
    Ok(Some((request, head_len)))
}

/// Splits an origin-form (or absolute-form) target into a decoded path and query pairs.
fn split_target(target: &str) -> Option<(String, Vec<(String, String)>)> {
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !escapes_are_valid(query.as_bytes()) {
        return None;
    }
    let query = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    Some((percent_decode(path)?, query))
}

/// Whether every `%` in `text` starts an escape of two hex digits (`%+1`, `%2x` and a trailing
/// `%` are not escapes; a parser that reads them as numbers sees what no other parser sees).
pub(crate) fn escapes_are_valid(text: &[u8]) -> bool {
    text.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'%')
        .all(|(i, _)| {
            text.get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
        })
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    if !escapes_are_valid(s.as_bytes()) {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

fn content_length(request: &Request) -> Result<usize, ReadError> {
    if request.header("transfer-encoding").is_some() {
        return Err(reject(501, "chunked request bodies are not supported"));
    }
    let mut length = None;
    for value in request.headers_named("content-length") {
        let n: usize = value
            .parse()
            .map_err(|_| reject(400, "invalid Content-Length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(reject(400, "conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    Ok(length.unwrap_or(0))
}

fn reject(status: u16, message: &str) -> ReadError {
    ReadError::Reject(Response::error(status, message))
}

/// A response body: bytes, or filler generated while writing (for oversize faults).
#[derive(Debug)]
pub(crate) enum Body {
    Bytes(Vec<u8>),
    Filler(usize),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Self::Bytes(b) => b.len(),
            Self::Filler(n) => *n,
        }
    }
}

/// A response, built by handlers and altered by faults before it is written.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    headers: Vec<(&'static str, String)>,
    pub(crate) body: Body,
}

impl Response {
    /// A response with the headers every answer of the metadata server carries.
    pub(crate) fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![
                ("Metadata-Flavor", "Google".to_owned()),
                ("Content-Type", content_type.to_owned()),
                ("Server", SERVER.to_owned()),
                ("X-XSS-Protection", "0".to_owned()),
                ("X-Frame-Options", "SAMEORIGIN".to_owned()),
            ],
            body: Body::Bytes(body.into()),
        }
    }

    /// A plain value, as the metadata server sends it (`application/text`).
    pub(crate) fn text(body: impl Into<String>) -> Self {
        Self::new(200, "application/text", body.into())
    }

    pub(crate) fn json(value: &serde_json::Value) -> Self {
        Self::new(200, "application/json", value.to_string())
    }

    /// An error page (the real server sends HTML).
    pub(crate) fn error(status: u16, message: &str) -> Self {
        let body = format!(
            "<!DOCTYPE html>\n<html><head><title>Error {status} ({reason})</title></head>\n\
             <body><p><b>{status}.</b> {message}</p></body></html>\n",
            reason = reason(status)
        );
        Self::new(status, "text/html; charset=UTF-8", body)
    }

    pub(crate) fn redirect(status: u16, location: &str) -> Self {
        let mut response = Self::new(status, "text/html; charset=UTF-8", Vec::new());
        response.set_header("Location", location.to_owned());
        response
    }

    pub(crate) fn set_header(&mut self, name: &'static str, value: String) {
        self.remove_header(name);
        self.headers.push((name, value));
    }

    pub(crate) fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

/// How much of a response to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Headers only (a HEAD request).
    HeadOnly,
    /// Headers and body.
    Full,
    /// Headers announcing the full length, then half the body.
    Truncated,
}

/// Writes `response`; `close` adds `Connection: close`.
pub(crate) async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &Response,
    framing: Framing,
    close: bool,
) -> io::Result<()> {
    let full = response.body.len();
    let (declared, sent) = match framing {
        Framing::HeadOnly => (full, 0),
        Framing::Full => (full, full),
        // An empty body cannot be cut short; announce one byte that never comes.
        Framing::Truncated => (full.max(1), full / 2),
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {declared}\r\n"));
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    match &response.body {
        Body::Bytes(bytes) => stream.write_all(&bytes[..sent]).await?,
        Body::Filler(_) => {
            let filler = [b'x'; 8192];
            let mut left = sent;
            while left > 0 {
                let n = left.min(filler.len());
                stream.write_all(&filler[..n]).await?;
                left -= n;
            }
        }
    }
    stream.flush().await
}

/// The reason phrase of a status code.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<(Request, usize)>, ReadError> {
        parse_head(raw.as_bytes(), &Limits::default())
    }

    /// Finding 8: a request target with an escape that is not `%` and two hex digits is a 400.
    #[test]
    fn finding_8_malformed_escapes_in_the_target_are_refused() {
        for target in ["/a%+1", "/a%2x", "/a%", "/a?x=%+1", "/a?x=%-f", "/a%C3%28"] {
            let raw = format!("GET {target} HTTP/1.1\r\n\r\n");
            match head(&raw) {
                Err(ReadError::Reject(response)) => assert_eq!(response.status, 400, "{target}"),
                _ => panic!("{target} was accepted"),
            }
        }
        assert_eq!(percent_decode("%41%2F").as_deref(), Some("A/"));
    }

    #[test]
    fn parses_path_query_and_headers() {
        let raw = "GET /computeMetadata/v1/instance/service-accounts/a%40b.com/token?scopes=x%2Cy&z HTTP/1.1\r\nMetadata-Flavor: Google\r\n\r\n";
        let (req, n) = head(raw).unwrap().unwrap();
        assert_eq!(n, raw.len());
        assert_eq!(
            req.path,
            "/computeMetadata/v1/instance/service-accounts/a@b.com/token"
        );
        assert_eq!(req.query_param("scopes"), Some("x,y"));
        assert_eq!(req.query_param("z"), Some(""));
        assert_eq!(req.header("metadata-flavor"), Some("Google"));
        assert!(req.keep_alive());
    }

    #[test]
    fn partial_garbage_and_oversize_heads() {
        assert!(matches!(head("GET / HTTP/1.1\r\nHost: x"), Ok(None)));
        assert!(matches!(
            head("\x16\x03\x01 not http\r\n\r\n"),
            Err(ReadError::Reject(r)) if r.status == 400
        ));
        assert!(matches!(
            head("GET /%zz HTTP/1.1\r\n\r\n"),
            Err(ReadError::Reject(r)) if r.status == 400
        ));
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert!(matches!(head(&long), Err(ReadError::Reject(r)) if r.status == 431));
    }

    #[test]
    fn absolute_form_and_http10() {
        let (req, _) = head("GET http://emulator.invalid/x?a=1 HTTP/1.0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(req.path, "/x");
        assert!(!req.keep_alive());
    }
}
