//! The Security Token Service (`sts.googleapis.com`): `POST /v1/token` exchanges an external
//! subject token for a federated access token (RFC 8693); `POST /v1/oauth/token` refreshes a
//! workforce identity federation user's token.

use base64::Engine as _;
use serde_json::{Value, json};

use super::config::PublicKey;
use super::jwt::Jwt;
use super::mtls::MTLS_CLIENT_CERT_HEADER;
use super::{basic_auth, field, form, json_response, now_seconds, oauth_error};
use crate::config::EmulatorConfig;
use crate::http_server::{Request, Response};
use crate::state::State;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];
const SAML_TYPE: &str = "urn:ietf:params:oauth:token-type:saml2";
const AWS_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
const MTLS_TYPE: &str = "urn:ietf:params:oauth:token-type:mtls";

fn is_workforce_pool(audience: &str) -> bool {
    audience
        .strip_prefix("//iam.googleapis.com/locations/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(location, rest)| !location.is_empty() && rest.starts_with("workforcePools/"))
}

pub(crate) fn exchange(state: &State, config: &EmulatorConfig, request: &Request) -> Response {
    let form = match form(request) {
        Ok(form) => form,
        Err(response) => return response,
    };
    if let Err(response) = check_grant_type(&form) {
        return response;
    }
    // Downscoping (credential access boundaries) exchanges one of our own access tokens.
    if field(&form, "subject_token_type") == Some(super::downscope::ACCESS_TOKEN_TYPE) {
        return super::downscope::exchange(state, config, &form);
    }
    federated_exchange(state, config, request, &form).unwrap_or_else(|response| response)
}

/// The token-exchange grant, for an external subject token: each check in the order Google's
/// STS makes them, the first failing one giving the error response.
fn federated_exchange(
    state: &State,
    config: &EmulatorConfig,
    request: &Request,
    form: &[(String, String)],
) -> Result<Response, Response> {
    check_requested_token_type(form)?;
    let audience = check_audience(config, form)?;
    check_client(config, request, form, audience)?;
    verify_subject(state, config, request, form, audience)?;
    let scopes: Vec<String> = field(form, "scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let bound = bound_fingerprint(form, request)
        .map_err(|why| oauth_error(400, "invalid_request", &why))?;
    let token = state
        .tokens
        .mint_bound(scopes, config.token_lifetime, bound);
    Ok(json_response(
        200,
        &json!({
            "access_token": token.expose(),
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": config.token_lifetime.as_secs(),
        }),
    ))
}

/// `grant_type` must be the token-exchange grant.
fn check_grant_type(form: &[(String, String)]) -> Result<(), Response> {
    match field(form, "grant_type") {
        Some(TOKEN_EXCHANGE) => Ok(()),
        Some(_) => Err(oauth_error(
            400,
            "unsupported_grant_type",
            "Invalid value for \"grant_type\"; expected urn:ietf:params:oauth:grant-type:token-exchange",
        )),
        None => Err(oauth_error(
            400,
            "invalid_request",
            "Missing required field: grant_type",
        )),
    }
}

/// `requested_token_type` must be an access token.
fn check_requested_token_type(form: &[(String, String)]) -> Result<(), Response> {
    match field(form, "requested_token_type") {
        Some(ACCESS_TOKEN_TYPE) => Ok(()),
        Some(_) => Err(oauth_error(
            400,
            "invalid_request",
            "Invalid value for \"requested_token_type\"",
        )),
        None => Err(oauth_error(
            400,
            "invalid_request",
            "Missing required field: requested_token_type",
        )),
    }
}

/// The `audience`, which must be a configured one (any IAM pool provider when none is).
fn check_audience<'f>(
    config: &EmulatorConfig,
    form: &'f [(String, String)],
) -> Result<&'f str, Response> {
    let sts = &config.identity.sts;
    let Some(audience) = field(form, "audience") else {
        return Err(oauth_error(
            400,
            "invalid_request",
            "Missing required field: audience",
        ));
    };
    let audience_ok = if sts.audiences.is_empty() {
        audience.starts_with("//iam.googleapis.com/")
    } else {
        sts.audiences.iter().any(|a| a == audience)
    };
    if !audience_ok {
        return Err(oauth_error(
            400,
            "invalid_target",
            "The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.",
        ));
    }
    Ok(audience)
}

/// HTTP Basic client authentication, when sent, must name a known client; a workforce pool
/// without it needs `options.userProject`.
fn check_client(
    config: &EmulatorConfig,
    request: &Request,
    form: &[(String, String)],
    audience: &str,
) -> Result<(), Response> {
    let client = basic_auth(request);
    if let Some((id, secret)) = &client {
        let known = config
            .identity
            .sts
            .clients
            .iter()
            .chain(&config.identity.oauth_clients)
            .any(|c| &c.client_id == id && c.client_secret.expose() == secret);
        if !known {
            return Err(oauth_error(
                401,
                "invalid_client",
                "The client authentication failed.",
            ));
        }
    }
    if is_workforce_pool(audience) && client.is_none() {
        // google-auth percent-encodes the JSON once more inside the form; others send it as is.
        let user_project = field(form, "options")
            .and_then(|o| {
                serde_json::from_str::<Value>(o)
                    .ok()
                    .or_else(|| serde_json::from_str(&super::aws::percent_decode(o)?).ok())
            })
            .and_then(|o| {
                o.get("userProject")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .filter(|p| !p.is_empty());
        if user_project.is_none() {
            return Err(oauth_error(
                400,
                "invalid_request",
                "Workforce pool user project is required when no client authentication is provided (options.userProject).",
            ));
        }
    }
    Ok(())
}

/// The `subject_token`, verified as its `subject_token_type` says.
fn verify_subject(
    state: &State,
    config: &EmulatorConfig,
    request: &Request,
    form: &[(String, String)],
    audience: &str,
) -> Result<(), Response> {
    let Some(subject_token) = field(form, "subject_token") else {
        return Err(oauth_error(
            400,
            "invalid_request",
            "Missing required field: subject_token",
        ));
    };
    let subject_token_type = field(form, "subject_token_type").unwrap_or("");
    let verdict = if JWT_TYPES.contains(&subject_token_type) {
        check_jwt(state, config, subject_token)
    } else if subject_token_type == SAML_TYPE {
        check_listed(config, subject_token)
    } else if subject_token_type == AWS_TYPE {
        super::aws::verify_subject_token(&config.identity.aws, subject_token, audience)
    } else if subject_token_type == MTLS_TYPE {
        check_mtls(request, subject_token)
    } else if subject_token_type.is_empty() {
        return Err(oauth_error(
            400,
            "invalid_request",
            "Missing required field: subject_token_type",
        ));
    } else {
        return Err(oauth_error(
            400,
            "invalid_request",
            "Invalid value for \"subject_token_type\"",
        ));
    };
    verdict.map_err(|why| oauth_error(400, "invalid_grant", &why))
}

/// `options.bindCertFingerprint` (Agent Identity over X.509 federation): the token is bound to
/// the certificate of the mutual TLS connection, which must be the one named.
fn bound_fingerprint(
    form: &[(String, String)],
    request: &Request,
) -> Result<Option<String>, String> {
    let Some(options) = field(form, "options") else {
        return Ok(None);
    };
    // google-auth percent-encodes the JSON once more inside the form; others send it as is.
    let options: Value = serde_json::from_str(options)
        .ok()
        .or_else(|| serde_json::from_str(&super::aws::percent_decode(options)?).ok())
        .ok_or_else(|| "options is not JSON".to_owned())?;
    let Some(requested) = options.get("bindCertFingerprint") else {
        return Ok(None);
    };
    let requested = requested
        .as_str()
        .ok_or_else(|| "options.bindCertFingerprint is not a string".to_owned())?;
    let requested = crate::binding::normalize_fingerprint(requested)?;
    let presented = request
        .header(MTLS_CLIENT_CERT_HEADER)
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .map(|der| crate::binding::fingerprint(&der));
    match presented {
        Some(presented) if presented == requested => Ok(Some(requested)),
        Some(_) => Err(
            "options.bindCertFingerprint does not match the client certificate of the connection"
                .to_owned(),
        ),
        None => Err("options.bindCertFingerprint requires mutual TLS".to_owned()),
    }
}

fn check_listed(config: &EmulatorConfig, token: &str) -> Result<(), String> {
    if config
        .identity
        .sts
        .subject_tokens
        .iter()
        .any(|t| t.expose() == token.trim())
    {
        Ok(())
    } else {
        Err("The subject token is not recognized.".to_owned())
    }
}

/// A JWT subject token: one of the configured tokens, or one signed by the emulator's key and
/// unexpired.
fn check_jwt(state: &State, config: &EmulatorConfig, token: &str) -> Result<(), String> {
    if check_listed(config, token).is_ok() {
        return Ok(());
    }
    let jwt = Jwt::decode(token).map_err(|why| format!("Invalid subject token: {why}."))?;
    if jwt.kid() != Some(state.signer.kid())
        || !jwt.verify(&PublicKey::Rsa(state.signer.public_key_der().to_vec()))
    {
        return Err("Invalid subject token: the signature does not verify.".to_owned());
    }
    match jwt.claim_u64("exp") {
        Some(exp) if exp > now_seconds() => Ok(()),
        _ => Err("Invalid subject token: the token has expired.".to_owned()),
    }
}

/// An X.509 subject token: a JSON array of base64 DER certificates whose first is the client
/// certificate of the mutual TLS connection it arrived on.
fn check_mtls(request: &Request, token: &str) -> Result<(), String> {
    let Some(presented) = request.header(MTLS_CLIENT_CERT_HEADER) else {
        return Err(
            "The mtls subject token type requires a client certificate (mutual TLS).".to_owned(),
        );
    };
    let chain: Vec<String> = serde_json::from_str(token)
        .map_err(|_| "The mtls subject token is not a JSON array of certificates.".to_owned())?;
    let Some(leaf) = chain.first() else {
        return Err("The mtls subject token is empty.".to_owned());
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(leaf)
        .map_err(|_| "The mtls subject token holds a certificate that is not base64.".to_owned())?;
    let presented = base64::engine::general_purpose::STANDARD
        .decode(presented)
        .unwrap_or_default();
    if decoded != presented {
        return Err(
            "The leaf certificate of the subject token does not match the client certificate."
                .to_owned(),
        );
    }
    Ok(())
}

/// `POST /v1/oauth/token`: the refresh-token grant of workforce identity federation users, with
/// HTTP Basic client authentication.
pub(crate) fn refresh(state: &State, config: &EmulatorConfig, request: &Request) -> Response {
    let form = match form(request) {
        Ok(form) => form,
        Err(response) => return response,
    };
    let identity = &config.identity;
    let Some((client_id, secret)) = basic_auth(request) else {
        return oauth_error(401, "invalid_client", "Client authentication is required.");
    };
    let known = identity
        .sts
        .clients
        .iter()
        .chain(&identity.oauth_clients)
        .any(|c| c.client_id == client_id && c.client_secret.expose() == secret);
    if !known {
        return oauth_error(401, "invalid_client", "The client authentication failed.");
    }
    if field(&form, "grant_type") != Some("refresh_token") {
        return oauth_error(
            400,
            "unsupported_grant_type",
            "Invalid value for \"grant_type\"",
        );
    }
    let Some(refresh_token) = field(&form, "refresh_token") else {
        return oauth_error(
            400,
            "invalid_request",
            "Missing required field: refresh_token",
        );
    };
    let Some(grant) = identity
        .refresh_tokens
        .iter()
        .find(|g| g.refresh_token.expose() == refresh_token && g.client_id == client_id)
        .cloned()
    else {
        return oauth_error(
            400,
            "invalid_grant",
            "The refresh token is invalid or expired.",
        );
    };
    let token = state
        .tokens
        .mint(grant.scopes.clone(), config.token_lifetime);
    let mut answer = json!({
        "access_token": token.expose(),
        "expires_in": config.token_lifetime.as_secs(),
        "token_type": "Bearer",
    });
    if grant.rotate {
        let random: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(32)
            .collect();
        let rotated = format!("emulated-refresh-{random}");
        answer["refresh_token"] = json!(rotated);
        let old = grant.refresh_token.clone();
        state.update_config(|c| {
            for g in &mut c.identity.refresh_tokens {
                if g.refresh_token == old {
                    g.refresh_token = rotated.as_str().into();
                }
            }
        });
    }
    json_response(200, &answer)
}
