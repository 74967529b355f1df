//! Interop with Debian's `openssl` command: `s_server` and `s_client` with client auth in both
//! directions using emulator-issued SVIDs, and certificates made by the openssl CLI itself
//! accepted or refused correctly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_mtls::*;

const SERVER: &str = "spiffe://prod.example/ns/backend/sa/api";
const CLIENT: &str = "spiffe://prod.example/ns/frontend/sa/web";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is needed for interop tests (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Files {
    chain: PathBuf,
    leaf: PathBuf,
    intermediate: PathBuf,
    key: PathBuf,
    root: PathBuf,
}

fn files(dir: &Path, tag: &str, ca: &TrustDomainCa, spiffe_id: &str) -> Files {
    let svid = ca.issue(spiffe_id).unwrap();
    Files {
        chain: write(dir, &format!("{tag}-chain.pem"), svid.chain_pem()),
        leaf: write(dir, &format!("{tag}-leaf.pem"), svid.leaf_pem()),
        intermediate: write(dir, &format!("{tag}-int.pem"), ca.intermediate_pem()),
        key: write(
            dir,
            &format!("{tag}-key.pem"),
            svid.private_key_pem().expose(),
        ),
        root: write(dir, &format!("{tag}-root.pem"), ca.root_pem()),
    }
}

fn load(f: &Files, trusted: &[&TrustDomainCa]) -> SvidStore {
    let svid = X509Svid::from_pem(
        &std::fs::read(&f.chain).unwrap(),
        &std::fs::read(&f.key).unwrap(),
    )
    .unwrap();
    SvidStore::new(X509Material::new(svid, bundles(trusted)))
}

#[tokio::test]
async fn our_client_against_openssl_s_server_with_client_auth() {
    let tmp = TempDir::new("ossl-server");
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let srv = files(tmp.path(), "srv", &ca, SERVER);
    let cli = files(tmp.path(), "cli", &ca, CLIENT);
    let port = free_port();
    let mut child = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-tls1_3",
            "-rev",
        ])
        .args(["-naccept", "1", "-Verify", "3", "-verify_return_error"])
        .arg("-cert")
        .arg(&srv.leaf)
        .arg("-cert_chain")
        .arg(&srv.intermediate)
        .arg("-key")
        .arg(&srv.key)
        .arg("-CAfile")
        .arg(&srv.root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    // s_server prints ACCEPT once it listens.
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = out.next_line().await.unwrap() {
            if line.contains("ACCEPT") {
                return;
            }
        }
        panic!("s_server exited before listening");
    })
    .await
    .unwrap();

    let client = MtlsConfig::new(load(&cli, &[&ca]), Authorizer::exact(id(SERVER)));
    let (mut stream, peer) = MtlsConnector::from_config(&client)
        .unwrap()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    assert_eq!(peer, id(SERVER));
    stream.write_all(b"spiffe\n").await.unwrap();
    let mut buf = [0u8; 6];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(
        &buf, b"effips",
        "s_server -rev echoes reversed: it accepted our certificate"
    );
    // (s_server runs with -Verify and -verify_return_error: the echo above means it verified
    // our certificate chain against the root.)
    drop(stream);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    assert!(matches!(status, Ok(Ok(s)) if s.success()), "{status:?}");
}

#[tokio::test]
async fn openssl_s_client_against_our_server_with_client_auth() {
    let tmp = TempDir::new("ossl-client");
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let srv = files(tmp.path(), "srv", &ca, SERVER);
    let cli = files(tmp.path(), "cli", &ca, CLIENT);
    let server = MtlsConfig::new(load(&srv, &[&ca]), Authorizer::exact(id(CLIENT)));
    let acceptor = MtlsAcceptor::from_config(&server).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut s, peer) = acceptor.accept(tcp).await?;
        s.write_all(format!("peer={peer}\n").as_bytes())
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        Ok::<_, workload_auth_core::Error>(peer)
    });
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-tls1_3",
            "-quiet",
        ])
        .arg("-verify_return_error")
        .arg("-cert")
        .arg(&cli.leaf)
        .arg("-cert_chain")
        .arg(&cli.intermediate)
        .arg("-key")
        .arg(&cli.key)
        .arg("-CAfile")
        .arg(&cli.root)
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "s_client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("peer={CLIENT}")), "{stdout}");
    assert_eq!(server_task.await.unwrap().unwrap(), id(CLIENT));
}

#[tokio::test]
async fn openssl_s_client_from_an_untrusted_domain_is_refused() {
    let tmp = TempDir::new("ossl-refused");
    let ca = TrustDomainCa::new("prod.example").unwrap();
    let stranger = TrustDomainCa::new("stranger.example").unwrap();
    let srv = files(tmp.path(), "srv", &ca, SERVER);
    let cli = files(
        tmp.path(),
        "cli",
        &stranger,
        "spiffe://stranger.example/ns/x/sa/y",
    );
    let server = MtlsConfig::new(load(&srv, &[&ca]), Authorizer::any());
    let acceptor = MtlsAcceptor::from_config(&server).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.map(|(_, peer)| peer)
    });
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-tls1_3",
            "-quiet",
        ])
        .arg("-cert")
        .arg(&cli.leaf)
        .arg("-cert_chain")
        .arg(&cli.intermediate)
        .arg("-key")
        .arg(&cli.key)
        .arg("-CAfile")
        .arg(&srv.root)
        .stdin(Stdio::null())
        .output();
    let _ = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .unwrap()
        .unwrap();
    let err = server_task.await.unwrap().unwrap_err();
    assert_eq!(
        reason(&err),
        VerificationError::UnknownTrustDomain("stranger.example".into())
    );
}

/// A CA and leaves made entirely by the openssl CLI.
struct OpensslPki {
    dir: TempDir,
}

impl OpensslPki {
    fn new() -> Self {
        let dir = TempDir::new("ossl-pki");
        let p = dir.path();
        openssl(
            p,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "ca.key",
            ],
        );
        openssl(
            p,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/O=openssl-made/CN=root",
                "-days",
                "3",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Issues a leaf with the given key-generation args and extension lines.
    fn leaf(&self, name: &str, keygen: &[&str], ext: &str) -> (Vec<u8>, Vec<u8>) {
        let p = self.path();
        let key = format!("{name}.key");
        // `-out` right after the command: genrsa wants the key size last.
        let mut args: Vec<&str> = vec![keygen[0], "-out", &key];
        args.extend(&keygen[1..]);
        openssl(p, &args);
        write(p, &format!("{name}.ext"), ext);
        let csr = format!("{name}.csr");
        openssl(
            p,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                "/O=openssl-made",
                "-out",
                &csr,
            ],
        );
        let crt = format!("{name}.pem");
        let extfile = format!("{name}.ext");
        openssl(
            p,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &extfile,
                "-out",
                &crt,
            ],
        );
        (
            std::fs::read(p.join(crt)).unwrap(),
            std::fs::read(p.join(key)).unwrap(),
        )
    }

    fn bundles(&self) -> TrustBundleSet {
        let pem = std::fs::read(self.path().join("ca.pem")).unwrap();
        let mut set = TrustBundleSet::new();
        set.add(TrustBundle::from_pem(td("openssl.example"), &pem).unwrap())
            .unwrap();
        set
    }
}

const GOOD_EXT: &str = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=critical,URI:spiffe://openssl.example/ns/a/sa/b\n";

const EC_PKCS8: &[&str] = &[
    "genpkey",
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
];
const EC_SEC1: &[&str] = &["ecparam", "-name", "prime256v1", "-genkey", "-noout"];
const RSA_PKCS1: &[&str] = &["genrsa", "-traditional", "2048"];
const RSA_PKCS8: &[&str] = &[
    "genpkey",
    "-algorithm",
    "RSA",
    "-pkeyopt",
    "rsa_keygen_bits:2048",
];

#[tokio::test]
async fn openssl_made_svids_with_every_key_format_handshake() {
    let pki = OpensslPki::new();
    let emu = TrustDomainCa::new("prod.example").unwrap();
    // Our server trusts the openssl-made domain.
    let mut server_bundles = pki.bundles();
    server_bundles.add(bundle(&emu)).unwrap();
    let server_svid = emu.issue(SERVER).unwrap();
    let server = MtlsConfig::new(
        SvidStore::new(X509Material::new(
            X509Svid::from_der(chain_of(&server_svid), key_of(&server_svid)).unwrap(),
            server_bundles,
        )),
        Authorizer::member_of(td("openssl.example")),
    );
    for (name, keygen, marker) in [
        ("ec-pkcs8", EC_PKCS8, "BEGIN PRIVATE KEY"),
        ("ec-sec1", EC_SEC1, "BEGIN EC PRIVATE KEY"),
        ("rsa-pkcs1", RSA_PKCS1, "BEGIN RSA PRIVATE KEY"),
        ("rsa-pkcs8", RSA_PKCS8, "BEGIN PRIVATE KEY"),
    ] {
        let (cert, key) = pki.leaf(name, keygen, GOOD_EXT);
        assert!(String::from_utf8_lossy(&key).contains(marker), "{name}");
        let svid = X509Svid::from_pem(&cert, &key).unwrap();
        assert_eq!(svid.spiffe_id(), &id("spiffe://openssl.example/ns/a/sa/b"));
        let client = MtlsConfig::new(
            SvidStore::new(X509Material::new(svid, bundles(&[&emu]))),
            Authorizer::exact(id(SERVER)),
        );
        let (addr, mut verdicts) = echo_server(&server, 1).await;
        let (mut s, peer) = MtlsConnector::from_config(&client)
            .unwrap()
            .connect(addr)
            .await
            .unwrap();
        assert_eq!(peer, id(SERVER));
        s.write_all(b"x").await.unwrap();
        s.read_exact(&mut [0u8; 1]).await.unwrap();
        assert_eq!(
            verdicts.recv().await.unwrap().unwrap(),
            id("spiffe://openssl.example/ns/a/sa/b"),
            "{name}"
        );
    }
    // A key that is not the certificate's, both made by openssl.
    let (cert, _) = pki.leaf("mismatch-a", EC_PKCS8, GOOD_EXT);
    let (_, other_key) = pki.leaf("mismatch-b", EC_PKCS8, GOOD_EXT);
    assert_eq!(
        X509Svid::from_pem(&cert, &other_key).unwrap_err(),
        CredentialError::KeyMismatch
    );
}

#[test]
fn openssl_made_bad_leaves_are_refused_with_the_right_reason() {
    let pki = OpensslPki::new();
    let set = pki.bundles();
    let verify = |cert: &[u8]| {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<_, _>>()
            .unwrap();
        verify_x509_svid(&chain, &set, Purpose::ClientAuth, UnixTime::now())
    };
    let (good, _) = pki.leaf("good", EC_PKCS8, GOOD_EXT);
    assert_eq!(
        verify(&good).unwrap(),
        id("spiffe://openssl.example/ns/a/sa/b")
    );

    let cases: &[(&str, &str, VerificationError)] = &[
        (
            "dns-only",
            "keyUsage=critical,digitalSignature\nsubjectAltName=DNS:web.openssl.example\n",
            VerificationError::NoUriSan,
        ),
        (
            "two-uris",
            "keyUsage=critical,digitalSignature\nsubjectAltName=URI:spiffe://openssl.example/a,URI:spiffe://openssl.example/b\n",
            VerificationError::MultipleUriSans(2),
        ),
        (
            "ca-leaf",
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\nsubjectAltName=URI:spiffe://openssl.example/a\n",
            VerificationError::LeafIsCa,
        ),
        (
            "cert-sign",
            "keyUsage=critical,digitalSignature,keyCertSign\nsubjectAltName=URI:spiffe://openssl.example/a\n",
            VerificationError::ForbiddenKeyUsage("keyCertSign"),
        ),
        (
            "no-digital-signature",
            "keyUsage=critical,keyAgreement\nsubjectAltName=URI:spiffe://openssl.example/a\n",
            VerificationError::MissingDigitalSignature,
        ),
        (
            "server-only",
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=URI:spiffe://openssl.example/a\n",
            VerificationError::WrongExtendedKeyUsage {
                position: ChainPosition::Leaf,
                needed: "clientAuth",
            },
        ),
        (
            "mail-uri",
            "keyUsage=critical,digitalSignature\nsubjectAltName=URI:mailto:a@openssl.example\n",
            VerificationError::NotSpiffeUri {
                uri: "mailto:a@openssl.example".into(),
            },
        ),
        (
            "port",
            "keyUsage=critical,digitalSignature\nsubjectAltName=URI:spiffe://openssl.example:443/a\n",
            VerificationError::InvalidSpiffeId {
                uri: "spiffe://openssl.example:443/a".into(),
                reason: SpiffeIdError::Port,
            },
        ),
    ];
    for (name, ext, want) in cases {
        let (cert, _) = pki.leaf(name, EC_PKCS8, ext);
        assert_eq!(&verify(&cert).unwrap_err(), want, "{name}");
    }
    // A leaf of a domain the openssl root does not vouch for (the root is only openssl.example's).
    let (cert, _) = pki.leaf(
        "other-domain",
        EC_PKCS8,
        "keyUsage=critical,digitalSignature\nsubjectAltName=URI:spiffe://elsewhere.example/a\n",
    );
    assert_eq!(
        verify(&cert).unwrap_err(),
        VerificationError::UnknownTrustDomain("elsewhere.example".into())
    );
}
