//! The IAM Service Account Credentials API: `generateAccessToken` and `generateIdToken`, used by
//! impersonation (of an `impersonated_service_account` file, or after an external-account
//! exchange).

use std::time::Duration;

use serde_json::{Value, json};
use url::Url;
use workload_auth_core::json::Fields;
use workload_auth_core::{AccessToken, Error, ErrorKind, IdToken, Result, SecretString};

use crate::http::{Auth, Body, Http, Reply};
use crate::time::parse_rfc3339;

const GENERATE_ACCESS_TOKEN: &str = ":generateAccessToken";
const GENERATE_ID_TOKEN: &str = ":generateIdToken";

/// The target of impersonation: which service account, at which endpoint.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The service account's email.
    pub(crate) email: String,
    /// `.../serviceAccounts/EMAIL:generateAccessToken`.
    pub(crate) access_token_url: Url,
    /// `.../serviceAccounts/EMAIL:generateIdToken`.
    pub(crate) id_token_url: Url,
    pub(crate) delegates: Vec<String>,
    pub(crate) lifetime: Duration,
}

impl Target {
    /// Reads the target from a checked `generateAccessToken` URL (`field` of `place`).
    pub(crate) fn from_url(
        url: Url,
        field: &str,
        place: &str,
        delegates: Vec<String>,
        lifetime: Duration,
    ) -> Result<Self> {
        let path = url.path().to_owned();
        let bad = || {
            Error::new(
                ErrorKind::InvalidCredentials,
                format!(
                    "the `{field}` URL does not name a service account: expected \
                     .../serviceAccounts/EMAIL:generateAccessToken"
                ),
            )
            .with_endpoint(place.to_owned())
        };
        let decoded = crate::url_policy::percent_decode(&path).ok_or_else(bad)?;
        let Some(start) = decoded.rfind('/') else {
            return Err(bad());
        };
        let Some(end) = decoded.find(GENERATE_ACCESS_TOKEN) else {
            return Err(bad());
        };
        if start >= end {
            return Err(bad());
        }
        let email = decoded[start + 1..end].to_owned();
        if email.is_empty() {
            return Err(bad());
        }
        let mut id_token_url = url.clone();
        id_token_url.set_path(&path.replacen(GENERATE_ACCESS_TOKEN, GENERATE_ID_TOKEN, 1));
        Ok(Self {
            email,
            access_token_url: url,
            id_token_url,
            delegates,
            lifetime,
        })
    }

    /// `generateAccessToken` with `source` as the bearer token.
    pub(crate) async fn access_token(
        &self,
        http: &Http,
        source: &SecretString,
        scopes: &[String],
    ) -> Result<AccessToken> {
        let body = json!({
            "scope": scopes,
            "lifetime": format!("{}s", self.lifetime.as_secs()),
        });
        let what = format!("impersonating {}", self.email);
        let reply = self
            .call(http, &self.access_token_url, source, body, &what)
            .await?;
        Self::parse_access_token_answer(&reply)
    }

    /// Reads a `generateAccessToken` answer: `accessToken` and its RFC 3339 `expireTime`.
    pub(crate) fn parse_access_token_answer(reply: &Reply) -> Result<AccessToken> {
        let map = reply.json("the generateAccessToken answer")?;
        let fields = Fields::of_response(&map, &reply.endpoint);
        let token = fields.secret("accessToken")?;
        let expire = fields.str("expireTime")?;
        let expires_at = parse_rfc3339(expire)
            .ok_or_else(|| fields.error("the `expireTime` field is not an RFC 3339 timestamp"))?;
        Ok(AccessToken::new(token, "Bearer", expires_at))
    }

    /// `generateIdToken` for `audience` (with the `email` claim) with `source` as bearer.
    pub(crate) async fn id_token(
        &self,
        http: &Http,
        source: &SecretString,
        audience: &str,
    ) -> Result<IdToken> {
        let body = json!({ "audience": audience, "includeEmail": true });
        let what = format!("an ID token for {}", self.email);
        let reply = self
            .call(http, &self.id_token_url, source, body, &what)
            .await?;
        reply.id_token("the generateIdToken answer", "token")
    }

    /// POSTs `body` (plus the delegation chain) to `url` with `source` as the bearer token; a
    /// non-2xx answer is the error for a `what` request.
    async fn call(
        &self,
        http: &Http,
        url: &Url,
        source: &SecretString,
        mut body: Value,
        what: &str,
    ) -> Result<Reply> {
        if !self.delegates.is_empty() {
            body["delegates"] = json!(self.delegates);
        }
        http.send(
            reqwest::Method::POST,
            url,
            Auth::Bearer(source),
            &[],
            Body::Json(body.to_string()),
        )
        .await?
        .ok_or_token_error(what, &self.refused_hint())
    }

    fn refused_hint(&self) -> String {
        format!(
            "the source credential needs roles/iam.serviceAccountTokenCreator on {} (and each \
             delegate on the next)",
            self.email
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_comes_from_the_url() {
        let url = Url::parse(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa%40p.iam.gserviceaccount.com:generateAccessToken",
        )
        .unwrap();
        let t = Target::from_url(url, "u", "f", vec![], Duration::from_secs(3600)).unwrap();
        assert_eq!(t.email, "sa@p.iam.gserviceaccount.com");
        assert!(t.id_token_url.path().ends_with(":generateIdToken"));
        for bad in [
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/x",
            "https://iamcredentials.googleapis.com/:generateAccessToken",
        ] {
            let err = Target::from_url(
                Url::parse(bad).unwrap(),
                "service_account_impersonation_url",
                "/f",
                vec![],
                Duration::ZERO,
            )
            .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{bad}");
        }
    }
}
