//! Just enough DER to hand keys over as the Workload API requires: unencrypted PKCS#8.
//!
//! The credentials directory may hold a SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`)
//! key; the Workload API's `x509_svid_key` must be PKCS#8. PKCS#8 wraps the same key bytes with
//! the key's algorithm identifier, which is taken from the leaf certificate's public key: it names
//! the curve even when a SEC1 key leaves it out.

use rustls_pki_types::PrivateKeyDer;
use workload_auth_core::{Error, ErrorKind, Result};

/// Reads one TLV at the start of `input`: returns (tag, whole TLV length, content range start).
fn tlv(input: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2usize)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let total = header.checked_add(len)?;
    (total <= input.len()).then_some((tag, total, header))
}

/// DER of a definite length (the same eight lines as the adc crate's key parser, on purpose:
/// the crates share only `core`).
fn encode_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn encode(tag: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    encode_len(content.len(), out);
    out.extend_from_slice(content);
}

/// The AlgorithmIdentifier (whole TLV) at the start of a SubjectPublicKeyInfo.
fn spki_algorithm(spki: &[u8]) -> Option<&[u8]> {
    let (tag, total, header) = tlv(spki)?;
    if tag != 0x30 {
        return None;
    }
    let inner = spki.get(header..total)?;
    let (tag, alg_total, _) = tlv(inner)?;
    (tag == 0x30).then(|| &inner[..alg_total])
}

/// The key as unencrypted PKCS#8 DER. `leaf_spki` is the leaf certificate's SubjectPublicKeyInfo
/// (DER), whose algorithm identifier is used when the key is SEC1 or PKCS#1.
pub(crate) fn pkcs8_key(key: &PrivateKeyDer<'_>, leaf_spki: &[u8]) -> Result<Vec<u8>> {
    let raw = match key {
        PrivateKeyDer::Pkcs8(k) => return Ok(k.secret_pkcs8_der().to_vec()),
        PrivateKeyDer::Sec1(k) => k.secret_sec1_der(),
        PrivateKeyDer::Pkcs1(k) => k.secret_pkcs1_der(),
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidCredentials,
                "the private key is in a format that cannot be converted to PKCS#8",
            ));
        }
    };
    let algorithm = spki_algorithm(leaf_spki).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidCredentials,
            "the leaf certificate's public key algorithm cannot be read",
        )
    })?;
    let mut content = Vec::with_capacity(raw.len() + algorithm.len() + 16);
    content.extend_from_slice(&[0x02, 0x01, 0x00]); // version 0
    content.extend_from_slice(algorithm);
    encode(0x04, raw, &mut content);
    let mut out = Vec::with_capacity(content.len() + 6);
    encode(0x30, &content, &mut out);
    Ok(out)
}

/// Splits concatenated DER certificates (as the Workload API sends chains and bundles).
pub(crate) fn split_concatenated(mut input: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (tag, total, _) = tlv(input)?;
        if tag != 0x30 {
            return None;
        }
        out.push(input[..total].to_vec());
        input = &input[total..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 65_535, 70_000] {
            let content = vec![7u8; len];
            let mut out = Vec::new();
            encode(0x04, &content, &mut out);
            let (tag, total, header) = tlv(&out).unwrap_or((0, 0, 0));
            assert_eq!((tag, total), (0x04, out.len()));
            assert_eq!(&out[header..], &content[..]);
        }
    }

    #[test]
    fn truncated_or_oversized_lengths_are_refused() {
        assert!(tlv(&[0x30]).is_none());
        assert!(tlv(&[0x30, 0x05, 1, 2]).is_none());
        assert!(tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(split_concatenated(&[0x30, 0x01]).is_none());
    }
}
