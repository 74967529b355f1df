//! Signing JWTs with a service-account key, with ring.
//!
//! Service-account key files hold an RSA key (PKCS#8 `PRIVATE KEY`, as Google issues them, or
//! PKCS#1 `RSA PRIVATE KEY`) or an EC P-256 key (PKCS#8 or SEC1 `EC PRIVATE KEY`). RSA keys sign
//! RS256, P-256 keys ES256 (the fixed-length `r || s` signature JWS requires).
//!
//! The PEM is decoded here by hand rather than with a general PEM reader (such as
//! rustls-pki-types'): this way the base64 text and the decoded DER only ever live in `Zeroizing`
//! buffers that are wiped when dropped, a SEC1 key is wrapped into PKCS#8 (what ring loads) in
//! such a buffer too, and a refused key (encrypted, a certificate, no END line) gets an error
//! saying which it is, without quoting the key.
//!
//! ```
//! # fn main() -> workload_auth_core::Result<()> {
//! # let pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/test_ec_p256_pkcs8.pem")).unwrap();
//! use workload_auth_adc::signing::{Algorithm, JwtSigner};
//! let signer = JwtSigner::from_pem(&pem.into(), Some("key-1".into()))?;
//! assert_eq!(signer.algorithm(), Algorithm::Es256);
//! let jwt = signer.sign(&serde_json::json!({"iss": "sa@p.iam.gserviceaccount.com"}))?;
//! assert_eq!(jwt.expose().split('.').count(), 3);
//! # Ok(()) }
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use workload_auth_core::{Error, ErrorKind, Result, SecretString};
use zeroize::Zeroizing;

/// The JWS algorithm a key signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

impl Algorithm {
    /// `RS256` or `ES256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }
}

enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private key that signs JWTs, with the key id put in their header.
pub struct JwtSigner {
    key: Key,
    key_id: Option<String>,
    rng: SystemRandom,
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigner")
            .field("algorithm", &self.algorithm())
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn bad_key(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidCredentials, message)
}

/// One PEM block: its label and DER content.
struct PemBlock {
    label: String,
    der: Zeroizing<Vec<u8>>,
}

/// The first PEM block of `text`.
fn first_pem_block(text: &str) -> Result<PemBlock> {
    let start = text.find("-----BEGIN ").ok_or_else(|| {
        bad_key("the private key is not PEM (no \"-----BEGIN\" line)")
            .with_hint("use the `private_key` of a service-account key file as downloaded")
    })?;
    let after = &text[start + "-----BEGIN ".len()..];
    let label_end = after
        .find("-----")
        .ok_or_else(|| bad_key("the private key's PEM header is malformed"))?;
    let label = after[..label_end].to_owned();
    if ![
        "PRIVATE KEY",
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
    ]
    .contains(&label.as_str())
    {
        return Err(bad_key(format!(
            "the PEM block is a {:?}, not a private key",
            label.chars().take(40).collect::<String>()
        )));
    }
    let body_and_rest = &after[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body_and_rest
        .find(&end_marker)
        .ok_or_else(|| bad_key(format!("the {label} PEM block has no END line")))?;
    let b64: Zeroizing<String> = Zeroizing::new(
        body_and_rest[..body_end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
    );
    let der = STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| bad_key(format!("the {label} PEM block is not valid base64")))?;
    Ok(PemBlock {
        label,
        der: Zeroizing::new(der),
    })
}

/// DER of a definite length. (`workload-api`'s DER writer has the same eight lines on purpose:
/// the crates share only `core`, and a DER helper there would be public API for this alone.)
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Wraps a SEC1 `ECPrivateKey` of a P-256 key into PKCS#8, which ring reads.
fn sec1_p256_to_pkcs8(sec1: &[u8]) -> Zeroizing<Vec<u8>> {
    // AlgorithmIdentifier { id-ecPublicKey, prime256v1 }
    const ALG: [u8; 21] = [
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let mut inner = Zeroizing::new(Vec::with_capacity(sec1.len() + 32));
    inner.extend_from_slice(&[0x02, 0x01, 0x00]);
    inner.extend_from_slice(&ALG);
    inner.push(0x04);
    der_len(sec1.len(), &mut inner);
    inner.extend_from_slice(sec1);
    let mut out = Zeroizing::new(Vec::with_capacity(inner.len() + 4));
    out.push(0x30);
    der_len(inner.len(), &mut out);
    out.extend_from_slice(&inner);
    out
}

impl JwtSigner {
    /// Reads a PEM private key (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`).
    /// `key_id` goes into the `kid` header of every JWT.
    ///
    /// Errors are [`ErrorKind::InvalidCredentials`] saying what the key is and why it is refused;
    /// they never contain key material.
    pub fn from_pem(pem: &SecretString, key_id: Option<String>) -> Result<Self> {
        let block = first_pem_block(pem.expose())?;
        let rng = SystemRandom::new();
        let key = match block.label.as_str() {
            "PRIVATE KEY" => match RsaKeyPair::from_pkcs8(&block.der) {
                Ok(rsa) => Key::Rsa(rsa),
                Err(rsa_err) => {
                    match EcdsaKeyPair::from_pkcs8(
                        &ECDSA_P256_SHA256_FIXED_SIGNING,
                        &block.der,
                        &rng,
                    ) {
                        Ok(ec) => Key::Ec(ec),
                        Err(ec_err) => {
                            return Err(bad_key(format!(
                                "the PKCS#8 private key is neither a usable RSA key ({rsa_err}) \
                                 nor an EC P-256 key ({ec_err})"
                            ))
                            .with_hint(
                                "service-account keys are RSA (2048 bits or more) or EC P-256",
                            ));
                        }
                    }
                }
            },
            "RSA PRIVATE KEY" => Key::Rsa(RsaKeyPair::from_der(&block.der).map_err(|e| {
                bad_key(format!("the PKCS#1 RSA private key is refused: {e}"))
                    .with_hint("RSA keys must be 2048 to 8192 bits")
            })?),
            "EC PRIVATE KEY" => {
                let pkcs8 = sec1_p256_to_pkcs8(&block.der);
                Key::Ec(
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
                        .map_err(|e| {
                            bad_key(format!(
                                "the EC private key is refused: {e} (only P-256 keys that \
                                 include their public key are supported)"
                            ))
                        })?,
                )
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(bad_key("the private key is encrypted")
                    .with_hint("service-account key files hold unencrypted PKCS#8 keys"));
            }
            other => {
                return Err(bad_key(format!(
                    "the PEM block is a {other:?}, not a private key"
                )));
            }
        };
        Ok(Self { key, key_id, rng })
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self.key {
            Key::Rsa(_) => Algorithm::Rs256,
            Key::Ec(_) => Algorithm::Es256,
        }
    }

    /// The `kid` put in JWT headers.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// The raw signature of `message` (PKCS#1 v1.5 for RSA, `r || s` for P-256).
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>> {
        let failed = || {
            Error::new(
                ErrorKind::InvalidCredentials,
                "signing with the private key failed",
            )
        };
        match &self.key {
            Key::Rsa(key) => {
                let mut sig = vec![0u8; key.public().modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
                    .map_err(|_| failed())?;
                Ok(sig)
            }
            Key::Ec(key) => key
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| failed()),
        }
    }

    /// A compact JWS of `claims` with header `{"alg","typ":"JWT","kid"}`.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<SecretString> {
        let mut header = serde_json::Map::new();
        header.insert("alg".into(), self.algorithm().as_str().into());
        header.insert("typ".into(), "JWT".into());
        if let Some(kid) = &self.key_id {
            header.insert("kid".into(), kid.clone().into());
        }
        let header = serde_json::Value::Object(header).to_string();
        let claims = claims.to_string();
        let mut jwt = String::with_capacity((header.len() + claims.len()) * 4 / 3 + 360 + 8);
        URL_SAFE_NO_PAD.encode_string(header.as_bytes(), &mut jwt);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(claims.as_bytes(), &mut jwt);
        let signature = self.sign_bytes(jwt.as_bytes())?;
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut jwt);
        Ok(SecretString::new(jwt))
    }

    /// The public key: PKCS#1 `RSAPublicKey` DER for RSA, the uncompressed point for P-256 (the
    /// forms `ring::signature::UnparsedPublicKey` verifies with).
    pub fn public_key(&self) -> Vec<u8> {
        use ring::signature::KeyPair as _;
        match &self.key {
            Key::Rsa(key) => key.public().as_ref().to_vec(),
            Key::Ec(key) => key.public_key().as_ref().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    fn key(name: &str) -> SecretString {
        let path = format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"));
        SecretString::new(std::fs::read_to_string(path).unwrap())
    }

    fn verify(signer: &JwtSigner, jwt: &str) {
        let (signed, sig) = jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let public = signer.public_key();
        match signer.algorithm() {
            Algorithm::Rs256 => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
                .verify(signed.as_bytes(), &sig)
                .unwrap(),
            Algorithm::Es256 => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
                .verify(signed.as_bytes(), &sig)
                .unwrap(),
        }
    }

    #[test]
    fn every_key_form_signs_verifiable_jwts() {
        for (file, alg) in [
            ("test_rsa_pkcs8.pem", Algorithm::Rs256),
            ("test_rsa_pkcs1.pem", Algorithm::Rs256),
            ("test_ec_p256_pkcs8.pem", Algorithm::Es256),
            ("test_ec_p256_sec1.pem", Algorithm::Es256),
        ] {
            let signer = JwtSigner::from_pem(&key(file), Some("kid-1".into())).unwrap();
            assert_eq!(signer.algorithm(), alg, "{file}");
            let jwt = signer.sign(&serde_json::json!({"a": 1})).unwrap();
            verify(&signer, jwt.expose());
            let header = jwt.expose().split('.').next().unwrap();
            let header: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["kid"], "kid-1");
            assert_eq!(header["typ"], "JWT");
            assert!(!format!("{signer:?}").contains("BEGIN"));
        }
        let pkcs8 = JwtSigner::from_pem(&key("test_rsa_pkcs8.pem"), None).unwrap();
        let pkcs1 = JwtSigner::from_pem(&key("test_rsa_pkcs1.pem"), None).unwrap();
        assert_eq!(
            pkcs8.public_key(),
            pkcs1.public_key(),
            "same key, two encodings"
        );
    }

    #[test]
    fn things_that_are_not_keys_are_refused_clearly() {
        for (text, needle) in [
            ("", "not PEM"),
            ("hello", "not PEM"),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n", "no END line"),
            (
                "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
                "not valid base64",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "neither a usable RSA key",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "\"CERTIFICATE\", not a private key",
            ),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "encrypted",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                "PKCS#1",
            ),
            (
                "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
                "EC private key is refused",
            ),
        ] {
            let err = JwtSigner::from_pem(&text.into(), None).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
            assert!(err.message().contains(needle), "{needle}: {err}");
        }
        // An RSA key mislabelled as an EC key is the wrong kind of key.
        let rsa = key("test_rsa_pkcs1.pem");
        let relabelled = rsa.expose().replace("RSA PRIVATE KEY", "EC PRIVATE KEY");
        let err = JwtSigner::from_pem(&relabelled.into(), None).unwrap_err();
        assert!(err.message().contains("EC private key is refused"), "{err}");
    }

    #[test]
    fn sec1_wrapping_produces_valid_der_lengths() {
        let mut out = Vec::new();
        der_len(5, &mut out);
        der_len(0x80, &mut out);
        der_len(0x1234, &mut out);
        assert_eq!(out, [5, 0x81, 0x80, 0x82, 0x12, 0x34]);
    }
}
