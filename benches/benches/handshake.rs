//! Mutual TLS 1.3 handshakes over an in-memory transport, with their baselines, all in one run.
//!
//! `cargo bench -p workload-auth-benches --bench handshake`
//!
//! - `mtls_handshake/spiffe`: a full handshake, client and server together, both sides verifying the
//!   peer as an X509-SVID (`SpiffeVerifier`) and authorizing it, then reading the peer's SPIFFE ID
//!   (what `MtlsConnector` / `MtlsAcceptor` hand the application).
//! - `mtls_handshake/baseline: rustls WebPKI verifiers`: the same handshake with rustls' stock
//!   `WebPkiServerVerifier` / `WebPkiClientVerifier`, the same certificates and keys (the server
//!   leaf carries a DNS SAN beside its SPIFFE ID so the stock verifier has a name to check), the same
//!   provider, versions and (disabled) resumption.
//! - `mtls_handshake/baseline: crypto floor`: the public-key operations such a handshake performs,
//!   timed with ring directly: 2 ECDSA P-256 signatures (each side's CertificateVerify), 6 ECDSA
//!   P-256 verifications (per side: the peer's leaf and intermediate signatures along its chain,
//!   and the peer's CertificateVerify), 2 X25519 key generations and 2 X25519 agreements. Hashing,
//!   key derivation and record encryption are left out.
//! - `mtls_handshake/spiffe, verified-chain cache warm`: a repeat handshake with known peers, each
//!   side's verifier holding a `VerifiedChainCache`.
//! - `verify_chain/*`: chain verification alone, SPIFFE verifier against the stock verifier, and a
//!   cache hit on one and on all cores.
//! - `crypto_floor_parts/*`: each operation of the floor alone, to check its sum.
//!
//! Times are the CPU time of the benchmark thread (the bench machine is shared), and the variants
//! of a group run interleaved; only the many-thread figure is wall time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey as AgreementPublicKey, X25519};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, UnparsedPublicKey,
};
use rustls::client::Resumption;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use workload_auth_benches::parallel;
use workload_auth_emulator::ca::{IssuedSvid, TrustDomainCa};
use workload_auth_mtls::{
    Authorizer, MtlsConfig, Purpose, SpiffeId, SvidStore, TrustBundle, TrustBundleSet, TrustDomain,
    VerifiedChainCache, X509Material, X509Svid, peer_spiffe_id, spiffe_id_of,
};
use x509_parser::prelude::{FromDer, X509Certificate};

const TRUST_DOMAIN: &str = "prod.example";
const SERVER_ID: &str = "spiffe://prod.example/ns/backend/sa/api";
const CLIENT_ID: &str = "spiffe://prod.example/ns/frontend/sa/web";
const SERVER_DNS: &str = "api.backend.prod.example";

struct Fixture {
    ca: TrustDomainCa,
    server: IssuedSvid,
    client: IssuedSvid,
}

impl Fixture {
    fn new() -> Self {
        let ca = TrustDomainCa::new(TRUST_DOMAIN).unwrap();
        // One certificate for both handshakes: a SPIFFE ID for ours, a DNS name for the stock one.
        let server = ca.svid(SERVER_ID).dns_name(SERVER_DNS).issue().unwrap();
        let client = ca.issue(CLIENT_ID).unwrap();
        Self { ca, server, client }
    }

    fn chain(svid: &IssuedSvid) -> Vec<CertificateDer<'static>> {
        svid.chain_der()
            .iter()
            .map(|der| CertificateDer::from(der.clone()))
            .collect()
    }

    fn key(svid: &IssuedSvid) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.pkcs8_der().to_vec()))
    }

    fn bundles(&self) -> TrustBundleSet {
        let bundle = TrustBundle::new(
            TrustDomain::new(TRUST_DOMAIN).unwrap(),
            vec![CertificateDer::from(self.ca.root_der().to_vec())],
        )
        .unwrap();
        TrustBundleSet::new().with(bundle).unwrap()
    }

    fn store(&self, svid: &IssuedSvid) -> SvidStore {
        let svid = X509Svid::from_der(Self::chain(svid), Self::key(svid)).unwrap();
        SvidStore::new(X509Material::new(svid, self.bundles()))
    }

    fn spiffe(&self, cache: bool) -> (Arc<ClientConfig>, Arc<ServerConfig>) {
        let mut client = MtlsConfig::new(
            self.store(&self.client),
            Authorizer::exact(SpiffeId::parse(SERVER_ID).unwrap()),
        );
        let mut server = MtlsConfig::new(
            self.store(&self.server),
            Authorizer::exact(SpiffeId::parse(CLIENT_ID).unwrap()),
        );
        if cache {
            client = client.with_chain_cache(VerifiedChainCache::default());
            server = server.with_chain_cache(VerifiedChainCache::default());
        }
        (
            Arc::new(client.client_config().unwrap()),
            Arc::new(server.server_config().unwrap()),
        )
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca.root_der().to_vec()))
            .unwrap();
        Arc::new(roots)
    }

    fn webpki(&self) -> (Arc<ClientConfig>, Arc<ServerConfig>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(self.roots(), provider.clone())
                .build()
                .unwrap();
        let mut client = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_webpki_verifier(server_verifier)
            .with_client_auth_cert(Self::chain(&self.client), Self::key(&self.client))
            .unwrap();
        client.resumption = Resumption::disabled();
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots(), provider.clone())
                .build()
                .unwrap();
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(Self::chain(&self.server), Self::key(&self.server))
            .unwrap();
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        (Arc::new(client), Arc::new(server))
    }
}

/// Moves every pending TLS record from one side to the other until both are done.
fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    name: &ServerName<'static>,
) -> (ClientConnection, ServerConnection) {
    let buf = &mut Vec::with_capacity(16 * 1024);
    let mut c = ClientConnection::new(client.clone(), name.clone()).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    loop {
        let mut moved = false;
        while c.wants_write() {
            buf.clear();
            c.write_tls(buf).unwrap();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                s.process_new_packets().unwrap();
            }
            moved = true;
        }
        while s.wants_write() {
            buf.clear();
            s.write_tls(buf).unwrap();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().unwrap();
            }
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(!c.is_handshaking() && !s.is_handshaking());
    (c, s)
}

/// The signed parts of one certificate and the public key of its issuer.
struct SignedCert {
    tbs: Vec<u8>,
    signature: Vec<u8>,
    issuer_key: Vec<u8>,
}

fn spki_key(der: &[u8]) -> Vec<u8> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.public_key().subject_public_key.data.to_vec()
}

fn signed(der: &[u8], issuer_der: &[u8]) -> SignedCert {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    SignedCert {
        tbs: cert.tbs_certificate.as_ref().to_vec(),
        signature: cert.signature_value.data.to_vec(),
        issuer_key: spki_key(issuer_der),
    }
}

/// Each side's share of the public-key work of a mutual TLS 1.3 handshake with ECDSA P-256
/// certificates (leaf + intermediate, root in the trust store) and X25519.
struct CryptoFloor {
    rng: SystemRandom,
    server_key: EcdsaKeyPair,
    client_key: EcdsaKeyPair,
    server_leaf_key: Vec<u8>,
    client_leaf_key: Vec<u8>,
    /// What a TLS 1.3 CertificateVerify signs: 64 spaces, a context string, 0, a SHA-256 hash.
    message: Vec<u8>,
    server_signature: Vec<u8>,
    client_signature: Vec<u8>,
    /// Leaf-by-intermediate and intermediate-by-root, for each side's chain.
    chains: [SignedCert; 4],
}

impl CryptoFloor {
    fn new(f: &Fixture) -> Self {
        let rng = SystemRandom::new();
        let alg = &ECDSA_P256_SHA256_ASN1_SIGNING;
        let server_key = EcdsaKeyPair::from_pkcs8(alg, f.server.pkcs8_der(), &rng).unwrap();
        let client_key = EcdsaKeyPair::from_pkcs8(alg, f.client.pkcs8_der(), &rng).unwrap();
        let mut message = vec![0x20u8; 64];
        message.extend_from_slice(b"TLS 1.3, server CertificateVerify\0");
        message.extend_from_slice(&[0xa5; 32]);
        let server_signature = server_key.sign(&rng, &message).unwrap().as_ref().to_vec();
        let client_signature = client_key.sign(&rng, &message).unwrap().as_ref().to_vec();
        let int = f.ca.intermediate_der();
        let root = f.ca.root_der();
        let chains = [
            signed(f.server.leaf_der(), int),
            signed(int, root),
            signed(f.client.leaf_der(), int),
            signed(int, root),
        ];
        Self {
            server_leaf_key: spki_key(f.server.leaf_der()),
            client_leaf_key: spki_key(f.client.leaf_der()),
            rng,
            server_key,
            client_key,
            message,
            server_signature,
            client_signature,
            chains,
        }
    }

    fn verify(key: &[u8], message: &[u8], signature: &[u8]) {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key)
            .verify(message, signature)
            .unwrap();
    }

    fn sign_once(&self) {
        black_box(self.server_key.sign(&self.rng, &self.message).unwrap());
    }

    fn verify_once(&self) {
        Self::verify(&self.server_leaf_key, &self.message, &self.server_signature);
    }

    fn x25519_keygen(&self) -> (EphemeralPrivateKey, agreement::PublicKey) {
        let key = EphemeralPrivateKey::generate(&X25519, &self.rng).unwrap();
        let public = key.compute_public_key().unwrap();
        (key, public)
    }

    fn run(&self) {
        // Key exchange: each side makes an ephemeral key and agrees with the other's share.
        let c_kx = EphemeralPrivateKey::generate(&X25519, &self.rng).unwrap();
        let c_pub = c_kx.compute_public_key().unwrap();
        let s_kx = EphemeralPrivateKey::generate(&X25519, &self.rng).unwrap();
        let s_pub = s_kx.compute_public_key().unwrap();
        let s_secret = agreement::agree_ephemeral(
            s_kx,
            &AgreementPublicKey::new(&X25519, c_pub.as_ref()),
            |k| k[0],
        )
        .unwrap();
        let c_secret = agreement::agree_ephemeral(
            c_kx,
            &AgreementPublicKey::new(&X25519, s_pub.as_ref()),
            |k| k[0],
        )
        .unwrap();
        black_box((s_secret, c_secret));
        // Server CertificateVerify, checked by the client along with the server's chain.
        let sig = self.server_key.sign(&self.rng, &self.message).unwrap();
        black_box(sig.as_ref());
        for c in &self.chains[..2] {
            Self::verify(&c.issuer_key, &c.tbs, &c.signature);
        }
        Self::verify(&self.server_leaf_key, &self.message, &self.server_signature);
        // Client CertificateVerify, checked by the server along with the client's chain.
        let sig = self.client_key.sign(&self.rng, &self.message).unwrap();
        black_box(sig.as_ref());
        for c in &self.chains[2..] {
            Self::verify(&c.issuer_key, &c.tbs, &c.signature);
        }
        Self::verify(&self.client_leaf_key, &self.message, &self.client_signature);
    }
}

/// CPU time of the calling thread. The machine these run on is shared; CPU time leaves out the
/// time other processes hold the core, which wall time would charge to whichever measurement
/// happened to be running.
fn cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Runs `op` `iters` times and returns the CPU time it took.
fn cpu_timed(iters: u64, op: &dyn Fn()) -> Duration {
    let start = cpu_now();
    for _ in 0..iters {
        op();
    }
    cpu_now() - start
}

/// Runs `own` `iters` times and returns its total CPU time. After each run one of `others` runs
/// untimed, in turn, so whatever the caches and the core's clock go through falls on every variant
/// alike.
fn interleaved(iters: u64, own: &dyn Fn(), others: &[&dyn Fn()]) -> Duration {
    let mut total = Duration::ZERO;
    for n in 0..iters {
        let start = cpu_now();
        own();
        total += cpu_now() - start;
        if !others.is_empty() {
            others[n as usize % others.len()]();
        }
    }
    total
}

/// A paired comparison printed after the criterion figures, the source of the ratios in
/// BENCHMARKS.md: in each round every variant runs a small batch, back to back (starting with a
/// different one each round), and each round gives one ratio per pair; the median and quartiles
/// over the rounds are reported. Changes in the machine's speed slower than a round cancel out.
fn paired_report(variants: &[(&str, &dyn Fn())]) {
    let quick = std::env::args().any(|a| a == "--test" || a == "--list");
    let (rounds, batch) = if quick { (2, 1) } else { (600, 3) };
    let n = variants.len();
    let mut times = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for k in 0..n {
            let v = (round + k) % n;
            let t = cpu_timed(batch, variants[v].1);
            times[v].push(t.as_secs_f64() / batch as f64);
        }
    }
    let quartiles = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
        (at(0.25), at(0.5), at(0.75))
    };
    let mut out = std::io::stderr().lock();
    let _ = writeln!(
        out,
        "\npaired comparison, {rounds} rounds of {batch} (CPU time; median [p25, p75]):"
    );
    for (v, (label, _)) in variants.iter().enumerate() {
        let (lo, mid, hi) = quartiles(times[v].clone());
        let _ = writeln!(
            out,
            "  {label:<58} {:>8.1} µs [{:.1}, {:.1}]",
            mid * 1e6,
            lo * 1e6,
            hi * 1e6
        );
    }
    for (a, b) in [(0, 1), (0, 2), (1, 2), (3, 1), (3, 0)] {
        let ratios: Vec<f64> = (0..rounds).map(|r| times[a][r] / times[b][r]).collect();
        let (lo, mid, hi) = quartiles(ratios);
        let _ = writeln!(
            out,
            "  ratio {} / {}: {mid:.3} [{lo:.3}, {hi:.3}]",
            variants[a].0, variants[b].0
        );
    }
}

fn handshakes(c: &mut Criterion) {
    let f = Fixture::new();
    let name = ServerName::try_from(SERVER_DNS).unwrap();
    let (spiffe_client, spiffe_server) = f.spiffe(false);
    let (cached_client, cached_server) = f.spiffe(true);
    let (webpki_client, webpki_server) = f.webpki();
    let floor = CryptoFloor::new(&f);

    let spiffe = || {
        let (cc, sc) = handshake(&spiffe_client, &spiffe_server, &name);
        black_box((peer_spiffe_id(&cc), peer_spiffe_id(&sc)));
    };
    let webpki = || {
        let (cc, sc) = handshake(&webpki_client, &webpki_server, &name);
        black_box((
            cc.peer_certificates().is_some(),
            sc.peer_certificates().is_some(),
        ));
    };
    let crypto_floor = || floor.run();
    let cached = || {
        let (cc, sc) = handshake(&cached_client, &cached_server, &name);
        black_box((peer_spiffe_id(&cc), peer_spiffe_id(&sc)));
    };

    // Every variant completes and sees the right peer before anything is timed.
    let (cc, sc) = handshake(&spiffe_client, &spiffe_server, &name);
    assert_eq!(peer_spiffe_id(&cc).unwrap().as_str(), SERVER_ID);
    assert_eq!(peer_spiffe_id(&sc).unwrap().as_str(), CLIENT_ID);
    let (cc, sc) = handshake(&webpki_client, &webpki_server, &name);
    assert!(cc.peer_certificates().is_some() && sc.peer_certificates().is_some());
    let (cc, sc) = handshake(&cached_client, &cached_server, &name);
    assert_eq!(peer_spiffe_id(&cc).unwrap().as_str(), SERVER_ID);
    assert_eq!(peer_spiffe_id(&sc).unwrap().as_str(), CLIENT_ID);
    floor.run();

    let variants: [(&str, &dyn Fn()); 4] = [
        ("spiffe", &spiffe),
        ("baseline: rustls WebPKI verifiers", &webpki),
        (
            "baseline: crypto floor (2 sign, 6 verify, 2+2 X25519)",
            &crypto_floor,
        ),
        ("spiffe, verified-chain cache warm", &cached),
    ];
    let mut g = c.benchmark_group("mtls_handshake");
    for (i, (label, own)) in variants.iter().enumerate() {
        let others: Vec<&dyn Fn()> = variants
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (_, f))| *f)
            .collect();
        g.bench_function(*label, |b| {
            b.iter_custom(|iters| interleaved(iters, *own, &others))
        });
    }
    g.finish();

    paired_report(&variants);

    // The floor's parts, for checking its sum: 2 sign + 6 verify + 2 keygen + 2 agreement.
    let (_, peer_share) = floor.x25519_keygen();
    let mut g = c.benchmark_group("crypto_floor_parts");
    g.bench_function("ECDSA P-256 sign", |b| {
        b.iter_custom(|n| cpu_timed(n, &|| floor.sign_once()))
    });
    g.bench_function("ECDSA P-256 verify", |b| {
        b.iter_custom(|n| cpu_timed(n, &|| floor.verify_once()))
    });
    g.bench_function("X25519 keygen", |b| {
        b.iter_custom(|n| {
            cpu_timed(n, &|| {
                black_box(floor.x25519_keygen());
            })
        })
    });
    g.bench_function("X25519 keygen + agreement", |b| {
        b.iter_custom(|n| {
            cpu_timed(n, &|| {
                let (key, _) = floor.x25519_keygen();
                let peer = AgreementPublicKey::new(&X25519, peer_share.as_ref());
                black_box(agreement::agree_ephemeral(key, &peer, |k| k[0]).unwrap());
            })
        })
    });
    g.finish();
}

fn verification(c: &mut Criterion) {
    let f = Fixture::new();
    let chain = Fixture::chain(&f.server);
    let now = UnixTime::now();
    let store = f.store(&f.client);
    let allow = Authorizer::exact(SpiffeId::parse(SERVER_ID).unwrap());
    let spiffe = MtlsConfig::new(store.clone(), allow.clone()).verifier();
    let cached = MtlsConfig::new(store, allow)
        .with_chain_cache(VerifiedChainCache::default())
        .verifier();
    let webpki = WebPkiServerVerifier::builder_with_provider(
        f.roots(),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let name = ServerName::try_from(SERVER_DNS).unwrap();
    assert_eq!(
        spiffe
            .verify(&chain, Purpose::ServerAuth, now)
            .unwrap()
            .as_str(),
        SERVER_ID
    );
    cached.verify(&chain, Purpose::ServerAuth, now).unwrap();
    // Standing in for the handshake signature that makes a verified chain a cache entry.
    cached.confirm_key_possession(&chain[0]);

    let verify_spiffe = || {
        black_box(spiffe.verify(&chain, Purpose::ServerAuth, now).unwrap());
    };
    let verify_webpki = || {
        black_box(
            webpki
                .verify_server_cert(&chain[0], &chain[1..], &name, &[], now)
                .unwrap(),
        );
    };
    let cache_hit = || {
        black_box(cached.verify(&chain, Purpose::ServerAuth, now).unwrap());
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());

    let mut g = c.benchmark_group("verify_chain");
    g.bench_function("spiffe verifier", |b| {
        b.iter_custom(|iters| interleaved(iters, &verify_spiffe, &[&verify_webpki]))
    });
    g.bench_function("baseline: rustls WebPkiServerVerifier", |b| {
        b.iter_custom(|iters| interleaved(iters, &verify_webpki, &[&verify_spiffe]))
    });
    g.bench_function(
        "spiffe_id_of: reading the peer's ID after a handshake",
        |b| {
            b.iter_custom(|n| {
                cpu_timed(n, &|| {
                    black_box(spiffe_id_of(&chain[0]));
                })
            })
        },
    );
    g.bench_function("spiffe verifier, cache hit/1 thread", |b| {
        b.iter_custom(|n| cpu_timed(n, &cache_hit))
    });
    g.bench_function(
        format!(
            "spiffe verifier, cache hit/{threads} threads, same chain (wall time per op, all threads)"
        ),
        |b| b.iter_custom(|iters| parallel(threads, iters, &cache_hit)),
    );
    g.finish();
}

criterion_group!(benches, handshakes, verification);
criterion_main!(benches);
