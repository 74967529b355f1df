//! The AWS credential source: the subject token is a SigV4-signed `GetCallerIdentity` request,
//! which Google's STS forwards to AWS to learn who the caller is.
//!
//! The region comes from `AWS_REGION` / `AWS_DEFAULT_REGION` or the file's `region_url` (an
//! availability zone, whose last letter is dropped); the credentials from `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` or the file's `url` (the EC2 role endpoint). When
//! the file names an `imdsv2_session_token_url`, a session token is fetched first (IMDSv2) and
//! sent with every metadata request.

use std::time::SystemTime;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use ring::{digest, hmac};
use serde_json::json;
use url::Url;
use workload_auth_core::json::Fields;
use workload_auth_core::text::snippet;
use workload_auth_core::{Error, ErrorKind, Result, SecretString};

use super::SubjectContext;
use crate::credential_client::{Auth, Body, Http};
use crate::time::amz_date;
use crate::url_policy::{aws_metadata_url, aws_verification_url, display_url};

/// The subject token type of AWS credentials.
pub(crate) const AWS_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";

const IMDSV2_TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";
const IMDSV2_TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";

#[derive(Debug)]
pub(crate) struct AwsSource {
    region_url: Option<Url>,
    credentials_url: Option<Url>,
    imdsv2_url: Option<Url>,
    verification_url: String,
    place: String,
}

/// AWS security credentials.
pub(crate) struct AwsCredentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: SecretString,
    pub(crate) session_token: Option<SecretString>,
}

impl AwsSource {
    pub(crate) fn parse(source: &Fields<'_>) -> Result<Self> {
        let place = source.place();
        let environment_id = source.opt_str("environment_id")?.unwrap_or("");
        let version = environment_id
            .strip_prefix("aws")
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
        let Some(version) = version else {
            return Err(
                source.error("AWS credentials need `credential_source.environment_id` \"aws1\"")
            );
        };
        if version != "1" {
            return Err(source.error(format!(
                "`credential_source.environment_id` aws{version} is not supported (only aws1)"
            )));
        }
        let verification_url = source.str("regional_cred_verification_url")?.to_owned();
        aws_verification_url(
            &verification_url.replace("{region}", "us-east-1"),
            "credential_source.regional_cred_verification_url",
            place,
        )?;
        let url = |field: &str| -> Result<Option<Url>> {
            source
                .opt_nonempty_str(field)?
                .map(|raw| aws_metadata_url(raw, &format!("credential_source.{field}"), place))
                .transpose()
        };
        Ok(Self {
            region_url: url("region_url")?,
            credentials_url: url("url")?,
            imdsv2_url: url("imdsv2_session_token_url")?,
            verification_url,
            place: place.to_owned(),
        })
    }

    pub(crate) fn describe(&self) -> String {
        match &self.credentials_url {
            Some(url) => format!("aws (role credentials from {})", display_url(url)),
            None => "aws (credentials from the environment)".to_owned(),
        }
    }

    pub(crate) async fn subject_token(&self, ctx: &SubjectContext<'_>) -> Result<SecretString> {
        let env_region = ctx
            .env
            .nonempty("AWS_REGION")
            .or_else(|| ctx.env.nonempty("AWS_DEFAULT_REGION"));
        let env_credentials = match (
            ctx.env.nonempty("AWS_ACCESS_KEY_ID"),
            ctx.env.nonempty("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => Some(AwsCredentials {
                access_key_id: id,
                secret_access_key: SecretString::new(secret),
                session_token: ctx.env.nonempty("AWS_SESSION_TOKEN").map(SecretString::new),
            }),
            _ => None,
        };
        let session = if env_region.is_none() || env_credentials.is_none() {
            self.imdsv2_token(ctx.http).await?
        } else {
            None
        };
        let region = match env_region {
            Some(region) => region,
            None => self.region(ctx.http, session.as_ref()).await?,
        };
        let credentials = match env_credentials {
            Some(c) => c,
            None => self.role_credentials(ctx.http, session.as_ref()).await?,
        };
        // The region comes from the environment or the metadata service: it must be a region
        // name, so that the signed request still names the checked AWS STS host.
        if region.is_empty()
            || region.len() > 63
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Error::new(
                ErrorKind::InvalidCredentials,
                format!(
                    "the AWS region {:?} is not a region name (lower-case letters, digits, `-`)",
                    snippet(&region, 60)
                ),
            )
            .with_endpoint(self.place.clone()));
        }
        let url = self.verification_url.replace("{region}", &region);
        aws_verification_url(
            &url,
            "credential_source.regional_cred_verification_url",
            &self.place,
        )?;
        let request =
            sign_get_caller_identity(&url, &region, &credentials, ctx.audience, SystemTime::now())
                .map_err(|e| e.with_endpoint(self.place.clone()))?;
        Ok(request)
    }

    async fn imdsv2_token(&self, http: &Http) -> Result<Option<SecretString>> {
        let Some(url) = &self.imdsv2_url else {
            return Ok(None);
        };
        let reply = http
            .send(
                reqwest::Method::PUT,
                url,
                Auth::None,
                &[(IMDSV2_TTL_HEADER, "300")],
                Body::Empty,
            )
            .await?
            .ok_or_http_error("the AWS IMDSv2 session token request failed")?;
        let token = text(&reply.body, url, "the IMDSv2 session token")?;
        Ok(Some(SecretString::new(token)))
    }

    async fn get_text(
        &self,
        http: &Http,
        url: &Url,
        session: Option<&SecretString>,
        what: &str,
    ) -> Result<String> {
        let headers: Vec<(&str, &str)> = session
            .map(|s| vec![(IMDSV2_TOKEN_HEADER, s.expose())])
            .unwrap_or_default();
        let reply = http
            .send(reqwest::Method::GET, url, Auth::None, &headers, Body::Empty)
            .await?
            .ok_or_http_error(format!("the AWS metadata request for {what} failed"))?;
        text(&reply.body, url, what)
    }

    async fn region(&self, http: &Http, session: Option<&SecretString>) -> Result<String> {
        let Some(url) = &self.region_url else {
            return Err(Error::new(
                ErrorKind::InvalidCredentials,
                "the AWS region is unknown: AWS_REGION and AWS_DEFAULT_REGION are not set and the \
                 file has no `credential_source.region_url`",
            )
            .with_endpoint(self.place.clone()));
        };
        let zone = self
            .get_text(http, url, session, "the availability zone")
            .await?;
        // An availability zone (us-east-2b) is the region plus one letter.
        let mut region = zone.trim().to_owned();
        region.pop();
        if region.is_empty() {
            return Err(Error::new(
                ErrorKind::MalformedResponse,
                "the AWS availability zone is empty",
            )
            .with_endpoint(display_url(url)));
        }
        Ok(region)
    }

    async fn role_credentials(
        &self,
        http: &Http,
        session: Option<&SecretString>,
    ) -> Result<AwsCredentials> {
        let Some(url) = &self.credentials_url else {
            return Err(Error::new(
                ErrorKind::InvalidCredentials,
                "no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set and \
                 the file has no `credential_source.url`",
            )
            .with_endpoint(self.place.clone()));
        };
        let role = self.get_text(http, url, session, "the role name").await?;
        let role = role.trim();
        if role.is_empty() || role.contains(['/', '?', '#']) {
            return Err(Error::new(
                ErrorKind::MalformedResponse,
                format!("the AWS role name {:?} is not usable", snippet(role, 60)),
            )
            .with_endpoint(display_url(url)));
        }
        let mut role_url = url.clone();
        let path = format!("{}/{role}", url.path().trim_end_matches('/'));
        role_url.set_path(&path);
        let headers: Vec<(&str, &str)> = session
            .map(|s| vec![(IMDSV2_TOKEN_HEADER, s.expose())])
            .unwrap_or_default();
        let reply = http
            .send(
                reqwest::Method::GET,
                &role_url,
                Auth::None,
                &headers,
                Body::Empty,
            )
            .await?
            .ok_or_http_error("the AWS role credentials request failed")?;
        let map = reply.json("the AWS role credentials")?;
        let fields = Fields::of_response(&map, &reply.endpoint);
        Ok(AwsCredentials {
            access_key_id: fields.str("AccessKeyId")?.to_owned(),
            secret_access_key: fields.secret("SecretAccessKey")?,
            session_token: fields.opt_secret("Token")?,
        })
    }
}

fn text(body: &[u8], url: &Url, what: &str) -> Result<String> {
    std::str::from_utf8(body).map(str::to_owned).map_err(|_| {
        Error::new(
            ErrorKind::MalformedResponse,
            format!("{what} is not UTF-8 text"),
        )
        .with_endpoint(display_url(url))
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// RFC 3986's unreserved characters (`A-Za-z0-9-_.~`) stay; everything else is `%XX`: SigV4's
/// URI encoding.
const SIGV4_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Python's `urllib.parse.quote(s, safe="/")`: the unreserved characters and `/` stay.
pub(crate) const PY_QUOTE: &AsciiSet = &SIGV4_ENCODE.remove(b'/');

/// Percent-encodes `s` (its UTF-8 bytes) with `set`.
pub(crate) fn quote(s: &str, set: &'static AsciiSet) -> String {
    utf8_percent_encode(s, set).to_string()
}

/// The canonical query string of SigV4: each name and value URI-encoded, sorted.
fn canonical_query(url: &Url) -> String {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (quote(&k, SIGV4_ENCODE), quote(&v, SIGV4_ENCODE)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Signs a `POST` of AWS STS `GetCallerIdentity` at `url` and serializes it as google-auth does:
/// the URL-encoded JSON `{"headers":[{"key","value"}...],"method":"POST","url":URL}`.
pub(crate) fn sign_get_caller_identity(
    url: &str,
    region: &str,
    credentials: &AwsCredentials,
    target_resource: &str,
    now: SystemTime,
) -> Result<SecretString> {
    let parsed = Url::parse(url).map_err(|_| {
        Error::new(
            ErrorKind::InvalidCredentials,
            "`credential_source.regional_cred_verification_url` is not a URL",
        )
    })?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    if parsed.scheme() != "https" || host.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidCredentials,
            "`credential_source.regional_cred_verification_url` must be an https URL",
        ));
    }
    let (amz, date) = amz_date(now);
    let service = host.split('.').next().unwrap_or_default();
    let service = service.strip_suffix("-fips").unwrap_or(service);
    let path = if parsed.path().is_empty() {
        "/"
    } else {
        parsed.path()
    };

    let mut signed: Vec<(&str, &str)> = vec![("host", &host), ("x-amz-date", &amz)];
    if let Some(token) = &credentials.session_token {
        signed.push(("x-amz-security-token", token.expose()));
    }
    signed.sort_by(|a, b| a.0.cmp(b.0));
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = signed.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(";");
    let canonical_request = format!(
        "POST\n{path}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        canonical_query(&parsed),
        sha256_hex(b"")
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let secret = zeroize::Zeroizing::new(format!("AWS4{}", credentials.secret_access_key.expose()));
    let k_date = hmac_sha256(secret.as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let signature = hex(&hmac_sha256(&k_signing, string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    );
    // The header order google-auth produces.
    let mut headers = vec![
        json!({"key": "Authorization", "value": authorization}),
        json!({"key": "host", "value": host}),
        json!({"key": "x-amz-date", "value": amz}),
    ];
    if let Some(token) = &credentials.session_token {
        headers.push(json!({"key": "x-amz-security-token", "value": token.expose()}));
    }
    headers.push(json!({"key": "x-goog-cloud-target-resource", "value": target_resource}));
    // serde_json's map is ordered by key, like Python's sort_keys=True.
    let request = json!({ "headers": headers, "method": "POST", "url": url });
    let serialized = zeroize::Zeroizing::new(request.to_string());
    Ok(SecretString::new(quote(&serialized, PY_QUOTE)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// The subject token google-auth 2.63.0 produces for the same input (computed with
    /// `google.auth.aws.RequestSigner` and `_helpers.utcnow` fixed at 2020-08-18T18:41:01Z).
    #[test]
    fn subject_token_matches_google_auth_byte_for_byte() {
        let creds = AwsCredentials {
            access_key_id: "ASIARD4OQDT6A77FR3CL".into(),
            secret_access_key: "Y8AfSaucF37G4PGSBbHcDnA5GcUl+bAcr7CJ9I2K".into(),
            session_token: Some("SESSIONTOKEN//abc+=".into()),
        };
        let url = "https://sts.us-east-2.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";
        let now = UNIX_EPOCH + Duration::from_secs(1_597_776_061);
        let token =
            sign_get_caller_identity(url, "us-east-2", &creds, "//iam.googleapis.com/x", now)
                .unwrap();
        let expected = "%7B%22headers%22%3A%5B%7B%22key%22%3A%22Authorization%22%2C%22value%22%3A%22AWS4-HMAC-SHA256%20Credential%3DASIARD4OQDT6A77FR3CL/20200818/us-east-2/sts/aws4_request%2C%20SignedHeaders%3Dhost%3Bx-amz-date%3Bx-amz-security-token%2C%20Signature%3De05fff8799384311a3c5825f0e5b544c99c8210d76466013a0cbaa4617ff3f1f%22%7D%2C%7B%22key%22%3A%22host%22%2C%22value%22%3A%22sts.us-east-2.amazonaws.com%22%7D%2C%7B%22key%22%3A%22x-amz-date%22%2C%22value%22%3A%2220200818T184101Z%22%7D%2C%7B%22key%22%3A%22x-amz-security-token%22%2C%22value%22%3A%22SESSIONTOKEN//abc%2B%3D%22%7D%2C%7B%22key%22%3A%22x-goog-cloud-target-resource%22%2C%22value%22%3A%22//iam.googleapis.com/x%22%7D%5D%2C%22method%22%3A%22POST%22%2C%22url%22%3A%22https%3A//sts.us-east-2.amazonaws.com%3FAction%3DGetCallerIdentity%26Version%3D2011-06-15%22%7D";
        assert_eq!(token.expose(), expected);
    }

    #[test]
    fn quote_matches_python() {
        assert_eq!(quote("a b/c:~", PY_QUOTE), "a%20b/c%3A~");
        assert_eq!(quote("x=y&z/", SIGV4_ENCODE), "x%3Dy%26z%2F");
        assert_eq!(quote("\u{e9}+%", SIGV4_ENCODE), "%C3%A9%2B%25");
    }
}
