//! Shared pieces of the ADC integration tests: test keys, an emulator configured to accept them,
//! temporary homes, and builders that never look at the real environment or network.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use workload_auth_adc::{Builder, DetectionInput, EnvSource};
use workload_auth_core::{CacheConfig, RetryPolicy};
use workload_auth_emulator::{
    Emulator, EmulatorConfig, IdentityConfig, OAuthClient, RefreshTokenGrant, ServiceAccountKey,
    StsConfig,
};

pub const SA_EMAIL: &str = "key-sa@test-project.iam.gserviceaccount.com";
pub const EC_SA_EMAIL: &str = "ec-key-sa@test-project.iam.gserviceaccount.com";
pub const RSA_KEY_ID: &str = "rsa-key-id-0001";
pub const EC_KEY_ID: &str = "ec-key-id-0001";
pub const TARGET_SA: &str = "target-sa@test-project.iam.gserviceaccount.com";
pub const DELEGATE_SA: &str = "delegate-sa@test-project.iam.gserviceaccount.com";
pub const CLIENT_ID: &str = "test-client.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "test-client-secret";
pub const REFRESH_TOKEN: &str = "1//test-refresh-token";
pub const WF_CLIENT_ID: &str = "workforce-client";
pub const WF_CLIENT_SECRET: &str = "workforce-secret";
pub const WF_REFRESH_TOKEN: &str = "workforce-refresh-token";
pub const WORKLOAD_AUDIENCE: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/test-pool/providers/test-provider";
pub const WORKFORCE_AUDIENCE: &str =
    "//iam.googleapis.com/locations/global/workforcePools/test-wf-pool/providers/test-wf-provider";
pub const SAML_TOKEN: &str = "PHNhbWxwOlJlc3BvbnNlIHRlc3Q9InllcyIvPg==";
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A test key from `tests/keys` (see its README: test keys only).
pub fn key(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// An emulator that trusts the test keys, clients and refresh tokens.
pub fn emulator_config() -> EmulatorConfig {
    EmulatorConfig {
        identity: IdentityConfig {
            service_accounts: vec![
                ServiceAccountKey::from_private_key_pem(
                    SA_EMAIL,
                    Some(RSA_KEY_ID),
                    &key("test_rsa_pkcs8.pem"),
                )
                .unwrap(),
                ServiceAccountKey::from_private_key_pem(
                    EC_SA_EMAIL,
                    Some(EC_KEY_ID),
                    &key("test_ec_p256_pkcs8.pem"),
                )
                .unwrap(),
            ],
            oauth_clients: vec![OAuthClient::new(CLIENT_ID, CLIENT_SECRET)],
            refresh_tokens: vec![
                RefreshTokenGrant::new(REFRESH_TOKEN, CLIENT_ID),
                RefreshTokenGrant::new(WF_REFRESH_TOKEN, WF_CLIENT_ID),
            ],
            sts: StsConfig {
                audiences: vec![WORKLOAD_AUDIENCE.into(), WORKFORCE_AUDIENCE.into()],
                subject_tokens: vec![SAML_TOKEN.into()],
                clients: vec![OAuthClient::new(WF_CLIENT_ID, WF_CLIENT_SECRET)],
                ..StsConfig::default()
            },
            impersonable: vec![TARGET_SA.into(), DELEGATE_SA.into()],
            ..IdentityConfig::default()
        },
        ..EmulatorConfig::default()
    }
}

pub async fn emulator() -> Emulator {
    Emulator::start(emulator_config()).await.unwrap()
}

/// A fresh directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "wa-adc-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `content` to `name` inside, returning the path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn write_json(&self, name: &str, value: &Value) -> PathBuf {
        self.write(name, &serde_json::to_string_pretty(value).unwrap())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Detection that never probes the network and sees no Google Cloud marker.
pub fn no_cloud() -> DetectionInput {
    DetectionInput::with_env_vars::<&str, &str>([])
        .with_dmi_product_name_path("/nonexistent/workload-auth-test/product_name")
        .without_probe()
}

/// Retries that do not make tests slow.
pub fn fast_cache() -> CacheConfig {
    CacheConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        failure_cooldown: Duration::from_millis(50),
        ..CacheConfig::default()
    }
}

/// A builder over exactly `vars` (and `home`); detection sees the same variables, no DMI file
/// and never probes the network.
pub fn builder(home: &TempDir, vars: &[(&str, String)]) -> Builder {
    let env = EnvSource::from_vars(vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())))
        .with_home(home.path());
    let lookup = env.clone();
    let detection = DetectionInput::with_env(move |name| lookup.var(name))
        .with_dmi_product_name_path("/nonexistent/workload-auth-test/product_name")
        .without_probe();
    Builder::new()
        .with_env(env)
        .with_detection(detection)
        .with_cache_config(fast_cache())
        .with_http_timeout(Duration::from_secs(5))
}

/// A builder for exactly this credentials file (through GOOGLE_APPLICATION_CREDENTIALS).
pub fn builder_for(home: &TempDir, file: &Path) -> Builder {
    builder(
        home,
        &[("GOOGLE_APPLICATION_CREDENTIALS", file.display().to_string())],
    )
}

pub fn service_account_json(emu: &Emulator, key_file: &str, email: &str, kid: &str) -> Value {
    json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": kid,
        "private_key": key(key_file),
        "client_email": email,
        "client_id": "111111111111111111111",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("{}/token", emu.url()),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/key-sa",
        "universe_domain": "googleapis.com"
    })
}

pub fn authorized_user_json(emu: &Emulator) -> Value {
    json!({
        "account": "",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "quota_project_id": "user-quota-project",
        "refresh_token": REFRESH_TOKEN,
        "type": "authorized_user",
        "universe_domain": "googleapis.com",
        "token_uri": format!("{}/token", emu.url()),
    })
}

pub fn external_authorized_user_json(emu: &Emulator) -> Value {
    json!({
        "type": "external_account_authorized_user",
        "audience": WORKFORCE_AUDIENCE,
        "client_id": WF_CLIENT_ID,
        "client_secret": WF_CLIENT_SECRET,
        "refresh_token": WF_REFRESH_TOKEN,
        "token_url": format!("{}/v1/oauth/token", emu.url()),
        "token_info_url": format!("{}/v1/introspect", emu.url()),
        "quota_project_id": "wf-quota-project",
        "universe_domain": "googleapis.com"
    })
}

pub fn impersonation_url(emu: &Emulator, email: &str) -> String {
    format!(
        "{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
        emu.url()
    )
}

/// The claims of a JWT, after checking its RS256 signature with the emulator's key.
pub fn verified_claims(emu: &Emulator, jwt: &str) -> Value {
    let (signed, sig) = jwt.rsplit_once('.').unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        emu.id_token_public_key_der(),
    )
    .verify(signed.as_bytes(), &sig)
    .expect("the ID token is signed by the emulator");
    claims(jwt)
}

/// The claims of a JWT, unverified.
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// The header of a JWT.
pub fn header(jwt: &str) -> Value {
    let part = jwt.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// A client certificate for X.509 federation: a root, and a leaf (client auth, no basic
/// constraints) chained to it.
pub struct X509Client {
    pub root_der: Vec<u8>,
    pub chain_pem: String,
    pub key_pem: String,
}

/// Issues an [`X509Client`] with rcgen. (The emulator's SPIFFE CA marks leaves with an explicit
/// `cA FALSE`, which strict DER parsers such as Python's `cryptography` refuse.)
pub fn x509_client(name: &str) -> X509Client {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    let root_key = KeyPair::generate().unwrap();
    let mut root = CertificateParams::default();
    root.distinguished_name
        .push(DnType::CommonName, format!("{name} test root"));
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root.self_signed(&root_key).unwrap();
    let issuer = Issuer::new(root, root_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{name} workload"));
    leaf.subject_alt_names = vec![SanType::URI(
        format!("spiffe://{name}/ns/default/sa/app")
            .try_into()
            .unwrap(),
    )];
    leaf.is_ca = IsCa::NoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let leaf_cert = leaf.signed_by(&key, &issuer).unwrap();
    X509Client {
        root_der: root_cert.der().to_vec(),
        chain_pem: leaf_cert.pem(),
        key_pem: key.serialize_pem(),
    }
}
