//! Helpers shared by the fuzz targets: loading a credentials document through the public ADC
//! loader with nothing of the machine's environment, shaping a fuzzed JSON object into one
//! credential type, and the invariant every target checks on errors and `Debug` output: no
//! secret of the input is ever quoted back.

use serde_json::{Map, Value};
use workload_auth_adc::{Builder, EnvSource};

/// Fields whose string values are secrets wherever they appear in a credentials document or a
/// server's answer.
const SECRET_FIELDS: [&str; 9] = [
    "private_key",
    "client_secret",
    "refresh_token",
    "access_token",
    "accessToken",
    "id_token",
    "saml_response",
    "token",
    "privateKeyPem",
];

/// Shorter secrets could appear in a message by coincidence.
const MIN_CHECKED_SECRET_LEN: usize = 16;

fn collect(value: &Value, secrets: &mut Vec<String>, others: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                others.push(key.clone());
                match value {
                    Value::String(s) if SECRET_FIELDS.contains(&key.as_str()) => {
                        secrets.push(s.clone());
                    }
                    other => collect(other, secrets, others),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, secrets, others)),
        Value::String(s) => others.push(s.clone()),
        _ => {}
    }
}

fn replace_secret(value: &mut Value, secret: &str, marker: &str) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(s) if SECRET_FIELDS.contains(&key.as_str()) && s == secret => {
                        *s = marker.to_owned();
                    }
                    other => replace_secret(other, secret, marker),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| replace_secret(v, secret, marker)),
        _ => {}
    }
}

/// A string as long as `text` that shares no character with it.
pub fn marker_for(text: &str) -> String {
    let c = ['Q', 'W', 'X', 'Z', 'q', 'w', 'x', 'z', '7']
        .into_iter()
        .find(|c| !text.contains(*c))
        .unwrap_or('~');
    std::iter::repeat_n(c, text.chars().count()).collect()
}

/// Panics (a libFuzzer crash) when `shown` — the error message or `Debug` output that `render`
/// gives for `doc` — quotes a secret value of `doc`. A secret found in `shown` counts as quoted
/// when, with that secret replaced in the document by a marker of the same length, the new
/// rendering shows the marker: text a fixed message happens to share with a secret is not a
/// leak. Short secrets, and secrets that also appear in a non-secret field (which a message may
/// legitimately quote), are not checked.
pub fn check_secrets(doc: &Value, shown: &str, render: impl Fn(&Value) -> String) {
    let (mut secrets, mut others) = (Vec::new(), Vec::new());
    collect(doc, &mut secrets, &mut others);
    for secret in secrets {
        if secret.len() < MIN_CHECKED_SECRET_LEN
            || others.iter().any(|o| o.contains(&secret))
            || !shown.contains(&secret)
        {
            continue;
        }
        let marker = marker_for(&secret);
        let mut changed = doc.clone();
        replace_secret(&mut changed, &secret, &marker);
        let shown_changed = render(&changed);
        assert!(
            !shown_changed.contains(&marker),
            "a secret of the input is quoted in: {shown_changed}"
        );
    }
}

/// [`check_secrets`] for raw bytes that may or may not be a JSON document; `render` shows what
/// the parser under test makes of them.
pub fn assert_no_secret_in(data: &[u8], render: impl Fn(&[u8]) -> String) {
    let shown = render(data);
    if let Ok(doc) = serde_json::from_slice::<Value>(data) {
        check_secrets(&doc, &shown, |changed| {
            render(&serde_json::to_vec(changed).unwrap_or_default())
        });
    }
}

/// The `Debug` output of a parse result, or its error's message and `Debug` output.
pub fn shown<T: std::fmt::Debug, E: std::fmt::Display + std::fmt::Debug>(
    result: &Result<T, E>,
) -> String {
    match result {
        Ok(value) => format!("{value:?}"),
        Err(error) => format!("{error} {error:?}"),
    }
}

fn render_credentials(json: &str) -> String {
    let result = Builder::new()
        .with_env(EnvSource::from_vars(Vec::<(String, String)>::new()))
        .with_json(json)
        .build();
    match &result {
        Ok(credentials) => format!(
            "{credentials:?} {} {:?}",
            credentials.credential_type(),
            credentials.quota_project_id()
        ),
        Err(error) => format!("{error} {error:?}"),
    }
}

/// Loads `json` as a credentials file through the public generic ADC loader, with an empty
/// environment (no file search, no metadata server, nothing sent anywhere), and checks that
/// neither the error nor the credentials' `Debug` output quotes a secret of the document.
pub fn load_credentials(json: &str) {
    let shown = render_credentials(json);
    if let Ok(doc) = serde_json::from_str::<Value>(json) {
        check_secrets(&doc, &shown, |changed| {
            render_credentials(&changed.to_string())
        });
    }
}

/// Which `credential_source` an `external_account` target fuzzes, with the key that selects it
/// and a value to put there when the fuzzed document has none.
#[derive(Clone, Copy, Debug)]
pub enum SourceKind {
    /// `credential_source.file`.
    File,
    /// `credential_source.url`.
    Url,
    /// AWS: `credential_source.environment_id` `aws1`.
    Aws,
    /// `credential_source.executable`.
    Executable,
    /// `credential_source.certificate` (X.509 workload certificate).
    Certificate,
}

const SELECTORS: [&str; 5] = ["file", "url", "environment_id", "executable", "certificate"];

impl SourceKind {
    fn selector(self) -> (&'static str, Value) {
        match self {
            Self::File => ("file", Value::from("/nonexistent/subject-token")),
            Self::Url => ("url", Value::from("http://127.0.0.1:9/subject-token")),
            Self::Aws => ("environment_id", Value::from("aws1")),
            Self::Executable => (
                "executable",
                serde_json::json!({ "command": "/nonexistent/token-helper" }),
            ),
            Self::Certificate => (
                "certificate",
                serde_json::json!({ "certificate_config_location": "/nonexistent/config.json" }),
            ),
        }
    }
}

/// The fuzzed bytes as a credentials document of `kind` (its `type` set, and for an external
/// account exactly one credential source of `source`'s kind), or `None` when they are not a
/// JSON object (the generic target covers those).
pub fn shaped(data: &[u8], kind: &str, source: Option<SourceKind>) -> Option<String> {
    let Ok(Value::Object(mut doc)) = serde_json::from_slice::<Value>(data) else {
        return None;
    };
    doc.insert("type".into(), Value::from(kind));
    if let Some(source) = source {
        let mut cs = match doc.remove("credential_source") {
            Some(Value::Object(cs)) => cs,
            _ => Map::new(),
        };
        let (key, default) = source.selector();
        for other in SELECTORS {
            // AWS reads `url` too (its credentials endpoint).
            let keep = other == key || (matches!(source, SourceKind::Aws) && other == "url");
            if !keep {
                cs.remove(other);
            }
        }
        cs.entry(key).or_insert(default);
        doc.insert("credential_source".into(), Value::Object(cs));
    }
    serde_json::to_string(&Value::Object(doc)).ok()
}
