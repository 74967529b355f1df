//! A string that never prints itself.

use std::fmt;

use zeroize::Zeroize;

/// A secret string: access tokens, refresh tokens, private keys, client secrets.
///
/// `Debug` and `Display` print `[redacted]`; the bytes are zeroed when the value is dropped. The only
/// way to read the secret is [`SecretString::expose`], which makes every use visible in review.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `value`, taking ownership so no unzeroed copy is left behind by this call.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes (safe to log).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let s = SecretString::from("ya29.very-secret");
        assert_eq!(format!("{s}"), "[redacted]");
        assert!(!format!("{s:?}").contains("ya29"));
        assert!(!format!("{:?}", Some(&s)).contains("secret"));
        assert_eq!(s.expose(), "ya29.very-secret");
        assert_eq!(s.len(), 16);
    }

    #[test]
    fn deserializes_from_a_json_string() {
        let s: SecretString = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(s.expose(), "abc");
        assert!(serde_json::from_str::<SecretString>("12").is_err());
    }
}
