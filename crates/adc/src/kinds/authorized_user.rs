//! `authorized_user`: a user's refresh token, as `gcloud auth application-default login` writes it.

use std::time::SystemTime;

use url::Url;
use workload_auth_core::json::Fields;
use workload_auth_core::{AccessToken, Result, SecretString};

use super::{Context, quota_project_id, universe_domain};
use crate::credential_client::{Auth, Body, Http, parse_access_token};
use crate::url_policy::display_url;

/// Google's OAuth 2.0 token endpoint.
pub(crate) const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

pub(crate) const RELOGIN_HINT: &str = "the refresh token was revoked or has expired; run `gcloud auth application-default login` again";

#[derive(Debug)]
pub(crate) struct AuthorizedUser {
    client_id: String,
    client_secret: SecretString,
    refresh_token: SecretString,
    token_uri: Url,
    account: Option<String>,
    pub(crate) quota_project_id: Option<String>,
    pub(crate) universe_domain: String,
    http: Http,
}

impl AuthorizedUser {
    pub(crate) fn parse(fields: &Fields<'_>, ctx: &Context) -> Result<Self> {
        let place = fields.place();
        // google-auth always uses Google's endpoint; a `token_uri` in the file (which gcloud never
        // writes) is honoured here so tests can point it at the emulator, under the https rule.
        let universe_domain = universe_domain(fields)?;
        let token_uri = ctx.endpoints.credential_endpoint(
            fields
                .opt_nonempty_str("token_uri")?
                .unwrap_or(GOOGLE_TOKEN_URL),
            "token_uri",
            place,
            &universe_domain,
        )?;
        Ok(Self {
            client_id: fields.str("client_id")?.to_owned(),
            client_secret: fields.secret("client_secret")?,
            refresh_token: fields.secret("refresh_token")?,
            token_uri,
            account: fields.opt_nonempty_str("account")?.map(str::to_owned),
            quota_project_id: quota_project_id(fields)?,
            universe_domain,
            http: ctx.http.clone(),
        })
    }

    pub(crate) fn details(&self) -> Vec<(String, String)> {
        let mut d = vec![
            ("client_id".to_owned(), self.client_id.clone()),
            ("token_uri".to_owned(), display_url(&self.token_uri)),
        ];
        if let Some(account) = &self.account {
            d.push(("account".to_owned(), account.clone()));
        }
        d
    }

    /// The refresh-token grant. `scopes` narrows the token (none: the scopes granted at login).
    pub(crate) async fn access_token(&self, scopes: &[String]) -> Result<AccessToken> {
        let scope = scopes.join(" ");
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("refresh_token", self.refresh_token.expose()),
        ];
        if !scope.is_empty() {
            form.push(("scope", scope.as_str()));
        }
        let now = SystemTime::now();
        let reply = self
            .http
            .send(
                reqwest::Method::POST,
                &self.token_uri,
                Auth::None,
                &[],
                Body::Form(&form),
            )
            .await?
            .ok_or_token_error("the refresh-token grant for user credentials", RELOGIN_HINT)?;
        parse_access_token(&reply, now)
    }
}
