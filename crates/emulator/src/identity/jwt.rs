//! Decoding and verifying compact JWS tokens (RS256, ES256).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::{Map, Value};

use super::config::PublicKey;

/// A JWT split into its parts; the signature is not checked yet.
#[derive(Debug)]
pub(crate) struct Jwt<'a> {
    pub(crate) header: Map<String, Value>,
    pub(crate) claims: Map<String, Value>,
    signed: &'a str,
    signature: Vec<u8>,
}

impl<'a> Jwt<'a> {
    /// Splits and decodes `token`; `Err` says what is wrong with it.
    pub(crate) fn decode(token: &'a str) -> Result<Self, &'static str> {
        let token = token.trim();
        let (signed, signature) = token.rsplit_once('.').ok_or("not a JWT")?;
        let (header, claims) = signed.split_once('.').ok_or("not a JWT")?;
        let part = |p: &str| -> Result<Map<String, Value>, &'static str> {
            let bytes = URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .map_err(|_| "a JWT part is not base64url")?;
            match serde_json::from_slice(&bytes) {
                Ok(Value::Object(map)) => Ok(map),
                _ => Err("a JWT part is not a JSON object"),
            }
        };
        Ok(Self {
            header: part(header)?,
            claims: part(claims)?,
            signed,
            signature: URL_SAFE_NO_PAD
                .decode(signature.trim_end_matches('='))
                .map_err(|_| "the JWT signature is not base64url")?,
        })
    }

    pub(crate) fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    pub(crate) fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    pub(crate) fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    pub(crate) fn claim_u64(&self, name: &str) -> Option<u64> {
        self.claims.get(name).and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        })
    }

    /// Whether the signature verifies with `key` under the header's algorithm.
    pub(crate) fn verify(&self, key: &PublicKey) -> bool {
        match (self.alg(), key) {
            (Some("RS256"), PublicKey::Rsa(der)) => {
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
                    .verify(self.signed.as_bytes(), &self.signature)
                    .is_ok()
            }
            (Some("ES256"), PublicKey::EcP256(point)) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(self.signed.as_bytes(), &self.signature)
                    .is_ok()
            }
            _ => false,
        }
    }

    /// Checks `iat`/`exp`: present, `iat` not in the future (60 s of skew allowed), not expired,
    /// and at most `max_lifetime` seconds long.
    pub(crate) fn check_times(&self, now: u64, max_lifetime: u64) -> Result<(), &'static str> {
        let iat = self.claim_u64("iat").ok_or("Invalid JWT: missing iat")?;
        let exp = self.claim_u64("exp").ok_or("Invalid JWT: missing exp")?;
        if iat > now + 60 {
            return Err(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            );
        }
        if exp <= now {
            return Err(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            );
        }
        if exp.saturating_sub(iat) > max_lifetime {
            return Err(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            );
        }
        Ok(())
    }
}
