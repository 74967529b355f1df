//! The combined chain-and-key files (`x509.credential-bundle.private-key.pem`, the SPIFFE
//! filesystem delivery's `credential-bundle.private-key.pem`) and the rest of that layout:
//! `X509Svid::from_combined_pem`, `X509Svid::certificate_only_pem`, and a SPIFFE credential
//! folder loaded from real files (the bundle file and a `<td>.spiffe-trust-bundle.pem`).
//!
//! Beyond "no panic": an SVID that loads holds exactly the key it was given and a key that
//! matches its leaf, and no message or `Debug` output quotes the body of a private key section
//! of the input.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use workload_auth_fuzz::shown;
use workload_auth_mtls::{CredentialsDir, X509Svid, spiffe_id_of};

fn folder() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // Memory-backed when the system has it: two files rewritten per input.
        let shm = PathBuf::from("/dev/shm");
        let dir = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("wa-fuzz-combined-bundle-{}", std::process::id()))
    })
}

/// The base64 bodies of the private key sections of `text` (long enough not to match a fixed
/// message by coincidence).
fn key_bodies(text: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("PRIVATE KEY-----") {
        rest = &rest[start + "PRIVATE KEY-----".len()..];
        let end = rest.find("-----").unwrap_or(rest.len());
        let body: String = rest[..end].split_whitespace().collect();
        // Any 24 base64 characters of it would be a leak; check each line-sized piece.
        for line in rest[..end].lines().map(str::trim).filter(|l| l.len() >= 24) {
            bodies.push(line.to_owned());
        }
        if body.len() >= 24 {
            bodies.push(body);
        }
        rest = &rest[end..];
    }
    bodies
}

fn assert_not_quoted(input: &[u8], shown: &str) {
    for body in key_bodies(&String::from_utf8_lossy(input)) {
        assert!(
            !shown.contains(&body),
            "a private key of the input is quoted in: {shown}"
        );
    }
}

fn check_svid(input: &[u8], result: &Result<X509Svid, impl std::fmt::Display + std::fmt::Debug>) {
    assert_not_quoted(input, &shown(result));
    if let Ok(svid) = result {
        assert!(!svid.chain().is_empty());
        assert_eq!(spiffe_id_of(svid.leaf()).as_ref(), Some(svid.spiffe_id()));
        if svid.has_private_key() {
            assert!(svid.certified_key().keys_match().is_ok());
            assert!(!svid.private_key().secret_der().is_empty());
        } else {
            assert!(svid.try_private_key().is_none());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let result = X509Svid::from_combined_pem(rest);
            if let Ok(svid) = &result {
                assert!(svid.has_private_key());
            }
            check_svid(rest, &result);
        }
        1 => {
            let result = X509Svid::certificate_only_pem(rest);
            if let Ok(svid) = &result {
                assert!(!svid.has_private_key());
            }
            check_svid(rest, &result);
        }
        _ => {
            // The credential bundle, then (after the first 0xff byte) the trust bundle file.
            let split = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
            let (bundle, roots) = rest.split_at(split);
            let roots = roots.get(1..).unwrap_or_default();
            let dir = folder();
            let written = std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(dir.join("credential-bundle.private-key.pem"), bundle))
                .and_then(|()| std::fs::write(dir.join("example.org.spiffe-trust-bundle.pem"), roots));
            if written.is_err() {
                return;
            }
            let result = CredentialsDir::spiffe_credential_folder(dir).load_blocking();
            assert_not_quoted(rest, &shown(&result));
            if let Ok(material) = result {
                assert!(material.svid().has_private_key());
                assert!(!material.bundles().is_empty());
            }
        }
    }
});
