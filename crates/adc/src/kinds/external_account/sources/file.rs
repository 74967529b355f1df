//! The file credential source: the subject token is read from a file (text, or a field of a JSON
//! object) that something else on the machine keeps fresh, read again for every exchange.

use std::path::PathBuf;

use workload_auth_core::fs::{MAX_TOKEN_FILE_BYTES, read_bounded};
use workload_auth_core::json::Fields;
use workload_auth_core::{ErrorKind, Result, SecretString};

use super::Format;

#[derive(Debug)]
pub(crate) struct FileSource {
    path: PathBuf,
    format: Format,
}

impl FileSource {
    /// Reads `credential_source.file` and `credential_source.format`.
    pub(crate) fn parse(source: &Fields<'_>) -> Result<Self> {
        Ok(Self {
            path: PathBuf::from(source.str("file")?),
            format: Format::parse(source)?,
        })
    }

    /// A short description for `explain`.
    pub(crate) fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    /// Reads the token now (bounded: the file may be anything).
    pub(crate) fn subject_token(&self) -> Result<SecretString> {
        let place = self.path.display().to_string();
        let content = read_bounded(&self.path, MAX_TOKEN_FILE_BYTES, "the subject-token file")
            .map_err(|e| {
                if e.kind() == ErrorKind::Io {
                    e.with_hint(
                        "check `credential_source.file` and that whatever writes the token is \
                         running",
                    )
                } else {
                    e
                }
            })?;
        self.format.extract(&content, &place)
    }
}
