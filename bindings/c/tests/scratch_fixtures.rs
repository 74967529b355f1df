#![allow(clippy::unwrap_used)]
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_dir::{CredentialsContents, CredentialsDirWriter};
#[test]
fn write() {
    let ca = TrustDomainCa::new("c-tests.example").unwrap();
    for (name, id) in [("server", "spiffe://c-tests.example/ns/prod/sa/server"), ("client", "spiffe://c-tests.example/ns/prod/sa/client")] {
        let w = CredentialsDirWriter::new(format!("/tmp/wa-fix/{name}"));
        w.write(&CredentialsContents::new(&ca.issue(id).unwrap(), &ca, [])).unwrap();
    }
}
