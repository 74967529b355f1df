//! Credential access boundaries at the Security Token Service: server-side downscoped tokens
//! (`options` with an `accessBoundary`), intermediary tokens with a Tink AES-GCM session key for
//! client-side downscoping, and `GET /emulator/v1/downscoped-boundary`, a test endpoint that
//! answers which boundary a downscoped token (either kind) carries.
//!
//! The protobuf messages are derived here again, by hand, from Tink's and the CEL protos rather
//! than shared with the client crates, so that a client bug is not mirrored by the emulator.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use prost::Message as _;
use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};

use super::{bearer, field, json_response, oauth_error};
use crate::config::EmulatorConfig;
use crate::http_server::{Request, Response};
use crate::state::State;

pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub(crate) const INTERMEDIARY_TYPE: &str =
    "urn:ietf:params:oauth:token-type:access_boundary_intermediary_token";
const MAX_RULES: usize = 10;
/// How many downscoped and intermediary tokens are remembered.
const REMEMBERED: usize = 1024;
const AES_GCM_TYPE_URL: &str = "type.googleapis.com/google.crypto.tink.AesGcmKey";

// The same messages as the client's `workload_auth_adc::downscoped::proto`, declared again on
// purpose: the emulator shares no code with the clients it tests, so a mistake in the client's
// wire format cannot pass because the emulator made the same one.
mod proto {
    #![allow(unreachable_pub, missing_docs)]

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Keyset {
        #[prost(uint32, tag = "1")]
        pub primary_key_id: u32,
        #[prost(message, repeated, tag = "2")]
        pub key: Vec<Key>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Key {
        #[prost(message, optional, tag = "1")]
        pub key_data: Option<KeyData>,
        #[prost(int32, tag = "2")]
        pub status: i32,
        #[prost(uint32, tag = "3")]
        pub key_id: u32,
        #[prost(int32, tag = "4")]
        pub output_prefix_type: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyData {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
        #[prost(int32, tag = "3")]
        pub key_material_type: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AesGcmKey {
        #[prost(uint32, tag = "1")]
        pub version: u32,
        #[prost(bytes = "vec", tag = "3")]
        pub key_value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ClientSideAccessBoundary {
        #[prost(message, repeated, tag = "1")]
        pub access_boundary_rules: Vec<Rule>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Rule {
        #[prost(string, tag = "1")]
        pub available_resource: String,
        #[prost(string, repeated, tag = "2")]
        pub available_permissions: Vec<String>,
        #[prost(message, optional, tag = "4")]
        pub compiled_availability_condition: Option<Expr>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Expr {
        #[prost(int64, tag = "2")]
        pub id: i64,
        #[prost(oneof = "Kind", tags = "3, 4, 5, 6")]
        pub kind: Option<Kind>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "3")]
        Const(Constant),
        #[prost(message, tag = "4")]
        Ident(Ident),
        #[prost(message, tag = "5")]
        Select(Box<Select>),
        #[prost(message, tag = "6")]
        Call(Box<Call>),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Ident {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Select {
        #[prost(message, optional, boxed, tag = "1")]
        pub operand: Option<Box<Expr>>,
        #[prost(string, tag = "2")]
        pub field: String,
        #[prost(bool, tag = "3")]
        pub test_only: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Call {
        #[prost(message, optional, boxed, tag = "1")]
        pub target: Option<Box<Expr>>,
        #[prost(string, tag = "2")]
        pub function: String,
        #[prost(message, repeated, tag = "3")]
        pub args: Vec<Expr>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Constant {
        #[prost(oneof = "ConstantKind", tags = "1, 2, 3, 4, 5, 6, 7")]
        pub kind: Option<ConstantKind>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum ConstantKind {
        #[prost(int32, tag = "1")]
        Null(i32),
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(int64, tag = "3")]
        Int64(i64),
        #[prost(uint64, tag = "4")]
        Uint64(u64),
        #[prost(double, tag = "5")]
        Double(f64),
        #[prost(string, tag = "6")]
        String(String),
        #[prost(bytes = "vec", tag = "7")]
        Bytes(Vec<u8>),
    }
}

/// A session key the emulator issued with an intermediary token.
#[derive(Clone)]
struct Session {
    intermediary: String,
    key: Vec<u8>,
    key_id: u32,
    expires_at: SystemTime,
}

/// Downscoped tokens and intermediary sessions the emulator issued.
#[derive(Default)]
pub(crate) struct DownscopeRegistry {
    sessions: Mutex<VecDeque<Session>>,
    server_side: Mutex<VecDeque<(String, Value)>>,
}

impl std::fmt::Debug for DownscopeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownscopeRegistry").finish_non_exhaustive()
    }
}

fn push_bounded<T>(queue: &Mutex<VecDeque<T>>, item: T) {
    let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
    if q.len() >= REMEMBERED {
        q.pop_front();
    }
    q.push_back(item);
}

/// `options` as sent: JSON, or JSON percent-encoded once more (google-auth for Python).
fn parse_options(raw: &str) -> Option<Value> {
    serde_json::from_str::<Value>(raw).ok().or_else(|| {
        let decoded: String = url::form_urlencoded::parse(format!("v={raw}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())?;
        serde_json::from_str(&decoded).ok()
    })
}

/// Checks an `accessBoundary` as the Security Token Service does; the error text on failure.
fn check_boundary(boundary: &Value) -> Result<(), String> {
    let Some(rules) = boundary
        .get("accessBoundaryRules")
        .and_then(Value::as_array)
    else {
        return Err("The access boundary must have accessBoundaryRules.".to_owned());
    };
    if rules.is_empty() {
        return Err("The access boundary must have at least one rule.".to_owned());
    }
    if rules.len() > MAX_RULES {
        return Err(format!(
            "The access boundary has {} rules; at most {MAX_RULES} access boundary rules are allowed.",
            rules.len()
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        if rule
            .get("availableResource")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(format!("Rule {i}: availableResource is required."));
        }
        let permissions = rule
            .get("availablePermissions")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("Rule {i}: availablePermissions is required."))?;
        for p in permissions {
            if p.as_str()
                .and_then(|p| p.strip_prefix("inRole:"))
                .is_none_or(str::is_empty)
            {
                return Err(format!(
                    "Rule {i}: availablePermissions must be of the form inRole:ROLE."
                ));
            }
        }
        if let Some(condition) = rule.get("availabilityCondition")
            && condition
                .get("expression")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            return Err(format!(
                "Rule {i}: availabilityCondition.expression is required."
            ));
        }
    }
    Ok(())
}

/// `POST /v1/token` with `subject_token_type=…:access_token`: downscoping.
pub(crate) fn exchange(
    state: &State,
    config: &EmulatorConfig,
    form: &[(String, String)],
) -> Response {
    let Some(subject) = field(form, "subject_token") else {
        return oauth_error(
            400,
            "invalid_request",
            "Missing required field: subject_token",
        );
    };
    let Some(issued) = state.tokens.lookup(subject) else {
        return oauth_error(
            400,
            "invalid_grant",
            "The subject token is not a valid access token.",
        );
    };
    let now = SystemTime::now();
    let left = issued
        .expires_at
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
        .min(config.token_lifetime);
    match field(form, "requested_token_type") {
        Some(ACCESS_TOKEN_TYPE) => server_side(state, form, issued.scopes, left),
        Some(INTERMEDIARY_TYPE) => intermediary(state, config, form, issued.scopes, now, left),
        _ => oauth_error(
            400,
            "invalid_request",
            "Invalid value for \"requested_token_type\"",
        ),
    }
}

/// Server-side downscoping: a new token for `scopes`, living `left`, remembered with the
/// `options.accessBoundary` it carries.
fn server_side(
    state: &State,
    form: &[(String, String)],
    scopes: Vec<String>,
    left: Duration,
) -> Response {
    let Some(options) = field(form, "options") else {
        return oauth_error(
            400,
            "invalid_request",
            "Downscoping requires options with an accessBoundary.",
        );
    };
    let Some(boundary) = parse_options(options).and_then(|o| o.get("accessBoundary").cloned())
    else {
        return oauth_error(
            400,
            "invalid_request",
            "The options are not JSON with an accessBoundary.",
        );
    };
    if let Err(why) = check_boundary(&boundary) {
        return oauth_error(400, "invalid_request", &why);
    }
    let token = state.tokens.mint(scopes, left);
    push_bounded(
        &state.downscope.server_side,
        (token.expose().to_owned(), boundary),
    );
    json_response(
        200,
        &json!({
            "access_token": token.expose(),
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": left.as_secs(),
        }),
    )
}

/// Client-side downscoping's first step: an intermediary token and a fresh AES-GCM session key
/// (as a Tink keyset) the client seals its boundaries with.
fn intermediary(
    state: &State,
    config: &EmulatorConfig,
    form: &[(String, String)],
    scopes: Vec<String>,
    now: SystemTime,
    left: Duration,
) -> Response {
    if field(form, "options").is_some() {
        return oauth_error(
            400,
            "invalid_request",
            "Intermediary tokens take no options.",
        );
    }
    let key_len = config.identity.sts.session_key_bytes;
    if key_len != 16 && key_len != 32 {
        return Response::error(500, "emulator: session_key_bytes must be 16 or 32");
    }
    let rng = SystemRandom::new();
    let mut key = vec![0u8; key_len];
    let mut id = [0u8; 4];
    if rng.fill(&mut key).is_err() || rng.fill(&mut id).is_err() {
        return Response::error(500, "random generator failed");
    }
    let key_id = u32::from_be_bytes(id);
    let keyset = proto::Keyset {
        primary_key_id: key_id,
        key: vec![proto::Key {
            key_data: Some(proto::KeyData {
                type_url: AES_GCM_TYPE_URL.to_owned(),
                value: proto::AesGcmKey {
                    version: 0,
                    key_value: key.clone(),
                }
                .encode_to_vec(),
                key_material_type: 1,
            }),
            status: 1,
            key_id,
            output_prefix_type: 1,
        }],
    };
    let token = state.tokens.mint(scopes, left);
    push_bounded(
        &state.downscope.sessions,
        Session {
            intermediary: token.expose().to_owned(),
            key,
            key_id,
            expires_at: now + left,
        },
    );
    json_response(
        200,
        &json!({
            "access_token": token.expose(),
            "issued_token_type": INTERMEDIARY_TYPE,
            "token_type": "Bearer",
            "expires_in": left.as_secs(),
            "access_boundary_session_key": base64::engine::general_purpose::STANDARD
                .encode(keyset.encode_to_vec()),
        }),
    )
}

/// `GET /emulator/v1/downscoped-boundary` with `Authorization: Bearer <downscoped token>`: the
/// boundary the token carries, as `{"accessBoundary": {...}, "kind": "client-side"|"server-side"}`.
pub(crate) fn inspect(state: &State, request: &Request) -> Response {
    let Some(token) = bearer(request) else {
        return super::google_error(401, "UNAUTHENTICATED", "A bearer token is required.");
    };
    let server_side = state
        .downscope
        .server_side
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(t, _)| t == token)
        .map(|(_, b)| b.clone());
    if let Some(boundary) = server_side {
        return json_response(
            200,
            &json!({ "kind": "server-side", "accessBoundary": boundary }),
        );
    }
    match decrypt(state, token) {
        Ok(boundary) => json_response(
            200,
            &json!({ "kind": "client-side", "accessBoundary": boundary }),
        ),
        Err((status, why)) => super::google_error(
            status,
            if status == 401 {
                "UNAUTHENTICATED"
            } else {
                "INVALID_ARGUMENT"
            },
            &why,
        ),
    }
}

/// Opens a client-side token and renders its boundary as the server-side JSON form.
fn decrypt(state: &State, token: &str) -> Result<Value, (u16, String)> {
    let Some((intermediary, sealed)) = token.rsplit_once('.') else {
        return Err((401, "The token is not a downscoped token.".to_owned()));
    };
    let session = state
        .downscope
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|s| s.intermediary == intermediary)
        .cloned()
        .ok_or((401, "The intermediary token is unknown.".to_owned()))?;
    if session.expires_at <= SystemTime::now() {
        return Err((401, "The intermediary token has expired.".to_owned()));
    }
    // Unpadded is the norm; Java pads.
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sealed.trim_end_matches('='))
        .map_err(|_| (400, "The access boundary is not base64url.".to_owned()))?;
    let mut prefix = vec![1u8];
    prefix.extend_from_slice(&session.key_id.to_be_bytes());
    let body = sealed.strip_prefix(prefix.as_slice()).ok_or((
        400,
        "The Tink prefix does not name the session key.".to_owned(),
    ))?;
    if body.len() < 12 + 16 {
        return Err((400, "The access boundary is too short.".to_owned()));
    }
    let (nonce, ciphertext) = body.split_at(12);
    let algorithm = if session.key.len() == 16 {
        &AES_128_GCM
    } else {
        &AES_256_GCM
    };
    let key = UnboundKey::new(algorithm, &session.key)
        .map_err(|_| (500, "bad session key".to_owned()))?;
    let nonce =
        Nonce::try_assume_unique_for_key(nonce).map_err(|_| (400, "bad nonce".to_owned()))?;
    let mut buffer = ciphertext.to_vec();
    let plain = LessSafeKey::new(key)
        .open_in_place(nonce, Aad::empty(), &mut buffer)
        .map_err(|_| {
            (
                400,
                "The access boundary does not decrypt with the session key.".to_owned(),
            )
        })?;
    let boundary = proto::ClientSideAccessBoundary::decode(&*plain)
        .map_err(|_| (400, "The access boundary is not a protobuf.".to_owned()))?;
    let mut rules = Vec::new();
    for (i, rule) in boundary.access_boundary_rules.iter().enumerate() {
        let mut out = json!({
            "availableResource": rule.available_resource,
            "availablePermissions": rule.available_permissions,
        });
        if let Some(expr) = &rule.compiled_availability_condition {
            let text = render(expr, 0).ok_or((
                400,
                format!("Rule {i}: the compiled condition is not understood."),
            ))?;
            out["availabilityCondition"] = json!({ "expression": text });
        }
        rules.push(out);
    }
    let value = json!({ "accessBoundaryRules": rules });
    check_boundary(&value).map_err(|why| (400, why))?;
    Ok(value)
}

/// CEL text of a compiled expression (the forms Google's samples use).
fn render(expr: &proto::Expr, depth: usize) -> Option<String> {
    if depth > 64 {
        return None;
    }
    match expr.kind.as_ref()? {
        proto::Kind::Ident(i) => Some(i.name.clone()),
        proto::Kind::Const(c) => match c.kind.as_ref()? {
            proto::ConstantKind::String(s) => Some(serde_json::to_string(s).ok()?),
            proto::ConstantKind::Bool(b) => Some(b.to_string()),
            proto::ConstantKind::Int64(n) => Some(n.to_string()),
            _ => None,
        },
        proto::Kind::Select(s) => Some(format!(
            "{}.{}",
            render(s.operand.as_deref()?, depth + 1)?,
            s.field
        )),
        proto::Kind::Call(c) => {
            let args: Option<Vec<String>> = c.args.iter().map(|a| render(a, depth + 1)).collect();
            let args = args?;
            match (c.target.as_deref(), c.function.as_str(), args.as_slice()) {
                (None, "_==_", [a, b]) => Some(format!("{a} == {b}")),
                (None, "_&&_", [a, b]) => Some(format!("({a}) && ({b})")),
                (None, "_||_", [a, b]) => Some(format!("({a}) || ({b})")),
                (Some(target), f, _) => Some(format!(
                    "{}.{f}({})",
                    render(target, depth + 1)?,
                    args.join(", ")
                )),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_once_or_twice_encoded() {
        let json = r#"{"accessBoundary":{"accessBoundaryRules":[]}}"#;
        assert!(parse_options(json).is_some());
        let twice: String = url::form_urlencoded::byte_serialize(json.as_bytes()).collect();
        assert_eq!(parse_options(&twice), parse_options(json));
        assert!(parse_options("nope").is_none());
    }

    #[test]
    fn boundaries_are_checked_like_sts() {
        let rule = json!({"availableResource":"r","availablePermissions":["inRole:x"]});
        assert!(check_boundary(&json!({"accessBoundaryRules":[rule]})).is_ok());
        let eleven = vec![rule.clone(); 11];
        let e = check_boundary(&json!({ "accessBoundaryRules": eleven })).unwrap_err();
        assert!(e.contains("at most 10"), "{e}");
        let bad = json!({"availableResource":"r","availablePermissions":["roles/x"]});
        assert!(check_boundary(&json!({"accessBoundaryRules":[bad]})).is_err());
    }
}
