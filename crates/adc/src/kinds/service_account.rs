//! `service_account`: a service-account key file.
//!
//! Access tokens come from the JWT-bearer grant (RFC 7523) at the file's `token_uri`, or — when
//! asked for, and always outside the `googleapis.com` universe — from a self-signed JWT used
//! directly as the bearer token (AIP-4111), which needs no network at all. ID tokens come from
//! the same grant with a `target_audience` claim.

use std::time::{Duration, SystemTime};

use serde_json::json;
use url::Url;
use workload_auth_core::json::Fields;
use workload_auth_core::{AccessToken, Error, ErrorKind, IdToken, Result, SecretString};

use super::{CLOUD_PLATFORM_SCOPE, Context, DEFAULT_UNIVERSE_DOMAIN, scopes_or, universe_domain};
use crate::credential_client::{Auth, Body, CredentialResponse, Http, parse_access_token};
use crate::signing::JwtSigner;
use crate::time::unix_seconds;
use crate::url_policy::display_url;

/// The `aud` of JWT-bearer assertions: Google's token endpoint, whatever `token_uri` says
/// (google-auth does the same).
pub(crate) const GOOGLE_TOKEN_AUDIENCE: &str = "https://oauth2.googleapis.com/token";

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long assertions and self-signed JWTs are valid (the most Google accepts).
const JWT_LIFETIME: Duration = Duration::from_secs(3600);

const REFUSED_HINT: &str = "the key may have been deleted or disabled, or this machine's clock \
                            may be wrong; create a new key, or better, use impersonation or \
                            workload identity federation instead of keys";

#[derive(Debug)]
pub(crate) struct ServiceAccount {
    pub(crate) email: String,
    token_uri: Url,
    signer: JwtSigner,
    pub(crate) project_id: Option<String>,
    pub(crate) universe_domain: String,
    self_signed: bool,
    http: Http,
}

impl ServiceAccount {
    /// The raw signature of `message` with the key (PKCS#1 v1.5 SHA-256 for RSA, `r || s` for
    /// P-256), and the key's id.
    pub(crate) fn sign_bytes(&self, message: &[u8]) -> Result<(Option<String>, Vec<u8>)> {
        let signature = self.signer.sign_bytes(message)?;
        Ok((self.signer.key_id().map(str::to_owned), signature))
    }

    pub(crate) fn parse(fields: &Fields<'_>, ctx: &Context) -> Result<Self> {
        let place = fields.place();
        let email = fields.str("client_email")?.to_owned();
        let key = fields.secret("private_key")?;
        let key_id = fields
            .opt_nonempty_str("private_key_id")?
            .map(str::to_owned);
        let signer = JwtSigner::from_pem(&key, key_id).map_err(|e| {
            e.with_endpoint(place.to_owned()).with_hint(
                "the `private_key` must be the PEM key of a downloaded service-account key file",
            )
        })?;
        let universe_domain = universe_domain(fields)?;
        let token_uri = ctx.endpoints.credential_endpoint(
            fields.str("token_uri")?,
            "token_uri",
            place,
            &universe_domain,
        )?;
        Ok(Self {
            email,
            token_uri,
            signer,
            project_id: fields.opt_nonempty_str("project_id")?.map(str::to_owned),
            self_signed: ctx.self_signed_jwt || universe_domain != DEFAULT_UNIVERSE_DOMAIN,
            universe_domain,
            http: ctx.http.clone(),
        })
    }

    pub(crate) fn details(&self) -> Vec<(String, String)> {
        let mut d = vec![
            ("client_email".to_owned(), self.email.clone()),
            (
                "key".to_owned(),
                format!(
                    "{} (kid {})",
                    self.signer.algorithm().as_str(),
                    self.signer.key_id().unwrap_or("none")
                ),
            ),
        ];
        if self.self_signed {
            d.push((
                "access tokens".to_owned(),
                "self-signed JWTs (AIP-4111)".to_owned(),
            ));
        } else {
            d.push(("token_uri".to_owned(), display_url(&self.token_uri)));
        }
        d
    }

    /// The JWT-bearer assertion for `scopes` (or, for an ID token, `target_audience`).
    pub(crate) fn assertion(&self, claim: (&str, String), now: SystemTime) -> Result<SecretString> {
        let iat = unix_seconds(now);
        let mut claims = json!({
            "iss": self.email,
            "aud": GOOGLE_TOKEN_AUDIENCE,
            "iat": iat,
            "exp": iat.saturating_add(JWT_LIFETIME.as_secs()),
        });
        claims[claim.0] = claim.1.into();
        self.signer.sign(&claims)
    }

    /// A self-signed JWT (AIP-4111): `iss` = `sub` = the service account, and either `aud` (the
    /// API's `https://SERVICE/`) or `scope`.
    pub(crate) fn self_signed_jwt(
        &self,
        claim: (&str, String),
        now: SystemTime,
    ) -> Result<AccessToken> {
        let iat = unix_seconds(now);
        let exp = iat.saturating_add(JWT_LIFETIME.as_secs());
        let mut claims = json!({
            "iss": self.email,
            "sub": self.email,
            "iat": iat,
            "exp": exp,
        });
        claims[claim.0] = claim.1.into();
        let jwt = self.signer.sign(&claims)?;
        // `iat` comes from the caller's clock; a clock past year 9999 is refused, not a panic.
        let expires_at = workload_auth_core::unix_time(exp).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                "the clock is out of range for a self-signed JWT",
            )
        })?;
        Ok(AccessToken::new(jwt, "Bearer", expires_at))
    }

    pub(crate) async fn access_token(&self, scopes: &[String]) -> Result<AccessToken> {
        let scope = scopes_or(scopes, &[CLOUD_PLATFORM_SCOPE]).join(" ");
        let now = SystemTime::now();
        if self.self_signed {
            return self.self_signed_jwt(("scope", scope), now);
        }
        let reply = self
            .jwt_bearer_grant(
                ("scope", scope),
                now,
                "the JWT-bearer grant for the service-account key",
            )
            .await?;
        parse_access_token(&reply, now)
    }

    pub(crate) async fn id_token(&self, audience: &str) -> Result<IdToken> {
        let reply = self
            .jwt_bearer_grant(
                ("target_audience", audience.to_owned()),
                SystemTime::now(),
                "the JWT-bearer grant for an ID token",
            )
            .await?;
        reply.id_token("the token answer", "id_token")
    }

    /// The JWT-bearer grant at `token_uri` with an assertion carrying `claim`; a non-2xx answer
    /// is the error for a `what` request.
    async fn jwt_bearer_grant(
        &self,
        claim: (&str, String),
        now: SystemTime,
        what: &str,
    ) -> Result<CredentialResponse> {
        let assertion = self.assertion(claim, now)?;
        self.http
            .send(
                reqwest::Method::POST,
                &self.token_uri,
                Auth::None,
                &[],
                Body::Form(&[
                    ("grant_type", JWT_BEARER_GRANT),
                    ("assertion", assertion.expose()),
                ]),
            )
            .await?
            .ok_or_token_error(what, REFUSED_HINT)
    }
}
