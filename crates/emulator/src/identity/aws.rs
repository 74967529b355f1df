//! The AWS side: an EC2-style instance metadata service (IMDSv2 session tokens, the availability
//! zone, role credentials), and the check STS makes of an AWS subject token — a serialized,
//! SigV4-signed `GetCallerIdentity` request — which real STS forwards to AWS and the emulator
//! verifies itself with the configured secret key.

use std::collections::BTreeMap;
use std::time::Duration;

use ring::{digest, hmac};
use serde_json::{Value, json};

use super::config::AwsConfig;
use super::{json_response, now_seconds};
use crate::http_server::{Request, Response};
use crate::state::State;

const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const IMDSV2_SCOPE: &str = "urn:workload-auth-emulator:aws-imdsv2";

fn unauthorized() -> Response {
    Response::new(401, "text/plain", "Unauthorized")
}

/// Whether the request carries a valid IMDSv2 session token (when one is required).
fn session_ok(state: &State, aws: &AwsConfig, request: &Request) -> bool {
    if !aws.require_imdsv2 {
        return true;
    }
    request
        .header(TOKEN_HEADER)
        .and_then(|t| state.tokens.lookup(t))
        .is_some_and(|issued| issued.scopes.iter().any(|s| s == IMDSV2_SCOPE))
}

/// `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds`.
pub(crate) fn session_token(state: &State, _aws: &AwsConfig, request: &Request) -> Response {
    let ttl = request
        .header(TTL_HEADER)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|t| (1..=21_600).contains(t));
    let Some(ttl) = ttl else {
        return Response::new(400, "text/plain", "Bad Request");
    };
    let token = state
        .tokens
        .mint(vec![IMDSV2_SCOPE.to_owned()], Duration::from_secs(ttl));
    let mut response = Response::new(200, "text/plain", token.expose().to_owned());
    response.set_header("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", ttl.to_string());
    response
}

/// `GET /latest/meta-data/placement/availability-zone`.
pub(crate) fn availability_zone(state: &State, aws: &AwsConfig, request: &Request) -> Response {
    if !session_ok(state, aws, request) {
        return unauthorized();
    }
    Response::new(200, "text/plain", format!("{}b", aws.region))
}

/// `GET /latest/meta-data/iam/security-credentials`: the role name.
pub(crate) fn role_name(state: &State, aws: &AwsConfig, request: &Request) -> Response {
    if !session_ok(state, aws, request) {
        return unauthorized();
    }
    Response::new(200, "text/plain", aws.role_name.clone())
}

/// `GET /latest/meta-data/iam/security-credentials/ROLE`: the role's temporary credentials.
pub(crate) fn role_credentials(
    state: &State,
    aws: &AwsConfig,
    request: &Request,
    role: &str,
) -> Response {
    if !session_ok(state, aws, request) {
        return unauthorized();
    }
    if role != aws.role_name {
        return Response::new(404, "text/plain", "Not Found");
    }
    let now = now_seconds();
    json_response(
        200,
        &json!({
            "Code": "Success",
            "LastUpdated": super::iam::rfc3339(now),
            "Type": "AWS-HMAC",
            "AccessKeyId": aws.access_key_id,
            "SecretAccessKey": aws.secret_access_key.expose(),
            "Token": aws.session_token.as_ref().map(|t| t.expose()),
            "Expiration": super::iam::rfc3339(now + 6 * 3600),
        }),
    )
}

pub(crate) use crate::http_server::percent_decode;

/// AWS's URI encoding: everything but `A-Za-z0-9-_.~` as `%XX`.
const SIGV4_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn uri_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SIGV4_ENCODE).to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

/// Checks an AWS subject token for `audience`: the request is a signed `POST` of
/// `GetCallerIdentity` to AWS STS, for this audience, recent, by the configured key.
pub(crate) fn verify_subject_token(
    aws: &AwsConfig,
    token: &str,
    audience: &str,
) -> Result<(), String> {
    let (url, headers) = parse_caller_identity_request(token)?;
    if headers
        .get("x-goog-cloud-target-resource")
        .map(String::as_str)
        != Some(audience)
    {
        return Err(bad("x-goog-cloud-target-resource is not the audience"));
    }
    let authorization = parse_authorization(
        headers
            .get("authorization")
            .ok_or_else(|| bad("no Authorization header"))?,
    )?;
    let scope: Vec<&str> = authorization.credential.split('/').collect();
    let [key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(bad("the credential scope is malformed"));
    };
    if *key_id != aws.access_key_id {
        return Err(bad("the access key is not recognized"));
    }
    let amz_date = headers
        .get("x-amz-date")
        .ok_or_else(|| bad("no x-amz-date header"))?;
    if !amz_date.starts_with(date) {
        return Err(bad("x-amz-date does not match the credential scope"));
    }
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| bad("x-amz-date is malformed"))?;
    if let Some(expected) = &aws.session_token
        && headers.get("x-amz-security-token").map(String::as_str) != Some(expected.expose())
    {
        return Err(bad("the session token is missing or wrong"));
    }
    let canonical_request = canonical_request(&url, &headers, authorization.signed_headers)?;
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let k_date = hmac_sha256(
        format!("AWS4{}", aws.secret_access_key.expose()).as_bytes(),
        date,
    );
    let k_region = hmac_sha256(&k_date, region);
    let k_service = hmac_sha256(&k_region, service);
    let k_signing = hmac_sha256(&k_service, "aws4_request");
    let expected = hex(&hmac_sha256(&k_signing, &string_to_sign));
    if expected != authorization.signature {
        return Err(bad("the signature does not match"));
    }
    if signed_at.abs_diff(now_seconds()) > 15 * 60 {
        return Err(bad(
            "the signature is not current (more than 15 minutes off)",
        ));
    }
    Ok(())
}

/// The error for an AWS subject token that fails a check.
fn bad(why: &str) -> String {
    format!("Invalid AWS subject token: {why}.")
}

/// The serialized request of an AWS subject token: a `POST` of `GetCallerIdentity` to AWS STS;
/// its URL and its headers (names lower-cased).
fn parse_caller_identity_request(
    token: &str,
) -> Result<(url::Url, BTreeMap<String, String>), String> {
    let decoded = percent_decode(token.trim()).ok_or_else(|| bad("not URL-encoded"))?;
    let request: Value = serde_json::from_str(&decoded).map_err(|_| bad("not JSON"))?;
    if request.get("method").and_then(Value::as_str) != Some("POST") {
        return Err(bad("the method is not POST"));
    }
    let url_text = request
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no url"))?;
    let url = url::Url::parse(url_text).map_err(|_| bad("the url is not a URL"))?;
    let host = url.host_str().unwrap_or("");
    if url.scheme() != "https" || !host.starts_with("sts.") || !host.ends_with(".amazonaws.com") {
        return Err(bad("the url is not AWS STS"));
    }
    let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    if query.get("Action").map(String::as_str) != Some("GetCallerIdentity") {
        return Err(bad("the action is not GetCallerIdentity"));
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for item in request
        .get("headers")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no headers"))?
    {
        let (Some(key), Some(value)) = (
            item.get("key").and_then(Value::as_str),
            item.get("value").and_then(Value::as_str),
        ) else {
            return Err(bad("a header is not {key, value}"));
        };
        headers.insert(key.to_ascii_lowercase(), value.trim().to_owned());
    }
    Ok((url, headers))
}

/// The parts of a SigV4 `Authorization` header.
struct SigV4Authorization<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

/// Reads `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
fn parse_authorization(authorization: &str) -> Result<SigV4Authorization<'_>, String> {
    let rest = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| bad("the Authorization header is not AWS4-HMAC-SHA256"))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(bad("the Authorization header is incomplete"));
    };
    Ok(SigV4Authorization {
        credential,
        signed_headers,
        signature,
    })
}

/// SigV4's canonical request for the empty-bodied `POST` to `url` with the `signed_headers`.
fn canonical_request(
    url: &url::Url,
    headers: &BTreeMap<String, String>,
    signed_headers: &str,
) -> Result<String, String> {
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let value = headers
            .get(name)
            .ok_or_else(|| bad("a signed header is missing"))?;
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
        .collect();
    pairs.sort();
    let canonical_query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    Ok(format!(
        "POST\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        hex(digest::digest(&digest::SHA256, b"").as_ref())
    ))
}

/// Seconds since the epoch of `YYYYMMDDTHHMMSSZ`; `None` unless it is a real date and time.
fn parse_amz_date(text: &str) -> Option<u64> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let at = time::PrimitiveDateTime::parse(text, format).ok()?;
    u64::try_from(at.assume_utc().unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_parse() {
        assert_eq!(parse_amz_date("20200818T184101Z"), Some(1_597_776_061));
        assert_eq!(parse_amz_date("2020-08-18"), None);
    }

    /// Finding 8: impossible AWS dates and malformed escapes in a subject token are refused.
    #[test]
    fn finding_8_impossible_amz_dates_and_bad_escapes_are_refused() {
        for bad in [
            "20260231T000000Z",
            "20261301T000000Z",
            "20260101T240000Z",
            "20260101T006000Z",
            "2026010 T000000Z",
            "+2026011T000000Z",
            "20260101T000000",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
        assert_eq!(parse_amz_date("20240229T000000Z"), Some(1_709_164_800));
        let err = verify_subject_token(&AwsConfig::default(), "%7B%+1%7D", "x").unwrap_err();
        assert!(err.contains("not URL-encoded"), "{err}");
    }

    #[test]
    fn google_auth_tokens_verify_and_tampering_is_caught() {
        // Produced by google-auth 2.63.0's RequestSigner for these credentials at
        // 2020-08-18T18:41:01Z: the signature verifies, but the token is years old.
        let aws = AwsConfig {
            access_key_id: "ASIARD4OQDT6A77FR3CL".into(),
            secret_access_key: "Y8AfSaucF37G4PGSBbHcDnA5GcUl+bAcr7CJ9I2K".into(),
            session_token: Some("SESSIONTOKEN//abc+=".into()),
            ..AwsConfig::default()
        };
        let token = "%7B%22headers%22%3A%5B%7B%22key%22%3A%22Authorization%22%2C%22value%22%3A%22AWS4-HMAC-SHA256%20Credential%3DASIARD4OQDT6A77FR3CL/20200818/us-east-2/sts/aws4_request%2C%20SignedHeaders%3Dhost%3Bx-amz-date%3Bx-amz-security-token%2C%20Signature%3De05fff8799384311a3c5825f0e5b544c99c8210d76466013a0cbaa4617ff3f1f%22%7D%2C%7B%22key%22%3A%22host%22%2C%22value%22%3A%22sts.us-east-2.amazonaws.com%22%7D%2C%7B%22key%22%3A%22x-amz-date%22%2C%22value%22%3A%2220200818T184101Z%22%7D%2C%7B%22key%22%3A%22x-amz-security-token%22%2C%22value%22%3A%22SESSIONTOKEN//abc%2B%3D%22%7D%2C%7B%22key%22%3A%22x-goog-cloud-target-resource%22%2C%22value%22%3A%22//iam.googleapis.com/x%22%7D%5D%2C%22method%22%3A%22POST%22%2C%22url%22%3A%22https%3A//sts.us-east-2.amazonaws.com%3FAction%3DGetCallerIdentity%26Version%3D2011-06-15%22%7D";
        // Everything but the age checks out.
        let err = verify_subject_token(&aws, token, "//iam.googleapis.com/x").unwrap_err();
        assert!(err.contains("not current"), "{err}");
        let err = verify_subject_token(&aws, token, "//iam.googleapis.com/other").unwrap_err();
        assert!(err.contains("target-resource"), "{err}");
        let tampered = token.replace("e05fff", "e05ffe");
        let err = verify_subject_token(&aws, &tampered, "//iam.googleapis.com/x").unwrap_err();
        assert!(err.contains("signature does not match"), "{err}");
        let other_key = AwsConfig {
            secret_access_key: "another-secret".into(),
            ..aws.clone()
        };
        let err = verify_subject_token(&other_key, token, "//iam.googleapis.com/x").unwrap_err();
        assert!(err.contains("signature does not match"), "{err}");
    }
}
