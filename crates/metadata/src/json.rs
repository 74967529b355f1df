//! JSON parsing that names the field that was wrong and never echoes a value.
//!
//! serde's typed errors quote the offending value ("invalid type: string \"ya29...\""), which would
//! put a token into an error message. So bodies are parsed into a [`serde_json::Value`] (through a
//! visitor that also refuses duplicate keys) and fields are read with the helpers below, whose
//! errors say only *which* field was missing or of which wrong type.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use workload_auth_core::{Error, ErrorKind, Result};

/// A malformed-response error about `endpoint`.
pub(crate) fn malformed(endpoint: &str, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::MalformedResponse, message).with_endpoint(endpoint.to_owned())
}

/// Parses `body` as a JSON object. The error gives the position, never the content.
pub(crate) fn parse_object(body: &[u8], endpoint: &str) -> Result<Map<String, Value>> {
    let strict: Strict = serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "the body is not valid JSON (it ends early)",
            serde_json::error::Category::Data => "the body has a duplicate key",
            _ => "the body is not valid JSON",
        };
        malformed(
            endpoint,
            format!("{what} (line {}, column {})", e.line(), e.column()),
        )
    })?;
    match strict.0 {
        Value::Object(map) => Ok(map),
        other => Err(malformed(
            endpoint,
            format!("the body is {}, expected a JSON object", type_name(&other)),
        )),
    }
}

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

/// Reads the fields of one JSON object, naming the field (as `parent.field`) in every error.
pub(crate) struct Fields<'e> {
    map: Map<String, Value>,
    endpoint: &'e str,
    parent: String,
}

impl<'e> Fields<'e> {
    /// Parses `body` as a JSON object.
    pub(crate) fn parse(body: &[u8], endpoint: &'e str) -> Result<Self> {
        Ok(Self {
            map: parse_object(body, endpoint)?,
            endpoint,
            parent: String::new(),
        })
    }

    fn path(&self, field: &str) -> String {
        if self.parent.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.parent)
        }
    }

    pub(crate) fn missing(&self, field: &str) -> Error {
        malformed(
            self.endpoint,
            format!("field `{}` is missing", self.path(field)),
        )
    }

    pub(crate) fn invalid(&self, field: &str, what: &str) -> Error {
        malformed(
            self.endpoint,
            format!("field `{}` {what}", self.path(field)),
        )
    }

    fn wrong_type(&self, field: &str, found: &Value, expected: &str) -> Error {
        self.invalid(
            field,
            &format!("is {}, expected {expected}", type_name(found)),
        )
    }

    /// Takes a field out of the object (moving strings, so secrets are not copied).
    fn take(&mut self, field: &str) -> Option<Value> {
        self.map.remove(field)
    }

    /// A string field that must be present and not blank.
    pub(crate) fn required_string(&mut self, field: &str) -> Result<String> {
        match self.take(field) {
            Some(Value::String(s)) if s.trim().is_empty() => Err(self.invalid(field, "is empty")),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(self.wrong_type(field, &other, "a string")),
            None => Err(self.missing(field)),
        }
    }

    /// A string field that may be absent (or null).
    pub(crate) fn optional_string(&mut self, field: &str) -> Result<Option<String>> {
        match self.take(field) {
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Null) | None => Ok(None),
            Some(other) => Err(self.wrong_type(field, &other, "a string")),
        }
    }

    /// An array of strings that may be absent (absent or null means empty).
    pub(crate) fn string_array(&mut self, field: &str) -> Result<Vec<String>> {
        match self.take(field) {
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s),
                    other => Err(self.wrong_type(&format!("{field}[{i}]"), &other, "a string")),
                })
                .collect(),
            Some(Value::Null) | None => Ok(Vec::new()),
            Some(other) => Err(self.wrong_type(field, &other, "an array of strings")),
        }
    }

    /// A strictly positive number of seconds. Accepts fractional values of at least one second
    /// (rounded down), refuses zero, negative, non-numeric and absurdly large values.
    pub(crate) fn positive_seconds(&mut self, field: &str) -> Result<u64> {
        // Ten years: anything longer is not a token lifetime, and would overflow SystemTime math.
        const MAX: u64 = 10 * 365 * 24 * 3600;
        let value = match self.take(field) {
            Some(Value::Number(n)) => n,
            Some(other) => return Err(self.wrong_type(field, &other, "a number of seconds")),
            None => return Err(self.missing(field)),
        };
        let seconds = match (value.as_u64(), value.as_f64()) {
            (Some(v), _) => v,
            (None, Some(f)) if f < 0.0 => return Err(self.invalid(field, "is negative")),
            (None, Some(f)) if f.is_finite() && f <= MAX as f64 => f as u64,
            _ => return Err(self.invalid(field, "is out of range")),
        };
        match seconds {
            0 => Err(self.invalid(field, "is zero (the token is already expired)")),
            s if s > MAX => Err(self.invalid(field, "is out of range")),
            s => Ok(s),
        }
    }

    /// An object field that must be present.
    pub(crate) fn required_object(&mut self, field: &str) -> Result<Fields<'e>> {
        match self.take(field) {
            Some(Value::Object(map)) => Ok(Fields {
                map,
                endpoint: self.endpoint,
                parent: self.path(field),
            }),
            Some(other) => Err(self.wrong_type(field, &other, "an object")),
            None => Err(self.missing(field)),
        }
    }

    /// Every entry of this object, each value required to be an object itself (for maps keyed
    /// by a name, such as trust domains).
    pub(crate) fn into_object_entries(self) -> Result<Vec<(String, Fields<'e>)>> {
        let Fields {
            map,
            endpoint,
            parent,
        } = self;
        let mut entries = Vec::with_capacity(map.len());
        for (key, value) in map {
            let path = format!("{parent}[\"{key}\"]");
            match value {
                Value::Object(inner) => entries.push((
                    key,
                    Fields {
                        map: inner,
                        endpoint,
                        parent: path,
                    },
                )),
                other => {
                    return Err(malformed(
                        endpoint,
                        format!(
                            "field `{path}` is {}, expected an object",
                            type_name(&other)
                        ),
                    ));
                }
            }
        }
        Ok(entries)
    }

    /// How many fields are left.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The remaining fields as a JSON object.
    pub(crate) fn into_value(self) -> Value {
        Value::Object(self.map)
    }
}

/// A JSON value whose objects may not repeat a key (a repeated `access_token` or trust domain is
/// more likely an attack or a bug than something to resolve silently).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> std::result::Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let Strict(value) = access.next_value()?;
            if map.contains_key(&key) {
                return Err(de::Error::custom("duplicate key"));
            }
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}
