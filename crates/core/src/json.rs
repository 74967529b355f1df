//! Reading JSON (credential files and server answers) with errors that name the place and the
//! field path, and never echo a value.
//!
//! serde's typed errors quote the offending value (`invalid type: string "-----BEGIN PRIVATE KEY…"`,
//! `"ya29…"`), which would put a secret into an error message. So a document is parsed into a
//! [`JsonObject`] (through a visitor that also refuses duplicate keys: a repeated `access_token` or
//! trust domain is more likely an attack or a bug than something to resolve silently), and its
//! fields are read with [`Fields`], whose errors say only *which* field was missing or of which
//! wrong type — never what it held.
//!
//! The caller chooses the [`ErrorKind`]: [`ErrorKind::MalformedResponse`] for a server's answer,
//! [`ErrorKind::InvalidCredentials`] for a credentials file.
//!
//! ```
//! use workload_auth_core::ErrorKind;
//! use workload_auth_core::json::{Fields, parse_object};
//!
//! let doc = parse_object(
//!     br#"{"access_token":"ya29.secret","expires_in":3599,"source":{"file":7}}"#,
//!     "http://127.0.0.1:8080/token",
//!     ErrorKind::MalformedResponse,
//!     "the token answer",
//! )?;
//! let fields = Fields::of_response(&doc, "http://127.0.0.1:8080/token");
//! let token = fields.secret("access_token")?; // a SecretString
//! assert_eq!(fields.opt_u64("expires_in")?, Some(3599));
//! let err = fields.object("source")?.str("file").unwrap_err();
//! assert_eq!(err.message(), "the `source.file` field is a number, expected a string");
//! assert_eq!(err.endpoint(), Some("http://127.0.0.1:8080/token"));
//! # let _ = token;
//! # Ok::<(), workload_auth_core::Error>(())
//! ```
//!
//! What this module does not do: map JSON onto typed structs (callers read field by field, which
//! is what keeps values out of error text), or keep serde_json's internal scratch buffers free of
//! secrets (only the parsed strings are zeroed, when the [`JsonObject`] is dropped).

use std::fmt;
use std::ops::Deref;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use zeroize::Zeroize;

use crate::{Error, ErrorKind, Result, SecretString};

/// `"a string"`, `"a number"`, ... for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses `text` as a JSON object with no repeated keys.
///
/// `what` names the document in errors ("the credentials file", "the token answer"), `place` is
/// the file or endpoint it came from, and errors are of `kind`. A syntax error gives the line and
/// column, never the content.
pub fn parse_object(text: &[u8], place: &str, kind: ErrorKind, what: &str) -> Result<JsonObject> {
    let error = |message: String| Error::new(kind, message).with_endpoint(place.to_owned());
    let strict: Strict = serde_json::from_slice(text).map_err(|e| {
        let problem = match e.classify() {
            serde_json::error::Category::Eof => "is not valid JSON (it ends early)",
            // The only data error the visitor below raises.
            serde_json::error::Category::Data => "has a duplicate key",
            _ => "is not valid JSON",
        };
        error(format!(
            "{what} {problem} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    match strict.0 {
        Value::Object(map) => Ok(JsonObject { map }),
        mut other => {
            let message = format!("{what} is {}, expected a JSON object", type_name(&other));
            zeroize_strings(&mut other);
            Err(error(message))
        }
    }
}

/// A parsed JSON object. Its strings are zeroed when it is dropped, since token answers and
/// credential files hold secrets; its `Debug` shows the keys only.
///
/// It dereferences to the [`serde_json::Map`] for reading; read fields through [`Fields`].
pub struct JsonObject {
    map: Map<String, Value>,
}

impl JsonObject {
    /// The object as a [`Value`], for documents that hold no secrets (the strings are then no
    /// longer zeroed on drop).
    pub fn into_value(mut self) -> Value {
        Value::Object(std::mem::take(&mut self.map))
    }
}

impl Deref for JsonObject {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl Drop for JsonObject {
    fn drop(&mut self) {
        self.map.values_mut().for_each(zeroize_strings);
    }
}

impl fmt::Debug for JsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonObject")
            .field("keys", &self.map.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn zeroize_strings(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_strings),
        Value::Object(map) => map.values_mut().for_each(zeroize_strings),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The fields of one JSON object, read with errors (of the caller's [`ErrorKind`]) that name the
/// place and the field path, e.g. `credential_source.format.type`.
///
/// `null` counts as absent everywhere. String accessors return borrowed text; secrets should be
/// read with [`Fields::secret`] / [`Fields::opt_secret`].
#[derive(Clone)]
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    place: &'a str,
    parent: String,
    kind: ErrorKind,
}

impl fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fields")
            .field("place", &self.place)
            .field("parent", &self.parent)
            .field("kind", &self.kind)
            .field("keys", &self.map.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<'a> Fields<'a> {
    /// The fields of `map`, from `place`; errors are of `kind`.
    pub fn new(map: &'a Map<String, Value>, place: &'a str, kind: ErrorKind) -> Self {
        Self {
            map,
            place,
            parent: String::new(),
            kind,
        }
    }

    /// Fields of a credentials file (errors are [`ErrorKind::InvalidCredentials`]).
    pub fn of_file(map: &'a Map<String, Value>, place: &'a str) -> Self {
        Self::new(map, place, ErrorKind::InvalidCredentials)
    }

    /// Fields of a server's answer (errors are [`ErrorKind::MalformedResponse`]).
    pub fn of_response(map: &'a Map<String, Value>, place: &'a str) -> Self {
        Self::new(map, place, ErrorKind::MalformedResponse)
    }

    /// The place (file or endpoint) these fields come from.
    pub fn place(&self) -> &'a str {
        self.place
    }

    /// The full name of `field`, e.g. `credential_source.format.type`.
    pub fn path(&self, field: &str) -> String {
        if self.parent.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.parent)
        }
    }

    /// An error about this object, of its kind and naming its place.
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::new(self.kind, message).with_endpoint(self.place.to_owned())
    }

    /// An error about `field`: "the `path` field {problem}" (e.g. "holds no PEM certificate").
    pub fn invalid(&self, field: &str, problem: &str) -> Error {
        self.error(format!("the `{}` field {problem}", self.path(field)))
    }

    /// The error for a required `field` that is absent.
    pub fn missing(&self, field: &str) -> Error {
        self.invalid(field, "is missing")
    }

    fn wrong_type(&self, field: &str, expected: &str, got: &Value) -> Error {
        self.invalid(
            field,
            &format!("is {}, expected {expected}", type_name(got)),
        )
    }

    /// The raw value of `field` (`null` counts as absent).
    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// Whether `field` is present and not null.
    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    /// How many fields the object has (null ones included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the object has no fields.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// An optional string field.
    pub fn opt_str(&self, field: &str) -> Result<Option<&'a str>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.wrong_type(field, "a string", other)),
        }
    }

    /// An optional string field; a blank string counts as absent.
    pub fn opt_nonempty_str(&self, field: &str) -> Result<Option<&'a str>> {
        Ok(self.opt_str(field)?.filter(|s| !s.trim().is_empty()))
    }

    /// A required string field that is not blank.
    pub fn str(&self, field: &str) -> Result<&'a str> {
        match self.opt_str(field)? {
            None => Err(self.missing(field)),
            Some(s) if s.trim().is_empty() => Err(self.invalid(field, "is empty")),
            Some(s) => Ok(s),
        }
    }

    /// A required, non-blank secret string field.
    pub fn secret(&self, field: &str) -> Result<SecretString> {
        self.str(field).map(SecretString::from)
    }

    /// An optional secret string field (blank counts as absent).
    pub fn opt_secret(&self, field: &str) -> Result<Option<SecretString>> {
        Ok(self.opt_nonempty_str(field)?.map(SecretString::from))
    }

    /// An optional boolean field.
    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(field, "a boolean", other)),
        }
    }

    /// An optional non-negative integer field. Accepts a JSON number (a fraction is rounded down)
    /// or a string of digits (some OAuth servers send `expires_in` as a string).
    pub fn opt_u64(&self, field: &str) -> Result<Option<u64>> {
        let not_integer = || self.invalid(field, "is not a non-negative integer");
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(v), _) => Ok(Some(v)),
                (None, Some(f)) if f >= 0.0 && f.is_finite() => Ok(Some(f as u64)),
                _ => Err(not_integer()),
            },
            Some(Value::String(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| not_integer()),
            Some(other) => Err(self.wrong_type(field, "a number", other)),
        }
    }

    /// A required, strictly positive number of seconds (a token lifetime), as a JSON number only.
    /// Fractional values of at least one second are rounded down; zero, negative and absurdly
    /// large values (over [`MAX_TOKEN_LIFETIME`](crate::token::MAX_TOKEN_LIFETIME)) are refused.
    pub fn positive_seconds(&self, field: &str) -> Result<u64> {
        // Unlike elsewhere, `null` is not taken as absent: a server that sends it is broken.
        match self.map.get(field) {
            Some(Value::Number(n)) => self.lifetime(field, n),
            Some(other) => Err(self.wrong_type(field, "a number of seconds", other)),
            None => Err(self.missing(field)),
        }
    }

    /// An optional token lifetime, checked as [`Fields::positive_seconds`] does, that may also
    /// be a string of digits: some OAuth servers send `expires_in` as `"3600"`, and google-auth
    /// accepts that. Anything else in a string (`"1e3"`, `"-1"`, `"soon"`) is refused.
    pub fn opt_lifetime_seconds(&self, field: &str) -> Result<Option<u64>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => self.lifetime(field, n).map(Some),
            Some(Value::String(s)) => {
                let digits = s.trim();
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(self.invalid(field, "is not a whole number of seconds"));
                }
                // All digits: a parse failure can only mean "too many of them".
                let n = digits.parse::<u64>().unwrap_or(u64::MAX);
                self.lifetime(field, &serde_json::Number::from(n)).map(Some)
            }
            Some(other) => Err(self.wrong_type(field, "a number of seconds", other)),
        }
    }

    fn lifetime(&self, field: &str, n: &serde_json::Number) -> Result<u64> {
        // Anything longer is not a token lifetime, and would overflow SystemTime math.
        const MAX: u64 = crate::token::MAX_TOKEN_LIFETIME.as_secs();
        let seconds = match (n.as_u64(), n.as_f64()) {
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

    /// An optional number field as `f64` (for timestamps).
    pub fn opt_f64(&self, field: &str) -> Result<Option<f64>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(self.wrong_type(field, "a number", other)),
        }
    }

    /// An optional array of strings.
    pub fn opt_str_list(&self, field: &str) -> Result<Option<Vec<String>>> {
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
    pub fn opt_object(&self, field: &str) -> Result<Option<Fields<'a>>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(self.child(map, self.path(field)))),
            Some(other) => Err(self.wrong_type(field, "an object", other)),
        }
    }

    /// A required nested object.
    pub fn object(&self, field: &str) -> Result<Fields<'a>> {
        self.opt_object(field)?.ok_or_else(|| self.missing(field))
    }

    /// Every entry of this object, each value required to be an object itself (for maps keyed by
    /// a name, such as trust domains). An entry's path is `parent["key"]`.
    pub fn object_entries(&self) -> Result<Vec<(&'a str, Fields<'a>)>> {
        self.map
            .iter()
            .map(|(key, value)| {
                let path = format!("{}[{key:?}]", self.parent);
                match value {
                    Value::Object(map) => Ok((key.as_str(), self.child(map, path))),
                    other => Err(self.error(format!(
                        "the `{path}` field is {}, expected an object",
                        type_name(other)
                    ))),
                }
            })
            .collect()
    }

    /// The entries of this object whose values are strings (others are an error).
    pub fn string_entries(&self) -> Result<Vec<(String, String)>> {
        self.map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(self.wrong_type(k, "a string", other)),
            })
            .collect()
    }

    fn child(&self, map: &'a Map<String, Value>, parent: String) -> Fields<'a> {
        Fields {
            map,
            place: self.place,
            parent,
            kind: self.kind,
        }
    }
}

/// A JSON value whose objects may not repeat a key.
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
            let Strict(mut value) = access.next_value()?;
            if map.contains_key(&key) {
                zeroize_strings(&mut value);
                return Err(de::Error::custom("duplicate key"));
            }
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn file(text: &str) -> Result<JsonObject> {
        parse_object(
            text.as_bytes(),
            "/f.json",
            ErrorKind::InvalidCredentials,
            "the credentials file",
        )
    }

    fn answer(text: &str) -> Result<JsonObject> {
        parse_object(
            text.as_bytes(),
            "e",
            ErrorKind::MalformedResponse,
            "the body",
        )
    }

    #[test]
    fn errors_name_place_and_field_but_not_values() {
        let map =
            file(r#"{"a":"x","n":5,"s":"12","o":{"inner":true},"secret":7,"e":"  "}"#).unwrap();
        let f = Fields::of_file(&map, "/f.json");
        assert_eq!(f.str("a").unwrap(), "x");
        assert_eq!(f.opt_u64("n").unwrap(), Some(5));
        assert_eq!(f.opt_u64("s").unwrap(), Some(12));
        let err = f.str("missing").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
        assert_eq!(err.endpoint(), Some("/f.json"));
        assert!(err.message().contains("`missing`"));
        let err = f.object("o").unwrap().str("inner").unwrap_err();
        assert!(
            err.message().contains("`o.inner` field is a boolean"),
            "{err}"
        );
        let err = f.str("e").unwrap_err();
        assert!(err.message().contains("empty"));
        assert!(f.opt_nonempty_str("e").unwrap().is_none());
    }

    #[test]
    fn the_caller_chooses_the_error_kind() {
        let map = answer(r#"{"a":1}"#).unwrap();
        let err = Fields::of_response(&map, "e").str("a").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedResponse);
        let err = Fields::new(&map, "e", ErrorKind::Rejected)
            .str("a")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected);
        assert_eq!(
            err.message(),
            "the `a` field is a number, expected a string"
        );
    }

    #[test]
    fn parse_errors_give_position_only() {
        let err = file("{\"private_key\": \"-----BEGIN").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
        assert!(!err.to_string().contains("BEGIN"), "{err}");
        assert!(err.message().contains("line 1"));
        assert!(err.message().contains("ends early"), "{err}");
        let err = parse_object(b"[1]", "/k.json", ErrorKind::InvalidCredentials, "x").unwrap_err();
        assert!(err.message().contains("an array"));
        let err = answer("\"ya29.secret\"").unwrap_err();
        assert!(err.message().contains("expected a JSON object"), "{err}");
        assert!(!err.to_string().contains("ya29"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for body in [
            r#"{"access_token":"a","access_token":"b"}"#,
            r#"{"o":{"k":1,"k":2}}"#,
            r#"{"list":[{"x":1,"x":1}]}"#,
        ] {
            let err = answer(body).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse);
            assert!(err.message().contains("duplicate key"), "{err}");
            assert!(!err.to_string().contains("\"b\""), "{err}");
        }
        assert!(answer(r#"{"a":{"k":1},"b":{"k":2}}"#).is_ok());
    }

    #[test]
    fn positive_seconds_refuses_what_is_not_a_lifetime() {
        let map = answer(
            r#"{"ok":3599,"frac":2.7,"zero":0,"neg":-5,"big":1e300,"text":"60","null":null}"#,
        )
        .unwrap();
        let f = Fields::of_response(&map, "e");
        assert_eq!(f.positive_seconds("ok").unwrap(), 3599);
        assert_eq!(f.positive_seconds("frac").unwrap(), 2);
        for (field, needle) in [
            ("zero", "`zero` field is zero"),
            ("neg", "`neg` field is negative"),
            ("big", "`big` field is out of range"),
            (
                "text",
                "`text` field is a string, expected a number of seconds",
            ),
            ("null", "`null` field is null, expected a number of seconds"),
            ("absent", "`absent` field is missing"),
        ] {
            let err = f.positive_seconds(field).unwrap_err();
            assert!(err.message().contains(needle), "{err}");
        }
    }

    #[test]
    fn finding_3_lifetimes_that_overflow_or_are_garbage_are_typed_errors() {
        let map = answer(
            r#"{"ok":3600,"quoted":"3600","spaced":" 60 ","huge":18446744073709551615,
                "e300":1e300,"qhuge":"18446744073709551615","qlong":"99999999999999999999999",
                "neg":-1,"qneg":"-1","qexp":"1e3","qfrac":"1.5","qempty":"","bool":true,
                "over":315360001,"null":null}"#,
        )
        .unwrap();
        let f = Fields::of_response(&map, "e");
        assert_eq!(f.opt_lifetime_seconds("ok").unwrap(), Some(3600));
        assert_eq!(f.opt_lifetime_seconds("quoted").unwrap(), Some(3600));
        assert_eq!(f.opt_lifetime_seconds("spaced").unwrap(), Some(60));
        assert_eq!(f.opt_lifetime_seconds("absent").unwrap(), None);
        assert_eq!(f.opt_lifetime_seconds("null").unwrap(), None);
        for (field, needle) in [
            ("huge", "out of range"),
            ("e300", "out of range"),
            ("qhuge", "out of range"),
            ("qlong", "out of range"),
            ("over", "out of range"),
            ("neg", "negative"),
            ("qneg", "not a whole number"),
            ("qexp", "not a whole number"),
            ("qfrac", "not a whole number"),
            ("qempty", "not a whole number"),
            ("bool", "a boolean, expected a number of seconds"),
        ] {
            let err = f.opt_lifetime_seconds(field).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse);
            assert!(err.message().contains(needle), "{field}: {err}");
        }
        for field in ["huge", "e300"] {
            let err = f.positive_seconds(field).unwrap_err();
            assert!(err.message().contains("out of range"), "{field}: {err}");
        }
    }

    #[test]
    fn lists_and_keyed_objects_name_the_item() {
        let map = answer(
            r#"{"aliases":["default",1],"scopes":"a","td":{"a.org":{"pem":1},"b.org":"x"}}"#,
        )
        .unwrap();
        let f = Fields::of_response(&map, "e");
        let err = f.opt_str_list("aliases").unwrap_err();
        assert!(
            err.message()
                .contains("item 1 of the `aliases` field is a number"),
            "{err}"
        );
        let err = f.opt_str_list("scopes").unwrap_err();
        assert!(
            err.message().contains("`scopes` field is a string"),
            "{err}"
        );
        assert_eq!(f.opt_str_list("absent").unwrap(), None);
        let err = f.object("td").unwrap().object_entries().unwrap_err();
        assert!(
            err.message()
                .contains(r#"`td["b.org"]` field is a string, expected an object"#),
            "{err}"
        );
        let map = answer(r#"{"td":{"a.org":{"pem":1}}}"#).unwrap();
        let entries = Fields::of_response(&map, "e")
            .object("td")
            .unwrap()
            .object_entries()
            .unwrap();
        assert_eq!(entries.len(), 1);
        let (key, entry) = &entries[0];
        assert_eq!(*key, "a.org");
        let err = entry.str("pem").unwrap_err();
        assert!(
            err.message()
                .contains(r#"`td["a.org"].pem` field is a number"#),
            "{err}"
        );
    }

    #[test]
    fn debug_shows_keys_not_values() {
        let map = answer(r#"{"access_token":"ya29.secret"}"#).unwrap();
        let shown = format!("{map:?} {:?}", Fields::of_response(&map, "e"));
        assert!(shown.contains("access_token"), "{shown}");
        assert!(!shown.contains("ya29"), "{shown}");
        assert_eq!(
            map.into_value(),
            serde_json::json!({"access_token": "ya29.secret"})
        );
    }
}
