//! The endpoints the emulator tells apart, for fault injection and request counting.

use std::sync::atomic::{AtomicU64, Ordering};

/// One endpoint (or family of paths) of the emulator.
///
/// Every parsed request is attributed to exactly one endpoint, including requests that are refused
/// (missing `Metadata-Flavor`, bad query) or faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `/`, the detection probe.
    Root,
    /// Directory listings: `/computeMetadata/v1/`, `instance/`, `project/`, `universe/`,
    /// `instance/gce-workload-certificates/` (and their `?recursive=true` forms).
    Directory,
    /// `instance/service-accounts/`: the list of service accounts.
    ServiceAccounts,
    /// `instance/service-accounts/{default|EMAIL}/` (listing, `?recursive=true`, `aliases`).
    ServiceAccount,
    /// `instance/service-accounts/{default|EMAIL}/token`.
    Token,
    /// `instance/service-accounts/{default|EMAIL}/identity`.
    Identity,
    /// `instance/service-accounts/{default|EMAIL}/email`.
    Email,
    /// `instance/service-accounts/{default|EMAIL}/scopes`.
    Scopes,
    /// `instance/{id,name,zone,hostname}`.
    Instance,
    /// `project/project-id`.
    ProjectId,
    /// `project/numeric-project-id`.
    NumericProjectId,
    /// `universe/universe-domain` and `universe/universe_domain`.
    UniverseDomain,
    /// `instance/gce-workload-certificates/workload-identities`.
    WorkloadIdentities,
    /// `instance/gce-workload-certificates/trust-anchors`.
    TrustAnchors,
    /// `instance/gce-workload-certificates/config-status`.
    ConfigStatus,
    /// `/oauth2/v3/certs`: the JWKS of the ID-token signing key.
    Jwks,
    /// `/oauth2/v1/certs`: the same key as `{kid: PEM}`, the form google-auth's verifier reads.
    PemCerts,
    /// Any other path (answered 404).
    Other,
    /// `POST /token`: the OAuth 2.0 token endpoint (JWT-bearer and refresh-token grants).
    OAuthToken,
    /// `POST /v1/token`: the Security Token Service's token exchange.
    StsToken,
    /// `POST /v1/oauth/token`: the Security Token Service's refresh-token grant (workforce users).
    StsOAuthToken,
    /// `POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken`.
    IamGenerateAccessToken,
    /// `POST /v1/projects/-/serviceAccounts/EMAIL:generateIdToken`.
    IamGenerateIdToken,
    /// `PUT /latest/api/token`: an AWS IMDSv2 session token.
    AwsSessionToken,
    /// `GET /latest/meta-data/placement/availability-zone`.
    AwsRegion,
    /// `GET /latest/meta-data/iam/security-credentials[/ROLE]`.
    AwsCredentials,
    /// `GET /external/oidc-token`: an OIDC subject token for the `url` credential source.
    SubjectToken,
    /// `GET /emulator/v1/downscoped-boundary`: the boundary a downscoped token carries (a test
    /// endpoint of the emulator's own).
    DownscopedBoundary,
    /// `GET /v1/.../allowedLocations`: a regional access boundary lookup (service account,
    /// workload identity pool or workforce pool).
    AllowedLocations,
    /// `GET /v1/projects/NUMBER`: Cloud Resource Manager's project lookup.
    ResourceManagerProject,
}

impl Endpoint {
    /// Every endpoint, in declaration order.
    pub const ALL: [Endpoint; 30] = [
        Self::Root,
        Self::Directory,
        Self::ServiceAccounts,
        Self::ServiceAccount,
        Self::Token,
        Self::Identity,
        Self::Email,
        Self::Scopes,
        Self::Instance,
        Self::ProjectId,
        Self::NumericProjectId,
        Self::UniverseDomain,
        Self::WorkloadIdentities,
        Self::TrustAnchors,
        Self::ConfigStatus,
        Self::Jwks,
        Self::PemCerts,
        Self::Other,
        Self::OAuthToken,
        Self::StsToken,
        Self::StsOAuthToken,
        Self::IamGenerateAccessToken,
        Self::IamGenerateIdToken,
        Self::AwsSessionToken,
        Self::AwsRegion,
        Self::AwsCredentials,
        Self::SubjectToken,
        Self::DownscopedBoundary,
        Self::AllowedLocations,
        Self::ResourceManagerProject,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Per-endpoint request counters, readable while the server runs.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    by_endpoint: [AtomicU64; Endpoint::ALL.len()],
}

impl Counters {
    pub(crate) fn record(&self, endpoint: Endpoint) {
        self.by_endpoint[endpoint.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self, endpoint: Endpoint) -> u64 {
        self.by_endpoint[endpoint.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn total(&self) -> u64 {
        self.by_endpoint
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn reset(&self) {
        for c in &self.by_endpoint {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_variant_at_its_index() {
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(e.index(), i, "{e:?}");
        }
    }
}
