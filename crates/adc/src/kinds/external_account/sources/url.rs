//! The URL credential source: the subject token is fetched with a GET (and the file's extra
//! headers) from a local token server, as text or a field of a JSON object.

use url::Url;
use workload_auth_core::json::Fields;
use workload_auth_core::{Result, SecretString};

use super::Format;
use crate::credential_client::{Auth, Body, Http};
use crate::url_policy::{display_url, source_url};

#[derive(Debug)]
pub(crate) struct UrlSource {
    url: Url,
    headers: Vec<(String, String)>,
    format: Format,
}

impl UrlSource {
    /// Reads `credential_source.url`, `.headers` and `.format`; the URL must pass the source-URL
    /// policy before anything is sent to it.
    pub(crate) fn parse(source: &Fields<'_>) -> Result<Self> {
        let url = source_url(source.str("url")?, "credential_source.url", source.place())?;
        let headers = match source.opt_object("headers")? {
            Some(h) => h.string_entries()?,
            None => Vec::new(),
        };
        Ok(Self {
            url,
            headers,
            format: Format::parse(source)?,
        })
    }

    /// A short description for `explain`.
    pub(crate) fn describe(&self) -> String {
        format!("url {}", display_url(&self.url))
    }

    /// Fetches the token now.
    pub(crate) async fn subject_token(&self, http: &Http) -> Result<SecretString> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let reply = http
            .send(
                reqwest::Method::GET,
                &self.url,
                Auth::None,
                &headers,
                Body::Empty,
            )
            .await?
            .ok_or_http_error("the subject-token URL answered with an error")?;
        self.format.extract(&reply.body, &reply.endpoint)
    }
}
