//! Signing a service-account JWT (RS256 and ES256), with the raw ring signature of the same key
//! over an input of the same length measured in the same run as the baseline: the difference is
//! what building, encoding and serializing the JWT costs on top of the signature itself.
//!
//! `cargo bench -p workload-auth-benches --bench jwt_signing`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use serde_json::json;
use workload_auth_adc::signing::JwtSigner;

/// The test keys of crates/adc (test keys only; see their README).
fn test_key(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/adc/tests/keys")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn pkcs8_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// The claims of a JWT-bearer assertion, as the credential builds them for each request.
fn claims() -> serde_json::Value {
    let iat = 1_767_225_600u64;
    json!({
        "iss": "key-sa@test-project.iam.gserviceaccount.com",
        "aud": "https://oauth2.googleapis.com/token",
        "iat": iat,
        "exp": iat + 3600,
        "scope": "https://www.googleapis.com/auth/cloud-platform",
    })
}

fn jwt_signing(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let rsa_pem = test_key("test_rsa_pkcs8.pem");
    let ec_pem = test_key("test_ec_p256_pkcs8.pem");
    let rsa_signer =
        JwtSigner::from_pem(&rsa_pem.as_str().into(), Some("rsa-key-id".into())).unwrap();
    let ec_signer = JwtSigner::from_pem(&ec_pem.as_str().into(), Some("ec-key-id".into())).unwrap();
    // The signing input of a real JWT, for the baselines.
    let jwt = rsa_signer.sign(&claims()).unwrap();
    let (signing_input, _) = jwt.expose().rsplit_once('.').unwrap();
    let message = signing_input.as_bytes().to_vec();

    let rsa = RsaKeyPair::from_pkcs8(&pkcs8_der(&rsa_pem)).unwrap();
    let mut rsa_sig = vec![0u8; rsa.public().modulus_len()];
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8_der(&ec_pem), &rng)
        .unwrap();

    let mut group = c.benchmark_group("jwt_signing");
    group.bench_function("rs256/ring_sign_baseline", |b| {
        b.iter(|| {
            rsa.sign(&RSA_PKCS1_SHA256, &rng, black_box(&message), &mut rsa_sig)
                .unwrap();
            black_box(&rsa_sig);
        });
    });
    group.bench_function("rs256/service_account_jwt", |b| {
        b.iter(|| black_box(rsa_signer.sign(&black_box(claims())).unwrap()));
    });
    group.bench_function("es256/ring_sign_baseline", |b| {
        b.iter(|| black_box(ec.sign(&rng, black_box(&message)).unwrap()));
    });
    group.bench_function("es256/service_account_jwt", |b| {
        b.iter(|| black_box(ec_signer.sign(&black_box(claims())).unwrap()));
    });
    group.finish();
}

criterion_group!(benches, jwt_signing);
criterion_main!(benches);
