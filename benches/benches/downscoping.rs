//! Credential access boundaries: minting a client-side downscoped token (serialized boundary
//! sealed with the session key, appended to the intermediary token) against its baselines,
//! measured in the same run: one server-side exchange round trip to the emulator's Security
//! Token Service on loopback, over HTTPS as real ones are reached, on a warm connection (what
//! client-side minting saves; plain HTTP too), ring's raw AES-GCM seal of the same bytes (the
//! floor of any client-side minting), that seal plus base64url (the token format's floor), and
//! the base64url encoders the mint could use.
//!
//! `cargo bench -p workload-auth-benches --bench downscoping`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use workload_auth_adc::downscoped::{
    AccessBoundary, AccessBoundaryRule, AvailabilityCondition, ClientSideDownscoper,
    DownscopedCredentials,
};
use workload_auth_adc::{Builder, DetectionInput, EnvSource};
use workload_auth_emulator::{Emulator, EmulatorConfig};

fn boundary() -> AccessBoundary {
    AccessBoundary::new(vec![
        AccessBoundaryRule::new(
            "//storage.googleapis.com/projects/_/buckets/bench-bucket",
            ["inRole:roles/storage.objectViewer"],
        )
        .with_condition(AvailabilityCondition::new(
            "resource.name.startsWith('projects/_/buckets/bench-bucket/objects/customer-a/')",
        )),
    ])
    .unwrap()
}

fn downscoping(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emu = runtime
        .block_on(Emulator::start(EmulatorConfig::default()))
        .unwrap();
    let env = EnvSource::from_vars([("GCE_METADATA_HOST", emu.host())]);
    let lookup = env.clone();
    let source = Builder::new()
        .with_env(env)
        .with_detection(DetectionInput::with_env(move |name| lookup.var(name)).without_probe())
        .build()
        .unwrap();
    // Real Security Token Services are reached over HTTPS: the emulator serves TLS on its port
    // too (server certificate only), and the exchange is measured both ways.
    let root = emu.enable_tls().unwrap();
    let sts_http = format!("{}/v1/token", emu.url());
    let sts_https = format!("https://{}/v1/token", emu.host());
    let downscoper = ClientSideDownscoper::builder(source.clone())
        .with_sts_endpoint(&sts_https)
        .with_tls_root_certificates([root.clone()])
        .build_client_side()
        .unwrap();
    let server_side_http = DownscopedCredentials::builder(source.clone())
        .with_sts_endpoint(&sts_http)
        .build(boundary())
        .unwrap();
    let server_side_https = DownscopedCredentials::builder(source)
        .with_sts_endpoint(&sts_https)
        .with_tls_root_certificates([root])
        .build(boundary())
        .unwrap();
    let prepared = downscoper.prepare(&boundary()).unwrap();
    // Warm: the intermediary is fetched once, the source token and the connection pool too.
    runtime.block_on(downscoper.token(&prepared)).unwrap();
    runtime.block_on(server_side_http.access_token()).unwrap();
    runtime.block_on(server_side_https.access_token()).unwrap();

    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());
    let plaintext = prepared.as_bytes().to_vec();

    let mut group = c.benchmark_group("downscoping");
    group.bench_function("raw_aes_gcm_seal_baseline", |b| {
        b.iter(|| {
            let mut buffer = Vec::with_capacity(plaintext.len() + 16);
            buffer.extend_from_slice(black_box(&plaintext));
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key([1; 12]),
                Aad::empty(),
                &mut buffer,
            )
            .unwrap();
            black_box(buffer)
        });
    });
    // The token format's own floor: the same seal, then `<intermediary>.<base64url>` built.
    let intermediary = "ya29.emulated-0123456789012345678901234567890123456789";
    group.bench_function("seal_and_base64_baseline", |b| {
        b.iter(|| {
            let mut buffer = Vec::with_capacity(5 + 12 + plaintext.len() + 16);
            buffer.extend_from_slice(&[1, 0, 0, 0, 42]);
            buffer.extend_from_slice(&[1; 12]);
            buffer.extend_from_slice(black_box(&plaintext));
            let start = 17;
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key([1; 12]),
                    Aad::empty(),
                    &mut buffer[start..],
                )
                .unwrap();
            buffer.extend_from_slice(tag.as_ref());
            // The fastest encoder measured below, into one exact-size allocation.
            let base64url = base64_simd::URL_SAFE_NO_PAD;
            let mut token = String::with_capacity(
                intermediary.len() + 1 + base64url.encoded_length(buffer.len()),
            );
            token.push_str(intermediary);
            token.push('.');
            base64url.encode_append(&buffer, &mut token);
            black_box(token)
        });
    });
    // The encoders the mint could use, on the same 234 sealed bytes, each into one exact-size
    // buffer that already holds the intermediary token (what the mint does).
    let sealed: Vec<u8> = (0..5 + 12 + plaintext.len() + 16)
        .map(|i| (i * 151 % 256) as u8)
        .collect();
    let encoded_len = intermediary.len() + 1 + sealed.len().div_ceil(3) * 4;
    group.bench_function("base64url/base64_crate", |b| {
        b.iter(|| {
            let mut token = Vec::with_capacity(encoded_len);
            token.extend_from_slice(intermediary.as_bytes());
            token.push(b'.');
            let start = token.len();
            token.resize(encoded_len, 0);
            let n = base64::Engine::encode_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                black_box(&sealed),
                &mut token[start..],
            )
            .unwrap();
            token.truncate(start + n);
            black_box(token)
        });
    });
    group.bench_function("base64url/base64_simd", |b| {
        b.iter(|| {
            let mut token = String::with_capacity(encoded_len);
            token.push_str(intermediary);
            token.push('.');
            base64_simd::URL_SAFE_NO_PAD.encode_append(black_box(&sealed), &mut token);
            black_box(token)
        });
    });
    // The scalar encoder the mint used before (two characters per table lookup).
    group.bench_function("base64url/pair_table", |b| {
        b.iter(|| {
            let mut token = Vec::with_capacity(encoded_len);
            token.extend_from_slice(intermediary.as_bytes());
            token.push(b'.');
            pair_table::base64url(black_box(&sealed), &mut token);
            black_box(token)
        });
    });
    group.bench_function("client_side_token", |b| {
        b.iter(|| black_box(downscoper.token_blocking(black_box(&prepared)).unwrap()));
    });
    group.sample_size(30);
    for (name, server_side) in [("https", &server_side_https), ("http", &server_side_http)] {
        group.bench_function(format!("server_side_exchange_round_trip/{name}"), |b| {
            b.iter(|| {
                server_side.invalidate();
                black_box(runtime.block_on(server_side.access_token()).unwrap())
            });
        });
    }
    group.finish();
    println!(
        "boundary: {} bytes serialized; {} intermediary exchange(s)",
        prepared.as_bytes().len(),
        downscoper.exchange_count()
    );
    runtime.block_on(emu.shutdown());
}

/// The mint's former base64url encoder, kept here as a reference for the SIMD one.
mod pair_table {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    static PAIRS: [[u8; 2]; 4096] = pairs();
    const fn pairs() -> [[u8; 2]; 4096] {
        let mut table = [[0u8; 2]; 4096];
        let mut i = 0;
        while i < 4096 {
            table[i] = [ALPHABET[i >> 6], ALPHABET[i & 63]];
            i += 1;
        }
        table
    }
    pub(crate) fn base64url(input: &[u8], out: &mut Vec<u8>) {
        let groups = input.chunks_exact(3);
        let rest = groups.remainder();
        for group in groups {
            let n = (u32::from(group[0]) << 16) | (u32::from(group[1]) << 8) | u32::from(group[2]);
            let [a, b] = PAIRS[(n >> 12) as usize];
            let [c, d] = PAIRS[(n & 0xfff) as usize];
            out.extend_from_slice(&[a, b, c, d]);
        }
        match *rest {
            [x] => {
                let [a, b] = PAIRS[usize::from(x) << 4];
                out.extend_from_slice(&[a, b]);
            }
            [x, y] => {
                let n = (u32::from(x) << 16) | (u32::from(y) << 8);
                let [a, b] = PAIRS[(n >> 12) as usize];
                out.extend_from_slice(&[a, b, ALPHABET[((n >> 6) & 63) as usize]]);
            }
            _ => {}
        }
    }
}

criterion_group!(benches, downscoping);
criterion_main!(benches);
