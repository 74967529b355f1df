//! One request to the metadata server, with every check a response must pass.
//!
//! A response is accepted only if it carries `Metadata-Flavor: Google` (anything else is not the
//! metadata server: a proxy, a captive portal, another cloud's metadata service), is not a
//! redirect, and has a body of at most [`MAX_BODY_BYTES`], which is enforced while reading.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use url::Url;
use workload_auth_core::{Error, ErrorKind, Result, Retry};
use zeroize::Zeroizing;

/// The largest response body accepted (1 MiB); metadata values are a few kilobytes at most.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The metadata-server request and response header.
pub(crate) const FLAVOR_HEADER: &str = "metadata-flavor";
pub(crate) const FLAVOR_VALUE: &str = "Google";

/// The start of an error body put into an error message (error bodies are short notes such as
/// "Not Found", never tokens: a token only ever comes with a 2xx status).
const ERROR_SNIPPET_CHARS: usize = 120;

/// A successful response body. Zeroed when dropped, because token and key responses pass
/// through it.
pub(crate) type Body = Zeroizing<Vec<u8>>;

/// The outcome of one request that got an answer which passed the checks.
#[derive(Debug)]
pub(crate) enum Answer {
    /// 2xx with its body.
    Ok(Body),
    /// Another status the caller may want to interpret (404, 412): status, and the start of the
    /// body as text.
    Status(u16, String),
}

/// Sends one GET to `url` (no retries here).
pub(crate) async fn get_once(
    http: &reqwest::Client,
    url: &Url,
    endpoint: &str,
    timeout: Duration,
) -> Result<Answer> {
    let request = http
        .get(url.clone())
        .header(FLAVOR_HEADER, HeaderValue::from_static(FLAVOR_VALUE));
    let mut response = request
        .send()
        .await
        .map_err(|e| transport_error(&e, endpoint, timeout))?;
    let status = response.status().as_u16();
    check_flavor(response.headers(), status, endpoint)?;
    if (300..400).contains(&status) {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| snippet(v, ERROR_SNIPPET_CHARS))
            .unwrap_or_default();
        return Err(Error::http_status(
            status,
            endpoint.to_owned(),
            format!(
                "the metadata server answered with a redirect to {location:?}, which is refused"
            ),
        )
        .with_retry(Retry::Permanent));
    }
    let body = read_body(&mut response, endpoint, timeout).await?;
    if (200..300).contains(&status) {
        Ok(Answer::Ok(body))
    } else {
        Ok(Answer::Status(
            status,
            snippet(&String::from_utf8_lossy(&body), ERROR_SNIPPET_CHARS),
        ))
    }
}

fn check_flavor(headers: &HeaderMap, status: u16, endpoint: &str) -> Result<()> {
    let mut values = headers.get_all(FLAVOR_HEADER).iter();
    let problem = match (values.next(), values.next()) {
        (Some(v), None) if v.as_bytes() == FLAVOR_VALUE.as_bytes() => return Ok(()),
        (None, _) => "has no Metadata-Flavor header".to_owned(),
        (Some(_), Some(_)) => "has more than one Metadata-Flavor header".to_owned(),
        (Some(v), None) => format!(
            "has Metadata-Flavor: {:?} instead of \"Google\"",
            snippet(&String::from_utf8_lossy(v.as_bytes()), 40)
        ),
    };
    Err(Error::new(
        ErrorKind::MalformedResponse,
        format!("the response (HTTP {status}) {problem}, so it did not come from the metadata server"),
    )
    .with_endpoint(endpoint.to_owned())
    .with_hint("check GCE_METADATA_HOST and any HTTP proxy or interception between here and the metadata server"))
}

/// Reads the body chunk by chunk, refusing it as soon as it grows past [`MAX_BODY_BYTES`].
async fn read_body(
    response: &mut reqwest::Response,
    endpoint: &str,
    timeout: Duration,
) -> Result<Body> {
    let too_large = || {
        Error::new(
            ErrorKind::MalformedResponse,
            format!("the response body is larger than {MAX_BODY_BYTES} bytes"),
        )
        .with_endpoint(endpoint.to_owned())
    };
    let declared = response.content_length();
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    // Reserving the declared size up front avoids reallocations that would leave unzeroed copies.
    let capacity = declared.map_or(1024, |n| n as usize);
    let mut body = Zeroizing::new(Vec::with_capacity(capacity));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                if body.len() + chunk.len() > body.capacity() {
                    let mut bigger = Zeroizing::new(Vec::with_capacity(
                        (body.len() + chunk.len()).max(body.capacity() * 2),
                    ));
                    bigger.extend_from_slice(&body);
                    body = bigger;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(transport_error(&e, endpoint, timeout)),
        }
    }
}

/// A transport failure: connect errors, timeouts, resets and truncated bodies, all transient.
fn transport_error(e: &reqwest::Error, endpoint: &str, timeout: Duration) -> Error {
    let message = if e.is_timeout() {
        format!(
            "no complete answer from the metadata server within {} ms",
            timeout.as_millis()
        )
    } else if e.is_connect() {
        "could not connect to the metadata server".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the connection failed while reading the response body (truncated or reset)".to_owned()
    } else {
        "the request to the metadata server failed (connection closed or reset)".to_owned()
    };
    // reqwest's own text names the URL (without secrets: the query holds only scopes or an
    // audience); its source chain says what the socket reported.
    let mut detail = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    let mut err = Error::new(ErrorKind::Transport, message).with_endpoint(endpoint.to_owned());
    if !detail.is_empty() {
        err = err.with_source(TransportDetail(detail));
    }
    if e.is_connect() {
        err = err.with_hint(
            "is this running on Google Cloud? Elsewhere, set GCE_METADATA_HOST to a metadata server \
             (for example the workload-auth emulator) or use other credentials",
        );
    }
    err
}

/// The innermost cause of a transport failure, as text.
#[derive(Debug)]
struct TransportDetail(String);

impl std::fmt::Display for TransportDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransportDetail {}

/// The first `max` characters of `text` on one line, control characters replaced.
pub(crate) fn snippet(text: &str, max: usize) -> String {
    let mut out: String = text
        .trim()
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(FLAVOR_HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn flavor_must_be_exactly_google() {
        assert!(check_flavor(&headers(&["Google"]), 200, "e").is_ok());
        for bad in [&[][..], &["NotGoogle"], &["google"], &["Google", "Google"]] {
            let err = check_flavor(&headers(bad), 200, "e").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{bad:?}");
            assert_eq!(err.endpoint(), Some("e"));
            assert!(!err.is_transient());
        }
    }

    #[test]
    fn snippets_are_short_single_lines() {
        assert_eq!(snippet("  Not Found\n", 120), "Not Found");
        assert_eq!(snippet("a\nb\r\nc", 120), "a b  c");
        assert_eq!(snippet("abcdef", 3), "abc…");
    }
}
