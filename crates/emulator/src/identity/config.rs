//! What the identity endpoints accept: service-account keys, OAuth clients and refresh tokens,
//! STS audiences and subject tokens, AWS credentials.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use workload_auth_core::{Error, ErrorKind, Result, SecretString};

/// The identity side of the emulator. The default accepts nothing but what the metadata server
/// issues: add service accounts, clients and refresh tokens for the credential types under test.
///
/// ```
/// use workload_auth_emulator::{EmulatorConfig, IdentityConfig, OAuthClient, RefreshTokenGrant};
/// let config = EmulatorConfig {
///     identity: IdentityConfig {
///         oauth_clients: vec![OAuthClient::new("client-1", "secret-1")],
///         refresh_tokens: vec![RefreshTokenGrant::new("1//refresh", "client-1")],
///         ..IdentityConfig::default()
///     },
///     ..EmulatorConfig::default()
/// };
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// Keys whose JWTs the OAuth token endpoint accepts (JWT-bearer grant) and the IAM endpoints
    /// accept as self-signed bearer tokens (AIP-4111).
    pub service_accounts: Vec<ServiceAccountKey>,
    /// Clients of the refresh-token grant (`/token` and `/v1/oauth/token`).
    pub oauth_clients: Vec<OAuthClient>,
    /// Refresh tokens the token endpoints accept.
    pub refresh_tokens: Vec<RefreshTokenGrant>,
    /// The Security Token Service.
    pub sts: StsConfig,
    /// The AWS-style instance metadata and the AWS credentials STS verifies signatures with.
    pub aws: AwsConfig,
    /// Service accounts IAM lets callers impersonate, besides the metadata server's account and
    /// those of [`IdentityConfig::service_accounts`].
    pub impersonable: Vec<String>,
    /// The longest lifetime `generateAccessToken` grants (Google: 1 h, or 12 h with an
    /// organization policy).
    pub max_impersonation_lifetime: Duration,
    /// What regional access boundary lookups answer.
    pub allowed_locations: super::AllowedLocations,
    /// Projects Cloud Resource Manager knows by number (`(number, project id)`), besides the
    /// VM's own.
    pub projects: Vec<(String, String)>,
}

impl IdentityConfig {
    /// The configured service-account key of `email`, if any.
    pub(crate) fn service_account(&self, email: &str) -> Option<&ServiceAccountKey> {
        self.service_accounts.iter().find(|a| a.email == email)
    }
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            service_accounts: Vec::new(),
            oauth_clients: Vec::new(),
            refresh_tokens: Vec::new(),
            sts: StsConfig::default(),
            aws: AwsConfig::default(),
            impersonable: Vec::new(),
            max_impersonation_lifetime: Duration::from_secs(3600),
            allowed_locations: super::AllowedLocations::default(),
            projects: Vec::new(),
        }
    }
}

/// A service account's public key.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// An RSA key (RS256): PKCS#1 `RSAPublicKey` DER.
    Rsa(Vec<u8>),
    /// An EC P-256 key (ES256): the uncompressed point.
    EcP256(Vec<u8>),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa(der) => write!(f, "Rsa({} bytes)", der.len()),
            Self::EcP256(point) => write!(f, "EcP256({} bytes)", point.len()),
        }
    }
}

/// A service account and the public half of one of its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountKey {
    /// `NAME@PROJECT.iam.gserviceaccount.com`.
    pub email: String,
    /// The key id (`private_key_id` of the key file); when set, JWT headers must carry it as `kid`.
    pub key_id: Option<String>,
    /// The public key.
    pub public_key: PublicKey,
    /// The account's numeric id: `sub` and `azp` of the ID tokens issued for it.
    pub unique_id: String,
}

impl ServiceAccountKey {
    /// The public half of a PEM private key (`PRIVATE KEY` RSA or P-256, `RSA PRIVATE KEY`).
    pub fn from_private_key_pem(email: &str, key_id: Option<&str>, pem: &str) -> Result<Self> {
        let bad = |what: &str| {
            Error::new(
                ErrorKind::InvalidCredentials,
                format!("emulator service-account key: {what}"),
            )
        };
        let (label, body) = pem
            .split_once("-----BEGIN ")
            .and_then(|(_, rest)| rest.split_once("-----"))
            .ok_or_else(|| bad("not PEM"))?;
        let end = format!("-----END {label}-----");
        let b64: String = body
            .split_once(&end)
            .ok_or_else(|| bad("no END line"))?
            .0
            .split_whitespace()
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad("bad base64"))?;
        let public_key = match label {
            "PRIVATE KEY" => match RsaKeyPair::from_pkcs8(&der) {
                Ok(key) => PublicKey::Rsa(key.public().as_ref().to_vec()),
                Err(_) => {
                    let rng = ring::rand::SystemRandom::new();
                    let key =
                        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                            .map_err(|_| bad("neither RSA nor P-256"))?;
                    PublicKey::EcP256(key.public_key().as_ref().to_vec())
                }
            },
            "RSA PRIVATE KEY" => PublicKey::Rsa(
                RsaKeyPair::from_der(&der)
                    .map_err(|_| bad("bad PKCS#1 key"))?
                    .public()
                    .as_ref()
                    .to_vec(),
            ),
            other => return Err(bad(&format!("unsupported PEM label {other}"))),
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, email.as_bytes());
        let unique_id = digest.as_ref()[..8]
            .iter()
            .fold(1u64, |acc, b| {
                acc.wrapping_mul(257).wrapping_add(u64::from(*b))
            })
            .to_string();
        Ok(Self {
            email: email.to_owned(),
            key_id: key_id.map(str::to_owned),
            public_key,
            unique_id,
        })
    }
}

/// An OAuth client (the `client_id` / `client_secret` of a refresh-token grant, or HTTP Basic
/// authentication at STS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClient {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
}

impl OAuthClient {
    /// A client.
    pub fn new(client_id: &str, client_secret: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: client_secret.into(),
        }
    }
}

/// A refresh token, the client it was issued to, and the scopes it grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshTokenGrant {
    /// The refresh token.
    pub refresh_token: SecretString,
    /// The client it belongs to.
    pub client_id: String,
    /// What access tokens from it may be scoped to (and what they get without `scope`).
    pub scopes: Vec<String>,
    /// Answer with a new refresh token on each use (as workforce identity federation may).
    pub rotate: bool,
}

impl RefreshTokenGrant {
    /// A grant of `cloud-platform` and `userinfo.email` to `client_id`.
    pub fn new(refresh_token: &str, client_id: &str) -> Self {
        Self {
            refresh_token: refresh_token.into(),
            client_id: client_id.to_owned(),
            scopes: vec![
                "https://www.googleapis.com/auth/cloud-platform".to_owned(),
                "https://www.googleapis.com/auth/userinfo.email".to_owned(),
            ],
            rotate: false,
        }
    }
}

/// What the Security Token Service accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsConfig {
    /// Accepted audiences (workload identity pool providers); empty accepts any audience of the
    /// form `//iam.googleapis.com/...`.
    pub audiences: Vec<String>,
    /// Opaque subject tokens accepted as they are (SAML assertions, tokens of other issuers).
    /// JWTs signed by the emulator's own key are always accepted while unexpired.
    pub subject_tokens: Vec<SecretString>,
    /// Clients that may authenticate with HTTP Basic; a client that authenticates must be one.
    pub clients: Vec<OAuthClient>,
    /// The `sub` of tokens from `/external/oidc-token`.
    pub external_subject: String,
    /// The AES-GCM key length (16 or 32 bytes) of the session keys issued with intermediary
    /// tokens for client-side downscoping; each intermediary gets a fresh random key.
    pub session_key_bytes: usize,
}

impl Default for StsConfig {
    fn default() -> Self {
        Self {
            audiences: Vec::new(),
            subject_tokens: Vec::new(),
            clients: Vec::new(),
            external_subject: "emulated-external-workload".to_owned(),
            session_key_bytes: 32,
        }
    }
}

/// The AWS side: instance metadata (region, role credentials, IMDSv2 sessions), and the
/// credentials STS checks `GetCallerIdentity` signatures against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsConfig {
    /// The region; the availability zone served is this plus `b`.
    pub region: String,
    /// The role name served at `iam/security-credentials`.
    pub role_name: String,
    /// The access key id of the role (and of signatures STS accepts).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// The session token of the role's temporary credentials.
    pub session_token: Option<SecretString>,
    /// Require an IMDSv2 session token on metadata requests (401 without one).
    pub require_imdsv2: bool,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: "us-east-2".to_owned(),
            role_name: "emulated-role".to_owned(),
            access_key_id: "ASIAEMULATEDACCESSKEY".to_owned(),
            secret_access_key: "emulated/secret/access/key/not+a+real+one".into(),
            session_token: Some("emulated-session-token//abc+=".into()),
            require_imdsv2: true,
        }
    }
}
