//! Access tokens and ID tokens, with their expiry.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind, Result};
use crate::secret::SecretString;

/// The longest token lifetime accepted from a server: ten years. Anything longer is not a token
/// lifetime but a broken or hostile answer, and would push time arithmetic towards overflow.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The latest absolute expiry accepted (a JWT `exp`, an RFC 3339 `expireTime`): the end of year
/// 9999, the last instant RFC 3339 can write. Times up to it stay far from `SystemTime`'s limits
/// whatever is added to them later.
pub const MAX_EXPIRY_UNIX_SECONDS: u64 = 253_402_300_799;

/// When a token received at `now` with lifetime `lifetime` expires: `None` when the lifetime is
/// longer than [`MAX_TOKEN_LIFETIME`] or the sum does not fit, so a caller reports it instead of
/// panicking on overflow.
pub fn expiry_after(now: SystemTime, lifetime: Duration) -> Option<SystemTime> {
    if lifetime > MAX_TOKEN_LIFETIME {
        return None;
    }
    now.checked_add(lifetime)
}

/// The time `secs` seconds after the Unix epoch; `None` past [`MAX_EXPIRY_UNIX_SECONDS`].
pub fn unix_time(secs: u64) -> Option<SystemTime> {
    if secs > MAX_EXPIRY_UNIX_SECONDS {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Anything [`crate::TokenCache`] can hold: a secret value that stops being usable at a known time.
pub trait Expiring: Send + Sync + 'static {
    /// When the value stops being accepted by servers.
    fn expires_at(&self) -> SystemTime;
}

/// An OAuth 2.0 access token.
///
/// Cloning is cheap and never copies the secret: a token is one pointer to a shared value (an
/// atomic reference count), so a cache can hand out a token per request without allocating, and
/// the secret is zeroed when the last clone is dropped. One pointer, not the token's fields
/// inline, because an owned token is what `access_token()` returns on every request: a
/// `Result<AccessToken>` of two words comes back in registers, where one of 48 bytes went
/// through memory and cost more than the cache hit itself (BENCHMARKS.md, "Token paths").
#[derive(Clone)]
pub struct AccessToken {
    inner: Arc<AccessTokenInner>,
}

struct AccessTokenInner {
    token: SecretString,
    token_type: TokenType,
    expires_at: SystemTime,
}

/// The token type: `Bearer` for every Google token, held without a buffer of its own so that
/// making a token (a client-side downscoped one is minted per call) allocates nothing for it.
#[derive(PartialEq, Eq)]
enum TokenType {
    Bearer,
    Other(Arc<str>),
}

impl AccessToken {
    /// A token that expires at `expires_at`. `token_type` is normally `Bearer`.
    pub fn new(token: SecretString, token_type: impl Into<String>, expires_at: SystemTime) -> Self {
        let token_type = token_type.into();
        Self {
            inner: Arc::new(AccessTokenInner {
                token,
                token_type: if token_type == "Bearer" {
                    TokenType::Bearer
                } else {
                    TokenType::Other(Arc::from(token_type))
                },
                expires_at,
            }),
        }
    }

    /// The token itself, for an `Authorization` header. Do not log it.
    #[inline]
    pub fn secret(&self) -> &SecretString {
        &self.inner.token
    }

    /// The token type (`Bearer`).
    pub fn token_type(&self) -> &str {
        match &self.inner.token_type {
            TokenType::Bearer => "Bearer",
            TokenType::Other(name) => name,
        }
    }

    /// When the token expires.
    pub fn expires_at(&self) -> SystemTime {
        self.inner.expires_at
    }

    /// Seconds from now until expiry (0 when already expired).
    pub fn expires_in(&self) -> Duration {
        self.inner
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }

    /// The value of an `Authorization` header: `Bearer <token>`.
    pub fn authorization_header(&self) -> SecretString {
        SecretString::new(format!(
            "{} {}",
            self.token_type(),
            self.inner.token.expose()
        ))
    }

    /// Whether `a` and `b` are clones of one token (the same fetch), not merely equal: lets a
    /// caller keep values derived from a token (ready header values) until the token changes,
    /// with one pointer comparison.
    #[inline]
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }
}

impl PartialEq for AccessToken {
    fn eq(&self, other: &Self) -> bool {
        Self::ptr_eq(self, other)
            || (self.inner.token == other.inner.token
                && self.inner.token_type == other.inner.token_type
                && self.inner.expires_at == other.inner.expires_at)
    }
}

impl Eq for AccessToken {}

impl Expiring for AccessToken {
    fn expires_at(&self) -> SystemTime {
        self.inner.expires_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &self.inner.token)
            .field("token_type", &self.token_type())
            .field("expires_at", &unix_seconds(self.inner.expires_at))
            .finish()
    }
}

/// An OpenID Connect ID token (a signed JWT) for service-to-service calls.
#[derive(Clone, PartialEq, Eq)]
pub struct IdToken {
    token: SecretString,
    expires_at: SystemTime,
}

impl IdToken {
    /// Parses a JWT just far enough to read its `exp` claim; the signature is the audience's business.
    pub fn from_jwt(jwt: SecretString) -> Result<Self> {
        let expires_at = jwt_claim_exp(jwt.expose())?;
        Ok(Self {
            token: jwt,
            expires_at,
        })
    }

    /// The JWT. Do not log it.
    pub fn secret(&self) -> &SecretString {
        &self.token
    }

    /// When the token expires (its `exp` claim).
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

impl Expiring for IdToken {
    fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

impl fmt::Debug for IdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdToken")
            .field("token", &self.token)
            .field("expires_at", &unix_seconds(self.expires_at))
            .finish()
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn jwt_claim_exp(jwt: &str) -> Result<SystemTime> {
    use base64::Engine as _;
    let bad = |what: &str| {
        Error::new(
            ErrorKind::MalformedResponse,
            format!("the ID token is not a valid JWT: {what}"),
        )
    };
    let mut parts = jwt.split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected three dot-separated parts"));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad("the payload is not base64url"))?;
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<serde_json::Value>,
    }
    let claims: Claims =
        serde_json::from_slice(&bytes).map_err(|_| bad("the payload is not a JSON object"))?;
    // A NumericDate is a JSON number (RFC 7519); google-auth refuses a string too.
    match claims.exp {
        Some(serde_json::Value::Number(n)) => {
            let secs = match (n.as_u64(), n.as_f64()) {
                (Some(secs), _) => secs,
                (None, Some(f)) if f < 0.0 => return Err(bad("`exp` is negative")),
                // Saturates for huge values, which `unix_time` then refuses.
                (None, Some(f)) => f as u64,
                (None, None) => u64::MAX,
            };
            unix_time(secs).ok_or_else(|| bad("`exp` is out of range (after the year 9999)"))
        }
        Some(_) => Err(bad("`exp` is not a number")),
        None => Err(bad("no `exp` claim")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn jwt(payload: &str) -> SecretString {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        SecretString::new(format!(
            "{}.{}.c2ln",
            e.encode(r#"{"alg":"RS256"}"#),
            e.encode(payload)
        ))
    }

    #[test]
    fn id_token_expiry_comes_from_exp() {
        let t = IdToken::from_jwt(jwt(r#"{"aud":"x","exp":2000000000}"#)).unwrap();
        assert_eq!(unix_seconds(t.expires_at()), 2_000_000_000);
        assert!(!format!("{t:?}").contains("c2ln"));
    }

    #[test]
    fn malformed_id_tokens_are_typed_errors() {
        for bad in [
            SecretString::from("not-a-jwt"),
            SecretString::from("a.b.c.d"),
            SecretString::from("a.!!!.c"),
            jwt("[1,2]"),
            jwt(r#"{"aud":"x"}"#),
            jwt(r#"{"exp":"soon"}"#),
            jwt(r#"{"exp":-5}"#),
        ] {
            let err = IdToken::from_jwt(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse);
        }
    }

    #[test]
    fn finding_3_huge_or_quoted_jwt_exp_is_a_typed_error_not_a_panic() {
        for (payload, why) in [
            (r#"{"exp":1e300}"#, "out of range"),
            (r#"{"exp":18446744073709551615}"#, "out of range"),
            (r#"{"exp":253402300800}"#, "out of range"),
            (r#"{"exp":1.8e19}"#, "out of range"),
            (r#"{"exp":-1}"#, "negative"),
            (r#"{"exp":-1e300}"#, "negative"),
            (r#"{"exp":"3600"}"#, "not a number"),
        ] {
            let err = IdToken::from_jwt(jwt(payload)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{payload}");
            assert!(err.message().contains(why), "{payload}: {err}");
        }
        let last = IdToken::from_jwt(jwt(r#"{"exp":253402300799}"#)).unwrap();
        assert_eq!(unix_seconds(last.expires_at()), MAX_EXPIRY_UNIX_SECONDS);
        let fractional = IdToken::from_jwt(jwt(r#"{"exp":2000000000.9}"#)).unwrap();
        assert_eq!(unix_seconds(fractional.expires_at()), 2_000_000_000);
    }

    #[test]
    fn finding_3_expiry_arithmetic_is_checked() {
        let now = SystemTime::now();
        assert_eq!(
            expiry_after(now, Duration::from_secs(60)),
            Some(now + Duration::from_secs(60))
        );
        assert!(expiry_after(now, MAX_TOKEN_LIFETIME).is_some());
        assert_eq!(
            expiry_after(now, MAX_TOKEN_LIFETIME + Duration::from_secs(1)),
            None
        );
        assert_eq!(expiry_after(now, Duration::MAX), None);
        assert_eq!(unix_time(u64::MAX), None);
        assert_eq!(unix_time(0), Some(UNIX_EPOCH));
    }

    #[test]
    fn access_token_header_and_debug() {
        let t = AccessToken::new(
            "ya29.abc".into(),
            "Bearer",
            SystemTime::now() + Duration::from_secs(60),
        );
        assert_eq!(t.authorization_header().expose(), "Bearer ya29.abc");
        assert!(!format!("{t:?}").contains("ya29"));
        assert!(t.expires_in() <= Duration::from_secs(60));
    }

    #[test]
    fn access_token_clones_share_the_secret() {
        let expires = SystemTime::now() + Duration::from_secs(60);
        let t = AccessToken::new("ya29.shared".into(), "Bearer", expires);
        let clone = t.clone();
        assert!(AccessToken::ptr_eq(&t, &clone));
        assert_eq!(
            t.secret().expose().as_ptr(),
            clone.secret().expose().as_ptr()
        );
        // Equal values from separate fetches are equal, but not the same token.
        let other = AccessToken::new("ya29.shared".into(), "Bearer", expires);
        assert_eq!(t, other);
        assert!(!AccessToken::ptr_eq(&t, &other));
        assert_ne!(t, AccessToken::new("ya29.other".into(), "Bearer", expires));
        assert!(!format!("{clone:?}").contains("ya29"));
    }

    #[test]
    fn access_token_keeps_any_token_type() {
        let expires = SystemTime::now() + Duration::from_secs(60);
        let t = AccessToken::new("abc".into(), "MAC", expires);
        assert_eq!(t.token_type(), "MAC");
        assert_eq!(t.clone().token_type(), "MAC");
        assert_eq!(t.authorization_header().expose(), "MAC abc");
        assert_ne!(t, AccessToken::new("abc".into(), "Bearer", expires));
        assert_eq!(t, AccessToken::new("abc".into(), "MAC", expires));
        let debug = format!("{t:?}");
        assert!(debug.contains("MAC") && !debug.contains("abc"), "{debug}");
    }
}
