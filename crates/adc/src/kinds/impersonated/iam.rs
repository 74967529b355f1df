//! The IAM Service Account Credentials API: `generateAccessToken` and `generateIdToken`, used by
//! impersonation (of an `impersonated_service_account` file, or after an external-account
//! exchange).

use std::time::Duration;

use serde_json::{Value, json};
use url::Url;
use workload_auth_core::json::Fields;
use workload_auth_core::{AccessToken, Error, ErrorKind, IdToken, Result, SecretString};

use crate::credential_client::{Auth, Body, CredentialResponse, Http};
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
    pub(crate) fn parse_access_token_answer(reply: &CredentialResponse) -> Result<AccessToken> {
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
    ) -> Result<CredentialResponse> {
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

/// Where and how [`sign_blob`] reaches the IAM Credentials API for one credential.
#[derive(Clone, Debug)]
pub(crate) struct BlobSigning {
    /// The builder's IAM Credentials base URL, checked by the endpoint policy; `None`:
    /// `https://iamcredentials.{universe}/v1/`.
    pub(crate) base: Option<Url>,
    pub(crate) http: Http,
    /// The account signed as, asked once (the metadata server's answer does not change).
    pub(crate) email: tokio::sync::OnceCell<Option<String>>,
}

/// `https://iamcredentials.{universe}/v1/`, when `universe` (from a credentials file or the
/// metadata server) is a plain host name that cannot redirect the request elsewhere.
pub(crate) fn default_base(universe: &str) -> Result<Url> {
    let host = format!("iamcredentials.{universe}");
    Url::parse(&format!("https://{host}/v1/"))
        .ok()
        .filter(|url| {
            !universe.is_empty()
                && url.host_str() == Some(host.to_ascii_lowercase().as_str())
                && url.path() == "/v1/"
        })
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidCredentials,
                format!("the universe domain {universe:?} is not a host name"),
            )
        })
}

/// The largest message `signBlob` is asked to sign: IAM refuses larger payloads, so a larger one
/// is refused here before its bearer token is sent anywhere.
pub(crate) const MAX_SIGN_BLOB: usize = 64 * 1024;

/// `.../serviceAccounts/EMAIL:signBlob` under `base` (`https://iamcredentials.UNIVERSE/v1/`):
/// the email is one path segment, percent-encoded, so that an email a server answered cannot
/// add path segments or a query.
pub(crate) fn sign_blob_url(base: &Url, email: &str) -> Result<Url> {
    let last = format!("{email}:signBlob");
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| {
            Error::new(
                ErrorKind::InvalidArgument,
                "the IAM Credentials endpoint cannot have a path",
            )
        })?
        .pop_if_empty()
        .extend(["projects", "-", "serviceAccounts", last.as_str()]);
    Ok(url)
}

/// IAM Credentials `signBlob`: `message` signed by the Google-managed key of `email` (RS256),
/// with `bearer` (a token of credentials allowed to sign as `email`), billed to `quota_project`
/// when there is one (as google-auth's IAM signer sends it). Returns the key id and the raw
/// signature.
pub(crate) async fn sign_blob(
    http: &Http,
    url: &Url,
    email: &str,
    (bearer, quota_project): (&SecretString, Option<&str>),
    message: &[u8],
) -> Result<(Option<String>, Vec<u8>)> {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    if message.len() > MAX_SIGN_BLOB {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "the message to sign is {} bytes; signBlob signs at most {MAX_SIGN_BLOB}",
                message.len()
            ),
        ));
    }
    let body = json!({ "payload": STANDARD.encode(message) });
    let hint = format!(
        "the credentials need roles/iam.serviceAccountTokenCreator (iam.serviceAccounts.signBlob) \
         on {email}"
    );
    let reply = http
        .send(
            reqwest::Method::POST,
            url,
            Auth::Bearer(bearer),
            &quota_project
                .map(|project| ("x-goog-user-project", project))
                .into_iter()
                .collect::<Vec<_>>(),
            Body::Json(body.to_string()),
        )
        .await?
        .ok_or_token_error(&format!("signing as {email}"), &hint)?;
    let map = reply.json("the signBlob answer")?;
    let fields = Fields::of_response(&map, &reply.endpoint);
    let key_id = fields.opt_nonempty_str("keyId")?.map(str::to_owned);
    let signature = STANDARD
        .decode(fields.str("signedBlob")?)
        .map_err(|_| fields.invalid("signedBlob", "is not base64"))?;
    if signature.is_empty() {
        return Err(fields.invalid("signedBlob", "is empty"));
    }
    Ok((key_id, signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_blob_urls_keep_the_email_in_one_segment() {
        let base = Url::parse("https://iamcredentials.googleapis.com/v1/").unwrap();
        let url = sign_blob_url(&base, "sa@p.iam.gserviceaccount.com").unwrap();
        assert_eq!(
            url.as_str(),
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:signBlob"
        );
        let hostile = sign_blob_url(&base, "a/../../x?y#z").unwrap();
        assert_eq!(hostile.host_str(), Some("iamcredentials.googleapis.com"));
        assert!(hostile.query().is_none() && hostile.fragment().is_none());
        assert_eq!(hostile.path_segments().unwrap().count(), 5);
        let no_slash = Url::parse("http://127.0.0.1:1/v1").unwrap();
        assert_eq!(
            sign_blob_url(&no_slash, "e").unwrap().path(),
            "/v1/projects/-/serviceAccounts/e:signBlob"
        );
    }

    #[test]
    fn the_default_base_refuses_a_universe_that_is_no_host_name() {
        assert_eq!(
            default_base("googleapis.com").unwrap().as_str(),
            "https://iamcredentials.googleapis.com/v1/"
        );
        for bad in [
            "evil.test/x",
            "evil.test?",
            "a@evil.test",
            "evil.test:1/",
            "",
            "x y",
        ] {
            let err = default_base(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{bad}");
        }
    }

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
