//! `external_account_authorized_user`: a workforce identity federation user's refresh token, as
//! `gcloud auth application-default login` writes it for a workforce pool. Refreshed at the
//! file's `token_url` (Google's STS `/v1/oauth/token`) with HTTP Basic client authentication.
//!
//! Parallel to `authorized_user.rs` on purpose (both refresh a user's token and read the same
//! kind of file); they differ in the endpoint, the client authentication (HTTP Basic here, form
//! fields there) and the refresh-token rotation (kept here), which a shared type would hide.

use std::sync::Mutex;
use std::time::SystemTime;

use url::Url;
use workload_auth_core::json::Fields;
use workload_auth_core::{AccessToken, Result, SecretString};

use super::{Context, quota_project_id, universe_domain};
use crate::credential_client::{Auth, Body, Http, parse_access_token};
use crate::url_policy::display_url;

const RELOGIN_HINT: &str = "the refresh token was revoked or has expired; run \
                            `gcloud auth application-default login --login-config=FILE` again";

#[derive(Debug)]
pub(crate) struct ExternalAuthorizedUser {
    audience: Option<String>,
    client_id: String,
    client_secret: SecretString,
    /// Replaced when the server rotates it.
    refresh_token: Mutex<SecretString>,
    token_url: Url,
    pub(crate) quota_project_id: Option<String>,
    pub(crate) universe_domain: String,
    http: Http,
}

impl ExternalAuthorizedUser {
    pub(crate) fn parse(fields: &Fields<'_>, ctx: &Context) -> Result<Self> {
        let place = fields.place();
        let missing_for_refresh = ["refresh_token", "token_url", "client_id", "client_secret"]
            .into_iter()
            .filter(|f| !fields.has(f))
            .collect::<Vec<_>>();
        if !missing_for_refresh.is_empty() {
            return Err(fields.error(format!(
                "the credentials cannot be refreshed: {} missing (refreshing needs \
                 refresh_token, token_url, client_id and client_secret)",
                missing_for_refresh
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let universe_domain = universe_domain(fields)?;
        let token_url = ctx.endpoints.credential_endpoint(
            fields.str("token_url")?,
            "token_url",
            place,
            &universe_domain,
        )?;
        Ok(Self {
            audience: fields.opt_nonempty_str("audience")?.map(str::to_owned),
            client_id: fields.str("client_id")?.to_owned(),
            client_secret: fields.secret("client_secret")?,
            refresh_token: Mutex::new(fields.secret("refresh_token")?),
            token_url,
            quota_project_id: quota_project_id(fields)?,
            universe_domain,
            http: ctx.http.clone(),
        })
    }

    pub(crate) fn details(&self) -> Vec<(String, String)> {
        let mut d = vec![
            ("client_id".to_owned(), self.client_id.clone()),
            ("token_url".to_owned(), display_url(&self.token_url)),
        ];
        if let Some(audience) = &self.audience {
            d.push(("audience".to_owned(), audience.clone()));
        }
        d
    }

    fn current_refresh_token(&self) -> SecretString {
        self.refresh_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) async fn access_token(&self, _scopes: &[String]) -> Result<AccessToken> {
        let refresh_token = self.current_refresh_token();
        let now = SystemTime::now();
        let reply = self
            .http
            .send(
                reqwest::Method::POST,
                &self.token_url,
                Auth::Basic(&self.client_id, &self.client_secret),
                &[],
                Body::Form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.expose()),
                ]),
            )
            .await?
            .ok_or_token_error(
                "the refresh-token grant for workforce identity federation",
                RELOGIN_HINT,
            )?;
        let token = parse_access_token(&reply, now)?;
        let map = reply.json("the token answer")?;
        if let Some(rotated) =
            Fields::of_response(&map, &reply.endpoint).opt_secret("refresh_token")?
        {
            *self
                .refresh_token
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = rotated;
        }
        Ok(token)
    }
}
