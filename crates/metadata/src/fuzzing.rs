//! Entry points for the fuzz targets in the repository's `fuzz/` directory.
//!
//! Compiled only with the non-default `fuzzing` feature and hidden from the documentation: the
//! crate-internal parsers of the metadata server's answers, reached here without a network so
//! that libFuzzer can call them millions of times. Not a supported API.

use std::collections::BTreeMap;
use std::time::SystemTime;

use workload_auth_core::{AccessToken, IdToken, Result};

use crate::{ServiceAccountInfo, WorkloadCertificatesUnavailable, WorkloadIdentities};

/// The endpoint fuzzed answers claim to come from (never contacted).
const ENDPOINT: &str = "http://metadata.invalid/computeMetadata/v1/fuzz";

/// A `service-accounts/default/token` answer received at `now`.
pub fn access_token(body: &[u8], now: SystemTime) -> Result<AccessToken> {
    crate::token::parse_access_token(body, ENDPOINT, now)
}

/// A `service-accounts/default/identity` answer (a JWT as text).
pub fn id_token(body: &[u8]) -> Result<IdToken> {
    crate::token::parse_id_token(body, ENDPOINT)
}

/// A `gce-workload-certificates/workload-identities` answer.
pub fn workload_identities(body: &[u8]) -> Result<WorkloadIdentities> {
    crate::workload::parse_workload_identities(body, ENDPOINT)
}

/// A `gce-workload-certificates/trust-anchors` answer.
pub fn trust_anchors(body: &[u8]) -> Result<BTreeMap<String, String>> {
    crate::workload::parse_trust_anchors(body, ENDPOINT)
}

/// Why workload certificates are unavailable, from an error answer's status and body.
pub fn workload_unavailable(status: u16, body: &str) -> Option<WorkloadCertificatesUnavailable> {
    WorkloadCertificatesUnavailable::from_status(status, body)
}

/// A `service-accounts/default/?recursive=true` answer.
pub fn service_account(body: &[u8]) -> Result<ServiceAccountInfo> {
    crate::service_account::parse_service_account(body, ENDPOINT)
}
