//! Access-token and ID-token responses.

use std::time::{Duration, SystemTime};

use workload_auth_core::json::Fields;
use workload_auth_core::{AccessToken, IdToken, Result, SecretString};

use crate::request::{malformed, parse_json};

/// Parses `{"access_token": "...", "expires_in": N, "token_type": "Bearer"}`, received at `now`.
///
/// `token_type` may be absent (it is then `Bearer`); `expires_in` must be a positive number.
pub(crate) fn parse_access_token(
    body: &[u8],
    endpoint: &str,
    now: SystemTime,
) -> Result<AccessToken> {
    let doc = parse_json(body, endpoint)?;
    let fields = Fields::of_response(&doc, endpoint);
    let token = fields.secret("access_token")?;
    let expires_in = fields.positive_seconds("expires_in")?;
    let token_type = match fields.opt_str("token_type")? {
        Some(t) if t.trim().is_empty() => return Err(fields.invalid("token_type", "is empty")),
        Some(t) => t,
        None => "Bearer",
    };
    if token
        .expose()
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(fields.invalid("access_token", "contains whitespace or control characters"));
    }
    let expires_at = workload_auth_core::expiry_after(now, Duration::from_secs(expires_in))
        .ok_or_else(|| fields.invalid("expires_in", "is out of range"))?;
    Ok(AccessToken::new(token, token_type, expires_at))
}

/// Parses the identity endpoint's answer: a JWT as text.
pub(crate) fn parse_id_token(body: &[u8], endpoint: &str) -> Result<IdToken> {
    let text = std::str::from_utf8(body)
        .map_err(|_| malformed(endpoint, "the ID token is not UTF-8 text"))?
        .trim();
    if text.is_empty() {
        return Err(malformed(endpoint, "the ID token response is empty"));
    }
    IdToken::from_jwt(SecretString::new(text.to_owned())).map_err(|e| e.with_endpoint(endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use workload_auth_core::ErrorKind;

    const E: &str = "http://h/computeMetadata/v1/instance/service-accounts/default/token";
    const SECRET: &str = "ya29.sekrit";

    fn parse(body: &str) -> Result<AccessToken> {
        parse_access_token(body.as_bytes(), E, SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn parses_a_token() {
        let t = parse(r#"{"access_token":"ya29.sekrit","expires_in":3599,"token_type":"Bearer"}"#)
            .unwrap();
        assert_eq!(t.secret().expose(), SECRET);
        assert_eq!(t.token_type(), "Bearer");
        assert_eq!(
            t.expires_at(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(3599)
        );
        let t = parse(r#"{"access_token":"ya29.sekrit","expires_in":12.7}"#).unwrap();
        assert_eq!(t.token_type(), "Bearer");
        assert_eq!(
            t.expires_at(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(12)
        );
    }

    #[test]
    fn malformed_tokens_name_the_field_and_never_the_token() {
        for (body, needle) in [
            ("", "not valid JSON"),
            ("ya29.sekrit", "not valid JSON"),
            ("{\"access_token\":\"ya29.sekrit\"", "ends early"),
            ("[\"ya29.sekrit\"]", "an array, expected a JSON object"),
            (r#"{"expires_in":3599}"#, "`access_token` field is missing"),
            (
                r#"{"access_token":"","expires_in":3599}"#,
                "`access_token` field is empty",
            ),
            (
                r#"{"access_token":7,"expires_in":3599}"#,
                "`access_token` field is a number",
            ),
            (
                r#"{"access_token":"ya29.sekrit"}"#,
                "`expires_in` field is missing",
            ),
            (
                r#"{"access_token":"ya29.sekrit","expires_in":0}"#,
                "`expires_in` field is zero",
            ),
            (
                r#"{"access_token":"ya29.sekrit","expires_in":-5}"#,
                "`expires_in` field is negative",
            ),
            (
                r#"{"access_token":"ya29.sekrit","expires_in":-0.5}"#,
                "`expires_in` field is negative",
            ),
            (
                r#"{"access_token":"ya29.sekrit","expires_in":0.5}"#,
                "`expires_in` field is zero",
            ),
            (
                r#"{"access_token":"ya29.sekrit","expires_in":1e300}"#,
                "out of range",
            ),
            (
                r#"{"access_token":"ya29.sekrit","expires_in":"3599"}"#,
                "`expires_in` field is a string",
            ),
            (
                r#"{"access_token":"ya29.sekrit","expires_in":null}"#,
                "`expires_in` field is null",
            ),
            (
                r#"{"access_token":"ya29.sekrit","expires_in":9,"token_type":1}"#,
                "`token_type` field is a number",
            ),
            (
                r#"{"access_token":"ya29.sekrit","expires_in":9,"token_type":""}"#,
                "`token_type` field is empty",
            ),
            (
                r#"{"access_token":"ya29 sekrit","expires_in":9}"#,
                "whitespace",
            ),
            (
                r#"{"access_token":"ya29.sekrit","access_token":"ya29.sekrit","expires_in":9}"#,
                "duplicate key",
            ),
        ] {
            let err = parse(body).unwrap_err();
            let text = err.to_string();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{body}: {text}");
            assert_eq!(err.endpoint(), Some(E));
            assert!(text.contains(needle), "{body}: {text}");
            assert!(!text.contains("sekrit"), "{body}: {text}");
            assert!(!format!("{err:?}").contains("sekrit"), "{body}");
        }
    }

    #[test]
    fn id_tokens_are_jwts() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjIwMDAwMDAwMDB9.c2ln";
        let t = parse_id_token(format!("{jwt}\n").as_bytes(), E).unwrap();
        assert_eq!(t.secret().expose(), jwt);
        for bad in ["", "  ", "sekrit", "a.sekrit.c"] {
            let err = parse_id_token(bad.as_bytes(), E).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse);
            assert_eq!(err.endpoint(), Some(E));
            assert!(!err.to_string().contains("sekrit"));
        }
        let err = parse_id_token(&[0xff, 0xfe], E).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedResponse);
    }
}
