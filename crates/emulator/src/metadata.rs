//! The `/computeMetadata/v1/` tree: path resolution and answers, as the real server gives them.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::config::EmulatorConfig;
use crate::endpoint::Endpoint;
use crate::http_server::{Request, Response};
use crate::state::State;

/// The prefix of every metadata path.
pub(crate) const PREFIX: &str = "/computeMetadata/v1/";

/// A place in the metadata tree. Its variants overlap [`crate::endpoint::Endpoint`]'s on purpose:
/// that is the public, coarse grouping faults and counters are keyed by (several resources, one
/// endpoint), this the router's exact parse of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    V1Dir,
    InstanceDir,
    ProjectDir,
    UniverseDir,
    CertsDir,
    ServiceAccounts,
    ServiceAccountDir(String),
    Aliases(String),
    Email(String),
    Scopes(String),
    Token(String),
    Identity(String),
    InstanceId,
    InstanceName,
    Zone,
    Hostname,
    ProjectId,
    NumericProjectId,
    UniverseDomain,
    WorkloadIdentities,
    TrustAnchors,
    ConfigStatus,
    NotFound,
}

impl Resource {
    /// Resolves `rest`, the path after [`PREFIX`], with any trailing slash removed.
    pub(crate) fn parse(rest: &str) -> Self {
        let segments: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let account = |a: &str| a.to_owned();
        match segments.as_slice() {
            [] => Self::V1Dir,
            ["instance"] => Self::InstanceDir,
            ["instance", "service-accounts"] => Self::ServiceAccounts,
            ["instance", "service-accounts", a] if !a.is_empty() => {
                Self::ServiceAccountDir(account(a))
            }
            ["instance", "service-accounts", a, leaf] if !a.is_empty() => match *leaf {
                "aliases" => Self::Aliases(account(a)),
                "email" => Self::Email(account(a)),
                "scopes" => Self::Scopes(account(a)),
                "token" => Self::Token(account(a)),
                "identity" => Self::Identity(account(a)),
                _ => Self::NotFound,
            },
            ["instance", "id"] => Self::InstanceId,
            ["instance", "name"] => Self::InstanceName,
            ["instance", "zone"] => Self::Zone,
            ["instance", "hostname"] => Self::Hostname,
            ["instance", "gce-workload-certificates"] => Self::CertsDir,
            [
                "instance",
                "gce-workload-certificates",
                "workload-identities",
            ] => Self::WorkloadIdentities,
            ["instance", "gce-workload-certificates", "trust-anchors"] => Self::TrustAnchors,
            ["instance", "gce-workload-certificates", "config-status"] => Self::ConfigStatus,
            ["project"] => Self::ProjectDir,
            ["project", "project-id"] => Self::ProjectId,
            ["project", "numeric-project-id"] => Self::NumericProjectId,
            ["universe"] => Self::UniverseDir,
            ["universe", "universe-domain" | "universe_domain"] => Self::UniverseDomain,
            _ => Self::NotFound,
        }
    }

    pub(crate) fn endpoint(&self) -> Endpoint {
        match self {
            Self::V1Dir
            | Self::InstanceDir
            | Self::ProjectDir
            | Self::UniverseDir
            | Self::CertsDir => Endpoint::Directory,
            Self::ServiceAccounts => Endpoint::ServiceAccounts,
            Self::ServiceAccountDir(_) | Self::Aliases(_) => Endpoint::ServiceAccount,
            Self::Email(_) => Endpoint::Email,
            Self::Scopes(_) => Endpoint::Scopes,
            Self::Token(_) => Endpoint::Token,
            Self::Identity(_) => Endpoint::Identity,
            Self::InstanceId | Self::InstanceName | Self::Zone | Self::Hostname => {
                Endpoint::Instance
            }
            Self::ProjectId => Endpoint::ProjectId,
            Self::NumericProjectId => Endpoint::NumericProjectId,
            Self::UniverseDomain => Endpoint::UniverseDomain,
            Self::WorkloadIdentities => Endpoint::WorkloadIdentities,
            Self::TrustAnchors => Endpoint::TrustAnchors,
            Self::ConfigStatus => Endpoint::ConfigStatus,
            Self::NotFound => Endpoint::Other,
        }
    }

    fn is_directory(&self) -> bool {
        matches!(
            self,
            Self::V1Dir
                | Self::InstanceDir
                | Self::ProjectDir
                | Self::UniverseDir
                | Self::CertsDir
                | Self::ServiceAccounts
                | Self::ServiceAccountDir(_)
        )
    }

    /// Whether clients may POST here (google-auth POSTs to request certificate-bound tokens).
    pub(crate) fn accepts_post(&self) -> bool {
        matches!(self, Self::Token(_) | Self::Identity(_))
    }
}

/// Answers a request for `resource`; `trailing_slash` says how the path ended.
///
/// Longer than most functions on purpose: one match arm per metadata path, each a line or two,
/// so the emulated tree reads in one place as the real server's documentation lists it.
pub(crate) fn handle(
    state: &State,
    resource: &Resource,
    trailing_slash: bool,
    request: &Request,
) -> Response {
    if let Some(refusal) = refuse(request) {
        return refusal;
    }
    let config = state.config();
    let recursive = request
        .query_param("recursive")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if resource.is_directory() && !trailing_slash && !recursive {
        return Response::redirect(301, &with_slash(request));
    }
    if !resource.is_directory() && trailing_slash {
        return not_found(request);
    }
    let unknown_account = |a: &str| a != "default" && a != config.email;
    match resource {
        Resource::ServiceAccountDir(a)
        | Resource::Aliases(a)
        | Resource::Email(a)
        | Resource::Scopes(a)
        | Resource::Token(a)
        | Resource::Identity(a)
            if unknown_account(a) =>
        {
            not_found(request)
        }
        Resource::V1Dir if recursive => Response::json(&json!({
            "instance": instance_json(&config),
            "project": project_json(&config),
            "universe": universe_json(&config),
        })),
        Resource::V1Dir => Response::text("instance/\nproject/\nuniverse/\n"),
        Resource::InstanceDir if recursive => Response::json(&instance_json(&config)),
        Resource::InstanceDir => {
            let certs = if config.workload_certificates.is_some() {
                "gce-workload-certificates/\n"
            } else {
                ""
            };
            Response::text(format!(
                "{certs}hostname\nid\nname\nservice-accounts/\nzone\n"
            ))
        }
        Resource::ProjectDir if recursive => Response::json(&project_json(&config)),
        Resource::ProjectDir => Response::text("numeric-project-id\nproject-id\n"),
        Resource::UniverseDir if recursive => Response::json(&universe_json(&config)),
        Resource::UniverseDir => Response::text(if config.universe_domain.is_some() {
            "universe-domain\n"
        } else {
            ""
        }),
        Resource::ServiceAccounts if recursive => Response::json(&service_accounts_json(&config)),
        Resource::ServiceAccounts => Response::text(format!("default/\n{}/\n", config.email)),
        Resource::ServiceAccountDir(_) if recursive => Response::json(&account_json(&config)),
        Resource::ServiceAccountDir(_) => {
            Response::text("aliases\nemail\nidentity\nscopes\ntoken\n")
        }
        Resource::Aliases(_) => Response::text("default\n"),
        Resource::Email(_) => Response::text(config.email.clone()),
        Resource::Scopes(_) => Response::text(
            config
                .scopes
                .iter()
                .fold(String::new(), |s, x| s + x + "\n"),
        ),
        Resource::Token(_) => token(state, &config, request),
        Resource::Identity(_) => identity(state, &config, request),
        Resource::InstanceId => Response::text(config.instance_id.to_string()),
        Resource::InstanceName => Response::text(config.instance_name.clone()),
        Resource::Zone => Response::text(zone_path(&config)),
        Resource::Hostname => Response::text(config.hostname()),
        Resource::ProjectId => Response::text(config.project_id.clone()),
        Resource::NumericProjectId => Response::text(config.numeric_project_id.to_string()),
        Resource::UniverseDomain => match &config.universe_domain {
            Some(domain) => Response::text(domain.clone()),
            None => not_found(request),
        },
        Resource::CertsDir
        | Resource::WorkloadIdentities
        | Resource::TrustAnchors
        | Resource::ConfigStatus => workload_certificates(&config, resource),
        Resource::NotFound => not_found(request),
    }
}

/// The 403 the real server gives without `Metadata-Flavor: Google`, or to proxied requests.
fn refuse(request: &Request) -> Option<Response> {
    let flavored = request
        .headers_named("metadata-flavor")
        .any(|v| v.eq_ignore_ascii_case("google"));
    let reason = if request.header("x-forwarded-for").is_some() {
        "Requests with an X-Forwarded-For header are refused."
    } else if !flavored {
        "Missing Metadata-Flavor:Google header."
    } else {
        return None;
    };
    Some(Response::error(
        403,
        &format!(
            "Your client does not have permission to get URL <code>{}</code> from this server. {reason}",
            request.path
        ),
    ))
}

pub(crate) fn not_found(request: &Request) -> Response {
    Response::error(
        404,
        &format!(
            "The requested URL <code>{}</code> was not found on this server.",
            request.path
        ),
    )
}

/// The request's URL with a slash added to the path, for redirects from directory names.
fn with_slash(request: &Request) -> String {
    let mut location = format!("{}/", request.path);
    if !request.query.is_empty() {
        location.push('?');
        location.push_str(
            &url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&request.query)
                .finish(),
        );
    }
    location
}

fn token(state: &State, config: &EmulatorConfig, request: &Request) -> Response {
    let requested: Vec<String> = request
        .query_param("scopes")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let scopes = if requested.is_empty() {
        config.scopes.clone()
    } else {
        requested
    };
    let binding = match crate::binding::of_request(request) {
        Ok(binding) => binding,
        Err(why) => return Response::error(400, &why),
    };
    let token = state.tokens.mint_bound(
        scopes,
        config.token_lifetime,
        binding.map(|b| b.fingerprint),
    );
    Response::json(&json!({
        "access_token": token.expose(),
        "expires_in": config.token_lifetime.as_secs(),
        "token_type": "Bearer",
    }))
}

fn identity(state: &State, config: &EmulatorConfig, request: &Request) -> Response {
    let Some(audience) = request.query_param("audience").filter(|a| !a.is_empty()) else {
        return Response::error(400, "non-empty audience parameter required");
    };
    let full = match request.query_param("format") {
        None | Some("standard") => false,
        Some("full") => true,
        Some(_) => return Response::error(400, "format must be 'standard' or 'full'"),
    };
    let licenses = match request.query_param("licenses") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => return Response::error(400, "licenses must be 'TRUE' or 'FALSE'"),
    };
    let binding = match crate::binding::of_request(request) {
        Ok(binding) => binding,
        Err(why) => return Response::error(400, &why),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = json!({
        "aud": audience,
        "azp": config.unique_id,
        "exp": now.saturating_add(config.id_token_lifetime.as_secs()),
        "iat": now,
        "iss": "https://accounts.google.com",
        "sub": config.unique_id,
    });
    if let Some(binding) = binding {
        // RFC 8705's confirmation claim: the certificate the token is bound to.
        claims["cnf"] = json!({ "x5t#S256": binding.fingerprint });
    }
    if full {
        claims["email"] = json!(config.email);
        claims["email_verified"] = json!(true);
        let mut compute_engine = json!({
            "instance_creation_timestamp": now.saturating_sub(86_400),
            "instance_id": config.instance_id.to_string(),
            "instance_name": config.instance_name,
            "project_id": config.project_id,
            "project_number": config.numeric_project_id,
            "zone": config.zone,
        });
        if licenses {
            compute_engine["license_id"] = json!([]);
        }
        claims["google"] = json!({ "compute_engine": compute_engine });
    }
    match state.signer.sign(&claims) {
        Ok(jwt) => Response::text(jwt),
        Err(e) => Response::error(500, &e.to_string()),
    }
}

fn workload_certificates(config: &EmulatorConfig, resource: &Resource) -> Response {
    let Some(certs) = &config.workload_certificates else {
        return Response::new(
            404,
            "text/plain; charset=utf-8",
            "workload certificate feature not enabled",
        );
    };
    let body = match resource {
        Resource::WorkloadIdentities => certs.workload_identities.expose(),
        Resource::TrustAnchors => &certs.trust_anchors,
        Resource::ConfigStatus => &certs.config_status,
        _ => return Response::text("config-status\ntrust-anchors\nworkload-identities\n"),
    };
    Response::new(200, "application/json", body)
}

fn zone_path(config: &EmulatorConfig) -> String {
    format!(
        "projects/{}/zones/{}",
        config.numeric_project_id, config.zone
    )
}

fn account_json(config: &EmulatorConfig) -> Value {
    json!({ "aliases": ["default"], "email": config.email, "scopes": config.scopes })
}

fn service_accounts_json(config: &EmulatorConfig) -> Value {
    let account = account_json(config);
    json!({ "default": account, config.email.clone(): account })
}

fn instance_json(config: &EmulatorConfig) -> Value {
    json!({
        "hostname": config.hostname(),
        "id": config.instance_id,
        "name": config.instance_name,
        "serviceAccounts": service_accounts_json(config),
        "zone": zone_path(config),
    })
}

fn project_json(config: &EmulatorConfig) -> Value {
    json!({ "numericProjectId": config.numeric_project_id, "projectId": config.project_id })
}

fn universe_json(config: &EmulatorConfig) -> Value {
    match &config.universe_domain {
        Some(domain) => json!({ "universeDomain": domain }),
        None => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_resources() {
        assert_eq!(Resource::parse(""), Resource::V1Dir);
        assert_eq!(
            Resource::parse("instance/service-accounts/default/token"),
            Resource::Token("default".into())
        );
        assert_eq!(
            Resource::parse("universe/universe_domain"),
            Resource::UniverseDomain
        );
        assert_eq!(
            Resource::parse("instance/service-accounts//token"),
            Resource::NotFound
        );
        assert_eq!(Resource::parse("instance//id"), Resource::NotFound);
        assert_eq!(Resource::parse("project/nope"), Resource::NotFound);
    }
}
