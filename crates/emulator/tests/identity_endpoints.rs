//! The identity endpoints on the wire: OAuth token endpoint (JWT-bearer, refresh token), STS,
//! IAM, AWS instance metadata — their checks, Google's error formats, counters and faults.
//! (End-to-end use by the credential types is tested in crates/adc.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use workload_auth_emulator::{
    Emulator, EmulatorConfig, Endpoint, Fault, IdentityConfig, OAuthClient, RefreshTokenGrant,
    ServiceAccountKey, StsConfig,
};

const SA: &str = "tester@p.iam.gserviceaccount.com";
const AUDIENCE: &str =
    "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x";

/// A fresh P-256 key: its PKCS#8 PEM, and the pair to sign with.
fn ec_key() -> (String, EcdsaKeyPair) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(pkcs8.as_ref())
    );
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    (pem, pair)
}

fn sign(key: &EcdsaKeyPair, claims: &Value) -> String {
    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "typ": "JWT", "kid": "k1"}).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{body}");
    let sig = key.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn start() -> (Emulator, EcdsaKeyPair) {
    let (pem, pair) = ec_key();
    let emu = Emulator::start(EmulatorConfig {
        identity: IdentityConfig {
            service_accounts: vec![
                ServiceAccountKey::from_private_key_pem(SA, Some("k1"), &pem).unwrap(),
            ],
            oauth_clients: vec![OAuthClient::new("client", "secret")],
            refresh_tokens: vec![RefreshTokenGrant::new("1//rt", "client")],
            sts: StsConfig {
                audiences: vec![AUDIENCE.to_owned()],
                ..StsConfig::default()
            },
            ..IdentityConfig::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    (emu, pair)
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn post_form(emu: &Emulator, path: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
    let response = common::client()
        .post(format!("{}{path}", emu.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json_value().await)
}

async fn post_json(emu: &Emulator, path: &str, bearer: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = common::client()
        .post(format!("{}{path}", emu.url()))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json_value().await)
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        let text = self.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

#[tokio::test]
async fn jwt_bearer_grant_checks_signature_audience_and_times() {
    let (emu, key) = start().await;
    let t = now();
    let good = json!({"iss": SA, "aud": "https://oauth2.googleapis.com/token", "iat": t, "exp": t + 3600, "scope": "a b"});
    let grant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    let (status, body) = post_form(
        &emu,
        "/token",
        &[("grant_type", grant), ("assertion", &sign(&key, &good))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        emu.issued_token(body["access_token"].as_str().unwrap())
            .unwrap()
            .scopes,
        ["a", "b"]
    );
    assert_eq!(body["token_type"], "Bearer");

    let mut id = good.clone();
    id.as_object_mut().unwrap().remove("scope");
    id["target_audience"] = json!("https://svc.example");
    let (status, body) = post_form(
        &emu,
        "/token",
        &[("grant_type", grant), ("assertion", &sign(&key, &id))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let payload = body["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["aud"], "https://svc.example");
    assert_eq!(claims["email"], SA);

    for (claims, needle) in [
        (
            {
                let mut c = good.clone();
                c["aud"] = json!("https://evil.example/token");
                c
            },
            "Failed audience check",
        ),
        (
            {
                let mut c = good.clone();
                c["exp"] = json!(t - 10);
                c
            },
            "Invalid JWT",
        ),
        (
            {
                let mut c = good.clone();
                c["exp"] = json!(t + 7200);
                c
            },
            "Invalid JWT",
        ),
        (
            {
                let mut c = good.clone();
                c["iss"] = json!("other@p.iam.gserviceaccount.com");
                c
            },
            "account not found",
        ),
        (
            {
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("scope");
                c
            },
            "Invalid oauth scope",
        ),
    ] {
        let (status, body) = post_form(
            &emu,
            "/token",
            &[("grant_type", grant), ("assertion", &sign(&key, &claims))],
        )
        .await;
        assert_eq!(status, 400, "{claims}");
        assert!(
            body["error_description"].as_str().unwrap().contains(needle),
            "{needle}: {body}"
        );
    }
    // A signature by another key.
    let (_, stranger) = ec_key();
    let (status, body) = post_form(
        &emu,
        "/token",
        &[
            ("grant_type", grant),
            ("assertion", &sign(&stranger, &good)),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(body["error_description"], "Invalid JWT Signature.");
    assert_eq!(emu.requests(Endpoint::OAuthToken), 8);
}

#[tokio::test]
async fn refresh_grant_checks_client_and_token_and_faults_apply() {
    let (emu, _) = start().await;
    let ok = [
        ("grant_type", "refresh_token"),
        ("client_id", "client"),
        ("client_secret", "secret"),
        ("refresh_token", "1//rt"),
    ];
    let (status, body) = post_form(&emu, "/token", &ok).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["scope"].as_str().unwrap().contains("cloud-platform"));
    let (status, body) = post_form(
        &emu,
        "/token",
        &[ok[0], ok[1], ("client_secret", "nope"), ok[3]],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = post_form(
        &emu,
        "/token",
        &[ok[0], ok[1], ok[2], ("refresh_token", "1//other")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = post_form(&emu, "/token", &[("grant_type", "password")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );

    // Wrong content type and wrong method.
    let response = common::client()
        .post(format!("{}/token", emu.url()))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = common::client()
        .get(format!("{}/token", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");

    emu.inject(Endpoint::OAuthToken, Fault::Status(503), Some(1));
    let (status, _) = post_form(&emu, "/token", &ok).await;
    assert_eq!(status, 503);
    assert_eq!(emu.requests(Endpoint::OAuthToken), 7);
}

#[tokio::test]
async fn sts_checks_grant_type_subject_token_type_and_audience() {
    let (emu, _) = start().await;
    let response = common::client()
        .get(format!("{}/external/oidc-token?audience=x", emu.url()))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    let jwt = response.text().await.unwrap();
    let base = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("audience", AUDIENCE),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("subject_token", jwt.as_str()),
        ("scope", "https://www.googleapis.com/auth/cloud-platform"),
    ];
    let (status, body) = post_form(&emu, "/v1/token", &base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    let federated = body["access_token"].as_str().unwrap().to_owned();

    let with = |i: usize, value: &'static str| {
        let mut pairs = base.to_vec();
        pairs[i].1 = value;
        pairs
    };
    for (pairs, error) in [
        (with(0, "refresh_token"), "unsupported_grant_type"),
        (
            with(1, "urn:ietf:params:oauth:token-type:id_token"),
            "invalid_request",
        ),
        (with(2, "//iam.googleapis.com/unknown"), "invalid_target"),
        (with(2, "https://evil.example"), "invalid_target"),
        (with(3, "urn:example:unknown"), "invalid_request"),
        (with(4, "not-a-jwt"), "invalid_grant"),
        (
            with(3, "urn:ietf:params:oauth:token-type:saml2"),
            "invalid_grant",
        ),
        (
            with(3, "urn:ietf:params:oauth:token-type:mtls"),
            "invalid_grant",
        ),
    ] {
        let (status, body) = post_form(&emu, "/v1/token", &pairs).await;
        assert_eq!(status, 400, "{pairs:?}: {body}");
        assert_eq!(body["error"], error, "{pairs:?}: {body}");
    }

    // The federated token authorizes IAM; nothing else does.
    let path = format!(
        "/v1/projects/-/serviceAccounts/{}:generateAccessToken",
        emu.config().email
    );
    let request =
        json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "600s"});
    let (status, body) = post_json(&emu, &path, Some(&federated), &request).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["expireTime"].as_str().unwrap().ends_with('Z'));
    assert!(
        emu.issued_token(body["accessToken"].as_str().unwrap())
            .is_some()
    );
    let (status, body) = post_json(&emu, &path, None, &request).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (status, body) = post_json(&emu, &path, Some("ya29.forged"), &request).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = post_json(&emu, &path, Some(&federated), &json!({"scope": []})).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    let (status, body) = post_json(
        &emu,
        "/v1/projects/-/serviceAccounts/nobody@x.iam.gserviceaccount.com:generateAccessToken",
        Some(&federated),
        &request,
    )
    .await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let id_path = path.replace(":generateAccessToken", ":generateIdToken");
    let (status, body) = post_json(
        &emu,
        &id_path,
        Some(&federated),
        &json!({"audience": "https://a", "includeEmail": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(emu.requests(Endpoint::IamGenerateAccessToken), 5);
    assert_eq!(emu.requests(Endpoint::IamGenerateIdToken), 1);
    assert_eq!(emu.requests(Endpoint::StsToken), 9);
}

#[tokio::test]
async fn aws_metadata_requires_an_imdsv2_session() {
    let (emu, _) = start().await;
    let client = common::client();
    let zone = format!("{}/latest/meta-data/placement/availability-zone", emu.url());
    assert_eq!(
        client.get(&zone).send().await.unwrap().status().as_u16(),
        401
    );
    let token = client
        .put(format!("{}/latest/api/token", emu.url()))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "300")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let get = |url: String| {
        let client = client.clone();
        let token = token.clone();
        async move {
            let r = client
                .get(url)
                .header("X-aws-ec2-metadata-token", token)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get(zone).await, (200, "us-east-2b".to_owned()));
    let roles = format!("{}/latest/meta-data/iam/security-credentials", emu.url());
    let (status, role) = get(roles.clone()).await;
    assert_eq!((status, role.as_str()), (200, "emulated-role"));
    let (status, creds) = get(format!("{roles}/{role}")).await;
    assert_eq!(status, 200);
    let creds: Value = serde_json::from_str(&creds).unwrap();
    assert_eq!(
        creds["AccessKeyId"],
        emu.config().identity.aws.access_key_id
    );
    assert_eq!(get(format!("{roles}/other")).await.0, 404);
    // PUT without a TTL is refused.
    let response = client
        .put(format!("{}/latest/api/token", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(emu.requests(Endpoint::AwsSessionToken), 2);
    assert_eq!(emu.requests(Endpoint::AwsCredentials), 3);
}

#[tokio::test]
async fn sign_blob_signs_with_the_published_key_and_checks_its_input() {
    let (emu, _) = start().await;
    let (status, body) = post_form(
        &emu,
        "/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "client"),
            ("client_secret", "secret"),
            ("refresh_token", "1//rt"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let bearer = body["access_token"].as_str().unwrap().to_owned();
    let path = format!("/v1/projects/-/serviceAccounts/{SA}:signBlob");
    let payload = json!({"payload": STANDARD.encode(b"a blob")});
    let (status, body) = post_json(&emu, &path, Some(&bearer), &payload).await;
    assert_eq!(status, 200, "{body}");

    // The signature verifies with the key the JWKS publishes under keyId, and only for the blob.
    let jwks = common::client()
        .get(format!("{}/oauth2/v3/certs", emu.url()))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == body["keyId"])
        .expect("keyId names a published key");
    let part = |name: &str| URL_SAFE_NO_PAD.decode(key[name].as_str().unwrap()).unwrap();
    let public = ring::signature::RsaPublicKeyComponents {
        n: part("n"),
        e: part("e"),
    };
    let signature = STANDARD
        .decode(body["signedBlob"].as_str().unwrap())
        .unwrap();
    let alg = &ring::signature::RSA_PKCS1_2048_8192_SHA256;
    public.verify(alg, b"a blob", &signature).unwrap();
    assert!(public.verify(alg, b"a blob!", &signature).is_err());

    // No bearer, a payload that is not base64, an unknown account: Google's errors.
    let (status, _) = post_json(&emu, &path, None, &payload).await;
    assert_eq!(status, 401);
    let (status, body) = post_json(&emu, &path, Some(&bearer), &json!({"payload": "%%%"})).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    let (status, _) = post_json(
        &emu,
        "/v1/projects/-/serviceAccounts/nobody@p.iam.gserviceaccount.com:signBlob",
        Some(&bearer),
        &payload,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(emu.requests(Endpoint::IamSignBlob), 4);
}
