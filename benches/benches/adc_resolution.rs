//! A full Application Default Credentials resolution from a credentials file named by
//! `GOOGLE_APPLICATION_CREDENTIALS`: environment lookup, reading and parsing the file, checking
//! its URLs, loading its key, building the HTTP client. Baselines in the same run: reading the same
//! file and parsing it as JSON, which any resolution must do; for a service-account key, that
//! plus ring's parse of the private key (the floor of a resolution that refuses a bad key before
//! the first request, as google-auth does).
//!
//! `cargo bench -p workload-auth-benches --bench adc_resolution`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use ring::signature::RsaKeyPair;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;
use workload_auth_adc::{Builder, DetectionInput, EnvSource};

fn test_key(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/adc/tests/keys")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn write(dir: &Path, name: &str, value: &serde_json::Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path
}

fn resolve(file: &Path) -> workload_auth_adc::Credentials {
    Builder::new()
        .with_env(EnvSource::from_vars([(
            "GOOGLE_APPLICATION_CREDENTIALS",
            file.display().to_string(),
        )]))
        .with_detection(DetectionInput::with_env_vars::<&str, &str>([]).without_probe())
        .build()
        .unwrap()
}

fn adc_resolution(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("wa-bench-adc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sa = write(
        &dir,
        "sa.json",
        &json!({
            "type": "service_account",
            "project_id": "bench-project",
            "private_key_id": "0123456789abcdef",
            "private_key": test_key("test_rsa_pkcs8.pem"),
            "client_email": "bench@bench-project.iam.gserviceaccount.com",
            "client_id": "111111111111111111111",
            "token_uri": "https://oauth2.googleapis.com/token",
            "universe_domain": "googleapis.com",
        }),
    );
    let user = write(
        &dir,
        "user.json",
        &json!({
            "type": "authorized_user",
            "client_id": "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com",
            "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty",
            "refresh_token": "1//bench-refresh-token",
            "quota_project_id": "bench-quota",
            "universe_domain": "googleapis.com",
        }),
    );

    let mut group = c.benchmark_group("adc_resolution");
    for (name, file) in [("service_account", &sa), ("authorized_user", &user)] {
        group.bench_function(format!("{name}/read_and_parse_json_baseline"), |b| {
            b.iter(|| {
                let bytes = std::fs::read(black_box(file)).unwrap();
                black_box(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap())
            });
        });
        if name == "service_account" {
            group.bench_function(
                format!("{name}/read_parse_json_and_rsa_key_baseline"),
                |b| {
                    b.iter(|| {
                        let bytes = std::fs::read(black_box(file)).unwrap();
                        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                        let pem = json["private_key"].as_str().unwrap();
                        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
                        black_box(RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap())
                    });
                },
            );
        }
        group.bench_function(format!("{name}/build"), |b| {
            b.iter(|| black_box(resolve(black_box(file))));
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, adc_resolution);
criterion_main!(benches);
