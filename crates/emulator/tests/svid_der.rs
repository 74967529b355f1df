//! The emulator's certificates are strict DER: Python's `cryptography` (which refuses encodings
//! OpenSSL tolerates, such as an explicit `cA FALSE`) parses every one and sees what Google issues.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use workload_auth_emulator::ca::TrustDomainCa;

const CHECK: &str = r#"
import sys
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
certs = x509.load_pem_x509_certificates(sys.stdin.buffer.read())
leaf, intermediate = certs
bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
assert bc.critical and bc.value.ca is False, bc
san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
assert san.critical, san
uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
assert uris == ["spiffe://der.test/ns/a/sa/b"], uris
assert len(leaf.subject) == 0, leaf.subject
eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
assert intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
print("ok")
"#;

#[test]
fn python_cryptography_parses_emulator_svids() {
    let ca = TrustDomainCa::new("der.test").unwrap();
    let svid = ca.issue("spiffe://der.test/ns/a/sa/b").unwrap();
    let python = std::env::var("WORKLOAD_AUTH_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .args(["-c", CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; install Python 3"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(svid.chain_pem().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'cryptography'"),
        "pip install -r tests/python/requirements.txt"
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
