//! The newer credential layouts: the combined `x509.credential-bundle.private-key.pem`, SPIFFE
//! filesystem delivery (`credential-bundle.private-key.pem` and `<td>.spiffe-trust-bundle.pem`),
//! and a directory whose key the platform keeps hidden. Each is written by the emulator's
//! node-agent writer, loaded, rotated, and broken in the ways a real directory breaks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use workload_auth_core::{ErrorKind, SecretString};
use workload_auth_emulator::ca::{CaOptions, TrustDomainCa};
use workload_auth_emulator::credentials_writer::{
    CredentialsContents, CredentialsDirWriter, Layout,
};
use workload_auth_mtls::*;

const ME: &str = "spiffe://pool.global.123.workload.id.goog/ns/prod/sa/web";
const TD: &str = "pool.global.123.workload.id.goog";
const PEER: &str = "spiffe://partner.example/ns/x/sa/y";

fn ours(layout: Layout) -> CredentialLayout {
    CredentialLayout::from_name(layout.name()).unwrap()
}

fn fast() -> WatchOptions {
    WatchOptions {
        poll_interval: Duration::from_millis(20),
        max_reload_interval: Duration::from_secs(600),
        retry_backoff: Duration::from_millis(20),
    }
}

fn ed25519_key_pem() -> String {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
}

#[test]
fn each_layout_loads_and_says_which_it_is() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let partner = TrustDomainCa::new("partner.example").unwrap();
    let svid = ca.issue(ME).unwrap();
    for layout in Layout::ALL {
        let tmp = TempDir::new(&format!("layout-{layout}"));
        let writer = CredentialsDirWriter::new(tmp.path());
        writer
            .write(&CredentialsContents::with_layout(
                layout,
                &svid,
                &ca,
                [&partner],
            ))
            .unwrap();
        let m = CredentialsDir::new(writer.link_path())
            .load_blocking()
            .unwrap_or_else(|e| panic!("{layout}: {e}"));
        assert_eq!(m.layout(), Some(ours(layout)), "{layout}");
        assert_eq!(m.svid().spiffe_id(), &id(ME), "{layout}");
        assert_eq!(m.svid().leaf().as_ref(), svid.leaf_der(), "{layout}");
        assert_eq!(m.svid().chain().len(), 2, "{layout}: leaf and intermediate");
        let domains: Vec<String> = m.bundles().trust_domains().map(|t| t.to_string()).collect();
        assert_eq!(m.bundles().len(), 2, "{layout}: {domains:?}");
        assert!(m.bundles().for_id(&id(PEER)).is_some(), "{layout}");
        assert_eq!(
            m.svid().has_private_key(),
            layout != Layout::NoKey,
            "{layout}"
        );
        if layout == Layout::NoKey {
            assert!(m.svid().try_private_key().is_none());
            assert!(m.svid().private_key().secret_der().is_empty());
            assert!(format!("{:?}", m.svid()).contains("hidden by the platform"));
        } else {
            assert_eq!(
                m.svid().try_private_key().unwrap().secret_der(),
                svid.pkcs8_der()
            );
        }
    }
}

#[test]
fn the_combined_file_may_hold_the_key_first_or_last() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let svid = ca.issue(ME).unwrap();
    let key = svid.private_key_pem().expose();
    for (what, text) in [
        ("key last", format!("{}{key}", svid.chain_pem())),
        ("key first", format!("{key}{}", svid.chain_pem())),
    ] {
        let tmp = TempDir::new("combined-order");
        let writer = CredentialsDirWriter::new(tmp.path());
        let mut c = CredentialsContents::with_layout(Layout::Combined, &svid, &ca, []);
        c.combined_pem = Some(SecretString::new(text.clone()));
        writer.write(&c).unwrap();
        let m = CredentialsDir::new(writer.link_path())
            .load_blocking()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(m.layout(), Some(CredentialLayout::Combined));
        assert!(m.svid().certified_key().keys_match().is_ok(), "{what}");

        // The SPIFFE file is read the same way, whichever order a writer chose.
        let mut c = CredentialsContents::with_layout(Layout::SpiffeFs, &svid, &ca, []);
        c.spiffe_credential_bundle_pem = Some(SecretString::new(text));
        writer.write(&c).unwrap();
        let m = CredentialsDir::new(writer.link_path())
            .load_blocking()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(m.layout(), Some(CredentialLayout::SpiffeFilesystem));
    }
}

/// Writes `contents` and loads it, expecting an error; returns it.
fn load_err(contents: &CredentialsContents) -> workload_auth_core::Error {
    let tmp = TempDir::new("broken-layout");
    let writer = CredentialsDirWriter::new(tmp.path());
    writer.write(contents).unwrap();
    let err = CredentialsDir::new(writer.link_path())
        .with_retries(1, Duration::ZERO)
        .load_blocking()
        .unwrap_err();
    // Whatever went wrong, no key material shows in the message.
    assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");
    err
}

fn credential_error(err: &workload_auth_core::Error) -> CredentialError {
    CredentialError::find(err)
        .cloned()
        .unwrap_or_else(|| panic!("no credential reason in {err}"))
}

#[test]
fn a_combined_file_with_two_keys_or_none_names_the_file() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let svid = ca.issue(ME).unwrap();
    let other = ca.issue(ME).unwrap();
    for layout in [Layout::Combined, Layout::SpiffeFs] {
        let file = ours(layout).certificate_file();
        let set = |c: &mut CredentialsContents, text: String| match layout {
            Layout::Combined => c.combined_pem = Some(SecretString::new(text)),
            _ => c.spiffe_credential_bundle_pem = Some(SecretString::new(text)),
        };
        let two = format!(
            "{}{}{}",
            svid.private_key_pem().expose(),
            svid.chain_pem(),
            other.private_key_pem().expose()
        );
        let mut c = CredentialsContents::with_layout(layout, &svid, &ca, []);
        set(&mut c, two);
        let err = load_err(&c);
        assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
        assert_eq!(
            credential_error(&err),
            CredentialError::MultiplePrivateKeys(2)
        );
        assert!(err.endpoint().unwrap().ends_with(file), "{err}");

        let mut c = CredentialsContents::with_layout(layout, &svid, &ca, []);
        set(&mut c, svid.chain_pem().to_owned());
        let err = load_err(&c);
        assert_eq!(credential_error(&err), CredentialError::NoPrivateKey);
        assert!(err.endpoint().unwrap().ends_with(file), "{err}");

        // Half written: the writer stopped inside the chain.
        let whole = format!("{}{}", svid.private_key_pem().expose(), svid.chain_pem());
        let mut c = CredentialsContents::with_layout(layout, &svid, &ca, []);
        set(&mut c, whole[..whole.len() - 40].to_owned());
        let err = load_err(&c);
        assert!(
            matches!(credential_error(&err), CredentialError::Pem(_)),
            "{err}"
        );
        assert!(err.endpoint().unwrap().ends_with(file), "{err}");

        // The key of another certificate.
        let mut c = CredentialsContents::with_layout(layout, &svid, &ca, []);
        set(
            &mut c,
            format!("{}{}", other.private_key_pem().expose(), svid.chain_pem()),
        );
        let err = load_err(&c);
        assert_eq!(credential_error(&err), CredentialError::KeyMismatch);
        assert!(err.endpoint().unwrap().ends_with(file), "{err}");
    }
}

#[test]
fn a_key_of_the_wrong_type_is_named_as_such() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let svid = ca.issue(ME).unwrap();
    let ed25519 = ed25519_key_pem();

    let mut c = CredentialsContents::new(&svid, &ca, []);
    c.private_key_pem = Some(SecretString::new(ed25519.clone()));
    let err = load_err(&c);
    assert_eq!(
        credential_error(&err),
        CredentialError::KeyTypeMismatch {
            key: "Ed25519",
            certificate: "ECDSA"
        }
    );
    assert!(err.endpoint().unwrap().ends_with(PRIVATE_KEY_FILE), "{err}");
    assert!(
        credential_error(&err)
            .to_string()
            .contains("the private key is Ed25519 but the leaf certificate holds an ECDSA"),
        "{err}"
    );

    let mut c = CredentialsContents::with_layout(Layout::SpiffeFs, &svid, &ca, []);
    c.spiffe_credential_bundle_pem =
        Some(SecretString::new(format!("{ed25519}{}", svid.chain_pem())));
    let err = load_err(&c);
    assert!(
        matches!(
            credential_error(&err),
            CredentialError::KeyTypeMismatch { .. }
        ),
        "{err}"
    );
    assert!(
        err.endpoint()
            .unwrap()
            .ends_with(SPIFFE_CREDENTIAL_BUNDLE_FILE),
        "{err}"
    );
}

#[test]
fn a_trust_bundle_file_for_another_domain_is_refused() {
    let with_id = CaOptions {
        root_spiffe_id: true,
        ..CaOptions::default()
    };
    let ca = TrustDomainCa::with_options(TD, with_id.clone()).unwrap();
    let partner = TrustDomainCa::with_options("partner.example", with_id).unwrap();
    let svid = ca.issue(ME).unwrap();

    // Well filed, roots carrying their domain's ID load.
    let good = CredentialsContents::with_layout(Layout::SpiffeFs, &svid, &ca, [&partner]);
    let tmp = TempDir::new("td-file-good");
    let writer = CredentialsDirWriter::new(tmp.path());
    writer.write(&good).unwrap();
    CredentialsDir::new(writer.link_path())
        .load_blocking()
        .unwrap();

    // The partner's file holds our root: trusting it would let our CA vouch for the partner.
    let mut c = good.clone();
    c.spiffe_trust_bundles = vec![
        (TD.to_owned(), ca.root_pem().to_owned()),
        ("partner.example".to_owned(), ca.root_pem().to_owned()),
    ];
    let err = load_err(&c);
    assert_eq!(
        credential_error(&err),
        CredentialError::TrustDomainMismatch {
            file_domain: "partner.example".into(),
            certificate_domain: TD.into(),
        }
    );
    assert!(
        err.endpoint()
            .unwrap()
            .ends_with("partner.example.spiffe-trust-bundle.pem"),
        "{err}"
    );

    // A file whose name is not a trust domain, and one cut short.
    let mut c = good.clone();
    c.spiffe_trust_bundles
        .push(("Not A Domain".to_owned(), partner.root_pem().to_owned()));
    let err = load_err(&c);
    assert!(
        matches!(
            credential_error(&err),
            CredentialError::InvalidTrustDomain { .. }
        ),
        "{err}"
    );
    let mut c = good;
    c.spiffe_trust_bundles[1].1 = partner.root_pem()[..100].to_owned();
    let err = load_err(&c);
    assert!(
        matches!(credential_error(&err), CredentialError::Pem(_)),
        "{err}"
    );
    assert!(
        err.endpoint()
            .unwrap()
            .ends_with("partner.example.spiffe-trust-bundle.pem"),
        "{err}"
    );
}

#[test]
fn an_expected_layout_that_is_absent_names_the_missing_file() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let svid = ca.issue(ME).unwrap();
    let tmp = TempDir::new("expected-layout");
    let writer = CredentialsDirWriter::new(tmp.path());
    writer
        .write(&CredentialsContents::with_layout(
            Layout::Gke,
            &svid,
            &ca,
            [],
        ))
        .unwrap();
    let err = CredentialsDir::spiffe_credential_folder(writer.link_path())
        .load_blocking()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CredentialsNotFound);
    assert!(
        err.endpoint()
            .unwrap()
            .ends_with(SPIFFE_CREDENTIAL_BUNDLE_FILE),
        "{err}"
    );
    // Found rather than expected, the same directory loads.
    let m = CredentialsDir::new(writer.link_path())
        .load_blocking()
        .unwrap();
    assert_eq!(m.layout(), Some(CredentialLayout::NodeAgent));
}

#[tokio::test]
async fn a_hidden_key_refuses_tls_with_a_typed_error() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let svid = ca.issue(ME).unwrap();
    let tmp = TempDir::new("no-key");
    let writer = CredentialsDirWriter::new(tmp.path());
    writer
        .write(&CredentialsContents::with_layout(
            Layout::NoKey,
            &svid,
            &ca,
            [],
        ))
        .unwrap();
    let m = CredentialsDir::new(writer.link_path())
        .load_blocking()
        .unwrap();
    assert_eq!(m.layout(), Some(CredentialLayout::CertificateOnly));
    let mtls = MtlsConfig::new(SvidStore::new(m), Authorizer::any());
    for err in [
        mtls.client_config().unwrap_err(),
        mtls.server_config().unwrap_err(),
        MtlsConnector::from_config(&mtls).unwrap_err(),
        MtlsAcceptor::from_config(&mtls).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
        assert_eq!(credential_error(&err), CredentialError::PrivateKeyHidden);
        assert!(err.to_string().contains("hidden"), "{err}");
        assert!(err.hint().unwrap().contains(ME), "{err}");
    }
}

/// A generation without the key after one with it is a broken rotation for the watcher: it keeps
/// the last good key (handshakes go on) and records why. Material swapped in by hand without a key
/// makes the connector made earlier refuse its next handshake with the typed error.
#[tokio::test]
async fn losing_the_key_in_a_rotation_keeps_the_last_good_one() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let server_svid = ca
        .issue("spiffe://pool.global.123.workload.id.goog/ns/prod/sa/api")
        .unwrap();
    let server = MtlsConfig::new(store(&server_svid, &[&ca]), Authorizer::any());
    let (addr, mut results) = echo_server(&server, 3).await;

    let svid = ca.issue(ME).unwrap();
    let tmp = TempDir::new("to-no-key");
    let writer = CredentialsDirWriter::new(tmp.path());
    writer
        .write(&CredentialsContents::with_layout(
            Layout::Gke,
            &svid,
            &ca,
            [],
        ))
        .unwrap();
    let dir = CredentialsDir::new(writer.link_path());
    let client_store = SvidStore::new(dir.load_blocking().unwrap());
    let watcher = Watcher::spawn(client_store.clone(), Arc::new(dir), fast()).unwrap();
    let client = MtlsConfig::new(client_store.clone(), Authorizer::any());
    let connector = MtlsConnector::from_config(&client).unwrap();
    connector.connect(addr).await.unwrap();
    assert_eq!(results.recv().await.unwrap().unwrap(), id(ME));

    let next = ca.issue(ME).unwrap();
    writer
        .write(&CredentialsContents::with_layout(
            Layout::NoKey,
            &next,
            &ca,
            [],
        ))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while client_store.status().failures == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let status = client_store.status();
    let last = status.last_error.unwrap();
    assert_eq!(credential_error(&last), CredentialError::PrivateKeyHidden);
    assert!(last.hint().unwrap().contains("stay in use"), "{last}");
    assert_eq!(client_store.generation(), 0);
    assert_eq!(
        watcher.store().current().svid().leaf().as_ref(),
        svid.leaf_der()
    );
    connector.connect(addr).await.unwrap();
    assert_eq!(results.recv().await.unwrap().unwrap(), id(ME));

    // Replaced by hand, the connector refuses before dialling.
    drop(watcher);
    let keyless = CredentialsDir::new(writer.link_path())
        .load_blocking()
        .unwrap();
    client_store.replace(keyless);
    let err = connector.connect(addr).await.unwrap_err();
    assert_eq!(credential_error(&err), CredentialError::PrivateKeyHidden);
}

/// The watcher picks up each layout's rotations, both from the node agent's swapped symlink and
/// from a Kubernetes volume's `..data` swap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_layout_rotates_under_both_atomic_writers() {
    let ca = TrustDomainCa::new(TD).unwrap();
    for layout in Layout::ALL {
        for kubernetes in [false, true] {
            let tmp = TempDir::new("layout-rotation");
            let writer = if kubernetes {
                CredentialsDirWriter::kubernetes(tmp.path().join("volume"))
            } else {
                CredentialsDirWriter::new(tmp.path())
            };
            let first = ca.issue(ME).unwrap();
            writer
                .write(&CredentialsContents::with_layout(layout, &first, &ca, []))
                .unwrap();
            let dir = CredentialsDir::new(writer.link_path());
            let store = SvidStore::new(dir.load_blocking().unwrap());
            assert_eq!(store.current().layout(), Some(ours(layout)));
            let _watcher = Watcher::spawn(store.clone(), Arc::new(dir), fast()).unwrap();
            let mut rx = store.subscribe();
            for round in 1..=2u64 {
                let next = ca.issue(ME).unwrap();
                writer
                    .write(&CredentialsContents::with_layout(layout, &next, &ca, []))
                    .unwrap();
                tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|g| *g >= round))
                    .await
                    .unwrap_or_else(|_| {
                        panic!("{layout} (kubernetes: {kubernetes}) round {round} not picked up")
                    })
                    .unwrap();
                let current = store.current();
                assert_eq!(
                    current.svid().leaf().as_ref(),
                    next.leaf_der(),
                    "{layout} (kubernetes: {kubernetes})"
                );
                assert_eq!(current.layout(), Some(ours(layout)));
            }
            assert_eq!(store.status().failures, 0, "{layout}: {:?}", store.status());
        }
    }
}

/// A SPIFFE credential folder kept by a writer that renames each new file over the old one (no
/// symlinks): the watcher picks the new bundle up, and a new federated trust bundle file too.
#[tokio::test]
async fn a_spiffe_folder_updated_by_renames_is_picked_up() {
    let ca = TrustDomainCa::new(TD).unwrap();
    let partner = TrustDomainCa::new("partner.example").unwrap();
    let tmp = TempDir::new("spiffe-renames");
    let folder = tmp.path().join("folder");
    std::fs::create_dir_all(&folder).unwrap();
    let replace = |name: &str, text: &str| {
        let part = folder.join(format!(".{name}.part"));
        std::fs::write(&part, text).unwrap();
        std::fs::rename(&part, folder.join(name)).unwrap();
    };
    let bundle_of = |svid: &workload_auth_emulator::ca::IssuedSvid| {
        format!("{}{}", svid.private_key_pem().expose(), svid.chain_pem())
    };
    let first = ca.issue(ME).unwrap();
    replace(SPIFFE_CREDENTIAL_BUNDLE_FILE, &bundle_of(&first));
    replace(&format!("{TD}{SPIFFE_TRUST_BUNDLE_SUFFIX}"), ca.root_pem());

    let dir = CredentialsDir::spiffe_credential_folder(&folder);
    let store = SvidStore::new(dir.load_blocking().unwrap());
    assert_eq!(store.current().bundles().len(), 1);
    let _watcher = Watcher::spawn(store.clone(), Arc::new(dir), fast()).unwrap();
    let mut rx = store.subscribe();

    let next = ca.issue(ME).unwrap();
    replace(SPIFFE_CREDENTIAL_BUNDLE_FILE, &bundle_of(&next));
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|g| *g >= 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.current().svid().leaf().as_ref(), next.leaf_der());

    replace(
        &format!("partner.example{SPIFFE_TRUST_BUNDLE_SUFFIX}"),
        partner.root_pem(),
    );
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|g| *g >= 2))
        .await
        .unwrap()
        .unwrap();
    assert!(store.current().bundles().for_id(&id(PEER)).is_some());
    assert_eq!(store.status().failures, 0, "{:?}", store.status());
}

/// The key may sit anywhere among the combined file's sections; exactly one key loads (to the
/// very SVID the parts came from), any other count is the typed error for it.
mod combined_order {
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;

    fn parts() -> &'static (String, String, String, String, Vec<u8>) {
        static PARTS: OnceLock<(String, String, String, String, Vec<u8>)> = OnceLock::new();
        PARTS.get_or_init(|| {
            let ca = TrustDomainCa::new(TD).unwrap();
            let svid = ca.issue(ME).unwrap();
            let other = ca.issue(ME).unwrap();
            (
                svid.leaf_pem(),
                ca.intermediate_pem().to_owned(),
                svid.private_key_pem().expose().to_owned(),
                other.private_key_pem().expose().to_owned(),
                svid.leaf_der().to_vec(),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_key_position_and_count(position in 0usize..3, extra in 0usize..3, none in any::<bool>()) {
            let (leaf, intermediate, key, other_key, leaf_der) = parts();
            let mut sections = vec![leaf.clone(), intermediate.clone()];
            let keys = if none { 0 } else { 1 + extra };
            for i in 0..keys {
                let k = if i == 0 { key.clone() } else { other_key.clone() };
                sections.insert(position.min(sections.len()), k);
            }
            let result = X509Svid::from_combined_pem(sections.concat().as_bytes());
            match keys {
                1 => {
                    let svid = result.unwrap();
                    prop_assert_eq!(svid.leaf().as_ref(), leaf_der.as_slice());
                    prop_assert!(svid.certified_key().keys_match().is_ok());
                }
                0 => prop_assert_eq!(result.unwrap_err(), CredentialError::NoPrivateKey),
                n => prop_assert_eq!(result.unwrap_err(), CredentialError::MultiplePrivateKeys(n)),
            }
        }
    }
}
