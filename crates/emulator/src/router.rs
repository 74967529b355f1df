//! From a request to an answer: which endpoint it is for, what fault it suffers, who handles it.
//!
//! New endpoints (OAuth, STS, IAM) get a [`Route`] variant, a line in [`Route::of`] and a handler.

use crate::endpoint::Endpoint;
use crate::fault::Fault;
use crate::http_server::{Body, Framing, Request, Response};
use crate::metadata::{self, Resource};
use crate::state::State;

/// What the connection does with a request.
#[derive(Debug)]
pub(crate) enum ConnectionAction {
    /// Write this response.
    Send(Response, Framing),
    /// Reset the connection without answering.
    Reset,
}

/// The read-only JSON view of the recent requests (credential headers redacted), for a developer
/// or another language's tests to see what a client sent.
pub(crate) const REQUESTS_PATH: &str = "/emulator/requests";

fn recorded_requests(state: &State, request: &Request) -> Response {
    if request.method != "GET" && !request.is_head() {
        return Response::new(405, "text/plain", "GET only\n".to_owned());
    }
    let entries: Vec<serde_json::Value> = state
        .log
        .snapshot()
        .iter()
        .map(|r| {
            serde_json::json!({
                "endpoint": format!("{:?}", r.endpoint),
                "method": r.method,
                "path": r.path,
                "query": r.query,
                "headers": r.headers,
                "bound_fingerprint": r.binding.as_ref().map(|(fp, _)| fp),
                "binding_form": r.binding.as_ref().map(|(_, form)| form),
            })
        })
        .collect();
    let body = serde_json::json!({ "requests": entries }).to_string();
    Response::new(200, "application/json", body)
}

/// Where a path leads.
#[derive(Debug)]
enum Route {
    Root,
    Metadata {
        resource: Resource,
        trailing_slash: bool,
    },
    Jwks,
    PemCerts,
    Identity(crate::identity::IdentityRoute),
    Protected,
    NotFound,
}

impl Route {
    fn of(path: &str) -> Self {
        if path == "/" {
            return Self::Root;
        }
        if path == metadata::PREFIX.trim_end_matches('/') {
            return Self::Metadata {
                resource: Resource::V1Dir,
                trailing_slash: false,
            };
        }
        if let Some(rest) = path.strip_prefix(metadata::PREFIX) {
            let (rest, trailing_slash) = match rest.strip_suffix('/') {
                Some(rest) => (rest, true),
                None => (rest, rest.is_empty()),
            };
            return Self::Metadata {
                resource: Resource::parse(rest),
                trailing_slash,
            };
        }
        if let Some(route) = crate::identity::IdentityRoute::of(path) {
            return Self::Identity(route);
        }
        match path {
            crate::binding::PROTECTED_RESOURCE_PATH => Self::Protected,
            "/oauth2/v3/certs" => Self::Jwks,
            "/oauth2/v1/certs" => Self::PemCerts,
            _ => Self::NotFound,
        }
    }

    fn endpoint(&self) -> Endpoint {
        match self {
            Self::Root => Endpoint::Root,
            Self::Metadata { resource, .. } => resource.endpoint(),
            Self::Jwks => Endpoint::Jwks,
            Self::PemCerts => Endpoint::PemCerts,
            Self::Identity(route) => route.endpoint(),
            Self::Protected | Self::NotFound => Endpoint::Other,
        }
    }

    fn accepts_post(&self) -> bool {
        match self {
            Self::Metadata { resource, .. } => resource.accepts_post(),
            _ => false,
        }
    }
}

/// Counts the request, applies the endpoint's next fault, and answers.
pub(crate) async fn respond(state: &State, request: &Request) -> ConnectionAction {
    if request.path == REQUESTS_PATH {
        // The emulator's own view: neither counted nor recorded, never faulted.
        return ConnectionAction::Send(recorded_requests(state, request), Framing::Full);
    }
    let route = Route::of(&request.path);
    let endpoint = route.endpoint();
    state.counters.record(endpoint);
    state.log.record(endpoint, request);
    let mut framing = if request.is_head() {
        Framing::HeadOnly
    } else {
        Framing::Full
    };
    let fault = state.faults.take(endpoint);
    let mut response = match &fault {
        Some(Fault::Reset) => return ConnectionAction::Reset,
        Some(Fault::Status(status)) => {
            let body = format!("emulated fault: HTTP {status}\n");
            return ConnectionAction::Send(
                Response::new(*status, "application/text", body),
                framing,
            );
        }
        Some(Fault::Redirect(location)) => {
            return ConnectionAction::Send(Response::redirect(302, location), framing);
        }
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(*delay).await;
            answer(state, &route, request)
        }
        _ => answer(state, &route, request),
    };
    match fault {
        Some(Fault::Truncate) if framing == Framing::Full => framing = Framing::Truncated,
        Some(Fault::Malformed(body)) => {
            response.status = 200;
            response.body = Body::Bytes(body.into_bytes());
        }
        Some(Fault::Oversize(len)) => {
            response.status = 200;
            response.body = Body::Filler(len);
        }
        Some(Fault::MissingFlavor) => response.remove_header("Metadata-Flavor"),
        Some(Fault::WrongFlavor) => response.set_header("Metadata-Flavor", "NotGoogle".into()),
        Some(Fault::ShortLifetime(lifetime)) => shorten(&mut response, lifetime),
        _ => {}
    }
    ConnectionAction::Send(response, framing)
}

/// Rewrites `expires_in` in a successful JSON answer.
fn shorten(response: &mut Response, lifetime: std::time::Duration) {
    if response.status != 200 {
        return;
    }
    let Body::Bytes(bytes) = &response.body else {
        return;
    };
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(bytes) else {
        return;
    };
    if object.contains_key("expires_in") {
        object.insert("expires_in".into(), lifetime.as_secs().into());
        response.body = Body::Bytes(serde_json::Value::Object(object).to_string().into_bytes());
    }
}

/// The normal answer, without faults.
fn answer(state: &State, route: &Route, request: &Request) -> Response {
    if let Route::Identity(route) = route {
        return crate::identity::handle(state, route, request);
    }
    let allowed = match request.method.as_str() {
        "GET" | "HEAD" => true,
        "POST" => route.accepts_post(),
        _ => false,
    };
    if !allowed {
        let mut response = Response::error(405, "method not allowed");
        let allow = if route.accepts_post() {
            "GET, HEAD, POST"
        } else {
            "GET, HEAD"
        };
        response.set_header("Allow", allow.into());
        return response;
    }
    match route {
        Route::Root => Response::text("computeMetadata/\n"),
        Route::Metadata {
            resource,
            trailing_slash,
        } => metadata::handle(state, resource, *trailing_slash, request),
        Route::Jwks => Response::json(state.signer.jwks()),
        Route::PemCerts => Response::json(state.signer.pem_certs()),
        Route::Protected => crate::binding::protected(state, request),
        // Answered above: they check their own methods (AWS's session token is a PUT).
        Route::Identity(route) => crate::identity::handle(state, route, request),
        Route::NotFound => metadata::not_found(request),
    }
}
