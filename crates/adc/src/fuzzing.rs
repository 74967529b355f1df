//! Entry points for the fuzz targets in the repository's `fuzz/` directory.
//!
//! Compiled only with the non-default `fuzzing` feature and hidden from the documentation: these
//! are crate-internal parsers of outside input (token-endpoint answers, an executable's output,
//! the certificate configuration), reached here without a network so that libFuzzer can call
//! them millions of times. Not a supported API; the credential files themselves are fuzzed
//! through the public [`Builder::with_json`](crate::Builder::with_json).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use workload_auth_core::{AccessToken, IdToken, Result, SecretString};
use zeroize::Zeroizing;

use crate::certificate_config;
use crate::credential_client::{CredentialResponse, parse_access_token};
use crate::kinds::external_account::sources::executable;
use crate::kinds::impersonated::iam;

/// The endpoint fuzzed answers claim to come from (never contacted).
const ENDPOINT: &str = "https://fuzz.invalid/token";

fn reply(status: u16, body: &[u8]) -> CredentialResponse {
    CredentialResponse {
        status,
        body: Zeroizing::new(body.to_vec()),
        endpoint: ENDPOINT.to_owned(),
    }
}

/// An OAuth 2.0 or STS token endpoint's answer with HTTP `status`, read as the refresh-token,
/// JWT-bearer and token-exchange grants read it: the classified error of a non-2xx answer, else
/// the access token received at `now`.
pub fn token_answer(status: u16, body: &[u8], now: SystemTime) -> Result<AccessToken> {
    let reply = reply(status, body).ok_or_token_error("the fuzzed grant", "a hint")?;
    parse_access_token(&reply, now)
}

/// An IAM Credentials `generateAccessToken` answer.
pub fn iam_access_token_answer(body: &[u8]) -> Result<AccessToken> {
    iam::Target::parse_access_token_answer(&reply(200, body))
}

/// An IAM Credentials `generateIdToken` answer (a JWT in `token`).
pub fn iam_id_token_answer(body: &[u8]) -> Result<IdToken> {
    reply(200, body).id_token("the generateIdToken answer", "token")
}

/// An executable credential source's output; `from_cache`: read from its `output_file`.
pub fn executable_output(content: &[u8], from_cache: bool) -> Result<SecretString> {
    executable::parse_response(content, "fuzzed executable output", from_cache)
}

/// An executable source's `command`, split into words as a shell would (no expansion).
pub fn split_command(command: &str) -> Option<Vec<String>> {
    executable::split_command(command)
}

/// The certificate and key paths named by the `certificate_config.json` at `path`.
pub fn certificate_config(path: &Path) -> Result<(PathBuf, PathBuf)> {
    certificate_config::read_config(path)
}

/// An RFC 3339 timestamp as the IAM answers and AWS dates are read.
pub fn rfc3339(text: &str) -> Option<SystemTime> {
    crate::time::parse_rfc3339(text)
}
