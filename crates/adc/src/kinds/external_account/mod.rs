//! `external_account`: workload and workforce identity federation.
//!
//! A subject token from outside Google Cloud (an OIDC or SAML token from a file, a URL or an
//! executable; a signed AWS request; an X.509 certificate) is exchanged at Google's Security Token
//! Service (RFC 8693) for a federated access token, which may then impersonate a service account.

pub(crate) mod sources;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use url::Url;
use workload_auth_core::json::Fields;
use workload_auth_core::{
    AccessToken, Error, ErrorKind, IdToken, Result, SecretString, TokenCache,
};

use sources::aws::{AWS_SUBJECT_TOKEN_TYPE, AwsSource};
use sources::executable::Executable;
use sources::{SubjectContext, SubjectTokenSource};

use super::impersonated::iam::Target;
use super::impersonated::{DEFAULT_LIFETIME, inner_cache};
use super::{CLOUD_PLATFORM_SCOPE, Context, quota_project_id, scopes_or, universe_domain};
use crate::agent_identity::{
    BoundAccessToken, BoundCertificate, CertificateFiles, agent_fingerprint, bound_only_error,
    opted_out,
};
use crate::credential_client::{Auth, Body, Http, parse_access_token};
use crate::env::EnvSource;
use crate::url_policy::display_url;

const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

const REFUSED_HINT: &str = "the Security Token Service refused the subject token; check the \
                            workload identity pool provider (audience, attribute mapping and \
                            conditions) and that the token is current";

#[derive(Debug)]
pub(crate) struct ExternalAccount {
    audience: String,
    subject_token_type: String,
    token_url: Url,
    client: Option<(String, SecretString)>,
    workforce_pool_user_project: Option<String>,
    source: SubjectTokenSource,
    impersonation: Option<Impersonation>,
    pub(crate) quota_project_id: Option<String>,
    pub(crate) universe_domain: String,
    http: Http,
    env: EnvSource,
    /// The Agent Identity certificate the STS binds tokens to, when there is one.
    binding: Option<CertificateFiles>,
}

#[derive(Debug)]
struct Impersonation {
    target: Target,
    /// The federated token (cloud-platform scope) used as the bearer for IAM.
    federated: TokenCache<AccessToken>,
}

impl Impersonation {
    /// Impersonation of `target`, its bearer the federated token `account` exchanges (a weak
    /// reference: the account owns this cache).
    fn new(target: Target, account: std::sync::Weak<ExternalAccount>) -> Self {
        let federated = inner_cache(move || {
            let account = account.upgrade();
            Box::pin(async move {
                match account {
                    Some(account) => {
                        account
                            .exchange(&[CLOUD_PLATFORM_SCOPE.to_owned()], None)
                            .await
                    }
                    None => Err(Error::new(
                        ErrorKind::InvalidArgument,
                        "the credentials were dropped",
                    )),
                }
            })
        });
        Self { target, federated }
    }
}

/// `credential_source`: AWS when the subject token type says so, an executable when it names
/// one, else a file, URL or certificate (the certificate's mTLS client made as `ctx` says).
fn parse_source(
    source: &Fields<'_>,
    subject_token_type: &str,
    ctx: &Context,
) -> Result<SubjectTokenSource> {
    if subject_token_type == AWS_SUBJECT_TOKEN_TYPE {
        return Ok(SubjectTokenSource::Aws(AwsSource::parse(source)?));
    }
    if source.has("executable") {
        return Ok(SubjectTokenSource::Executable(Executable::parse(source)?));
    }
    Ok(
        match SubjectTokenSource::parse_identity_pool(source, &ctx.env)? {
            SubjectTokenSource::Certificate(c) => {
                SubjectTokenSource::Certificate(c.with_tls(ctx.roots.clone(), ctx.timeout))
            }
            other => other,
        },
    )
}

/// The service account to impersonate after the exchange (`service_account_impersonation_url`),
/// with the token lifetime the builder or the file asks for; `None`: no impersonation.
fn parse_target(
    fields: &Fields<'_>,
    ctx: &Context,
    universe_domain: &str,
) -> Result<Option<Target>> {
    let lifetime = match fields.opt_object("service_account_impersonation")? {
        Some(options) => options
            .opt_u64("token_lifetime_seconds")?
            .map(Duration::from_secs),
        None => None,
    };
    let lifetime = ctx.token_lifetime.or(lifetime).unwrap_or(DEFAULT_LIFETIME);
    let Some(raw) = fields.opt_nonempty_str("service_account_impersonation_url")? else {
        return Ok(None);
    };
    let place = fields.place();
    let url = ctx.endpoints.credential_endpoint(
        raw,
        "service_account_impersonation_url",
        place,
        universe_domain,
    )?;
    Target::from_url(
        url,
        "service_account_impersonation_url",
        place,
        Vec::new(),
        lifetime,
    )
    .map(Some)
}

/// Whether `audience` names a workforce pool (users), not a workload identity pool.
fn is_workforce_pool(audience: &str) -> bool {
    audience
        .strip_prefix("//iam.googleapis.com/locations/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(location, rest)| !location.is_empty() && rest.starts_with("workforcePools/"))
}

impl ExternalAccount {
    pub(crate) fn parse(fields: &Fields<'_>, ctx: &Context) -> Result<Arc<Self>> {
        let place = fields.place();
        let audience = fields.str("audience")?.to_owned();
        let subject_token_type = fields.str("subject_token_type")?.to_owned();
        let universe_domain = universe_domain(fields)?;
        let default_token_url = format!("https://sts.{universe_domain}/v1/token");
        let token_url = ctx.endpoints.credential_endpoint(
            fields
                .opt_nonempty_str("token_url")?
                .unwrap_or(&default_token_url),
            "token_url",
            place,
            &universe_domain,
        )?;
        let source = parse_source(
            &fields.object("credential_source")?,
            &subject_token_type,
            ctx,
        )?;
        let client = match fields.opt_nonempty_str("client_id")? {
            Some(id) => Some((
                id.to_owned(),
                fields
                    .opt_secret("client_secret")?
                    .unwrap_or_else(|| SecretString::from("")),
            )),
            None => None,
        };
        let workforce_pool_user_project = fields
            .opt_nonempty_str("workforce_pool_user_project")?
            .map(str::to_owned);
        if workforce_pool_user_project.is_some() && !is_workforce_pool(&audience) {
            return Err(fields.error(
                "`workforce_pool_user_project` is only valid for workforce pools (audience \
                 //iam.googleapis.com/locations/LOCATION/workforcePools/...)",
            ));
        }
        let target = parse_target(fields, ctx, &universe_domain)?;
        let quota_project_id = quota_project_id(fields)?;
        let binding = match &source {
            SubjectTokenSource::Certificate(c) if opted_out(&ctx.env).is_none() => {
                c.binding_files()
            }
            _ => None,
        };
        let account = Arc::new_cyclic(|weak: &std::sync::Weak<Self>| {
            let impersonation = target.map(|target| Impersonation::new(target, weak.clone()));
            Self {
                audience,
                subject_token_type,
                token_url,
                client,
                workforce_pool_user_project,
                source,
                impersonation,
                quota_project_id,
                universe_domain,
                http: ctx.http.clone(),
                env: ctx.env.clone(),
                binding,
            }
        });
        Ok(account)
    }

    pub(crate) fn details(&self) -> Vec<(String, String)> {
        let mut d = vec![
            ("audience".to_owned(), self.audience.clone()),
            (
                "subject_token_type".to_owned(),
                self.subject_token_type.clone(),
            ),
            ("credential_source".to_owned(), self.source.describe()),
            ("token_url".to_owned(), display_url(&self.token_url)),
        ];
        if let Some((id, _)) = &self.client {
            d.push(("client_id".to_owned(), id.clone()));
        }
        if let Some(project) = &self.workforce_pool_user_project {
            d.push(("workforce_pool_user_project".to_owned(), project.clone()));
        }
        if let Some(imp) = &self.impersonation {
            d.push((
                "impersonated_service_account".to_owned(),
                imp.target.email.clone(),
            ));
        }
        d
    }

    /// The Agent Identity certificate tokens are bound to, if any.
    pub(crate) fn binding(&self) -> Option<&CertificateFiles> {
        self.binding.as_ref()
    }

    /// The STS exchange of a fresh subject token for a federated access token. With an Agent
    /// Identity certificate the token is bound to it (`bindCertFingerprint`), which is allowed
    /// only when the caller asked for a token bound to exactly that certificate (`bound_to`).
    async fn exchange(
        &self,
        scopes: &[String],
        bound_to: Option<&BoundCertificate>,
    ) -> Result<AccessToken> {
        let ctx = SubjectContext {
            audience: &self.audience,
            subject_token_type: &self.subject_token_type,
            impersonated_email: self.impersonation.as_ref().map(|i| i.target.email.as_str()),
            http: &self.http,
            env: &self.env,
        };
        let subject = self.source.subject(&ctx).await?;
        let fingerprint = self.binding_of(&subject, bound_to)?;
        let scope = scopes.join(" ");
        let options;
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("audience", self.audience.as_str()),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("subject_token", subject.token.expose()),
            ("subject_token_type", self.subject_token_type.as_str()),
        ];
        if !scope.is_empty() {
            form.push(("scope", scope.as_str()));
        }
        // With client authentication the client id already names the project. The JSON is
        // percent-encoded once more inside the form, as google-auth sends it.
        let mut option_map = serde_json::Map::new();
        if let (Some(project), None) = (&self.workforce_pool_user_project, &self.client) {
            option_map.insert("userProject".into(), project.clone().into());
        }
        if let Some(fingerprint) = fingerprint {
            option_map.insert("bindCertFingerprint".into(), fingerprint.into());
        }
        if !option_map.is_empty() {
            options = sources::aws::quote(
                &serde_json::Value::Object(option_map).to_string(),
                sources::aws::PY_QUOTE,
            );
            form.push(("options", options.as_str()));
        }
        let auth = match &self.client {
            Some((id, secret)) => Auth::Basic(id, secret),
            None => Auth::None,
        };
        let http = subject.mtls.as_ref().unwrap_or(&self.http);
        let now = SystemTime::now();
        let reply = http
            .send(
                reqwest::Method::POST,
                &self.token_url,
                auth,
                &[],
                Body::Form(&form),
            )
            .await?
            .ok_or_token_error(
                "the token exchange at the Security Token Service",
                REFUSED_HINT,
            )?;
        parse_access_token(&reply, now)
    }

    /// The fingerprint to bind the exchange to: `None` unless the subject's certificate is an
    /// Agent Identity one (and binding is on), in which case it must be `bound_to`.
    fn binding_of(
        &self,
        subject: &sources::Subject,
        bound_to: Option<&BoundCertificate>,
    ) -> Result<Option<String>> {
        let agent = match &subject.chain {
            Some((chain, path)) if opted_out(&self.env).is_none() => {
                agent_fingerprint(chain, path)?.map(|fp| (fp, path))
            }
            _ => None,
        };
        match (agent, bound_to) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(super::not_bound()),
            (Some((_, path)), None) => Err(bound_only_error(&CertificateFiles {
                cert: path.clone(),
                key: None,
                origin: String::new(),
            })),
            (Some((fp, _)), Some(cert)) if fp == cert.fingerprint() => Ok(Some(fp)),
            (Some((_, path)), Some(_)) => Err(Error::new(
                ErrorKind::Io,
                "the workload certificate changed while a token was being bound to it",
            )
            .with_endpoint(path.display().to_string())
            .with_retry(workload_auth_core::Retry::Transient)),
        }
    }

    /// A federated token bound to `certificate` (no impersonation: IAM does not take bound
    /// tokens from here).
    pub(crate) async fn bound_access_token(
        &self,
        certificate: BoundCertificate,
        scopes: &[String],
    ) -> Result<BoundAccessToken> {
        if self.impersonation.is_some() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "certificate-bound tokens are not available with service account impersonation",
            )
            .with_hint("drop service_account_impersonation_url, or set GOOGLE_API_ENABLE_RUNTIME_BOUND_TOKEN=false"));
        }
        let scopes = scopes_or(scopes, &[CLOUD_PLATFORM_SCOPE]);
        let token = self.exchange(&scopes, Some(&certificate)).await?;
        Ok(BoundAccessToken::new(token, certificate))
    }

    pub(crate) async fn access_token(&self, scopes: &[String]) -> Result<AccessToken> {
        let scopes = scopes_or(scopes, &[CLOUD_PLATFORM_SCOPE]);
        match &self.impersonation {
            None => self.exchange(&scopes, None).await,
            Some(imp) => {
                let federated = imp.federated.get().await?;
                imp.target
                    .access_token(self.iam_http().as_ref(), federated.secret(), &scopes)
                    .await
            }
        }
    }

    pub(crate) async fn id_token(&self, audience: &str) -> Result<IdToken> {
        let Some(imp) = &self.impersonation else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "external account credentials mint ID tokens only through service-account \
                 impersonation, and this file has no `service_account_impersonation_url`",
            )
            .with_hint("add service-account impersonation to the credential configuration"));
        };
        let federated = imp.federated.get().await?;
        imp.target
            .id_token(self.iam_http().as_ref(), federated.secret(), audience)
            .await
    }

    /// The project number Cloud Resource Manager is asked about: the audience's
    /// `projects/NUMBER`, else the workforce pool's user project (numbers only: anything else
    /// is not looked up).
    pub(crate) fn project_number(&self) -> Option<&str> {
        let from_audience = self
            .audience
            .split('/')
            .skip_while(|part| *part != "projects")
            .nth(1)
            .filter(|n| !n.is_empty());
        from_audience
            .or(self.workforce_pool_user_project.as_deref())
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Whose regional access boundary applies: the impersonated account's, else the pool's;
    /// with the mTLS client for certificate sources.
    pub(crate) fn regional_subject(&self) -> Option<(crate::regional::Subject, Option<Http>)> {
        let subject = match &self.impersonation {
            Some(imp) => crate::regional::Subject::ServiceAccount(imp.target.email.clone()),
            None => crate::regional::Subject::of_audience(&self.audience)?,
        };
        let mtls = match &self.source {
            SubjectTokenSource::Certificate(_) => Some(self.iam_http().into_owned()),
            _ => None,
        };
        Some((subject, mtls))
    }

    /// The client for IAM calls: the mTLS one for certificate sources (as google-auth does).
    fn iam_http(&self) -> std::borrow::Cow<'_, Http> {
        match &self.source {
            SubjectTokenSource::Certificate(c) => match c.subject() {
                Ok(subject) => match subject.mtls {
                    Some(http) => std::borrow::Cow::Owned(http),
                    None => std::borrow::Cow::Borrowed(&self.http),
                },
                Err(_) => std::borrow::Cow::Borrowed(&self.http),
            },
            _ => std::borrow::Cow::Borrowed(&self.http),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workforce_audiences_are_recognized() {
        assert!(is_workforce_pool(
            "//iam.googleapis.com/locations/global/workforcePools/pool/providers/p"
        ));
        assert!(!is_workforce_pool(
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x"
        ));
        assert!(!is_workforce_pool(
            "//iam.googleapis.com/locations//workforcePools/p"
        ));
    }
}
