//! Certificate-bound tokens (Agent Identity, AIP-4119): the binding a metadata-server token
//! request asks for, in every form clients send, and the protected resource that honours it.
//!
//! Forms accepted: `POST` with `{"certificate_chain": "<PEM>"}` (google-auth 2.61+; the
//! fingerprint is the leaf's), and `?bindCertificateFingerprint=FP` where FP is the SHA-256 of the
//! leaf's DER as base64url (Node, ours), or standard base64 URL-quoted once (Python) or twice
//! (older Python), padded or not. Every form is normalised to base64url without padding.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use rustls::pki_types::pem::PemObject as _;
use serde_json::{Value, json};

use crate::http_server::{Request, Response};
use crate::identity::MTLS_CLIENT_CERT_HEADER;
use crate::state::State;

/// The query parameter of the older form.
pub(crate) const FINGERPRINT_PARAM: &str = "bindCertificateFingerprint";

/// The path of the protected resource: it accepts a bound token only over mutual TLS presenting
/// the certificate the token is bound to (an unbound token as a plain bearer token).
pub const PROTECTED_RESOURCE_PATH: &str = "/emulator/protected";

/// A binding a request asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Binding {
    /// base64url, unpadded, SHA-256 of the leaf's DER.
    pub(crate) fingerprint: String,
    /// `certificate_chain` or `fingerprint_query`.
    pub(crate) form: &'static str,
}

/// The SHA-256 of `der` as base64url without padding.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// The binding `request` asks for: `Ok(None)` when it asks for none, `Err` (a message for a 400)
/// when it asks badly.
pub(crate) fn of_request(request: &Request) -> Result<Option<Binding>, String> {
    let from_query = request
        .query_param(FINGERPRINT_PARAM)
        .map(normalize_fingerprint)
        .transpose()?;
    let from_body = if request.method == "POST" && !request.body.is_empty() {
        from_chain_body(&request.body)?
    } else {
        None
    };
    match (from_query, from_body) {
        (None, None) => Ok(None),
        (Some(fingerprint), None) => Ok(Some(Binding {
            fingerprint,
            form: "fingerprint_query",
        })),
        (None, Some(fingerprint)) => Ok(Some(Binding {
            fingerprint,
            form: "certificate_chain",
        })),
        (Some(q), Some(b)) if q == b => Ok(Some(Binding {
            fingerprint: b,
            form: "certificate_chain",
        })),
        (Some(_), Some(_)) => {
            Err("bindCertificateFingerprint does not match the certificate_chain's leaf".to_owned())
        }
    }
}

/// The leaf's fingerprint from `{"certificate_chain": "<PEM>"}` (`None` for a body without
/// that field: a POST asking for nothing bound).
fn from_chain_body(body: &[u8]) -> Result<Option<String>, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|_| "the request body is not JSON".to_owned())?;
    let pem = match doc.get("certificate_chain") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(pem)) => pem,
        Some(_) => return Err("certificate_chain is not a string".to_owned()),
    };
    if pem.contains("PRIVATE KEY") {
        return Err("the certificate_chain holds a private key".to_owned());
    }
    let leaf = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| "the certificate_chain holds no PEM certificate".to_owned())?
        .map_err(|_| "the certificate_chain is not valid PEM".to_owned())?;
    Ok(Some(fingerprint(leaf.as_ref())))
}

/// Any accepted encoding of a SHA-256 fingerprint, as base64url without padding.
pub(crate) fn normalize_fingerprint(raw: &str) -> Result<String, String> {
    // The query was URL-decoded once already; older Python quoted it twice.
    let mut text = raw.trim().to_owned();
    for _ in 0..2 {
        if !text.contains('%') {
            break;
        }
        text = percent_decode(&text)
            .ok_or_else(|| "bindCertificateFingerprint is badly percent-encoded".to_owned())?;
    }
    // A `+` in an unquoted query reads as a space.
    let text = text.replace(' ', "+");
    let decoded = [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(&text).ok())
        .ok_or_else(|| "bindCertificateFingerprint is not base64".to_owned())?;
    if decoded.len() != 32 {
        return Err("bindCertificateFingerprint is not a SHA-256 digest".to_owned());
    }
    Ok(URL_SAFE_NO_PAD.encode(decoded))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    // Refuse a `%` not followed by two hex digits (percent_decode_str would keep it as is).
    let well_formed = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `GET /emulator/protected` with `Authorization: Bearer T`: 200 when T is one of ours and, if
/// bound, the connection presented the certificate it is bound to; 401 otherwise.
pub(crate) fn protected(state: &State, request: &Request) -> Response {
    let unauthorized = |why: &str| {
        let mut response =
            Response::json(&json!({ "error": "invalid_token", "error_description": why }));
        response.status = 401;
        response
    };
    let Some(token) = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return unauthorized("a bearer token is required");
    };
    let Some(issued) = state.tokens.lookup(token.trim()) else {
        return unauthorized("the token is unknown or expired");
    };
    let presented = request
        .header(MTLS_CLIENT_CERT_HEADER)
        .and_then(|c| STANDARD.decode(c).ok())
        .map(|der| fingerprint(&der));
    match (&issued.bound_fingerprint, presented) {
        (None, presented) => Response::json(&json!({
            "bound": false,
            "client_certificate": presented,
        })),
        (Some(_), None) => unauthorized(
            "the token is bound to a certificate and must be presented over mutual TLS with it",
        ),
        (Some(bound), Some(presented)) if *bound == presented => Response::json(&json!({
            "bound": true,
            "fingerprint": bound,
        })),
        (Some(_), Some(_)) => {
            unauthorized("the token is bound to a different certificate than the one presented")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256_URL: &str = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU";

    #[test]
    fn every_fingerprint_encoding_normalises() {
        for raw in [
            EMPTY_SHA256_URL,
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "47DEQpj8HBSa%2B%2FTImW%2B5JCeuQeRkm5NMpJWZG3hSuFU%3D",
            "47DEQpj8HBSa%252B%252FTImW%252B5JCeuQeRkm5NMpJWZG3hSuFU%253D",
            "47DEQpj8HBSa /TImW 5JCeuQeRkm5NMpJWZG3hSuFU",
        ] {
            assert_eq!(
                normalize_fingerprint(raw).unwrap(),
                EMPTY_SHA256_URL,
                "{raw}"
            );
        }
        for bad in ["", "abc", "%zz", "47DEQpj8HBSa"] {
            assert!(normalize_fingerprint(bad).is_err(), "{bad}");
        }
    }
}
