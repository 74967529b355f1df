//! The identity endpoints next to the metadata server: Google's OAuth 2.0 token endpoint, the
//! Security Token Service, the IAM Service Account Credentials API, an AWS-style instance metadata
//! service (for the `aws` credential source) and an OIDC subject-token URL (for the `url` source).
//!
//! | path                                                        | endpoint                     |
//! |-------------------------------------------------------------|------------------------------|
//! | `POST /token`                                               | [`Endpoint::OAuthToken`]     |
//! | `POST /v1/token`                                            | [`Endpoint::StsToken`]       |
//! | `POST /v1/oauth/token`                                      | [`Endpoint::StsOAuthToken`]  |
//! | `POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken` | [`Endpoint::IamGenerateAccessToken`] |
//! | `POST /v1/projects/-/serviceAccounts/EMAIL:generateIdToken` | [`Endpoint::IamGenerateIdToken`] |
//! | `POST /v1/projects/-/serviceAccounts/EMAIL:signBlob`        | [`Endpoint::IamSignBlob`]    |
//! | `PUT /latest/api/token`                                     | [`Endpoint::AwsSessionToken`] |
//! | `GET /latest/meta-data/placement/availability-zone`         | [`Endpoint::AwsRegion`]      |
//! | `GET /latest/meta-data/iam/security-credentials[/ROLE]`     | [`Endpoint::AwsCredentials`] |
//! | `GET /external/oidc-token[?audience=A&format=json]`          | [`Endpoint::SubjectToken`]   |
//! | `GET /emulator/v1/downscoped-boundary` (test endpoint)      | [`Endpoint::DownscopedBoundary`] |
//! | `GET /v1/{projects/-/serviceAccounts/E,projects/N/locations/global/workloadIdentityPools/P,locations/global/workforcePools/P}/allowedLocations` | [`Endpoint::AllowedLocations`] |
//! | `GET /v1/projects/NUMBER` (Cloud Resource Manager)          | [`Endpoint::ResourceManagerProject`] |
//!
//! Every check answers as Google does: OAuth errors as `{"error","error_description"}`, Google API
//! errors as `{"error":{"code","message","status"}}`. What is accepted comes from
//! [`IdentityConfig`] in [`crate::EmulatorConfig::identity`].

mod aws;
mod config;
pub(crate) mod downscope;
mod iam;
mod jwt;
mod locations;
pub(crate) mod mtls;
mod oauth;
mod sts;

use serde_json::{Value, json};

pub use config::{
    AwsConfig, IdentityConfig, OAuthClient, PublicKey, RefreshTokenGrant, ServiceAccountKey,
    StsConfig,
};
pub use locations::AllowedLocations;
pub use mtls::{MTLS_CLIENT_CERT_HEADER, MtlsListener};

use crate::endpoint::Endpoint;
use crate::http_server::{Request, Response};
use crate::state::State;

/// The identity endpoints the router tells apart.
#[derive(Debug)]
pub(crate) enum IdentityRoute {
    OAuthToken,
    StsToken,
    StsOAuthToken,
    GenerateAccessToken(String),
    GenerateIdToken(String),
    SignBlob(String),
    AwsSessionToken,
    AwsRegion,
    AwsRoleList,
    AwsRole(String),
    SubjectToken,
    DownscopedBoundary,
    AllowedLocations,
    ResourceManagerProject(String),
}

impl IdentityRoute {
    /// The route of `path`, if it is one of the identity endpoints.
    pub(crate) fn of(path: &str) -> Option<Self> {
        match path {
            "/token" => return Some(Self::OAuthToken),
            "/v1/token" => return Some(Self::StsToken),
            "/v1/oauth/token" => return Some(Self::StsOAuthToken),
            "/latest/api/token" => return Some(Self::AwsSessionToken),
            "/latest/meta-data/placement/availability-zone" => return Some(Self::AwsRegion),
            "/latest/meta-data/iam/security-credentials"
            | "/latest/meta-data/iam/security-credentials/" => return Some(Self::AwsRoleList),
            "/external/oidc-token" => return Some(Self::SubjectToken),
            "/emulator/v1/downscoped-boundary" => return Some(Self::DownscopedBoundary),
            _ => {}
        }
        if let Some(route) = locations::route(path) {
            return Some(route);
        }
        if let Some(role) = path.strip_prefix("/latest/meta-data/iam/security-credentials/") {
            return Some(Self::AwsRole(role.to_owned()));
        }
        let rest = path.strip_prefix("/v1/projects/-/serviceAccounts/")?;
        if let Some(email) = rest.strip_suffix(":generateAccessToken") {
            return Some(Self::GenerateAccessToken(email.to_owned()));
        }
        if let Some(email) = rest.strip_suffix(":generateIdToken") {
            return Some(Self::GenerateIdToken(email.to_owned()));
        }
        if let Some(email) = rest.strip_suffix(":signBlob") {
            return Some(Self::SignBlob(email.to_owned()));
        }
        None
    }

    pub(crate) fn endpoint(&self) -> Endpoint {
        match self {
            Self::OAuthToken => Endpoint::OAuthToken,
            Self::StsToken => Endpoint::StsToken,
            Self::StsOAuthToken => Endpoint::StsOAuthToken,
            Self::GenerateAccessToken(_) => Endpoint::IamGenerateAccessToken,
            Self::GenerateIdToken(_) => Endpoint::IamGenerateIdToken,
            Self::SignBlob(_) => Endpoint::IamSignBlob,
            Self::AwsSessionToken => Endpoint::AwsSessionToken,
            Self::AwsRegion => Endpoint::AwsRegion,
            Self::AwsRoleList | Self::AwsRole(_) => Endpoint::AwsCredentials,
            Self::SubjectToken => Endpoint::SubjectToken,
            Self::DownscopedBoundary => Endpoint::DownscopedBoundary,
            Self::AllowedLocations => Endpoint::AllowedLocations,
            Self::ResourceManagerProject(_) => Endpoint::ResourceManagerProject,
        }
    }

    fn method(&self) -> &'static str {
        match self {
            Self::AwsSessionToken => "PUT",
            Self::AwsRegion
            | Self::AwsRoleList
            | Self::AwsRole(_)
            | Self::SubjectToken
            | Self::DownscopedBoundary
            | Self::AllowedLocations
            | Self::ResourceManagerProject(_) => "GET",
            _ => "POST",
        }
    }
}

/// Answers a request to an identity endpoint.
pub(crate) fn handle(state: &State, route: &IdentityRoute, request: &Request) -> Response {
    let method = route.method();
    if request.method != method && !(method == "GET" && request.method == "HEAD") {
        let mut response = Response::error(405, "method not allowed");
        response.set_header("Allow", method.to_owned());
        return response;
    }
    let config = state.config();
    let identity = &config.identity;
    match route {
        IdentityRoute::OAuthToken => oauth::token(state, &config, request),
        IdentityRoute::StsToken => sts::exchange(state, &config, request),
        IdentityRoute::StsOAuthToken => sts::refresh(state, &config, request),
        IdentityRoute::GenerateAccessToken(email) => {
            iam::serve(state, &config, request, email, iam::generate_access_token)
        }
        IdentityRoute::GenerateIdToken(email) => {
            iam::serve(state, &config, request, email, iam::generate_id_token)
        }
        IdentityRoute::SignBlob(email) => {
            iam::serve(state, &config, request, email, iam::sign_blob)
        }
        IdentityRoute::AwsSessionToken => aws::session_token(state, &identity.aws, request),
        IdentityRoute::AwsRegion => aws::availability_zone(state, &identity.aws, request),
        IdentityRoute::AwsRoleList => aws::role_name(state, &identity.aws, request),
        IdentityRoute::AwsRole(role) => aws::role_credentials(state, &identity.aws, request, role),
        IdentityRoute::SubjectToken => subject_token(state, &config, request),
        IdentityRoute::DownscopedBoundary => downscope::inspect(state, request),
        IdentityRoute::AllowedLocations => locations::allowed_locations(state, &config, request),
        IdentityRoute::ResourceManagerProject(number) => {
            locations::project(state, &config, request, number)
        }
    }
}

/// `{"error": code, "error_description": description}`, as OAuth endpoints answer.
pub(crate) fn oauth_error(status: u16, code: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({ "error": code, "error_description": description }),
    )
}

/// `{"error": {"code", "message", "status"}}`, as Google APIs answer.
pub(crate) fn google_error(status: u16, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({ "error": { "code": status, "message": message, "status": code } }),
    )
}

pub(crate) fn json_response(status: u16, value: &Value) -> Response {
    Response::new(status, "application/json; charset=utf-8", value.to_string())
}

/// The form fields of an `application/x-www-form-urlencoded` body, or the error answer.
pub(crate) fn form(request: &Request) -> Result<Vec<(String, String)>, Response> {
    let content_type = request.header("content-type").unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(oauth_error(
            400,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    if !crate::http_server::escapes_are_valid(&request.body) {
        return Err(oauth_error(
            400,
            "invalid_request",
            "the form contains a malformed percent escape",
        ));
    }
    Ok(url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect())
}

/// The first value of form field `name`.
pub(crate) fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The `(user, password)` of an `Authorization: Basic` header.
pub(crate) fn basic_auth(request: &Request) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = request.header("authorization")?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    // RFC 6749 section 2.3.1: both are form-encoded (`+` is a space).
    let decode = |s: &str| crate::http_server::percent_decode(&s.replace('+', " "));
    Some((decode(user)?, decode(password)?))
}

/// The token of an `Authorization: Bearer` header.
pub(crate) fn bearer(request: &Request) -> Option<&str> {
    let value = request.header("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Seconds since the Unix epoch.
pub(crate) fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `GET /external/oidc-token`: an OIDC token signed by the emulator's key, as an identity
/// provider (Azure's instance metadata, a Kubernetes token endpoint) would hand out. Requires
/// `Metadata: true`, like Azure's, so tests can check that configured headers are sent.
fn subject_token(state: &State, config: &crate::EmulatorConfig, request: &Request) -> Response {
    if !request
        .header("metadata")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return json_response(
            400,
            &json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
        );
    }
    let audience = request
        .query_param("audience")
        .filter(|a| !a.is_empty())
        .unwrap_or("emulated-workload-identity-pool");
    let now = now_seconds();
    let claims = json!({
        "iss": "https://sts.windows.net/emulated-tenant/",
        "sub": config.identity.sts.external_subject,
        "aud": audience,
        "iat": now,
        "exp": now + 3600,
    });
    let jwt = match state.signer.sign(&claims) {
        Ok(jwt) => jwt,
        Err(e) => return Response::error(500, &e.to_string()),
    };
    match request.query_param("format") {
        Some("json") => json_response(
            200,
            &json!({ "access_token": jwt, "token_type": "Bearer", "expires_in": "3600" }),
        ),
        _ => Response::new(200, "text/plain; charset=utf-8", jwt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(
            IdentityRoute::of("/token"),
            Some(IdentityRoute::OAuthToken)
        ));
        assert!(matches!(
            IdentityRoute::of("/v1/projects/-/serviceAccounts/a@b.com:generateIdToken"),
            Some(IdentityRoute::GenerateIdToken(e)) if e == "a@b.com"
        ));
        assert!(matches!(
            IdentityRoute::of("/latest/meta-data/iam/security-credentials/role"),
            Some(IdentityRoute::AwsRole(r)) if r == "role"
        ));
        assert!(IdentityRoute::of("/v1/projects/-/serviceAccounts/x").is_none());
        assert!(IdentityRoute::of("/computeMetadata/v1/").is_none());
    }
}
