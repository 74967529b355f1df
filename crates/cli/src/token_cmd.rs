//! `workload-auth token`, `id-token` and `explain`: Application Default Credentials from the shell.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use workload_auth::{
    AccessBoundary, AccessToken, Credentials, CredentialsBuilder, DownscopedCredentials, Error,
};

use crate::output::say;

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// OAuth scopes, comma separated (default: the credential type's default scopes).
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
    /// Print one JSON object: access_token, expires_in, token_type, source.
    #[arg(long)]
    json: bool,
    /// A credential access boundary (JSON, as the Security Token Service takes it:
    /// `{"accessBoundary": {"accessBoundaryRules": [...]}}`): print a downscoped token limited
    /// to it instead.
    #[arg(long, value_name = "FILE")]
    downscope: Option<std::path::PathBuf>,
    /// With --downscope: mint the token locally from an intermediary token and session key
    /// (client-side) instead of one exchange per token (server-side).
    #[arg(long, requires = "downscope")]
    client_side: bool,
    /// With --downscope: the Security Token Service's token URL (default:
    /// https://sts.UNIVERSE/v1/token).
    #[arg(long, value_name = "URL", requires = "downscope")]
    sts_endpoint: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct IdTokenArgs {
    /// The audience the ID token is for (the URL of the receiving service).
    #[arg(long)]
    audience: String,
    /// Print one JSON object: id_token, expires_at, source.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn credentials(scopes: &[String]) -> Result<Credentials, Error> {
    let mut builder = CredentialsBuilder::new();
    if !scopes.is_empty() {
        builder = builder.with_scopes(scopes.iter().cloned());
    }
    builder.build()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn to_json(value: &serde_json::Value) -> String {
    value.to_string()
}

/// Largest access boundary file read (ten rules fit in a few kilobytes).
const MAX_BOUNDARY_FILE_BYTES: u64 = 64 * 1024;

async fn downscoped(
    credentials: &Credentials,
    args: &TokenArgs,
    file: &std::path::Path,
) -> Result<AccessToken, Error> {
    let json = workload_auth_core::fs::read_bounded(
        file,
        MAX_BOUNDARY_FILE_BYTES,
        "the access boundary file",
    )?;
    let boundary = AccessBoundary::from_json(&json)?;
    let mut builder = DownscopedCredentials::builder(credentials.clone());
    if let Some(url) = &args.sts_endpoint {
        builder = builder.with_sts_endpoint(url.clone());
    }
    if args.client_side {
        let downscoper = builder.build_client_side()?;
        let prepared = downscoper.prepare(&boundary)?;
        downscoper.token(&prepared).await
    } else {
        builder.build(boundary)?.access_token().await
    }
}

pub(crate) async fn token(args: TokenArgs) -> Result<(), String> {
    let credentials = credentials(&args.scopes).map_err(|e| e.to_string())?;
    let token = match &args.downscope {
        Some(file) => downscoped(&credentials, &args, file).await,
        None => credentials.access_token().await,
    }
    .map_err(|e| e.to_string())?;
    if args.json {
        say(&to_json(&serde_json::json!({
            "access_token": token.secret().expose(),
            "expires_in": token.expires_in().as_secs(),
            "token_type": token.token_type(),
            "source": credentials.credential_type().to_string(),
        })));
    } else {
        say(token.secret().expose());
    }
    Ok(())
}

pub(crate) async fn id_token(args: IdTokenArgs) -> Result<(), String> {
    if args.audience.trim().is_empty() {
        return Err(
            "--audience must name the receiving service, e.g. https://my-service.run.app".into(),
        );
    }
    let credentials = credentials(&[]).map_err(|e| e.to_string())?;
    let token = credentials
        .id_token(&args.audience)
        .await
        .map_err(|e| e.to_string())?;
    if args.json {
        say(&to_json(&serde_json::json!({
            "id_token": token.secret().expose(),
            "expires_at": unix(token.expires_at()),
            "audience": args.audience,
            "source": credentials.credential_type().to_string(),
        })));
    } else {
        say(token.secret().expose());
    }
    Ok(())
}

pub(crate) async fn explain(args: ExplainArgs) -> Result<(), String> {
    let explanation = CredentialsBuilder::new().explain().await;
    if args.json {
        let json = serde_json::to_string_pretty(&explanation)
            .map_err(|e| format!("could not render the report as JSON: {e}"))?;
        say(&json);
    } else {
        say(explanation.to_string().trim_end());
    }
    match &explanation.error {
        None => Ok(()),
        Some(error) => Err(error.clone()),
    }
}
