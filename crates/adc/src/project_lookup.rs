//! The project id of workload identity federation: Cloud Resource Manager's `projects.get` by
//! the project number the credential names, as google-auth does — only when scopes are set and
//! neither `GOOGLE_CLOUD_PROJECT` nor `GCLOUD_PROJECT` is.

use url::Url;
use workload_auth_core::json::Fields;
use workload_auth_core::{Error, ErrorKind, Result};

use crate::Credentials;
use crate::credential_client::{Auth, Body, Http};
use crate::url_policy::caller_endpoint;

/// How to ask Cloud Resource Manager for the project of a project number.
#[derive(Debug)]
pub(crate) struct ResourceManager {
    pub(crate) number: String,
    url: Url,
    http: Http,
}

impl ResourceManager {
    /// A lookup of project `number` at `base` (`https://cloudresourcemanager.{universe}/v1/`
    /// unless the builder gives another).
    pub(crate) fn new(
        number: &str,
        base: Option<&str>,
        universe: &str,
        http: Http,
    ) -> Result<Self> {
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::new(
                ErrorKind::InvalidCredentials,
                format!(
                    "the project number {:?} is not a number",
                    workload_auth_core::text::snippet(number, 40)
                ),
            ));
        }
        let base = match base {
            Some(base) => base.to_owned(),
            None => format!("https://cloudresourcemanager.{universe}/v1/"),
        };
        let base = caller_endpoint(&base, "resource_manager_endpoint", "the builder")?;
        let url = base.join(&format!("projects/{number}")).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                "the Cloud Resource Manager endpoint cannot take a project path",
            )
        })?;
        Ok(Self {
            number: number.to_owned(),
            url,
            http,
        })
    }

    /// `projectId` of the project, asked with the credentials' own token (and quota project).
    pub(crate) async fn project_id(&self, credentials: &Credentials) -> Result<String> {
        let token = credentials.access_token().await?;
        let headers: Vec<(&str, &str)> = credentials
            .quota_project_id()
            .map(|p| ("x-goog-user-project", p))
            .into_iter()
            .collect();
        let reply = self
            .http
            .send(
                reqwest::Method::GET,
                &self.url,
                Auth::Bearer(token.secret()),
                &headers,
                Body::Empty,
            )
            .await?
            .ok_or_http_error("the Cloud Resource Manager project lookup failed")?;
        let map = reply.json("the project answer")?;
        let fields = Fields::of_response(&map, &reply.endpoint);
        let id = fields.str("projectId")?.trim();
        let valid = !id.is_empty()
            && id.len() <= 100
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
        if !valid {
            return Err(fields.error("the project answer's `projectId` is not a project id"));
        }
        Ok(id.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential_client::{DEFAULT_TIMEOUT, TlsRoots};

    fn http() -> Http {
        Http::new(&TlsRoots::default(), None, DEFAULT_TIMEOUT)
    }

    #[test]
    fn the_endpoint_follows_the_universe_and_the_number_is_checked() {
        let lookup = ResourceManager::new("123", None, "example-universe.test", http()).unwrap();
        assert_eq!(
            lookup.url.as_str(),
            "https://cloudresourcemanager.example-universe.test/v1/projects/123"
        );
        let lookup = ResourceManager::new(
            "9",
            Some("http://127.0.0.1:1/v1/"),
            "googleapis.com",
            http(),
        )
        .unwrap();
        assert_eq!(lookup.url.as_str(), "http://127.0.0.1:1/v1/projects/9");
        for bad in ["", "12/../3", "abc"] {
            assert!(ResourceManager::new(bad, None, "googleapis.com", http()).is_err());
        }
        let e =
            ResourceManager::new("1", Some("http://evil.example/v1/"), "g", http()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidCredentials);
    }
}
