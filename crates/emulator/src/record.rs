//! A short history of the requests the emulator received, for tests that check what clients sent.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use crate::endpoint::Endpoint;
use crate::http_server::Request;

/// How many requests are remembered; the oldest are forgotten first.
const REMEMBERED: usize = 256;

/// Headers whose values are credentials, recorded as `[redacted]`.
const SECRET_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// One request as the emulator saw it. Bodies are not kept (they may hold credentials), and
/// credential-bearing headers are redacted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The endpoint the request was attributed to.
    pub endpoint: Endpoint,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The percent-decoded path.
    pub path: String,
    /// The decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The certificate binding a token request asked for: the fingerprint (base64url SHA-256
    /// of the leaf's DER, whatever encoding the client sent) and the form
    /// (`certificate_chain` or `fingerprint_query`).
    pub binding: Option<(String, String)>,
}

impl RecordedRequest {
    /// The first query parameter called `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first header called `name` (matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    recent: Mutex<VecDeque<RecordedRequest>>,
}

impl RequestLog {
    pub(crate) fn record(&self, endpoint: Endpoint, request: &Request) {
        let headers = request
            .headers
            .iter()
            .map(|(name, value)| {
                let value = if SECRET_HEADERS.contains(&name.as_str()) {
                    "[redacted]".to_owned()
                } else {
                    value.clone()
                };
                (name.clone(), value)
            })
            .collect();
        let binding = match endpoint {
            Endpoint::Token | Endpoint::Identity => crate::binding::of_request(request)
                .ok()
                .flatten()
                .map(|b| (b.fingerprint, b.form.to_owned())),
            _ => None,
        };
        let entry = RecordedRequest {
            endpoint,
            method: request.method.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            headers,
            binding,
        };
        let mut recent = self.lock();
        if recent.len() >= REMEMBERED {
            recent.pop_front();
        }
        recent.push_back(entry);
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        self.lock().iter().cloned().collect()
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<RecordedRequest>> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
