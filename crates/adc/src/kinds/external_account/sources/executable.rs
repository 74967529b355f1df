//! The executable credential source: runs a command (no shell) that prints a subject token as
//! JSON, optionally cached in an output file. Only when `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES`
//! is `1`, because a credentials file that names a program would otherwise run anything.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use tokio::io::AsyncReadExt as _;
use workload_auth_core::fs::{MAX_JSON_FILE_BYTES, read_bounded};
use workload_auth_core::json::{Fields, parse_object};
use workload_auth_core::text::snippet;
use workload_auth_core::{Error, ErrorKind, Result, SecretString};
use zeroize::Zeroizing;

use super::SubjectContext;
use crate::env::{ALLOW_EXECUTABLES_ENV, ChildEnv};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MIN_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
const SUPPORTED_VERSION: u64 = 1;
/// Names the output file in errors.
const OUTPUT_FILE: &str = "the executable's output file";

const OIDC_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];
const SAML_TYPE: &str = "urn:ietf:params:oauth:token-type:saml2";

#[derive(Debug)]
pub(crate) struct Executable {
    argv: Vec<String>,
    timeout: Duration,
    output_file: Option<PathBuf>,
    place: String,
}

impl Executable {
    pub(crate) fn parse(source: &Fields<'_>) -> Result<Self> {
        let exe = source.object("executable")?;
        let command = exe.str("command")?;
        let argv = split_command(command).ok_or_else(|| {
            exe.error("`credential_source.executable.command` has an unterminated quote")
        })?;
        if argv.is_empty() {
            return Err(exe.error("`credential_source.executable.command` is empty"));
        }
        let timeout = match exe.opt_u64("timeout_millis")? {
            None | Some(0) => DEFAULT_TIMEOUT,
            Some(ms) => {
                let t = Duration::from_millis(ms);
                if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&t) {
                    return Err(exe.error(
                        "`credential_source.executable.timeout_millis` must be between 5000 and \
                         120000 (5 s to 2 min)",
                    ));
                }
                t
            }
        };
        Ok(Self {
            argv,
            timeout,
            output_file: exe.opt_nonempty_str("output_file")?.map(PathBuf::from),
            place: source.place().to_owned(),
        })
    }

    /// The program that runs (for `explain` and errors; its arguments may hold secrets).
    pub(crate) fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    fn endpoint(&self) -> String {
        format!("executable {}", self.program())
    }

    pub(crate) async fn subject_token(&self, ctx: &SubjectContext<'_>) -> Result<SecretString> {
        if ctx.env.var(ALLOW_EXECUTABLES_ENV).as_deref() != Some("1") {
            return Err(Error::new(
                ErrorKind::InvalidCredentials,
                format!(
                    "the credentials file asks to run {}, but executables are not allowed",
                    self.program()
                ),
            )
            .with_endpoint(self.place.clone())
            .with_hint(format!(
                "if you trust this credentials file, set {ALLOW_EXECUTABLES_ENV}=1"
            )));
        }
        if let Some(cached) = self.cached_token()? {
            return Ok(cached);
        }
        let output = self.run(ctx).await?;
        let endpoint = self.endpoint();
        if output.iter().all(u8::is_ascii_whitespace) {
            if let Some(file) = &self.output_file {
                let content =
                    read_bounded(file, MAX_JSON_FILE_BYTES, OUTPUT_FILE).map_err(|e| {
                        Error::new(
                            e.kind(),
                            format!("the executable printed nothing and {}", e.message()),
                        )
                        .with_endpoint(file.display().to_string())
                    })?;
                return parse_response(&content, &file.display().to_string(), false);
            }
            return Err(Error::new(
                ErrorKind::MalformedResponse,
                "the executable printed nothing",
            )
            .with_endpoint(endpoint));
        }
        parse_response(&output, &endpoint, false)
    }

    /// A still-valid token from the output file, if there is one. A missing or unparsable file,
    /// an expired or failed response, or one without `expiration_time` means "run the
    /// executable"; a response that breaks the format is an error (as in google-auth).
    fn cached_token(&self) -> Result<Option<SecretString>> {
        let Some(file) = &self.output_file else {
            return Ok(None);
        };
        let Ok(content) = read_bounded(file, MAX_JSON_FILE_BYTES, OUTPUT_FILE) else {
            return Ok(None);
        };
        if serde_json::from_slice::<serde_json::Value>(&content).is_err() {
            return Ok(None);
        }
        match parse_response(&content, &file.display().to_string(), true) {
            Ok(token) => Ok(Some(token)),
            Err(e) if e.kind() == ErrorKind::MalformedResponse => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// The command to run: no shell, no stdin, stderr dropped, killed when dropped; the
    /// environment the builder's source gives, plus the `GOOGLE_EXTERNAL_ACCOUNT_*` variables the
    /// executable-sourced credentials protocol defines.
    fn command(&self, ctx: &SubjectContext<'_>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.argv[0]);
        command
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        match ctx.env.child_env() {
            ChildEnv::Inherit(extra) => {
                command.envs(extra.iter());
            }
            ChildEnv::Exactly(vars) => {
                command.env_clear().envs(vars.iter());
            }
        }
        command
            .env("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE", ctx.audience)
            .env("GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE", ctx.subject_token_type)
            .env("GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE", "0")
            .env("GOOGLE_EXTERNAL_ACCOUNT_REVOKE", "0");
        if let Some(email) = ctx.impersonated_email {
            command.env("GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL", email);
        }
        if let Some(file) = &self.output_file {
            command.env("GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE", file);
        }
        command
    }

    /// Runs the command within the timeout and returns its standard output (bounded).
    async fn run(&self, ctx: &SubjectContext<'_>) -> Result<Zeroizing<Vec<u8>>> {
        let endpoint = self.endpoint();
        let mut command = self.command(ctx);
        let mut child = command.spawn().map_err(|e| {
            Error::new(
                ErrorKind::InvalidCredentials,
                format!("the executable cannot be started ({})", e.kind()),
            )
            .with_endpoint(endpoint.clone())
            .with_hint("check `credential_source.executable.command`: a path to a program and its arguments, without shell syntax")
        })?;
        let Some(stdout) = child.stdout.take() else {
            return Err(
                Error::new(ErrorKind::Io, "the executable's output is not readable")
                    .with_endpoint(endpoint),
            );
        };
        let run = async move {
            let mut output = Zeroizing::new(Vec::new());
            let mut limited = stdout.take(MAX_OUTPUT_BYTES as u64 + 1);
            let read = limited.read_to_end(&mut output).await;
            if output.len() > MAX_OUTPUT_BYTES {
                // It would block on the full pipe until the timeout: stop it now.
                let _ = child.kill().await;
                return (read, None, output);
            }
            let status = child.wait().await;
            (read, Some(status), output)
        };
        let (read, status, output) = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Transport,
                    format!(
                        "the executable did not finish within {} ms and was stopped",
                        self.timeout.as_millis()
                    ),
                )
                .with_endpoint(endpoint.clone())
                .with_hint("raise `credential_source.executable.timeout_millis` (up to 120000) or fix the program")
                // Retrying would only hang again for as long.
                .with_retry(workload_auth_core::Retry::Permanent)
            })?;
        if output.len() > MAX_OUTPUT_BYTES {
            return Err(Error::new(
                ErrorKind::MalformedResponse,
                format!(
                    "the executable's output exceeded {MAX_OUTPUT_BYTES} bytes; it was stopped"
                ),
            )
            .with_endpoint(endpoint));
        }
        read.map_err(|e| {
            Error::new(ErrorKind::Io, "reading the executable's output failed")
                .with_endpoint(endpoint.clone())
                .with_source(e)
        })?;
        let status = status
            .unwrap_or_else(|| Err(std::io::Error::other("the executable was not waited for")))
            .map_err(|e| {
                Error::new(ErrorKind::Io, "waiting for the executable failed")
                    .with_endpoint(endpoint.clone())
                    .with_source(e)
            })?;
        if !status.success() {
            let how = match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_owned(),
            };
            return Err(Error::new(
                ErrorKind::InvalidCredentials,
                format!("the executable {how}"),
            )
            .with_endpoint(endpoint)
            .with_hint("run the command by hand to see what it reports"));
        }
        Ok(output)
    }
}

/// Reads an executable response. `from_cache`: the output file, where `expiration_time` is
/// required.
pub(crate) fn parse_response(
    content: &[u8],
    place: &str,
    from_cache: bool,
) -> Result<SecretString> {
    let map = parse_object(
        content,
        place,
        ErrorKind::MalformedResponse,
        "the executable's response",
    )?;
    let fields = Fields::of_response(&map, place);
    let version = fields
        .opt_u64("version")?
        .ok_or_else(|| fields.error("the executable's response has no `version` field"))?;
    if version > SUPPORTED_VERSION {
        return Err(fields.error(format!(
            "the executable's response has version {version}; only version {SUPPORTED_VERSION} is supported"
        )));
    }
    let success = fields
        .opt_bool("success")?
        .ok_or_else(|| fields.error("the executable's response has no `success` field"))?;
    if !success {
        let (Some(code), Some(message)) = (fields.opt_str("code")?, fields.opt_str("message")?)
        else {
            return Err(fields.error(
                "the executable reported a failure without the required `code` and `message` fields",
            ));
        };
        return Err(Error::new(
            ErrorKind::Rejected,
            format!(
                "the executable reported a failure: code {:?}, message {:?}",
                snippet(code, 60),
                snippet(message, 200)
            ),
        )
        .with_endpoint(place.to_owned()));
    }
    let expiration = fields.opt_f64("expiration_time")?;
    if let Some(exp) = expiration {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if exp < now {
            return Err(Error::new(
                ErrorKind::InvalidCredentials,
                "the token the executable returned has expired",
            )
            .with_endpoint(place.to_owned()));
        }
    } else if from_cache {
        return Err(Error::new(
            ErrorKind::InvalidCredentials,
            "the cached response has no expiration_time",
        )
        .with_endpoint(place.to_owned()));
    }
    let token_type = fields.str("token_type")?;
    let field = if OIDC_TYPES.contains(&token_type) {
        "id_token"
    } else if token_type == SAML_TYPE {
        "saml_response"
    } else {
        return Err(fields.error(format!(
            "the executable returned the unsupported token type {:?}",
            snippet(token_type, 80)
        )));
    };
    fields.secret(field)
}

/// Splits a command line as a POSIX shell would split words (quotes and backslashes), without
/// any expansion. `None` on an unterminated quote.
pub(crate) fn split_command(command: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => word.push(c),
                            '\n' => {}
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(c) => word.push(c),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// The output file path, for tests.
#[cfg(test)]
impl Executable {
    fn output_file(&self) -> Option<&std::path::Path> {
        self.output_file.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_shlex() {
        assert_eq!(
            split_command(r#"/bin/tool --a=1  'b c' "d \"e\"" f\ g"#).unwrap(),
            ["/bin/tool", "--a=1", "b c", "d \"e\"", "f g"]
        );
        assert_eq!(split_command("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_command("''").unwrap(), [""]);
        assert_eq!(split_command("'open"), None);
        assert_eq!(split_command("\"open"), None);
    }

    #[test]
    fn responses_are_validated() {
        let far = 4_000_000_000u64;
        let ok = format!(
            r#"{{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:id_token","id_token":"tok","expiration_time":{far}}}"#
        );
        assert_eq!(
            parse_response(ok.as_bytes(), "x", true).unwrap().expose(),
            "tok"
        );
        let saml = r#"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:saml2","saml_response":"s"}"#;
        assert_eq!(
            parse_response(saml.as_bytes(), "x", false)
                .unwrap()
                .expose(),
            "s"
        );
        let cases = [
            (r#"{"success":true}"#, "no `version`"),
            (r#"{"version":2,"success":true}"#, "version 2"),
            (r#"{"version":1}"#, "no `success`"),
            (r#"{"version":1,"success":false}"#, "without the required"),
            (
                r#"{"version":1,"success":false,"code":"401","message":"Caller not authorized."}"#,
                "Caller not authorized",
            ),
            (
                r#"{"version":1,"success":true,"token_type":"x","expiration_time":1}"#,
                "expired",
            ),
            (
                r#"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt"}"#,
                "`id_token` field is missing",
            ),
            (
                r#"{"version":1,"success":true,"token_type":"other"}"#,
                "unsupported",
            ),
            ("not json", "not valid JSON"),
        ];
        for (body, needle) in cases {
            let err = parse_response(body.as_bytes(), "exe", false).unwrap_err();
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
        let no_exp = r#"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt","id_token":"t"}"#;
        assert!(parse_response(no_exp.as_bytes(), "cache", true).is_err());
        assert!(parse_response(no_exp.as_bytes(), "stdout", false).is_ok());
    }

    #[test]
    fn timeouts_are_bounded() {
        let map = workload_auth_core::json::parse_object(
            br#"{"executable":{"command":"/bin/true","timeout_millis":1000}}"#,
            "f",
            ErrorKind::InvalidCredentials,
            "x",
        )
        .unwrap();
        let err = Executable::parse(&Fields::of_file(&map, "f")).unwrap_err();
        assert!(err.message().contains("between 5000 and 120000"), "{err}");
        let map = workload_auth_core::json::parse_object(
            br#"{"executable":{"command":"/bin/true","output_file":"/tmp/o"}}"#,
            "f",
            ErrorKind::InvalidCredentials,
            "x",
        )
        .unwrap();
        let exe = Executable::parse(&Fields::of_file(&map, "f")).unwrap();
        assert_eq!(exe.timeout, DEFAULT_TIMEOUT);
        assert_eq!(exe.output_file(), Some(std::path::Path::new("/tmp/o")));
    }
}
