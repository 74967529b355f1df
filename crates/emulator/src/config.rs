//! What the emulated VM looks like: its service account, project, universe and server limits.

use std::time::Duration;

use workload_auth_core::SecretString;

/// The identity and behaviour of the emulated metadata server.
///
/// Build it with struct-update syntax so new fields never break callers:
///
/// ```
/// use workload_auth_emulator::EmulatorConfig;
/// let config = EmulatorConfig {
///     project_id: "my-project".into(),
///     universe_domain: Some("example-universe.test".into()),
///     ..EmulatorConfig::default()
/// };
/// assert_eq!(config.email, "default-sa@emulated-project.iam.gserviceaccount.com");
/// ```
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// The attached service account (`instance/service-accounts/default/email`).
    pub email: String,
    /// The scopes of the attached service account, also the scopes of tokens issued without `?scopes=`.
    pub scopes: Vec<String>,
    /// `project/project-id`.
    pub project_id: String,
    /// `project/numeric-project-id`.
    pub numeric_project_id: u64,
    /// `universe/universe-domain`; `None` answers 404, which clients read as `googleapis.com`.
    pub universe_domain: Option<String>,
    /// The `expires_in` of issued access tokens.
    pub token_lifetime: Duration,
    /// The lifetime (`exp - iat`) of issued ID tokens.
    pub id_token_lifetime: Duration,
    /// The service account's numeric unique id: the `sub` and `azp` claims of ID tokens.
    pub unique_id: String,
    /// `instance/id`.
    pub instance_id: u64,
    /// `instance/name`.
    pub instance_name: String,
    /// The zone name (`us-central1-a`); `instance/zone` answers `projects/NUMBER/zones/ZONE`.
    pub zone: String,
    /// What the `instance/gce-workload-certificates/*` endpoints serve; `None` answers 404 with
    /// `workload certificate feature not enabled`, as a VM without managed workload identity does.
    pub workload_certificates: Option<WorkloadCertificates>,
    /// Limits that protect the server from slow or hostile clients.
    pub limits: Limits,
    /// The OAuth, STS, IAM and AWS endpoints: which keys, clients and tokens they accept.
    pub identity: crate::identity::IdentityConfig,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            email: "default-sa@emulated-project.iam.gserviceaccount.com".into(),
            scopes: vec!["https://www.googleapis.com/auth/cloud-platform".into()],
            project_id: "emulated-project".into(),
            numeric_project_id: 123_456_789_012,
            universe_domain: None,
            token_lifetime: Duration::from_secs(3599),
            id_token_lifetime: Duration::from_secs(3600),
            unique_id: "109876543210987654321".into(),
            instance_id: 4_520_031_799_277_581_759,
            instance_name: "emulated-instance".into(),
            zone: "us-central1-a".into(),
            workload_certificates: None,
            limits: Limits::default(),
            identity: crate::identity::IdentityConfig::default(),
        }
    }
}

impl EmulatorConfig {
    /// `NAME.ZONE.c.PROJECT.internal`, what `instance/hostname` answers.
    pub fn hostname(&self) -> String {
        format!(
            "{}.{}.c.{}.internal",
            self.instance_name, self.zone, self.project_id
        )
    }
}

/// The bodies of the three `instance/gce-workload-certificates/*` endpoints.
///
/// The bodies are served verbatim, so a test can hand out malformed JSON on purpose.
/// [`WorkloadCertificates::from_pem`] builds well-formed bodies from PEM material.
#[derive(Clone, Debug)]
pub struct WorkloadCertificates {
    /// `workload-identities`: holds a private key, hence secret.
    pub workload_identities: SecretString,
    /// `trust-anchors`.
    pub trust_anchors: String,
    /// `config-status`.
    pub config_status: String,
}

impl WorkloadCertificates {
    /// The bodies the real server gives for one workload identity:
    /// `{"status":"OK","workloadCredentials":{SPIFFE_ID:{"certificatePem","privateKeyPem"}}}`,
    /// `{"trustAnchors":{TRUST_DOMAIN:{"trustAnchorsPem"}}}` and an error-free config status.
    ///
    /// `certificate_chain_pem` is the leaf first, then intermediates; `trust_anchors` pairs bare
    /// trust domains (no `spiffe://`) with their root certificates in PEM.
    pub fn from_pem<'a>(
        spiffe_id: &str,
        certificate_chain_pem: &str,
        private_key_pem: &SecretString,
        trust_anchors: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let identities = serde_json::json!({
            "status": "OK",
            "workloadCredentials": {
                spiffe_id: {
                    "certificatePem": certificate_chain_pem,
                    "privateKeyPem": private_key_pem.expose(),
                }
            }
        });
        let anchors: serde_json::Map<String, serde_json::Value> = trust_anchors
            .into_iter()
            .map(|(domain, pem)| {
                (
                    domain.to_owned(),
                    serde_json::json!({ "trustAnchorsPem": pem }),
                )
            })
            .collect();
        Self {
            workload_identities: SecretString::new(identities.to_string()),
            trust_anchors: serde_json::json!({ "trustAnchors": anchors }).to_string(),
            config_status: serde_json::json!({ "partnerMetadataConfigsErrors": {} }).to_string(),
        }
    }
}

/// Limits on what one client may make the server do.
///
/// Read when a connection is accepted (`max_connections` only when the emulator starts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request line plus headers, in bytes (431 beyond it).
    pub max_head_bytes: usize,
    /// Most request headers (431 beyond it).
    pub max_headers: usize,
    /// Largest request body, in bytes (413 beyond it).
    pub max_body_bytes: usize,
    /// Time allowed to send a whole request once its first byte arrived (408 after it).
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept open.
    pub idle_timeout: Duration,
    /// Time allowed to write a response to a client that does not read.
    pub write_timeout: Duration,
    /// Most connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}
