//! The RS256 key the emulator signs ID tokens with, and its public forms (JWKS and PEM).
//!
//! The private key is fixed and shipped in the source (`id_token_signing_key.pem`). That is on
//! purpose: an emulator's key is public knowledge, so nothing it signs can pass for a Google token
//! anywhere that trusts Google's keys, and every run signs with the same key. `ring` cannot generate
//! RSA keys, and ID tokens from the metadata server are RS256, so a shipped key is also the simplest
//! way to sign them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents};
use serde_json::{Value, json};
use workload_auth_core::{Error, ErrorKind, Result};

/// PKCS#8 RSA-2048 key, public by design (see the module documentation).
const SIGNING_KEY_PEM: &str = include_str!("id_token_signing_key.pem");

/// Signs JWTs with the emulator's RS256 key.
pub(crate) struct IdTokenSigner {
    key: RsaKeyPair,
    rng: SystemRandom,
    kid: String,
    /// PKCS#1 `RSAPublicKey` DER.
    public_der: Vec<u8>,
    jwks: Value,
    pem_certs: Value,
}

impl fmt::Debug for IdTokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl IdTokenSigner {
    pub(crate) fn new() -> Result<Self> {
        let der = pem_body(SIGNING_KEY_PEM, "PRIVATE KEY")?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| {
            Error::new(
                ErrorKind::InvalidCredentials,
                format!("emulator ID-token signing key rejected: {e}"),
            )
        })?;
        let public_der = key.public().as_ref().to_vec();
        let digest = ring::digest::digest(&ring::digest::SHA256, &public_der);
        let kid: String = digest.as_ref()[..20]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let components = RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
        let jwks = json!({
            "keys": [{
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(&components.n),
                "e": URL_SAFE_NO_PAD.encode(&components.e),
            }]
        });
        let pem_certs =
            json!({ kid.clone(): crate::ca::pem_encode("RSA PUBLIC KEY", &public_der) });
        Ok(Self {
            key,
            rng: SystemRandom::new(),
            kid,
            public_der,
            jwks,
            pem_certs,
        })
    }

    /// A compact JWS of `claims`, header `{"alg":"RS256","kid":KID,"typ":"JWT"}`.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String> {
        let header = json!({ "alg": "RS256", "kid": self.kid, "typ": "JWT" });
        let mut jwt = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, jwt.as_bytes(), &mut signature)
            .map_err(|_| Error::new(ErrorKind::Verification, "RS256 signing failed"))?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }

    /// An RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of `bytes`, as IAM's `signBlob`
    /// answers: it verifies with the key the JWKS publishes under [`IdTokenSigner::kid`].
    pub(crate) fn sign_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, bytes, &mut signature)
            .map_err(|_| Error::new(ErrorKind::Verification, "RS256 signing failed"))?;
        Ok(signature)
    }

    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// `{"keys":[{"kty":"RSA","alg":"RS256","use":"sig","kid","n","e"}]}`.
    pub(crate) fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// `{KID: "-----BEGIN RSA PUBLIC KEY-----..."}`.
    pub(crate) fn pem_certs(&self) -> &Value {
        &self.pem_certs
    }

    pub(crate) fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }
}

/// The DER inside the first PEM block labelled `label`.
fn pem_body(pem: &str, label: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = pem
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(body, _)| body)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidCredentials,
                format!("no {label} PEM block in the emulator signing key"),
            )
        })?;
    let b64: String = body.split_whitespace().collect();
    STANDARD.decode(b64).map_err(|e| {
        Error::new(
            ErrorKind::InvalidCredentials,
            "emulator signing key is not valid base64",
        )
        .with_source(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    #[test]
    fn signatures_verify_with_the_published_key() {
        let signer = IdTokenSigner::new().unwrap();
        let jwt = signer.sign(&json!({"aud": "x"})).unwrap();
        let (signed, sig) = jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, signer.public_key_der())
            .verify(signed.as_bytes(), &sig)
            .unwrap();
        let key = &signer.jwks()["keys"][0];
        assert_eq!(key["kid"], signer.kid());
        assert_eq!(key["e"], "AQAB");
        assert_eq!(signer.kid().len(), 40);
        let pem = signer.pem_certs()[signer.kid()].as_str().unwrap();
        assert_eq!(
            pem_body(pem, "RSA PUBLIC KEY").unwrap(),
            signer.public_key_der()
        );
    }
}
