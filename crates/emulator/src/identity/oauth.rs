//! `POST /token`: Google's OAuth 2.0 token endpoint (`oauth2.googleapis.com/token`), with the
//! JWT-bearer grant of service-account keys and the refresh-token grant of user credentials.

use serde_json::json;

use super::config::ServiceAccountKey;
use super::jwt::Jwt;
use super::{field, form, json_response, now_seconds, oauth_error};
use crate::config::EmulatorConfig;
use crate::http_server::{Request, Response};
use crate::state::State;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The audiences a JWT-bearer assertion may have: Google's token endpoints and this one.
fn accepted_audiences(request: &Request) -> Vec<String> {
    let mut audiences = vec![
        "https://oauth2.googleapis.com/token".to_owned(),
        "https://www.googleapis.com/oauth2/v4/token".to_owned(),
        "https://accounts.google.com/o/oauth2/token".to_owned(),
    ];
    if let Some(host) = request.header("host") {
        audiences.push(format!("http://{host}/token"));
        audiences.push(format!("https://{host}/token"));
    }
    audiences
}

pub(crate) fn token(state: &State, config: &EmulatorConfig, request: &Request) -> Response {
    let form = match form(request) {
        Ok(form) => form,
        Err(response) => return response,
    };
    match field(&form, "grant_type") {
        Some(JWT_BEARER) => jwt_bearer(state, config, request, &form),
        Some("refresh_token") => refresh(state, config, &form),
        Some(other) => oauth_error(
            400,
            "unsupported_grant_type",
            &format!("Invalid grant_type: {other}"),
        ),
        None => oauth_error(
            400,
            "invalid_request",
            "Missing required parameter: grant_type",
        ),
    }
}

/// The JWT-bearer grant (RFC 7523) of a service-account key: the assertion checked, then an
/// access token for its `scope` or an ID token for its `target_audience`.
fn jwt_bearer(
    state: &State,
    config: &EmulatorConfig,
    request: &Request,
    form: &[(String, String)],
) -> Response {
    let Some(assertion) = field(form, "assertion") else {
        return oauth_error(
            400,
            "invalid_request",
            "Missing required parameter: assertion",
        );
    };
    let jwt = match Jwt::decode(assertion) {
        Ok(jwt) => jwt,
        Err(why) => return oauth_error(400, "invalid_grant", &format!("Invalid JWT: {why}")),
    };
    let account = match check_assertion(config, request, &jwt) {
        Ok(account) => account,
        Err(response) => return response,
    };
    let scope = jwt.claim_str("scope").filter(|s| !s.trim().is_empty());
    let target_audience = jwt
        .claim_str("target_audience")
        .filter(|s| !s.trim().is_empty());
    match (scope, target_audience) {
        (Some(scope), _) => {
            let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
            let token = state.tokens.mint(scopes, config.token_lifetime);
            json_response(
                200,
                &json!({
                    "access_token": token.expose(),
                    "expires_in": config.token_lifetime.as_secs(),
                    "token_type": "Bearer",
                }),
            )
        }
        (None, Some(audience)) => {
            let now = now_seconds();
            let claims = json!({
                "aud": audience,
                "azp": account.email,
                "email": account.email,
                "email_verified": true,
                "exp": now + config.id_token_lifetime.as_secs(),
                "iat": now,
                "iss": "https://accounts.google.com",
                "sub": account.unique_id,
            });
            match state.signer.sign(&claims) {
                Ok(id_token) => json_response(200, &json!({ "id_token": id_token })),
                Err(e) => Response::error(500, &e.to_string()),
            }
        }
        (None, None) => oauth_error(
            400,
            "invalid_scope",
            "Invalid oauth scope or ID token audience provided.",
        ),
    }
}

/// Google's checks of a JWT-bearer assertion, in the order Google makes them, each with its own
/// OAuth error: a known issuer, its key and signature, the audience, the times, the subject.
fn check_assertion<'c>(
    config: &'c EmulatorConfig,
    request: &Request,
    jwt: &Jwt<'_>,
) -> Result<&'c ServiceAccountKey, Response> {
    let Some(iss) = jwt.claim_str("iss") else {
        return Err(oauth_error(
            400,
            "invalid_grant",
            "Invalid JWT: missing iss",
        ));
    };
    let Some(account) = config.identity.service_account(iss) else {
        return Err(oauth_error(
            400,
            "invalid_grant",
            "Invalid grant: account not found",
        ));
    };
    if let (Some(expected), Some(kid)) = (&account.key_id, jwt.kid())
        && expected != kid
    {
        return Err(oauth_error(400, "invalid_grant", "Invalid JWT Signature."));
    }
    if !jwt.verify(&account.public_key) {
        return Err(oauth_error(400, "invalid_grant", "Invalid JWT Signature."));
    }
    let aud_ok = jwt
        .claim_str("aud")
        .is_some_and(|aud| accepted_audiences(request).iter().any(|a| a == aud));
    if !aud_ok {
        return Err(oauth_error(
            400,
            "invalid_grant",
            "Invalid JWT: Failed audience check. The expected value is https://oauth2.googleapis.com/token",
        ));
    }
    if let Err(why) = jwt.check_times(now_seconds(), 3600) {
        return Err(oauth_error(400, "invalid_grant", why));
    }
    if jwt.claims.contains_key("sub") && jwt.claim_str("sub") != Some(iss) {
        return Err(oauth_error(
            401,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
        ));
    }
    Ok(account)
}

fn refresh(state: &State, config: &EmulatorConfig, form: &[(String, String)]) -> Response {
    let (Some(client_id), Some(secret)) = (field(form, "client_id"), field(form, "client_secret"))
    else {
        return oauth_error(
            400,
            "invalid_request",
            "Missing required parameter: client_id or client_secret",
        );
    };
    let identity = &config.identity;
    let Some(client) = identity
        .oauth_clients
        .iter()
        .find(|c| c.client_id == client_id)
    else {
        return oauth_error(401, "invalid_client", "The OAuth client was not found.");
    };
    if client.client_secret.expose() != secret {
        return oauth_error(401, "invalid_client", "Unauthorized");
    }
    let Some(refresh_token) = field(form, "refresh_token") else {
        return oauth_error(
            400,
            "invalid_request",
            "Missing required parameter: refresh_token",
        );
    };
    let Some(grant) = identity
        .refresh_tokens
        .iter()
        .find(|g| g.refresh_token.expose() == refresh_token && g.client_id == client_id)
    else {
        return oauth_error(400, "invalid_grant", "Token has been expired or revoked.");
    };
    let scopes: Vec<String> = match field(form, "scope") {
        None => grant.scopes.clone(),
        Some(asked) => {
            let asked: Vec<String> = asked.split_whitespace().map(str::to_owned).collect();
            if let Some(bad) = asked.iter().find(|s| !grant.scopes.contains(s)) {
                return oauth_error(
                    400,
                    "invalid_scope",
                    &format!("Some requested scopes were invalid. {{invalid=[{bad}]}}"),
                );
            }
            asked
        }
    };
    let token = state.tokens.mint(scopes.clone(), config.token_lifetime);
    json_response(
        200,
        &json!({
            "access_token": token.expose(),
            "expires_in": config.token_lifetime.as_secs(),
            "scope": scopes.join(" "),
            "token_type": "Bearer",
        }),
    )
}
