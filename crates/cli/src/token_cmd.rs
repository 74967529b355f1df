//! `workload-auth token`, `id-token` and `explain`: Application Default Credentials from the shell.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// How to print the token: `raw` (the token alone), `header` (`Authorization: Bearer ...`)
    /// or `json` (access_token, expires_in, token_type, source).
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    format: Format,
    /// The same as `--format json`.
    #[arg(long, conflicts_with = "format")]
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
    /// `https://sts.UNIVERSE/v1/token`).
    #[arg(long, value_name = "URL", requires = "downscope")]
    sts_endpoint: Option<String>,
    /// Give up after this long (`500ms`, `10s`, `1m`; not 0).
    #[arg(long, value_name = "DUR", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// A token bound to the Agent Identity workload certificate, printed as one JSON object
    /// together with that certificate (access_token, expires_in, token_type, fingerprint,
    /// certificate_chain as PEM, certificate_file): a bound token is never printed alone.
    #[arg(long, conflicts_with_all = ["downscope", "format"])]
    bound: bool,
}

/// How `token` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Raw,
    Header,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct IdTokenArgs {
    /// The audience the ID token is for (the URL of the receiving service).
    #[arg(long)]
    audience: String,
    /// Print one JSON object: id_token, expires_at, source.
    #[arg(long)]
    json: bool,
    /// Give up after this long (`500ms`, `10s`, `1m`; not 0).
    #[arg(long, value_name = "DUR", value_parser = parse_timeout)]
    timeout: Option<Duration>,
}

/// Parses `--timeout`: a number with a unit (`ms`, `s`, `m`); 0 is refused, since it could only
/// fail.
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 10s or 1m"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(
            n.checked_mul(60)
                .ok_or_else(|| format!("`{s}` is too long"))?,
        ),
        _ => return Err(format!("`{s}` is not a duration like 500ms, 10s or 1m")),
    };
    if duration.is_zero() {
        return Err("a timeout of 0 could only fail; give one like 500ms or 10s".into());
    }
    Ok(duration)
}

/// Checks `--scopes` before anything is looked up: an empty list item (`--scopes ''`,
/// `--scopes a,,b`) or one with spaces is a mistake, not a request for default scopes.
fn check_scopes(scopes: &[String]) -> Result<(), String> {
    for scope in scopes {
        if scope.trim().is_empty() {
            return Err(
                "--scopes has an empty scope\nlist scopes separated by commas, or leave \
                        out --scopes for the default ones"
                    .into(),
            );
        }
        if scope.chars().any(char::is_whitespace) {
            return Err(format!(
                "--scopes: `{scope}` contains whitespace\nseparate scopes with commas"
            ));
        }
    }
    Ok(())
}

/// Runs `work`, giving up after `timeout` when one is set.
async fn with_timeout<T>(
    timeout: Option<Duration>,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match timeout {
        None => work.await,
        Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(format!(
                "no answer within {} ms (--timeout)",
                limit.as_millis()
            ))
        }),
    }
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

/// Reads and parses `--downscope FILE`.
fn load_boundary(file: &std::path::Path) -> Result<AccessBoundary, Error> {
    let json = workload_auth_core::fs::read_bounded(
        file,
        MAX_BOUNDARY_FILE_BYTES,
        "the access boundary file",
    )?;
    AccessBoundary::from_json(&json)
}

async fn downscoped(
    credentials: &Credentials,
    args: &TokenArgs,
    boundary: AccessBoundary,
) -> Result<AccessToken, Error> {
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

/// `token --bound`: the bound token and its certificate, together.
async fn bound_token(args: TokenArgs) -> Result<(), String> {
    let (credentials, bound) = with_timeout(args.timeout, async {
        let credentials = credentials(&args.scopes).map_err(|e| report(&e))?;
        let bound = credentials
            .bound_access_token()
            .await
            .map_err(|e| report(&e))?;
        Ok((credentials, bound))
    })
    .await?;
    let token = bound.token();
    say(&to_json(&serde_json::json!({
        "access_token": token.secret().expose(),
        "expires_in": token.expires_in().as_secs(),
        "token_type": token.token_type(),
        "fingerprint": bound.fingerprint(),
        "certificate_chain": bound.certificate().chain_pem(),
        "certificate_file": bound.certificate().path().display().to_string(),
        "source": credentials.credential_type().to_string(),
    })));
    Ok(())
}

pub(crate) async fn token(args: TokenArgs) -> Result<(), String> {
    check_scopes(&args.scopes)?;
    if args.bound {
        return bound_token(args).await;
    }
    let format = if args.json { Format::Json } else { args.format };
    // The boundary file is an argument: read and checked before any discovery.
    let boundary = match &args.downscope {
        Some(file) => Some(load_boundary(file).map_err(|e| report(&e))?),
        None => None,
    };
    let (credentials, token) = with_timeout(args.timeout, async {
        let credentials = credentials(&args.scopes).map_err(|e| report(&e))?;
        let token = match boundary {
            Some(boundary) => downscoped(&credentials, &args, boundary).await,
            None => credentials.access_token().await,
        }
        .map_err(|e| report(&e))?;
        Ok((credentials, token))
    })
    .await?;
    match format {
        Format::Json => say(&to_json(&serde_json::json!({
            "access_token": token.secret().expose(),
            "expires_in": token.expires_in().as_secs(),
            "token_type": token.token_type(),
            "source": credentials.credential_type().to_string(),
        }))),
        Format::Header => say(&format!(
            "Authorization: {}",
            token.authorization_header().expose()
        )),
        Format::Raw => say(token.secret().expose()),
    }
    Ok(())
}

pub(crate) async fn id_token(args: IdTokenArgs) -> Result<(), String> {
    if args.audience.trim().is_empty() {
        return Err(
            "--audience is empty\nname the receiving service, e.g. https://my-service.run.app"
                .into(),
        );
    }
    let (credentials, token) = with_timeout(args.timeout, async {
        let credentials = credentials(&[]).map_err(|e| report(&e))?;
        let token = credentials
            .id_token(&args.audience)
            .await
            .map_err(|e| report(&e))?;
        Ok((credentials, token))
    })
    .await?;
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

/// A library error for the terminal: the error on the first line (with its hint), the chain of
/// causes on the following lines, which `fail` shows with `--verbose`.
pub(crate) fn report(e: &Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    if let Some(first) = cause {
        // The first line keeps what failed, where, and the hint; the causes go below it.
        text = text.replacen(&format!(": {first}"), "", 1);
    }
    while let Some(c) = cause {
        text.push_str(&format!("\ncaused by: {c}"));
        cause = c.source();
    }
    text
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
