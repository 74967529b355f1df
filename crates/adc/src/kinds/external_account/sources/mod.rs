//! Where an external account's subject token comes from: a file, a URL, an executable, AWS, or
//! an X.509 certificate, one module each; the text-or-JSON format the file and URL sources share.

pub(crate) mod aws;
pub(crate) mod certificate;
pub(crate) mod executable;
pub(crate) mod file;
pub(crate) mod url;

use std::path::PathBuf;

use workload_auth_core::json::{Fields, parse_object};
use workload_auth_core::text::snippet;
use workload_auth_core::{Error, ErrorKind, Result, SecretString};

use self::url::UrlSource;
use crate::credential_client::Http;
use crate::env::EnvSource;
use aws::AwsSource;
use certificate::CertificateSource;
use executable::Executable;
use file::FileSource;

/// How a file or URL source holds the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// The whole content is the token.
    Text,
    /// A JSON object; the token is the string in this field.
    Json { field: String },
}

impl Format {
    /// Reads `credential_source.format`.
    fn parse(source: &Fields<'_>) -> Result<Self> {
        let Some(format) = source.opt_object("format")? else {
            return Ok(Self::Text);
        };
        match format.opt_nonempty_str("type")?.unwrap_or("text") {
            "text" => Ok(Self::Text),
            "json" => {
                let field = format.opt_str("subject_token_field_name")?.ok_or_else(|| {
                    format.error(
                        "the JSON format needs `credential_source.format.subject_token_field_name`",
                    )
                })?;
                Ok(Self::Json {
                    field: field.to_owned(),
                })
            }
            other => Err(format.error(format!(
                "`credential_source.format.type` is {:?}; expected \"text\" or \"json\"",
                snippet(other, 40)
            ))),
        }
    }

    /// The token inside `content` read from `location`.
    fn extract(&self, content: &[u8], location: &str) -> Result<SecretString> {
        let token = match self {
            Self::Text => std::str::from_utf8(content)
                .map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidCredentials,
                        "the subject token is not UTF-8 text",
                    )
                    .with_endpoint(location.to_owned())
                })?
                .to_owned(),
            Self::Json { field } => {
                let map = parse_object(
                    content,
                    location,
                    ErrorKind::InvalidCredentials,
                    "the subject-token source",
                )?;
                match map.get(field) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => {
                        return Err(Error::new(
                            ErrorKind::InvalidCredentials,
                            format!(
                                "the subject token field `{field}` is {}, expected a string",
                                workload_auth_core::json::type_name(other)
                            ),
                        )
                        .with_endpoint(location.to_owned()));
                    }
                    None => {
                        return Err(Error::new(
                            ErrorKind::InvalidCredentials,
                            format!("the JSON has no subject token field `{field}`"),
                        )
                        .with_endpoint(location.to_owned())
                        .with_hint("check `credential_source.format.subject_token_field_name`"));
                    }
                }
            }
        };
        let token = SecretString::new(token);
        if token.expose().trim().is_empty() {
            return Err(
                Error::new(ErrorKind::InvalidCredentials, "the subject token is empty")
                    .with_endpoint(location.to_owned()),
            );
        }
        Ok(token)
    }
}

/// What the subject-token sources need at exchange time.
#[derive(Debug)]
pub(crate) struct SubjectContext<'a> {
    pub(crate) audience: &'a str,
    pub(crate) subject_token_type: &'a str,
    pub(crate) impersonated_email: Option<&'a str>,
    pub(crate) http: &'a Http,
    pub(crate) env: &'a EnvSource,
}

/// A subject token, and for the certificate source the mTLS client the exchange must use.
#[derive(Debug)]
pub(crate) struct Subject {
    pub(crate) token: SecretString,
    pub(crate) mtls: Option<Http>,
    /// The certificate source's chain (leaf first) and the file it came from.
    pub(crate) chain: Option<(Vec<rustls_pki_types::CertificateDer<'static>>, PathBuf)>,
}

#[derive(Debug)]
pub(crate) enum SubjectTokenSource {
    File(FileSource),
    Url(UrlSource),
    Executable(Executable),
    Aws(AwsSource),
    Certificate(CertificateSource),
}

impl SubjectTokenSource {
    /// Reads `credential_source` for an identity pool (not AWS, not executable): exactly one of
    /// `file`, `url`, `certificate`.
    pub(crate) fn parse_identity_pool(source: &Fields<'_>, env: &EnvSource) -> Result<Self> {
        if source.has("environment_id") {
            return Err(source.error(
                "`credential_source.environment_id` is only valid for AWS credentials \
                 (subject_token_type urn:ietf:params:aws:token-type:aws4_request)",
            ));
        }
        let present: Vec<&str> = ["file", "url", "certificate"]
            .into_iter()
            .filter(|k| source.has(k))
            .collect();
        match present.as_slice() {
            ["file"] => Ok(Self::File(FileSource::parse(source)?)),
            ["url"] => Ok(Self::Url(UrlSource::parse(source)?)),
            ["certificate"] => Ok(Self::Certificate(CertificateSource::parse(
                &source.object("certificate")?,
                env,
            )?)),
            [] => Err(source.error(
                "`credential_source` has none of `file`, `url`, `certificate`, `executable` \
                 or an AWS `environment_id`",
            )),
            _ => Err(source.error(format!(
                "`credential_source` has {}, which are mutually exclusive",
                present.join(" and ")
            ))),
        }
    }

    /// A short description for `explain`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::File(f) => f.describe(),
            Self::Url(u) => u.describe(),
            Self::Executable(e) => format!("executable {}", e.program()),
            Self::Aws(a) => a.describe(),
            Self::Certificate(c) => c.describe(),
        }
    }

    pub(crate) async fn subject(&self, ctx: &SubjectContext<'_>) -> Result<Subject> {
        let plain = |token| Subject {
            token,
            mtls: None,
            chain: None,
        };
        match self {
            Self::File(f) => f.subject_token().map(plain),
            Self::Url(u) => u.subject_token(ctx.http).await.map(plain),
            Self::Executable(e) => e.subject_token(ctx).await.map(plain),
            Self::Aws(a) => a.subject_token(ctx).await.map(plain),
            Self::Certificate(c) => c.subject(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_extract_tokens() {
        assert_eq!(
            Format::Text.extract(b"tok\n", "f").unwrap().expose(),
            "tok\n"
        );
        let json = Format::Json {
            field: "access_token".into(),
        };
        assert_eq!(
            json.extract(br#"{"access_token":"t"}"#, "f")
                .unwrap()
                .expose(),
            "t"
        );
        for (bad, needle) in [
            (&br#"{"other":"t"}"#[..], "no subject token field"),
            (br#"{"access_token":1}"#, "a number"),
            (b"nope", "not valid JSON"),
            (br#"{"access_token":""}"#, "empty"),
        ] {
            let err = json.extract(bad, "/src").unwrap_err();
            assert!(err.message().contains(needle), "{needle}: {err}");
            assert_eq!(err.endpoint(), Some("/src"));
        }
        assert!(Format::Text.extract(b"  \n", "f").is_err());
    }
}
