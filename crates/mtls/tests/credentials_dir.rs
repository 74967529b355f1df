//! Loading the node agent's credentials directory, written by the emulator exactly as the agent
//! lays it out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use workload_auth_core::ErrorKind;
use workload_auth_core::SecretString;
use workload_auth_emulator::ca::{KeyFormat, TrustDomainCa};
use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};
use workload_auth_mtls::*;

const ME: &str = "spiffe://pool.global.123.workload.id.goog/ns/prod/sa/web";
const TD: &str = "pool.global.123.workload.id.goog";

#[test]
fn loads_what_the_node_agent_writes() {
    let tmp = TempDir::new("load");
    let ca = TrustDomainCa::new(TD).unwrap();
    let fed = TrustDomainCa::new("partner.example").unwrap();
    let svid = ca.issue(ME).unwrap();
    let writer = CredentialsDirWriter::new(tmp.path());
    let generation_dir = writer
        .write(&CredentialsContents::new(&svid, &ca, [&fed]))
        .unwrap();

    let material = CredentialsDir::new(writer.link_path())
        .load_blocking()
        .unwrap();
    assert_eq!(material.svid().spiffe_id(), &id(ME));
    assert_eq!(material.svid().chain().len(), 2);
    assert_eq!(material.svid().leaf().as_ref(), svid.leaf_der());
    let mut domains: Vec<&str> = material
        .bundles()
        .trust_domains()
        .map(|t| t.name())
        .collect();
    domains.sort_unstable();
    assert_eq!(domains, ["partner.example", TD]);
    // ca_certificates.pem and the map's own entry for the local domain merge (same root, once).
    assert_eq!(
        material
            .bundles()
            .for_domain(&td(TD))
            .unwrap()
            .roots()
            .len(),
        1
    );
    assert_eq!(
        material.config_status(),
        Some(r#"{"partnerMetadataConfigsErrors":{}}"#)
    );
    // The origin names the resolved generation directory, not the symlink.
    assert_eq!(
        std::path::Path::new(material.origin()),
        std::fs::canonicalize(generation_dir).unwrap()
    );
    assert!(!format!("{material:?}").contains("PRIVATE KEY"));
}

#[test]
fn reads_sec1_keys_and_the_combined_file() {
    let tmp = TempDir::new("sec1");
    let ca = TrustDomainCa::new(TD).unwrap();
    let svid = ca.svid(ME).key_format(KeyFormat::Sec1).issue().unwrap();
    assert!(
        svid.private_key_pem()
            .expose()
            .contains("BEGIN EC PRIVATE KEY")
    );
    let writer = CredentialsDirWriter::new(tmp.path());
    writer
        .write(&CredentialsContents::new(&svid, &ca, []))
        .unwrap();
    let m = CredentialsDir::new(writer.link_path())
        .load_blocking()
        .unwrap();
    assert_eq!(m.svid().spiffe_id(), &id(ME));

    // Only the combined file (and only trust_bundles.json for roots).
    let mut contents = CredentialsContents::new(&svid, &ca, []);
    contents.certificates_pem = None;
    contents.private_key_pem = None;
    contents.ca_certificates_pem = None;
    writer.write(&contents).unwrap();
    let m = CredentialsDir::new(writer.link_path())
        .load_blocking()
        .unwrap();
    assert_eq!(m.svid().spiffe_id(), &id(ME));
    assert!(m.bundles().for_domain(&td(TD)).is_some());
}

#[test]
fn a_plain_directory_works_too() {
    let tmp = TempDir::new("plain");
    let ca = TrustDomainCa::new(TD).unwrap();
    let svid = ca.issue(ME).unwrap();
    write(tmp.path(), CERTIFICATES_FILE, svid.chain_pem());
    write(
        tmp.path(),
        PRIVATE_KEY_FILE,
        svid.private_key_pem().expose(),
    );
    write(tmp.path(), CA_CERTIFICATES_FILE, ca.root_pem());
    let m = CredentialsDir::new(tmp.path()).load_blocking().unwrap();
    assert_eq!(m.svid().spiffe_id(), &id(ME));
    assert_eq!(m.config_status(), None);
}

#[test]
fn each_broken_directory_names_its_problem() {
    let tmp = TempDir::new("broken");
    let ca = TrustDomainCa::new(TD).unwrap();
    let svid = ca.issue(ME).unwrap();
    let other = ca.issue(ME).unwrap();
    let writer = CredentialsDirWriter::new(tmp.path());
    let dir = CredentialsDir::new(writer.link_path()).with_retries(2, Duration::from_millis(1));

    // Missing directory.
    let err = dir.load_blocking().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.to_string().contains("workload-spiffe-credentials"),
        "{err}"
    );
    assert!(
        err.hint().unwrap().contains("managed workload identity"),
        "{err}"
    );

    // Key of another certificate.
    let mut c = CredentialsContents::new(&svid, &ca, []);
    c.private_key_pem = Some(other.private_key_pem().clone());
    writer.write(&c).unwrap();
    let err = dir.load_blocking().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
    assert_eq!(
        CredentialError::find(&err),
        Some(&CredentialError::KeyMismatch)
    );
    assert!(err.endpoint().unwrap().contains("private_key.pem"), "{err}");

    // Truncated certificates.pem.
    let mut c = CredentialsContents::new(&svid, &ca, []);
    c.certificates_pem = Some(svid.chain_pem()[..200].to_owned());
    writer.write(&c).unwrap();
    let err = dir.load_blocking().unwrap_err();
    assert!(
        matches!(CredentialError::find(&err), Some(CredentialError::Pem(_))),
        "{err}"
    );
    assert!(
        err.endpoint().unwrap().ends_with("certificates.pem"),
        "{err}"
    );

    // Duplicate trust domains in trust_bundles.json.
    let mut c = CredentialsContents::new(&svid, &ca, []);
    let entry = ca.bundle_json(1).to_string();
    c.trust_bundles_json = Some(format!(
        r#"{{"trust_domains":{{"{TD}":{entry},"{TD}":{entry}}}}}"#
    ));
    writer.write(&c).unwrap();
    let err = dir.load_blocking().unwrap_err();
    assert_eq!(
        CredentialError::find(&err),
        Some(&CredentialError::DuplicateTrustDomain(TD.into()))
    );
    assert!(
        err.endpoint().unwrap().ends_with("trust_bundles.json"),
        "{err}"
    );

    // No certificate anywhere; config_status explains why. (A certificate without a key is the
    // platform keeping the key hidden: see tests/layouts.rs.)
    let mut c = CredentialsContents::new(&svid, &ca, []);
    c.certificates_pem = None;
    c.private_key_pem = None;
    c.combined_pem = None;
    c.config_status = Some(r#"{"partnerMetadataConfigsErrors":{"x":"CA pool not found"}}"#.into());
    writer.write(&c).unwrap();
    let err = dir.load_blocking().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CredentialsNotFound);
    assert!(err.hint().unwrap().contains("CA pool not found"), "{err}");

    // No trust bundles at all.
    let mut c = CredentialsContents::new(&svid, &ca, []);
    c.ca_certificates_pem = None;
    c.trust_bundles_json = None;
    writer.write(&c).unwrap();
    let err = dir.load_blocking().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials);

    // A combined file that holds a certificate but a garbage key.
    let mut c = CredentialsContents::new(&svid, &ca, []);
    c.certificates_pem = None;
    c.private_key_pem = None;
    c.combined_pem = Some(SecretString::new(format!(
        "{}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        svid.chain_pem()
    )));
    writer.write(&c).unwrap();
    let err = dir.load_blocking().unwrap_err();
    assert!(err.endpoint().unwrap().ends_with(COMBINED_FILE), "{err}");
    assert!(
        matches!(
            CredentialError::find(&err),
            Some(CredentialError::UnsupportedPrivateKey(_))
        ),
        "{err}"
    );
}

/// Loads racing a writer that swaps generations as fast as it can never see a torn pair: each
/// load either returns matching material or (rarely) a transient error after its retries.
#[test]
fn loads_racing_rotations_never_see_a_torn_pair() {
    let tmp = TempDir::new("race");
    let ca = std::sync::Arc::new(TrustDomainCa::new(TD).unwrap());
    let writer = CredentialsDirWriter::new(tmp.path());
    writer
        .write(&CredentialsContents::new(&ca.issue(ME).unwrap(), &ca, []))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rotator = {
        let (writer, ca, stop) = (writer.clone(), ca.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                writer
                    .write(&CredentialsContents::new(&ca.issue(ME).unwrap(), &ca, []))
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    let dir = CredentialsDir::new(writer.link_path());
    let (mut ok, mut transient) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < deadline {
        match dir.load_blocking() {
            Ok(m) => {
                // The constructor checked the key against the leaf; double-check the pairing.
                assert!(m.svid().certified_key().keys_match().is_ok());
                ok += 1;
            }
            Err(e) => {
                assert!(
                    e.is_transient(),
                    "a non-transient error under rotation: {e}"
                );
                transient += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rotations = rotator.join().unwrap();
    assert!(rotations > 10, "only {rotations} rotations");
    assert!(ok > transient, "ok {ok}, transient {transient}");
}

#[test]
fn finding_10_a_key_file_readable_by_group_or_others_is_a_warning() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = TempDir::new("key-mode");
    let ca = TrustDomainCa::new(TD).unwrap();
    let svid = ca.issue(ME).unwrap();
    let writer = CredentialsDirWriter::new(tmp.path());
    let dir = writer
        .write(&CredentialsContents::new(&svid, &ca, []))
        .unwrap();
    let key = dir.join(PRIVATE_KEY_FILE);
    let combined = dir.join(COMBINED_FILE);
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // The agent writes the key twice (alone and with the chain): each file counts.
    assert_eq!(
        load_warnings(&writer),
        2,
        "both 0644 as the emulator writes them"
    );
    chmod(&combined, 0o600);
    let load = || {
        CredentialsDir::new(writer.link_path())
            .load_blocking()
            .unwrap()
    };
    let key_text: String = svid
        .private_key_pem()
        .expose()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for (mode, warned) in [
        (0o644, true),
        (0o640, true),
        (0o604, true),
        (0o600, false),
        (0o400, false),
    ] {
        chmod(&key, mode);
        let material = load();
        let warnings = material.warnings();
        if warned {
            assert_eq!(warnings.len(), 1, "mode {mode:o}: {warnings:?}");
            assert!(
                warnings[0].contains(&key.display().to_string()),
                "{warnings:?}"
            );
            assert!(warnings[0].contains(&format!("{mode:04o}")), "{warnings:?}");
            assert!(!warnings[0].contains(&key_text[..32]), "{warnings:?}");
            assert!(format!("{material:?}").contains("accessible to group or others"));
        } else {
            assert!(warnings.is_empty(), "mode {mode:o}: {warnings:?}");
        }
    }
}

fn load_warnings(writer: &CredentialsDirWriter) -> usize {
    CredentialsDir::new(writer.link_path())
        .load_blocking()
        .unwrap()
        .warnings()
        .len()
}
