//! `impersonated_service_account`: a source credential (a user's refresh token, a service-account
//! key, or a workforce user's refresh token) that asks IAM for a service account's tokens, as
//! `gcloud auth application-default login --impersonate-service-account=EMAIL` writes it.

pub(crate) mod iam;

use std::sync::Arc;
use std::time::Duration;

use workload_auth_core::json::Fields;
use workload_auth_core::{AccessToken, IdToken, Result, TokenCache};

use super::{CLOUD_PLATFORM_SCOPE, Context, Source, quota_project_id, scopes_or};
use crate::credential_client::Http;
use crate::url_policy::display_url;
use iam::Target;

/// The source types google-auth accepts under `source_credentials`.
const SOURCE_TYPES: [&str; 3] = [
    "authorized_user",
    "service_account",
    "external_account_authorized_user",
];

/// The scope a service-account source asks for (as google-auth does).
const IAM_SCOPE: &str = "https://www.googleapis.com/auth/iam";

/// Impersonated tokens live an hour unless asked otherwise.
pub(crate) const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub(crate) struct Impersonated {
    source: Source,
    source_token: TokenCache<AccessToken>,
    target: Target,
    file_scopes: Option<Vec<String>>,
    pub(crate) quota_project_id: Option<String>,
    pub(crate) universe_domain: String,
    http: Http,
}

impl Impersonated {
    /// The service account impersonated (`target_principal`): whose token this gives, and whose
    /// regional access boundary applies.
    pub(crate) fn target_email(&self) -> &str {
        &self.target.email
    }

    pub(crate) fn parse(fields: &Fields<'_>, ctx: &Context) -> Result<Self> {
        let place = fields.place();
        let source_fields = fields.object("source_credentials")?;
        let source_type = source_fields.opt_str("type")?.unwrap_or("");
        if !SOURCE_TYPES.contains(&source_type) {
            return Err(fields.error(format!(
                "`source_credentials` has type {:?}, which cannot be impersonated from; supported \
                 source types are {}",
                workload_auth_core::text::snippet(source_type, 60),
                SOURCE_TYPES.join(", ")
            )));
        }
        let source = match source_type {
            "service_account" => Source::ServiceAccount(Arc::new(
                super::service_account::ServiceAccount::parse(&source_fields, ctx)?,
            )),
            "authorized_user" => Source::AuthorizedUser(Arc::new(
                super::authorized_user::AuthorizedUser::parse(&source_fields, ctx)?,
            )),
            _ => Source::ExternalUser(Arc::new(
                super::external_authorized_user::ExternalAuthorizedUser::parse(
                    &source_fields,
                    ctx,
                )?,
            )),
        };
        let universe_domain = source
            .known_universe_domain()
            .unwrap_or(super::DEFAULT_UNIVERSE_DOMAIN)
            .to_owned();
        let url = ctx.endpoints.credential_endpoint(
            fields.str("service_account_impersonation_url")?,
            "service_account_impersonation_url",
            place,
            &universe_domain,
        )?;
        let delegates = fields.opt_str_list("delegates")?.unwrap_or_default();
        let lifetime = ctx.token_lifetime.unwrap_or(DEFAULT_LIFETIME);
        let target = Target::from_url(
            url,
            "service_account_impersonation_url",
            place,
            delegates,
            lifetime,
        )?;
        Ok(Self {
            source_token: source_cache(&source),
            source,
            target,
            file_scopes: fields.opt_str_list("scopes")?.filter(|s| !s.is_empty()),
            quota_project_id: quota_project_id(fields)?,
            universe_domain,
            http: ctx.http.clone(),
        })
    }

    pub(crate) fn details(&self) -> Vec<(String, String)> {
        let mut d = vec![
            ("target_principal".to_owned(), self.target.email.clone()),
            (
                "source_credentials".to_owned(),
                self.source.credential_type().to_string(),
            ),
            (
                "service_account_impersonation_url".to_owned(),
                display_url(&self.target.access_token_url),
            ),
        ];
        if !self.target.delegates.is_empty() {
            d.push(("delegates".to_owned(), self.target.delegates.join(", ")));
        }
        d
    }

    pub(crate) async fn access_token(&self, scopes: &[String]) -> Result<AccessToken> {
        let scopes = if scopes.is_empty() {
            self.file_scopes
                .clone()
                .unwrap_or_else(|| scopes_or(&[], &[CLOUD_PLATFORM_SCOPE]))
        } else {
            scopes.to_vec()
        };
        let source = self.source_token.get().await?;
        self.target
            .access_token(&self.http, source.secret(), &scopes)
            .await
    }

    pub(crate) async fn id_token(&self, audience: &str) -> Result<IdToken> {
        let source = self.source_token.get().await?;
        self.target
            .id_token(&self.http, source.secret(), audience)
            .await
    }
}

/// A cache of the source credential's token, with the scope the source kind needs.
fn source_cache(source: &Source) -> TokenCache<AccessToken> {
    let scopes: Arc<[String]> = match source {
        Source::ServiceAccount(_) => Arc::from(vec![IAM_SCOPE.to_owned()]),
        _ => Arc::from(Vec::new()),
    };
    let source = source.clone();
    inner_cache(move || source.access_token(Arc::clone(&scopes)))
}

/// A cache for a token that is only a step towards another (the source token of impersonation,
/// the STS token before impersonation). It does not retry on its own: the cache of the final
/// token does, so a failure is not retried twice over. It refreshes late (no spread): it is only
/// read when the final token's cache fetches, which is spread already.
pub(crate) fn inner_cache<F>(fetch: F) -> TokenCache<AccessToken>
where
    F: Fn() -> super::BoxFut<AccessToken> + Send + Sync + 'static,
{
    TokenCache::with_options(
        fetch,
        workload_auth_core::CacheConfig {
            retry: workload_auth_core::RetryPolicy::none(),
            refresh_spread: 0.0,
            ..workload_auth_core::CacheConfig::default()
        },
        workload_auth_core::SystemClock,
    )
}
