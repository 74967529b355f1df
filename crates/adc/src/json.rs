//! Reading JSON (credential files and server answers) with errors that name the place and the
//! field, and never echo a value.
//!
//! serde's typed errors quote the offending value (`invalid type: string "-----BEGIN PRIVATE KEY…"`),
//! which would put a secret into an error message. So documents are parsed into a
//! [`serde_json::Value`] and fields are read with [`Fields`], whose errors say only which field was
//! missing or of which wrong type.

use serde_json::{Map, Value};
use workload_auth_core::{Error, ErrorKind, Result, SecretString};

/// `"a string"`, `"a number"`, ... for error messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses `text` as a JSON object; errors (of `kind`) give the position, never the content.
pub(crate) fn parse_object(
    text: &[u8],
    place: &str,
    kind: ErrorKind,
    what: &str,
) -> Result<Map<String, Value>> {
    let value: Value = serde_json::from_slice(text).map_err(|e| {
        let problem = match e.classify() {
            serde_json::error::Category::Eof => "is not valid JSON (it ends early)",
            _ => "is not valid JSON",
        };
        Error::new(
            kind,
            format!(
                "{what} {problem} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
        .with_endpoint(place.to_owned())
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(Error::new(
            kind,
            format!("{what} is JSON {}, expected an object", type_name(&other)),
        )
        .with_endpoint(place.to_owned())),
    }
}

/// The fields of one JSON object, read with errors that name `place` and the field path.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    place: &'a str,
    parent: String,
    kind: ErrorKind,
}

impl<'a> Fields<'a> {
    /// Fields of a credentials file (errors are [`ErrorKind::InvalidCredentials`]).
    pub(crate) fn of_file(map: &'a Map<String, Value>, place: &'a str) -> Self {
        Self {
            map,
            place,
            parent: String::new(),
            kind: ErrorKind::InvalidCredentials,
        }
    }

    /// Fields of a server's answer (errors are [`ErrorKind::MalformedResponse`]).
    pub(crate) fn of_response(map: &'a Map<String, Value>, place: &'a str) -> Self {
        Self {
            map,
            place,
            parent: String::new(),
            kind: ErrorKind::MalformedResponse,
        }
    }

    /// The place (file or endpoint) these fields come from.
    pub(crate) fn place(&self) -> &'a str {
        self.place
    }

    /// The full name of `field`, e.g. `credential_source.format.type`.
    pub(crate) fn path(&self, field: &str) -> String {
        if self.parent.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.parent)
        }
    }

    /// An error about this object.
    pub(crate) fn error(&self, message: impl Into<String>) -> Error {
        Error::new(self.kind, message).with_endpoint(self.place.to_owned())
    }

    fn missing(&self, field: &str) -> Error {
        self.error(format!("the `{}` field is missing", self.path(field)))
    }

    fn wrong_type(&self, field: &str, expected: &str, got: &Value) -> Error {
        self.error(format!(
            "the `{}` field is {}, expected {expected}",
            self.path(field),
            type_name(got)
        ))
    }

    /// The raw value of `field` (`null` counts as absent).
    pub(crate) fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// Whether `field` is present and not null.
    pub(crate) fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    /// An optional string field.
    pub(crate) fn opt_str(&self, field: &str) -> Result<Option<&'a str>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.wrong_type(field, "a string", other)),
        }
    }

    /// An optional string field; an empty string counts as absent.
    pub(crate) fn opt_nonempty_str(&self, field: &str) -> Result<Option<&'a str>> {
        Ok(self.opt_str(field)?.filter(|s| !s.trim().is_empty()))
    }

    /// A required, non-empty string field.
    pub(crate) fn str(&self, field: &str) -> Result<&'a str> {
        match self.opt_str(field)? {
            None => Err(self.missing(field)),
            Some(s) if s.trim().is_empty() => Err(self.error(format!(
                "the `{}` field is empty",
                self.path(field)
            ))),
            Some(s) => Ok(s),
        }
    }

    /// A required, non-empty secret string field.
    pub(crate) fn secret(&self, field: &str) -> Result<SecretString> {
        self.str(field).map(SecretString::from)
    }

    /// An optional secret string field (empty counts as absent).
    pub(crate) fn opt_secret(&self, field: &str) -> Result<Option<SecretString>> {
        Ok(self.opt_nonempty_str(field)?.map(SecretString::from))
    }

    /// An optional boolean field.
    pub(crate) fn opt_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(field, "a boolean", other)),
        }
    }

    /// An optional non-negative integer field. Accepts a JSON number or a string of digits (some
    /// servers send `expires_in` as a string).
    pub(crate) fn opt_u64(&self, field: &str) -> Result<Option<u64>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) => Ok(Some(v)),
                None => match n.as_f64() {
                    Some(f) if f >= 0.0 && f.is_finite() => Ok(Some(f as u64)),
                    _ => Err(self.error(format!(
                        "the `{}` field is not a non-negative integer",
                        self.path(field)
                    ))),
                },
            },
            Some(Value::String(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| {
                self.error(format!(
                    "the `{}` field is not a non-negative integer",
                    self.path(field)
                ))
            }),
            Some(other) => Err(self.wrong_type(field, "a number", other)),
        }
    }

    /// An optional number field as `f64` (for timestamps).
    pub(crate) fn opt_f64(&self, field: &str) -> Result<Option<f64>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(self.wrong_type(field, "a number", other)),
        }
    }

    /// An optional array of strings.
    pub(crate) fn opt_str_list(&self, field: &str) -> Result<Option<Vec<String>>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.error(format!(
                        "item {i} of the `{}` field is {}, expected a string",
                        self.path(field),
                        type_name(other)
                    ))),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => Err(self.wrong_type(field, "an array of strings", other)),
        }
    }

    /// An optional nested object.
    pub(crate) fn opt_object(&self, field: &str) -> Result<Option<Fields<'a>>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Fields {
                map,
                place: self.place,
                parent: self.path(field),
                kind: self.kind,
            })),
            Some(other) => Err(self.wrong_type(field, "an object", other)),
        }
    }

    /// A required nested object.
    pub(crate) fn object(&self, field: &str) -> Result<Fields<'a>> {
        self.opt_object(field)?.ok_or_else(|| self.missing(field))
    }

    /// The entries of this object whose values are strings (others are an error).
    pub(crate) fn string_entries(&self) -> Result<Vec<(String, String)>> {
        self.map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(self.error(format!(
                    "the `{}` field is {}, expected a string",
                    self.path(k),
                    type_name(other)
                ))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_place_and_field_but_not_values() {
        let map = parse_object(
            br#"{"a":"x","n":5,"s":"12","o":{"inner":true},"secret":7,"e":"  "}"#,
            "/f.json",
            ErrorKind::InvalidCredentials,
            "the credentials file",
        )
        .unwrap();
        let f = Fields::of_file(&map, "/f.json");
        assert_eq!(f.str("a").unwrap(), "x");
        assert_eq!(f.opt_u64("n").unwrap(), Some(5));
        assert_eq!(f.opt_u64("s").unwrap(), Some(12));
        let err = f.str("missing").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
        assert_eq!(err.endpoint(), Some("/f.json"));
        assert!(err.message().contains("`missing`"));
        let err = f.object("o").unwrap().str("inner").unwrap_err();
        assert!(err.message().contains("`o.inner` field is a boolean"), "{err}");
        let err = f.str("e").unwrap_err();
        assert!(err.message().contains("empty"));
        assert!(f.opt_nonempty_str("e").unwrap().is_none());
    }

    #[test]
    fn parse_errors_give_position_only() {
        let err = parse_object(
            b"{\"private_key\": \"-----BEGIN",
            "/k.json",
            ErrorKind::InvalidCredentials,
            "the credentials file",
        )
        .unwrap_err();
        assert!(!err.to_string().contains("BEGIN"), "{err}");
        assert!(err.message().contains("line 1"));
        let err = parse_object(b"[1]", "/k.json", ErrorKind::InvalidCredentials, "x").unwrap_err();
        assert!(err.message().contains("an array"));
    }
}
