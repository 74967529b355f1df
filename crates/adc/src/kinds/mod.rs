//! The credential types, one module each, and the dispatch on a credential file's `type`.

pub(crate) mod authorized_user;
pub(crate) mod external_account;
pub(crate) mod external_authorized_user;
pub(crate) mod impersonated;
pub(crate) mod metadata_server;
pub(crate) mod service_account;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use workload_auth_core::json::Fields;
use workload_auth_core::{AccessToken, Error, ErrorKind, IdToken, Result};

use crate::credential_client::{Http, TlsRoots};
use crate::env::EnvSource;
use crate::url_policy::EndpointPolicy;

/// A boxed, sendable future (credential kinds call each other, so their futures are boxed).
pub(crate) type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'static>>;

/// The scope most Google APIs accept, requested when nothing else is asked for.
pub(crate) const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The universe domain of Google Cloud's public universe (one definition, in the metadata crate).
pub use workload_auth_metadata::DEFAULT_UNIVERSE_DOMAIN;

/// The kind of credential Application Default Credentials chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CredentialType {
    /// The attached service account, through the metadata server.
    MetadataServer,
    /// A service-account key file (`"type": "service_account"`).
    ServiceAccount,
    /// A user's refresh token, as `gcloud auth application-default login` writes it.
    AuthorizedUser,
    /// Service-account impersonation (`"type": "impersonated_service_account"`).
    ImpersonatedServiceAccount,
    /// Workload or workforce identity federation (`"type": "external_account"`).
    ExternalAccount,
    /// A workforce identity federation user's refresh token
    /// (`"type": "external_account_authorized_user"`).
    ExternalAccountAuthorizedUser,
}

impl CredentialType {
    /// The `type` of a credentials file (`metadata_server` for the metadata server).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MetadataServer => "metadata_server",
            Self::ServiceAccount => "service_account",
            Self::AuthorizedUser => "authorized_user",
            Self::ImpersonatedServiceAccount => "impersonated_service_account",
            Self::ExternalAccount => "external_account",
            Self::ExternalAccountAuthorizedUser => "external_account_authorized_user",
        }
    }
}

impl std::str::FromStr for CredentialType {
    type Err = Error;

    /// The type a name (as [`CredentialType::as_str`] writes it) names; an unknown name is an
    /// [`ErrorKind::InvalidArgument`] error listing the known ones.
    fn from_str(name: &str) -> Result<Self> {
        let name = name.trim();
        if name == "metadata_server" {
            return Ok(Self::MetadataServer);
        }
        file_type(name).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "unknown credential type {:?}; known types are metadata_server, {}",
                    workload_auth_core::text::snippet(name, 60),
                    FILE_TYPES.join(", ")
                ),
            )
        })
    }
}

impl fmt::Display for CredentialType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `type`s a credentials file may have.
pub(crate) const FILE_TYPES: [&str; 5] = [
    "service_account",
    "authorized_user",
    "impersonated_service_account",
    "external_account",
    "external_account_authorized_user",
];

/// What every credential kind needs from the builder.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    pub(crate) env: EnvSource,
    pub(crate) http: Http,
    pub(crate) roots: TlsRoots,
    pub(crate) timeout: Duration,
    /// Service accounts sign their own JWTs instead of calling the token endpoint (AIP-4111).
    pub(crate) self_signed_jwt: bool,
    /// Overrides the lifetime asked of impersonated tokens.
    pub(crate) token_lifetime: Option<Duration>,
    /// Where credentials may be sent beyond Google's endpoints and this machine.
    pub(crate) endpoints: Arc<EndpointPolicy>,
    /// The credential types the caller accepts (`None`: every type).
    pub(crate) allowed_types: Option<Arc<[CredentialType]>>,
}

/// One credential, ready to fetch tokens. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    Metadata(Arc<metadata_server::MetadataServer>),
    ServiceAccount(Arc<service_account::ServiceAccount>),
    AuthorizedUser(Arc<authorized_user::AuthorizedUser>),
    Impersonated(Arc<impersonated::Impersonated>),
    External(Arc<external_account::ExternalAccount>),
    ExternalUser(Arc<external_authorized_user::ExternalAuthorizedUser>),
}

impl Source {
    /// Fetches a new access token for `scopes` (empty: the kind's default).
    pub(crate) fn access_token(&self, scopes: Arc<[String]>) -> BoxFut<AccessToken> {
        match self {
            Self::Metadata(m) => {
                let m = Arc::clone(m);
                Box::pin(async move { m.access_token(&scopes).await })
            }
            Self::ServiceAccount(s) => {
                let s = Arc::clone(s);
                Box::pin(async move { s.access_token(&scopes).await })
            }
            Self::AuthorizedUser(u) => {
                let u = Arc::clone(u);
                Box::pin(async move { u.access_token(&scopes).await })
            }
            Self::Impersonated(i) => {
                let i = Arc::clone(i);
                Box::pin(async move { i.access_token(&scopes).await })
            }
            Self::External(e) => {
                let e = Arc::clone(e);
                Box::pin(async move { e.access_token(&scopes).await })
            }
            Self::ExternalUser(u) => {
                let u = Arc::clone(u);
                Box::pin(async move { u.access_token(&scopes).await })
            }
        }
    }

    /// Fetches a new ID token for `audience`.
    pub(crate) fn id_token(&self, audience: Arc<str>) -> BoxFut<IdToken> {
        match self {
            Self::Metadata(m) => {
                let m = Arc::clone(m);
                Box::pin(async move { m.id_token(&audience).await })
            }
            Self::ServiceAccount(s) => {
                let s = Arc::clone(s);
                Box::pin(async move { s.id_token(&audience).await })
            }
            Self::Impersonated(i) => {
                let i = Arc::clone(i);
                Box::pin(async move { i.id_token(&audience).await })
            }
            Self::External(e) => {
                let e = Arc::clone(e);
                Box::pin(async move { e.id_token(&audience).await })
            }
            Self::AuthorizedUser(_) | Self::ExternalUser(_) => {
                let kind = self.credential_type();
                Box::pin(async move {
                    Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!("{kind} credentials cannot mint ID tokens for an audience"),
                    )
                    .with_hint(
                        "use a service account: impersonate one (gcloud auth application-default \
                         login --impersonate-service-account=EMAIL) or run on Google Cloud",
                    ))
                })
            }
        }
    }

    /// The Agent Identity certificate this credential's tokens are bound to, if any.
    pub(crate) fn binding(&self) -> Option<&crate::agent_identity::CertificateFiles> {
        match self {
            Self::Metadata(m) => m.binding.as_ref(),
            Self::External(e) => e.binding(),
            _ => None,
        }
    }

    /// Fetches a new access token for `scopes` bound to `certificate`.
    pub(crate) fn bound_access_token(
        &self,
        certificate: crate::agent_identity::BoundCertificate,
        scopes: Arc<[String]>,
    ) -> BoxFut<crate::agent_identity::BoundAccessToken> {
        match self {
            Self::Metadata(m) => {
                let m = Arc::clone(m);
                Box::pin(async move { m.bound_access_token(certificate, &scopes).await })
            }
            Self::External(e) => {
                let e = Arc::clone(e);
                Box::pin(async move { e.bound_access_token(certificate, &scopes).await })
            }
            _ => Box::pin(async move { Err(not_bound()) }),
        }
    }

    /// Fetches a new ID token for `audience` bound to `certificate`.
    pub(crate) fn bound_id_token(
        &self,
        certificate: crate::agent_identity::BoundCertificate,
        audience: Arc<str>,
    ) -> BoxFut<crate::agent_identity::BoundIdToken> {
        match self {
            Self::Metadata(m) => {
                let m = Arc::clone(m);
                Box::pin(async move { m.bound_id_token(certificate, &audience).await })
            }
            _ => Box::pin(async move { Err(not_bound()) }),
        }
    }

    pub(crate) fn credential_type(&self) -> CredentialType {
        match self {
            Self::Metadata(_) => CredentialType::MetadataServer,
            Self::ServiceAccount(_) => CredentialType::ServiceAccount,
            Self::AuthorizedUser(_) => CredentialType::AuthorizedUser,
            Self::Impersonated(_) => CredentialType::ImpersonatedServiceAccount,
            Self::External(_) => CredentialType::ExternalAccount,
            Self::ExternalUser(_) => CredentialType::ExternalAccountAuthorizedUser,
        }
    }

    /// The `quota_project_id` of the credentials file, where google-auth reads one.
    pub(crate) fn file_quota_project(&self) -> Option<&str> {
        match self {
            Self::AuthorizedUser(u) => u.quota_project_id.as_deref(),
            Self::Impersonated(i) => i.quota_project_id.as_deref(),
            Self::External(e) => e.quota_project_id.as_deref(),
            Self::ExternalUser(u) => u.quota_project_id.as_deref(),
            Self::Metadata(_) | Self::ServiceAccount(_) => None,
        }
    }

    /// The `project_id` of the credentials file (service-account keys only).
    pub(crate) fn file_project_id(&self) -> Option<&str> {
        match self {
            Self::ServiceAccount(s) => s.project_id.as_deref(),
            _ => None,
        }
    }

    /// The universe domain, when known without asking the metadata server.
    pub(crate) fn known_universe_domain(&self) -> Option<&str> {
        match self {
            Self::Metadata(_) => None,
            Self::ServiceAccount(s) => Some(&s.universe_domain),
            Self::AuthorizedUser(u) => Some(&u.universe_domain),
            Self::Impersonated(i) => Some(&i.universe_domain),
            Self::External(e) => Some(&e.universe_domain),
            Self::ExternalUser(u) => Some(&u.universe_domain),
        }
    }

    /// Facts about the credential for `explain` (never secrets).
    pub(crate) fn details(&self) -> Vec<(String, String)> {
        match self {
            Self::Metadata(m) => m.details(),
            Self::ServiceAccount(s) => s.details(),
            Self::AuthorizedUser(u) => u.details(),
            Self::Impersonated(i) => i.details(),
            Self::External(e) => e.details(),
            Self::ExternalUser(u) => u.details(),
        }
    }

    /// Whose regional access boundary applies, and the mTLS client to look it up with when
    /// this credential uses a client certificate; `None`: no boundary (user credentials).
    pub(crate) fn regional_subject(&self) -> Option<(crate::regional::Subject, Option<Http>)> {
        use crate::regional::Subject;
        match self {
            Self::Metadata(_) => Some((Subject::MetadataAccount, None)),
            Self::ServiceAccount(s) => Some((Subject::ServiceAccount(s.email.clone()), None)),
            Self::Impersonated(i) => {
                Some((Subject::ServiceAccount(i.target_email().to_owned()), None))
            }
            Self::External(e) => e.regional_subject(),
            Self::AuthorizedUser(_) | Self::ExternalUser(_) => None,
        }
    }

    /// The email of the service account these credentials act as, when they act as one: a key's
    /// `client_email`, an impersonation target, or the metadata server's attached account.
    pub(crate) fn service_account_email(&self) -> BoxFut<Option<String>> {
        match self {
            Self::ServiceAccount(s) => {
                let email = s.email.clone();
                Box::pin(async move { Ok(Some(email)) })
            }
            Self::Impersonated(i) => {
                let email = i.target_email().to_owned();
                Box::pin(async move { Ok(Some(email)) })
            }
            Self::Metadata(m) => {
                let m = Arc::clone(m);
                Box::pin(async move { m.client.email().await.map(Some) })
            }
            Self::AuthorizedUser(_) | Self::External(_) | Self::ExternalUser(_) => {
                Box::pin(async move { Ok(None) })
            }
        }
    }

    /// For self-signed JWTs with an audience (AIP-4111): the service account, if this is one.
    pub(crate) fn service_account(&self) -> Option<&Arc<service_account::ServiceAccount>> {
        match self {
            Self::ServiceAccount(s) => Some(s),
            _ => None,
        }
    }
}

/// The error for a bound token asked of credentials whose tokens are not bound.
pub(crate) fn not_bound() -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        "these credentials do not get certificate-bound tokens (there is no Agent Identity \
         workload certificate, or binding is turned off)",
    )
    .with_hint("use access_token(); Credentials::binding() says whether tokens are bound")
}

/// Builds the credential a parsed credentials file describes. `place` names the file in errors.
/// The credential type a file's `type` names (`None` for an unknown type).
pub(crate) fn file_type(kind: &str) -> Option<CredentialType> {
    match kind {
        "service_account" => Some(CredentialType::ServiceAccount),
        "authorized_user" => Some(CredentialType::AuthorizedUser),
        "impersonated_service_account" => Some(CredentialType::ImpersonatedServiceAccount),
        "external_account" => Some(CredentialType::ExternalAccount),
        "external_account_authorized_user" => Some(CredentialType::ExternalAccountAuthorizedUser),
        _ => None,
    }
}

/// The error for a credential of a type the caller did not allow.
pub(crate) fn type_not_allowed(kind: &str, allowed: &[CredentialType]) -> Error {
    Error::new(
        ErrorKind::InvalidCredentials,
        format!(
            "the credentials are of type {:?}, which the caller does not accept here (accepted: \
             {})",
            workload_auth_core::text::snippet(kind, 60),
            allowed
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .with_hint(
        "a credentials file from an untrusted source must be loaded with the loader for the \
         type you expect (Credentials::from_service_account_json and the like)",
    )
}

pub(crate) fn from_json(map: &Map<String, Value>, place: &str, ctx: &Context) -> Result<Source> {
    let fields = Fields::of_file(map, place);
    let kind = match fields.get("type") {
        None => {
            return Err(fields
                .error(format!(
                    "the credentials file has no `type` field; supported types are {}",
                    FILE_TYPES.join(", ")
                ))
                .with_hint("use a credentials file made by gcloud or downloaded from the Google Cloud console"));
        }
        Some(Value::String(kind)) => kind.as_str(),
        Some(other) => {
            return Err(fields.error(format!(
                "the `type` field is {}, expected one of {}",
                workload_auth_core::json::type_name(other),
                FILE_TYPES.join(", ")
            )));
        }
    };
    // The allow-list is checked before anything else in the file is read.
    if let Some(allowed) = &ctx.allowed_types
        && !file_type(kind).is_some_and(|t| allowed.contains(&t))
    {
        return Err(type_not_allowed(kind, allowed).with_endpoint(place.to_owned()));
    }
    match kind {
        "service_account" => Ok(Source::ServiceAccount(Arc::new(
            service_account::ServiceAccount::parse(&fields, ctx)?,
        ))),
        "authorized_user" => Ok(Source::AuthorizedUser(Arc::new(
            authorized_user::AuthorizedUser::parse(&fields, ctx)?,
        ))),
        "impersonated_service_account" => Ok(Source::Impersonated(Arc::new(
            impersonated::Impersonated::parse(&fields, ctx)?,
        ))),
        "external_account" => Ok(Source::External(
            external_account::ExternalAccount::parse(&fields, ctx)?,
        )),
        "external_account_authorized_user" => Ok(Source::ExternalUser(Arc::new(
            external_authorized_user::ExternalAuthorizedUser::parse(&fields, ctx)?,
        ))),
        other => Err(fields
            .error(format!(
                "the credentials file has type {:?}, which is not supported; supported types are {}",
                workload_auth_core::text::snippet(other, 60),
                FILE_TYPES.join(", ")
            ))
            .with_hint("use a credentials file made by gcloud or downloaded from the Google Cloud console")),
    }
}

/// The universe domain a file names (`googleapis.com` when absent or empty).
pub(crate) fn universe_domain(fields: &Fields<'_>) -> Result<String> {
    Ok(fields
        .opt_nonempty_str("universe_domain")?
        .unwrap_or(DEFAULT_UNIVERSE_DOMAIN)
        .to_owned())
}

/// The `quota_project_id` a file names, if any.
pub(crate) fn quota_project_id(fields: &Fields<'_>) -> Result<Option<String>> {
    Ok(fields
        .opt_nonempty_str("quota_project_id")?
        .map(str::to_owned))
}

/// `scopes`, or `default` when empty.
pub(crate) fn scopes_or(scopes: &[String], default: &[&str]) -> Vec<String> {
    if scopes.is_empty() {
        default.iter().map(|s| (*s).to_owned()).collect()
    } else {
        scopes.to_vec()
    }
}
