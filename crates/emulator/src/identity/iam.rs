//! The IAM Service Account Credentials API (`iamcredentials.googleapis.com`):
//! `generateAccessToken` and `generateIdToken` for a service account, authorized by a bearer
//! token the emulator issued (or a service account's self-signed JWT).

use std::time::Duration;

use serde_json::{Value, json};

use super::jwt::Jwt;
use super::{bearer, google_error, json_response, now_seconds};
use crate::config::EmulatorConfig;
use crate::http_server::{Request, Response};
use crate::state::State;

const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const IAM: &str = "https://www.googleapis.com/auth/iam";

/// Checks the caller's bearer token: issued here and unexpired with a scope IAM accepts, or a
/// self-signed JWT of a configured service account.
fn authorize(state: &State, config: &EmulatorConfig, request: &Request) -> Result<(), Response> {
    let unauthenticated = || {
        google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        )
    };
    let Some(token) = bearer(request) else {
        return Err(unauthenticated());
    };
    if let Some(issued) = state.tokens.lookup(token) {
        if issued.scopes.is_empty()
            || issued
                .scopes
                .iter()
                .any(|s| s == CLOUD_PLATFORM || s == IAM)
        {
            return Ok(());
        }
        return Err(google_error(
            403,
            "PERMISSION_DENIED",
            "Request had insufficient authentication scopes.",
        ));
    }
    // A self-signed JWT (AIP-4111) of a known service account.
    let Ok(jwt) = Jwt::decode(token) else {
        return Err(unauthenticated());
    };
    let Some(iss) = jwt.claim_str("iss") else {
        return Err(unauthenticated());
    };
    let Some(account) = config.identity.service_account(iss) else {
        return Err(unauthenticated());
    };
    let scope_ok = jwt.claim_str("scope").is_some_and(|s| {
        s.split_whitespace()
            .any(|s| s == CLOUD_PLATFORM || s == IAM)
    });
    let aud_ok = jwt.claim_str("aud").is_some_and(|a| !a.is_empty());
    if jwt.claim_str("sub") != Some(iss)
        || !(scope_ok || aud_ok)
        || !jwt.verify(&account.public_key)
        || jwt.check_times(now_seconds(), 3600).is_err()
    {
        return Err(unauthenticated());
    }
    Ok(())
}

/// Whether `email` names a service account IAM knows.
fn known_account(config: &EmulatorConfig, email: &str) -> bool {
    email == config.email
        || config.identity.service_account(email).is_some()
        || config.identity.impersonable.iter().any(|a| a == email)
}

/// The JSON body, or the error answer.
fn body(request: &Request) -> Result<serde_json::Map<String, Value>, Response> {
    match serde_json::from_slice(&request.body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(google_error(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received.",
        )),
    }
}

/// Checks the `delegates` chain: each `projects/-/serviceAccounts/EMAIL` must be known.
fn check_delegates(
    config: &EmulatorConfig,
    body: &serde_json::Map<String, Value>,
) -> Result<(), Response> {
    // JSON null is the field's default (google-auth sends `"delegates": null`).
    let Some(delegates) = body.get("delegates").filter(|d| !d.is_null()) else {
        return Ok(());
    };
    let Some(list) = delegates.as_array() else {
        return Err(google_error(
            400,
            "INVALID_ARGUMENT",
            "delegates must be a list",
        ));
    };
    for delegate in list {
        let email = delegate.as_str().map(|d| d.rsplit('/').next().unwrap_or(d));
        match email {
            Some(email) if known_account(config, email) => {}
            _ => {
                return Err(google_error(
                    404,
                    "NOT_FOUND",
                    &format!("Not found; Gaia id not found for delegate {delegate}"),
                ));
            }
        }
    }
    Ok(())
}

fn prelude(
    state: &State,
    config: &EmulatorConfig,
    request: &Request,
    email: &str,
) -> Result<Body, Response> {
    authorize(state, config, request)?;
    if !known_account(config, email) {
        return Err(google_error(
            404,
            "NOT_FOUND",
            &format!("Not found; Gaia id not found for email {email}"),
        ));
    }
    let body = body(request)?;
    check_delegates(config, &body)?;
    Ok(body)
}

/// A request's parsed JSON body.
pub(crate) type Body = serde_json::Map<String, Value>;

/// Runs the checks every IAM credentials call shares (caller authorized, account known, body
/// parsed, delegates known), then `answer` with the parsed body.
pub(crate) fn serve(
    state: &State,
    config: &EmulatorConfig,
    request: &Request,
    email: &str,
    answer: fn(&State, &EmulatorConfig, &Body, &str) -> Response,
) -> Response {
    match prelude(state, config, request, email) {
        Ok(body) => answer(state, config, &body, email),
        Err(response) => response,
    }
}

pub(crate) fn generate_access_token(
    state: &State,
    config: &EmulatorConfig,
    body: &Body,
    _email: &str,
) -> Response {
    let scopes: Vec<String> = body
        .get("scope")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if scopes.is_empty() {
        return google_error(400, "INVALID_ARGUMENT", "Scope required.");
    }
    let lifetime = match body.get("lifetime") {
        None => Duration::from_secs(3600),
        Some(Value::String(text)) => {
            // `try_from`: a request's `1e300s` or `infs` is a 400, not a panic.
            let secs = text.strip_suffix('s').and_then(|n| n.parse::<f64>().ok());
            match secs.and_then(|secs| Duration::try_from_secs_f64(secs).ok()) {
                Some(lifetime) if !lifetime.is_zero() => lifetime,
                _ => {
                    return google_error(
                        400,
                        "INVALID_ARGUMENT",
                        "Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration)",
                    );
                }
            }
        }
        Some(_) => {
            return google_error(400, "INVALID_ARGUMENT", "Invalid value at 'lifetime'");
        }
    };
    if lifetime > config.identity.max_impersonation_lifetime {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            &format!(
                "The lifetime requested is not valid: the maximum is {}s",
                config.identity.max_impersonation_lifetime.as_secs()
            ),
        );
    }
    let token = state.tokens.mint(scopes, lifetime);
    let expire = now_seconds().saturating_add(lifetime.as_secs());
    json_response(
        200,
        &json!({ "accessToken": token.expose(), "expireTime": rfc3339(expire) }),
    )
}

pub(crate) fn generate_id_token(
    state: &State,
    config: &EmulatorConfig,
    body: &Body,
    email: &str,
) -> Response {
    let Some(audience) = body
        .get("audience")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    else {
        return google_error(400, "INVALID_ARGUMENT", "Audience required.");
    };
    let include_email = body
        .get("includeEmail")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let unique_id = config
        .identity
        .service_account(email)
        .map_or_else(|| config.unique_id.clone(), |a| a.unique_id.clone());
    let now = now_seconds();
    let mut claims = json!({
        "aud": audience,
        "azp": unique_id,
        "exp": now + config.id_token_lifetime.as_secs(),
        "iat": now,
        "iss": "https://accounts.google.com",
        "sub": unique_id,
    });
    if include_email {
        claims["email"] = json!(email);
        claims["email_verified"] = json!(true);
    }
    match state.signer.sign(&claims) {
        Ok(token) => json_response(200, &json!({ "token": token })),
        Err(e) => Response::error(500, &e.to_string()),
    }
}

/// The largest `payload` `signBlob` signs (decoded), as IAM limits it.
const MAX_BLOB: usize = 64 * 1024;

/// `signBlob`: signs the base64 `payload` with the emulator's signing key (the key of every
/// account here), answering `{"keyId","signedBlob"}`; the signature verifies with the key the
/// emulator publishes at `/oauth2/v3/certs` under `keyId`.
pub(crate) fn sign_blob(
    state: &State,
    _config: &EmulatorConfig,
    body: &Body,
    _email: &str,
) -> Response {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    let payload = body
        .get("payload")
        .and_then(Value::as_str)
        .and_then(|text| STANDARD.decode(text).ok());
    let Some(payload) = payload else {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'payload' (TYPE_BYTES)",
        );
    };
    if payload.len() > MAX_BLOB {
        return google_error(400, "INVALID_ARGUMENT", "The payload is too large.");
    }
    match state.signer.sign_bytes(&payload) {
        Ok(signature) => json_response(
            200,
            &json!({ "keyId": state.signer.kid(), "signedBlob": STANDARD.encode(signature) }),
        ),
        Err(e) => Response::error(500, &e.to_string()),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (the epoch for a time past year 9999).
pub(crate) fn rfc3339(secs: u64) -> String {
    crate::credentials_writer::rfc3339(
        std::time::UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .unwrap_or(std::time::UNIX_EPOCH),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_601), "2026-01-01T00:00:01Z");
    }
}
