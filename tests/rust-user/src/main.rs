//! What a user's first program does: an access token from Application Default Credentials, and
//! the workload's mTLS identity if it has one. Built by scripts/test.sh with workload-auth's
//! default features only, which must be enough for it.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), workload_auth::Error> {
    let credentials = workload_auth::default_credentials()?;
    let token = credentials.access_token().await?;
    let headers = credentials.request_headers().await?;
    let names: Vec<&str> = headers.iter().map(|(name, _)| name).collect();
    // Never the token itself: its type, lifetime and the header names.
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{} token for {:?}; headers {names:?}",
            token.token_type(),
            token.expires_in()
        );
    }
    if let Ok(identity) = workload_auth::WorkloadIdentity::from_directory(None) {
        let _ = identity;
    }
    Ok(())
}
