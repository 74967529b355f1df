//! Regional access boundaries and the project lookup of workload identity federation:
//!
//! - `GET /v1/projects/-/serviceAccounts/EMAIL/allowedLocations`,
//!   `GET /v1/projects/NUMBER/locations/global/workloadIdentityPools/POOL/allowedLocations`,
//!   `GET /v1/locations/global/workforcePools/POOL/allowedLocations` (IAM Service Account
//!   Credentials): `{"locations": [...], "encodedLocations": "0x..."}`;
//! - `GET /v1/projects/NUMBER` (Cloud Resource Manager): `{"projectNumber", "projectId", ...}`.
//!
//! Both want a bearer token the emulator issued.

use serde_json::json;

use super::{bearer, google_error, json_response};
use crate::config::EmulatorConfig;
use crate::http_server::{Request, Response};
use crate::state::State;

/// What the allowed-locations lookups answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedLocations {
    /// The locations, as named in the answer's `locations`.
    pub locations: Vec<String>,
    /// The answer's `encodedLocations` (`0x0`: no restriction).
    pub encoded_locations: String,
}

impl Default for AllowedLocations {
    fn default() -> Self {
        Self {
            locations: vec!["us-central1".to_owned(), "us-east1".to_owned()],
            encoded_locations: "0xA30".to_owned(),
        }
    }
}

/// The identity routes of this module, if `path` is one. The resource names parsed here are
/// parsed again by the client (`regional.rs` in the adc crate) on purpose: the emulator shares no
/// code with the clients it tests.
pub(crate) fn route(path: &str) -> Option<super::IdentityRoute> {
    let rest = path.strip_prefix("/v1/")?;
    if let Some(inner) = rest.strip_suffix("/allowedLocations") {
        let parts: Vec<&str> = inner.split('/').collect();
        let ok = match parts.as_slice() {
            ["projects", "-", "serviceAccounts", email] => email.contains('@'),
            [
                "projects",
                number,
                "locations",
                "global",
                "workloadIdentityPools",
                pool,
            ] => {
                !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) && !pool.is_empty()
            }
            ["locations", "global", "workforcePools", pool] => !pool.is_empty(),
            _ => false,
        };
        return ok.then_some(super::IdentityRoute::AllowedLocations);
    }
    let number = rest.strip_prefix("projects/")?;
    (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        .then(|| super::IdentityRoute::ResourceManagerProject(number.to_owned()))
}

fn authorized(state: &State, request: &Request) -> Result<(), Response> {
    match bearer(request) {
        Some(token) if state.tokens.lookup(token).is_some() => Ok(()),
        Some(_) => Err(google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        )),
        None => Err(google_error(
            401,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential.",
        )),
    }
}

/// The allowed locations of any account or pool (the emulator's policy is one for all).
pub(crate) fn allowed_locations(
    state: &State,
    config: &EmulatorConfig,
    request: &Request,
) -> Response {
    if let Err(response) = authorized(state, request) {
        return response;
    }
    let answer = &config.identity.allowed_locations;
    json_response(
        200,
        &json!({
            "locations": answer.locations,
            "encodedLocations": answer.encoded_locations,
        }),
    )
}

/// Cloud Resource Manager's `projects.get` by number: [`crate::IdentityConfig::projects`],
/// then the VM's own project.
pub(crate) fn project(
    state: &State,
    config: &EmulatorConfig,
    request: &Request,
    number: &str,
) -> Response {
    if let Err(response) = authorized(state, request) {
        return response;
    }
    let id = config
        .identity
        .projects
        .iter()
        .find(|(n, _)| n == number)
        .map(|(_, id)| id.clone())
        .or_else(|| {
            (number == config.numeric_project_id.to_string()).then(|| config.project_id.clone())
        });
    match id {
        Some(id) => json_response(
            200,
            &json!({
                "projectNumber": number,
                "projectId": id,
                "lifecycleState": "ACTIVE",
                "name": id,
            }),
        ),
        None => google_error(
            403,
            "PERMISSION_DENIED",
            "The caller does not have permission",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::IdentityRoute;
    use super::*;

    #[test]
    fn the_three_lookup_shapes_and_projects_get_are_routed() {
        for path in [
            "/v1/projects/-/serviceAccounts/a@p.iam.gserviceaccount.com/allowedLocations",
            "/v1/projects/123/locations/global/workloadIdentityPools/pool/allowedLocations",
            "/v1/locations/global/workforcePools/wf/allowedLocations",
        ] {
            assert!(
                matches!(route(path), Some(IdentityRoute::AllowedLocations)),
                "{path}"
            );
        }
        assert!(matches!(
            route("/v1/projects/42"),
            Some(IdentityRoute::ResourceManagerProject(n)) if n == "42"
        ));
        for path in [
            "/v1/projects/-/serviceAccounts/a@b.com:generateAccessToken",
            "/v1/projects/abc",
            "/v1/projects/x/locations/global/workloadIdentityPools/p/allowedLocations",
            "/v1/locations/global/workforcePools//allowedLocations",
        ] {
            assert!(route(path).is_none(), "{path}");
        }
    }
}
