//! Why these credentials: every place Application Default Credentials looked, what it found, and
//! where the project id, quota project and universe domain came from.

use std::fmt;

use serde::Serialize;

use crate::kinds::CredentialType;

/// What one step of the search found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// This step decided: its credentials (or value) are the ones used.
    Chosen,
    /// Nothing here; the search went on.
    NotFound,
    /// Something was here but unusable; the search stopped with an error.
    Failed,
    /// Not looked at, because an earlier step decided.
    NotTried,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Chosen => "chosen",
            Self::NotFound => "not found",
            Self::Failed => "failed",
            Self::NotTried => "not tried",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One place looked at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What was looked at: `GOOGLE_APPLICATION_CREDENTIALS`, `gcloud credentials file`,
    /// `metadata server`, `GOOGLE_CLOUD_PROJECT`, ...
    pub name: String,
    /// The file, variable value or host, when there is one.
    pub place: Option<String>,
    /// What was found.
    pub outcome: Outcome,
    /// Details in words.
    pub detail: String,
}

impl Step {
    pub(crate) fn new(
        name: impl Into<String>,
        place: Option<String>,
        outcome: Outcome,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            place,
            outcome,
            detail: detail.into(),
        }
    }
}

/// A fact about the chosen credential (never a secret): its `client_email`, token endpoint,
/// impersonation target, subject-token source...
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Detail {
    /// What the fact is about.
    pub name: String,
    /// The fact.
    pub value: String,
}

/// Where the project id came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProjectIdSource {
    /// The `GOOGLE_CLOUD_PROJECT` environment variable.
    GoogleCloudProjectEnv,
    /// The legacy `GCLOUD_PROJECT` environment variable.
    GcloudProjectEnv,
    /// The `project_id` of the credentials file.
    CredentialsFile,
    /// gcloud's active configuration (`CLOUDSDK_CORE_PROJECT` or `[core] project`).
    GcloudConfig,
    /// The metadata server's `project/project-id`.
    MetadataServer,
    /// Cloud Resource Manager, asked for the project of workload identity federation's project
    /// number.
    ResourceManager,
}

impl fmt::Display for ProjectIdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::GoogleCloudProjectEnv => "GOOGLE_CLOUD_PROJECT",
            Self::GcloudProjectEnv => "GCLOUD_PROJECT",
            Self::CredentialsFile => "the credentials file",
            Self::GcloudConfig => "the gcloud configuration",
            Self::MetadataServer => "the metadata server",
            Self::ResourceManager => "Cloud Resource Manager",
        })
    }
}

/// Where the quota project came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum QuotaProjectSource {
    /// `Builder::with_quota_project`.
    Builder,
    /// The `GOOGLE_CLOUD_QUOTA_PROJECT` environment variable.
    GoogleCloudQuotaProjectEnv,
    /// The `quota_project_id` of the credentials file.
    CredentialsFile,
}

impl fmt::Display for QuotaProjectSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Builder => "the builder",
            Self::GoogleCloudQuotaProjectEnv => "GOOGLE_CLOUD_QUOTA_PROJECT",
            Self::CredentialsFile => "the credentials file",
        })
    }
}

/// The whole story of one credential resolution. `Display` gives a report a person can read;
/// `Serialize` gives the same as JSON (what `workload-auth explain --json` prints).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Each place looked at for credentials, in order.
    pub steps: Vec<Step>,
    /// The credential type chosen; `None` when none was found.
    pub credential_type: Option<CredentialType>,
    /// Where it came from (a file path, or the metadata server's address).
    pub credential_source: Option<String>,
    /// Facts about the credential.
    pub details: Vec<Detail>,
    /// The project id, if one was determined.
    pub project_id: Option<String>,
    /// Where the project id came from.
    pub project_id_source: Option<ProjectIdSource>,
    /// Each place looked at for the project id, in order.
    pub project_id_steps: Vec<Step>,
    /// The quota project, sent as `x-goog-user-project`.
    pub quota_project_id: Option<String>,
    /// Where the quota project came from.
    pub quota_project_source: Option<QuotaProjectSource>,
    /// The universe domain (`googleapis.com` for Google Cloud's public universe).
    pub universe_domain: Option<String>,
    /// The regional access boundary (`x-allowed-locations`): `disabled`, the locations, or why
    /// there are none.
    pub regional_access_boundary: String,
    /// Whether tokens are bound to an Agent Identity workload certificate, and to which.
    pub token_binding: TokenBinding,
    /// Why no usable credentials were found, if so.
    pub error: Option<String>,
}

/// Whether tokens are certificate-bound (Agent Identity, AIP-4119), naming the certificate by
/// its fingerprint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TokenBinding {
    /// Whether tokens are bound (then they are handed out only with their certificate).
    pub bound: bool,
    /// The leaf's fingerprint: base64url, unpadded, of the SHA-256 of its DER.
    pub fingerprint: Option<String>,
    /// The leaf's SPIFFE ID.
    pub spiffe_id: Option<String>,
    /// The certificate's file.
    pub certificate_file: Option<String>,
    /// How the binding is sent (`certificate_chain`, `fingerprint_query`, `sts_options`).
    pub form: Option<String>,
    /// Why tokens are not bound, or why the certificate cannot be read now.
    pub detail: String,
}

impl fmt::Display for TokenBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.bound, &self.fingerprint) {
            (true, Some(fingerprint)) => {
                write!(f, "bound to certificate {fingerprint}")?;
                let facts: Vec<&str> = [&self.spiffe_id, &self.certificate_file, &self.form]
                    .into_iter()
                    .filter_map(|v| v.as_deref())
                    .collect();
                if !facts.is_empty() {
                    write!(f, " ({})", facts.join(", "))?;
                }
                Ok(())
            }
            (true, None) => write!(
                f,
                "bound, but the certificate cannot be read: {}",
                self.detail
            ),
            (false, _) => write!(f, "not bound ({})", self.detail),
        }
    }
}

impl Explanation {
    pub(crate) fn failed(steps: Vec<Step>, error: String) -> Self {
        Self {
            steps,
            credential_type: None,
            credential_source: None,
            details: Vec::new(),
            project_id: None,
            project_id_source: None,
            project_id_steps: Vec::new(),
            quota_project_id: None,
            quota_project_source: None,
            universe_domain: None,
            regional_access_boundary: crate::RegionalState::Disabled.to_string(),
            token_binding: TokenBinding {
                detail: "no credentials".to_owned(),
                ..TokenBinding::default()
            },
            error: Some(error),
        }
    }
}

fn write_step(f: &mut fmt::Formatter<'_>, index: usize, step: &Step) -> fmt::Result {
    write!(f, "  {index}. {}", step.name)?;
    if let Some(place) = &step.place {
        write!(f, " ({place})")?;
    }
    write!(f, ": {}", step.outcome)?;
    if !step.detail.is_empty() {
        write!(f, " — {}", step.detail)?;
    }
    writeln!(f)
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Application Default Credentials")?;
        for (i, step) in self.steps.iter().enumerate() {
            write_step(f, i + 1, step)?;
        }
        match (&self.credential_type, &self.error) {
            (Some(kind), _) => {
                write!(f, "credential type: {kind}")?;
                if let Some(source) = &self.credential_source {
                    write!(f, " (from {source})")?;
                }
                writeln!(f)?;
                for detail in &self.details {
                    writeln!(f, "  {}: {}", detail.name, detail.value)?;
                }
            }
            (None, Some(error)) => writeln!(f, "no credentials: {error}")?,
            (None, None) => writeln!(f, "no credentials")?,
        }
        if self.credential_type.is_some() {
            match (&self.project_id, &self.project_id_source) {
                (Some(id), Some(source)) => writeln!(f, "project id: {id} (from {source})")?,
                (Some(id), None) => writeln!(f, "project id: {id}")?,
                (None, _) => writeln!(f, "project id: unknown")?,
            }
            for (i, step) in self.project_id_steps.iter().enumerate() {
                write_step(f, i + 1, step)?;
            }
            match (&self.quota_project_id, &self.quota_project_source) {
                (Some(id), Some(source)) => writeln!(f, "quota project: {id} (from {source})")?,
                (Some(id), None) => writeln!(f, "quota project: {id}")?,
                (None, _) => writeln!(f, "quota project: none")?,
            }
            match &self.universe_domain {
                Some(domain) => writeln!(f, "universe domain: {domain}")?,
                None => writeln!(f, "universe domain: unknown")?,
            }
            writeln!(
                f,
                "regional access boundary: {}",
                self.regional_access_boundary
            )?;
            writeln!(f, "token binding: {}", self.token_binding)?;
        }
        Ok(())
    }
}
