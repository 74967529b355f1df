//! The attached service account, from `instance/service-accounts/default/?recursive=true`.

use workload_auth_core::Result;
use workload_auth_core::json::Fields;

use crate::request::parse_json;

/// The service account attached to the VM, as the metadata server describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceAccountInfo {
    /// The account's email, e.g. `sa@project.iam.gserviceaccount.com`.
    pub email: String,
    /// The OAuth scopes the VM was granted for this account.
    pub scopes: Vec<String>,
    /// Other names of the account on this VM (normally `["default"]`).
    pub aliases: Vec<String>,
}

/// Parses `{"aliases": [...], "email": "...", "scopes": [...]}`; only `email` is required.
pub(crate) fn parse_service_account(body: &[u8], endpoint: &str) -> Result<ServiceAccountInfo> {
    let doc = parse_json(body, endpoint)?;
    let fields = Fields::of_response(&doc, endpoint);
    let email = fields.str("email")?;
    let scopes = fields.opt_str_list("scopes")?.unwrap_or_default();
    let aliases = fields.opt_str_list("aliases")?.unwrap_or_default();
    Ok(ServiceAccountInfo {
        email: email.trim().to_owned(),
        scopes,
        aliases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use workload_auth_core::ErrorKind;

    #[test]
    fn parses_the_recursive_listing() {
        let info = parse_service_account(
            br#"{"aliases":["default"],"email":"sa@p.iam.gserviceaccount.com","scopes":["a","b"],"token":{}}"#,
            "e",
        )
        .unwrap();
        assert_eq!(info.email, "sa@p.iam.gserviceaccount.com");
        assert_eq!(info.scopes, ["a", "b"]);
        assert_eq!(info.aliases, ["default"]);
        let info = parse_service_account(br#"{"email":"x@y"}"#, "e").unwrap();
        assert!(info.scopes.is_empty() && info.aliases.is_empty());
    }

    #[test]
    fn names_the_bad_field() {
        for (body, needle) in [
            (r#"{"scopes":[]}"#, "`email` field is missing"),
            (r#"{"email":["x"]}"#, "`email` field is an array"),
            (
                r#"{"email":"x@y","scopes":"a"}"#,
                "`scopes` field is a string",
            ),
            (
                r#"{"email":"x@y","aliases":[1]}"#,
                "item 0 of the `aliases` field is a number",
            ),
            ("email", "not valid JSON"),
        ] {
            let err = parse_service_account(body.as_bytes(), "e").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse);
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
