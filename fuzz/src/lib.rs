//! Helpers shared by the fuzz targets: loading a credentials document through the public ADC
//! loader with nothing of the machine's environment, shaping a fuzzed JSON object into one
//! credential type, and the invariant every target checks on errors and `Debug` output: no
//! secret of the input is ever quoted back.

use serde_json::{Map, Value};
use workload_auth_adc::{Builder, EnvSource};

/// Fields whose string values are secrets wherever they appear in a credentials document or a
/// server's answer.
const SECRET_FIELDS: [&str; 8] = [
    "private_key",
    "client_secret",
    "refresh_token",
    "access_token",
    "accessToken",
    "id_token",
    "token",
    "privateKeyPem",
];

/// Shorter secrets could appear in a message by coincidence (a field name, a fixed phrase).
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

/// Panics (a libFuzzer crash) when `shown` — an error message or a `Debug` rendering — quotes
/// a secret value of `doc`. Secrets that are short, or that also appear in a non-secret field
/// (which a message may legitimately quote), are not checked.
pub fn assert_no_secret(doc: &Value, shown: &str) {
    let (mut secrets, mut others) = (Vec::new(), Vec::new());
    collect(doc, &mut secrets, &mut others);
    for secret in secrets {
        if secret.len() < MIN_CHECKED_SECRET_LEN || others.iter().any(|o| o.contains(&secret)) {
            continue;
        }
        assert!(
            !shown.contains(&secret),
            "a secret of the input is quoted in: {shown}"
        );
    }
}

/// [`assert_no_secret`] for raw bytes that may or may not be a JSON document.
pub fn assert_no_secret_in(data: &[u8], shown: &str) {
    if let Ok(doc) = serde_json::from_slice::<Value>(data) {
        assert_no_secret(&doc, shown);
    }
}

/// Loads `json` as a credentials file through the public generic ADC loader, with an empty
/// environment (no file search, no metadata server, nothing sent anywhere), and checks that
/// neither the error nor the credentials' `Debug` output quotes a secret of the document.
pub fn load_credentials(json: &str) {
    let result = Builder::new()
        .with_env(EnvSource::from_vars(Vec::<(String, String)>::new()))
        .with_json(json)
        .build();
    let shown = match &result {
        Ok(credentials) => format!(
            "{credentials:?} {} {:?}",
            credentials.credential_type(),
            credentials.quota_project_id()
        ),
        Err(error) => format!("{error} {error:?}"),
    };
    if let Ok(doc) = serde_json::from_str::<Value>(json) {
        assert_no_secret(&doc, &shown);
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
