//! One request to the metadata server, with every check a response must pass. The client under
//! it is built, and the body read, by `workload_auth_core::http_client`.
//!
//! A response is accepted only if it carries `Metadata-Flavor: Google` (anything else is not the
//! metadata server: a proxy, a captive portal, another cloud's metadata service), is not a
//! redirect, and has a body of at most [`MAX_BODY_BYTES`], which is enforced while reading.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use url::Url;
use workload_auth_core::http_client::read_body;
use workload_auth_core::json::{JsonObject, parse_object};
use workload_auth_core::text::snippet;
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
pub(crate) enum MetadataResponse {
    /// 2xx with its body.
    Ok(Body),
    /// Another status the caller may want to interpret (404, 412): status, and the start of the
    /// body as text.
    Status(u16, String),
}

/// Sends one GET to `url`, or a POST of the JSON `body` when there is one (certificate-bound
/// token requests), with no retries here.
pub(crate) async fn send_once(
    http: &reqwest::Client,
    url: &Url,
    body: Option<&[u8]>,
    endpoint: &str,
    timeout: Duration,
) -> Result<MetadataResponse> {
    let request = match body {
        None => http.get(url.clone()),
        Some(body) => http
            .post(url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .body(body.to_vec()),
    }
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
    let body = read_body(&mut response, MAX_BODY_BYTES, endpoint, |e| {
        transport_error(e, endpoint, timeout)
    })
    .await?;
    if (200..300).contains(&status) {
        Ok(MetadataResponse::Ok(body))
    } else {
        Ok(MetadataResponse::Status(
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

/// A transport failure: connect errors, timeouts, resets and truncated bodies, all transient.
fn transport_error(e: &reqwest::Error, endpoint: &str, timeout: Duration) -> Error {
    let err = workload_auth_core::http_client::transport_error(
        e,
        Some("the metadata server"),
        endpoint,
        timeout,
    );
    if e.is_connect() && !e.is_timeout() {
        err.with_hint(
            "is this running on Google Cloud? Elsewhere, set GCE_METADATA_HOST to a metadata server \
             (for example the workload-auth emulator) or use other credentials",
        )
    } else {
        err
    }
}

/// A malformed-response error about `endpoint`.
pub(crate) fn malformed(endpoint: &str, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::MalformedResponse, message).with_endpoint(endpoint.to_owned())
}

/// Parses a response body as a JSON object (duplicate keys refused, errors never quote it).
pub(crate) fn parse_json(body: &[u8], endpoint: &str) -> Result<JsonObject> {
    parse_object(body, endpoint, ErrorKind::MalformedResponse, "the body")
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
}
