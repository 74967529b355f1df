//! Client-side downscoping: one exchange for an intermediary token and a session key, then
//! tokens minted locally.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use prost::Message as _;
use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use workload_auth_core::{
    AccessToken, CacheConfig, Error, ErrorKind, Expiring, Result, RetryPolicy, SecretString,
    SystemClock, TokenCache,
};
use zeroize::Zeroizing;

use super::boundary::AccessBoundary;
use super::proto::{
    AES_GCM_TYPE_URL, AesGcmKey, ClientSideAccessBoundary, ClientSideAccessBoundaryRule, Keyset,
    PREFIX_RAW, PREFIX_TINK, STATUS_ENABLED,
};
use super::{DownscopingBuilder, INTERMEDIARY_TOKEN_TYPE, Sts, malformed};

/// Refresh the intermediary in the background when this much of its life remains.
const REFRESH_WHEN_LEFT: Duration = Duration::from_secs(45 * 60);
/// Never mint from an intermediary with less than this left: callers wait for a new one, so
/// every downscoped token handed out lives at least this long.
const MIN_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Longest session key accepted (a keyset of one AES-256 key is under 100 bytes).
const MAX_SESSION_KEY_BYTES: usize = 4096;

/// Largest sealing buffer a thread keeps between tokens.
const MAX_KEPT_BUFFER: usize = 64 * 1024;

thread_local! {
    /// Each thread's sealing buffer (see [`SessionKey::seal_with`]).
    static SEALED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The session key's field in the exchange answer, as errors name it.
const KEY_FIELD: &str = "access_boundary_session_key";

/// The AES-GCM key of an intermediary token and Tink's output prefix for it.
struct SessionKey {
    key: LessSafeKey,
    /// Empty (RAW) or `0x01` and the key id, big-endian (TINK).
    prefix: Vec<u8>,
    /// Nonces are `salt XOR counter`: unique for this key without a system call per token.
    salt: [u8; NONCE_LEN],
    counter: AtomicU64,
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey")
            .field("algorithm", self.key.algorithm())
            .field("tink_prefix", &!self.prefix.is_empty())
            .finish_non_exhaustive()
    }
}

impl SessionKey {
    /// Parses the standard-base64 Tink keyset of an exchange answer.
    ///
    /// A little over the usual length on purpose: each check of the hostile keyset (size, base64,
    /// protobuf, primary key, type, status, key size) stands in order with its own error.
    fn parse(encoded: &str) -> Result<Self> {
        let bad = |why: String| {
            Error::new(
                ErrorKind::MalformedResponse,
                format!("the token exchange answer's `{KEY_FIELD}` is unusable: {why}"),
            )
        };
        if encoded.len() > MAX_SESSION_KEY_BYTES {
            return Err(bad(format!(
                "it is longer than {MAX_SESSION_KEY_BYTES} bytes"
            )));
        }
        let raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| bad("it is not standard base64".to_owned()))?,
        );
        let keyset = Keyset::decode(raw.as_slice())
            .map_err(|_| bad("it is not a Tink keyset (protobuf)".to_owned()))?;
        let Some(entry) = keyset
            .key
            .iter()
            .find(|k| k.key_id == keyset.primary_key_id)
        else {
            return Err(bad(format!(
                "the keyset has no key with the primary key id {}",
                keyset.primary_key_id
            )));
        };
        if entry.status != STATUS_ENABLED {
            return Err(bad(format!(
                "the primary key is not enabled (status {})",
                entry.status
            )));
        }
        let Some(data) = &entry.key_data else {
            return Err(bad("the primary key has no key data".to_owned()));
        };
        if data.type_url != AES_GCM_TYPE_URL {
            return Err(bad(format!(
                "the key type is {:?}, expected {AES_GCM_TYPE_URL}",
                workload_auth_core::text::snippet(&data.type_url, 80)
            )));
        }
        let aes = AesGcmKey::decode(data.value.as_slice())
            .map_err(|_| bad("the key data is not an AesGcmKey (protobuf)".to_owned()))?;
        let aes_key = Zeroizing::new(aes.key_value);
        let algorithm = match aes_key.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            n => {
                return Err(bad(format!(
                    "the AES-GCM key is {n} bytes; 16 or 32 are supported"
                )));
            }
        };
        let prefix = match entry.output_prefix_type {
            PREFIX_TINK => {
                let mut p = vec![0x01];
                p.extend_from_slice(&entry.key_id.to_be_bytes());
                p
            }
            PREFIX_RAW => Vec::new(),
            other => {
                return Err(bad(format!(
                    "the output prefix type {other} is not supported (TINK or RAW)"
                )));
            }
        };
        let key = UnboundKey::new(algorithm, &aes_key)
            .map_err(|_| bad("the AES-GCM key is rejected".to_owned()))?;
        let mut salt = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| Error::new(ErrorKind::Io, "the system random generator failed"))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            prefix,
            salt,
            counter: AtomicU64::new(0),
        })
    }

    fn next_nonce(&self) -> [u8; NONCE_LEN] {
        let count = self.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let mut nonce = self.salt;
        for (n, c) in nonce[NONCE_LEN - 8..].iter_mut().zip(count) {
            *n ^= c;
        }
        nonce
    }

    /// Tink's AEAD output for `plaintext` (prefix, nonce, ciphertext and tag; no associated
    /// data), handed to `use_sealed`. Sealed in a per-thread buffer that is reused, neither
    /// allocated nor zeroed per token (it holds only ciphertext): minting a token is on the
    /// request path.
    fn seal_with<R>(&self, plaintext: &[u8], use_sealed: impl FnOnce(&[u8]) -> R) -> Result<R> {
        SEALED.with(|cell| {
            // A nested call (there is none) would get a buffer of its own, not a panic.
            let mut own = Vec::new();
            let mut borrowed = cell.try_borrow_mut();
            let buffer: &mut Vec<u8> = match borrowed.as_deref_mut() {
                Ok(shared) => shared,
                Err(_) => &mut own,
            };
            buffer.clear();
            buffer.extend_from_slice(&self.prefix);
            let nonce = self.next_nonce();
            buffer.extend_from_slice(&nonce);
            let start = buffer.len();
            buffer.extend_from_slice(plaintext);
            let tag = self
                .key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    &mut buffer[start..],
                )
                .map_err(|_| Error::new(ErrorKind::InvalidArgument, "AES-GCM encryption failed"))?;
            buffer.extend_from_slice(tag.as_ref());
            let result = use_sealed(buffer);
            if buffer.capacity() > MAX_KEPT_BUFFER {
                *buffer = Vec::new();
            }
            Ok(result)
        })
    }

    #[cfg(test)]
    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.seal_with(plaintext, <[u8]>::to_vec)
    }
}

/// An intermediary token and its session key.
#[derive(Debug)]
struct Intermediary {
    /// The intermediary token and the `.` every minted token continues with, built once.
    head: SecretString,
    key: SessionKey,
    /// When the intermediary (and every token minted from it) expires.
    token_expires_at: SystemTime,
    /// When the cache stops minting from it: [`MIN_LIFETIME`] before `expires_at`.
    usable_until: SystemTime,
}

impl Expiring for Intermediary {
    /// The cache's notion of expiry is the end of minting, so that its early refresh lands
    /// [`REFRESH_WHEN_LEFT`] before the real expiry and its blocking point [`MIN_LIFETIME`]
    /// before it.
    fn expires_at(&self) -> SystemTime {
        self.usable_until
    }
}

/// A boundary serialized for client-side tokens: its conditions compiled once.
#[derive(Clone)]
pub struct PreparedBoundary {
    plaintext: Arc<[u8]>,
}

impl fmt::Debug for PreparedBoundary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedBoundary")
            .field("bytes", &self.plaintext.len())
            .finish()
    }
}

impl PreparedBoundary {
    /// The serialized `ClientSideAccessBoundary` protobuf (what each token carries, encrypted).
    pub fn as_bytes(&self) -> &[u8] {
        &self.plaintext
    }
}

/// Client-side downscoping: mints downscoped tokens locally from an intermediary token and its
/// session key, fetched once (and refreshed in the background when 45 minutes of it remain;
/// callers wait only when less than 30 minutes remain). Cheap to clone.
#[derive(Clone, Debug)]
pub struct ClientSideDownscoper {
    cache: TokenCache<Intermediary>,
}

impl ClientSideDownscoper {
    /// A builder for a downscoper whose intermediary tokens come from `source`.
    pub fn builder(source: crate::Credentials) -> DownscopingBuilder {
        DownscopingBuilder::new(source)
    }

    /// Compiles and serializes `boundary` once, for any number of tokens.
    pub fn prepare(&self, boundary: &AccessBoundary) -> Result<PreparedBoundary> {
        prepare(boundary)
    }

    /// A downscoped token limited to `boundary`, expiring with the intermediary token (at least
    /// 30 minutes from now). No network call unless the intermediary must be fetched.
    pub async fn token(&self, boundary: &PreparedBoundary) -> Result<AccessToken> {
        let intermediary = self.cache.get().await?;
        mint(&intermediary, boundary)
    }

    /// [`ClientSideDownscoper::token`] for callers without an async runtime.
    pub fn token_blocking(&self, boundary: &PreparedBoundary) -> Result<AccessToken> {
        let intermediary = self.cache.get_blocking()?;
        mint(&intermediary, boundary)
    }

    /// How many intermediary exchanges have been started (for tests and metrics).
    pub fn exchange_count(&self) -> u64 {
        self.cache.fetch_count()
    }

    /// Forgets the intermediary token and session key; the next token waits for new ones.
    pub fn invalidate(&self) {
        self.cache.invalidate();
    }
}

impl DownscopingBuilder {
    /// A client-side downscoper (the intermediary is fetched on first use).
    pub fn build_client_side(self) -> Result<ClientSideDownscoper> {
        let sts = Arc::new(self.sts()?);
        let config = intermediary_cache_config();
        let cache = TokenCache::with_options(
            move || {
                let sts = Arc::clone(&sts);
                async move { fetch_intermediary(&sts).await }
            },
            config,
            SystemClock,
        );
        Ok(ClientSideDownscoper { cache })
    }

    /// Server-side [`super::DownscopedCredentials`] limited to `boundary`.
    pub fn build(self, boundary: AccessBoundary) -> Result<super::DownscopedCredentials> {
        super::DownscopedCredentials::new(self, boundary)
    }
}

/// The intermediary's cache: its notion of expiry is [`Intermediary::usable_until`], so a
/// refresh 15 minutes before that is 45 minutes before the real expiry.
fn intermediary_cache_config() -> CacheConfig {
    CacheConfig {
        refresh_early: REFRESH_WHEN_LEFT.saturating_sub(MIN_LIFETIME),
        refresh_jitter: Duration::from_secs(60),
        expiry_margin: Duration::from_secs(1),
        retry: RetryPolicy::default(),
        failure_cooldown: Duration::from_secs(5),
        // Refresh at the 45-minute mark itself: each downscoper holds one intermediary.
        refresh_spread: 0.0,
        ..CacheConfig::default()
    }
}

/// Until when an intermediary expiring at `expires_at` is minted from: [`MIN_LIFETIME`] before
/// its expiry; one that lives less than that (its source token was nearly expired) is still
/// used, for half of what is left, rather than refused.
fn usable_until(expires_at: SystemTime, now: SystemTime) -> SystemTime {
    let left = expires_at.duration_since(now).unwrap_or(Duration::ZERO);
    if left > MIN_LIFETIME + Duration::from_secs(60) {
        expires_at.checked_sub(MIN_LIFETIME)
    } else {
        now.checked_add(left / 2)
    }
    .unwrap_or(now)
}

async fn fetch_intermediary(sts: &Sts) -> Result<Intermediary> {
    let answer = sts.exchange(INTERMEDIARY_TOKEN_TYPE, None).await?;
    let map = answer.reply.json("the token exchange answer")?;
    let encoded = match map.get(KEY_FIELD) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s,
        _ => {
            return Err(malformed(
                &answer.reply,
                format!("the token exchange answer has no `{KEY_FIELD}`"),
            ));
        }
    };
    let key =
        SessionKey::parse(encoded).map_err(|e| e.with_endpoint(answer.reply.endpoint.clone()))?;
    let now = SystemTime::now();
    let usable_until = usable_until(answer.expires_at, now);
    if answer.expires_at < now + MIN_LIFETIME {
        tracing::warn!(
            "the intermediary token lives less than 30 minutes; its source token was nearly expired"
        );
    }
    let mut head = String::with_capacity(answer.token.len() + 1);
    head.push_str(answer.token.expose());
    head.push('.');
    Ok(Intermediary {
        head: SecretString::new(head),
        key,
        token_expires_at: answer.expires_at,
        usable_until,
    })
}

fn prepare(boundary: &AccessBoundary) -> Result<PreparedBoundary> {
    let mut message = ClientSideAccessBoundary::default();
    for (i, rule) in boundary.rules().iter().enumerate() {
        message
            .access_boundary_rules
            .push(ClientSideAccessBoundaryRule {
                available_resource: rule.available_resource.clone(),
                available_permissions: rule.available_permissions.clone(),
                compiled_availability_condition: rule
                    .availability_condition
                    .as_ref()
                    .map(|c| super::cel::compile(&c.expression, i))
                    .transpose()?,
            });
    }
    Ok(PreparedBoundary {
        plaintext: Arc::from(message.encode_to_vec()),
    })
}

fn mint(intermediary: &Intermediary, boundary: &PreparedBoundary) -> Result<AccessToken> {
    let head = intermediary.head.expose();
    let token = intermediary.key.seal_with(&boundary.plaintext, |sealed| {
        // Exactly the token's length: one allocation, never grown. The SIMD encoder appends to
        // the `String` itself (its output is ASCII by construction), so nothing is re-validated;
        // the scalar encoders cost nearly as much as the seal (`benches/benches/downscoping.rs`).
        let base64url = base64_simd::URL_SAFE_NO_PAD;
        let mut token = String::with_capacity(head.len() + base64url.encoded_length(sealed.len()));
        token.push_str(head);
        base64url.encode_append(sealed, &mut token);
        token
    })?;
    Ok(AccessToken::new(
        SecretString::new(token),
        "Bearer",
        intermediary.token_expires_at,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::boundary::AccessBoundaryRule;
    use super::super::proto::{KeyData, KeysetKey};
    use super::*;

    pub(crate) fn keyset(type_url: &str, key: &[u8], status: i32, prefix: i32) -> String {
        let aes = AesGcmKey {
            version: 0,
            key_value: key.to_vec(),
        };
        let keyset = Keyset {
            primary_key_id: 0x0102_0304,
            key: vec![KeysetKey {
                key_data: Some(KeyData {
                    type_url: type_url.to_owned(),
                    value: aes.encode_to_vec(),
                    key_material_type: 1,
                }),
                status,
                key_id: 0x0102_0304,
                output_prefix_type: prefix,
            }],
        };
        base64::engine::general_purpose::STANDARD.encode(keyset.encode_to_vec())
    }

    fn open(key: &[u8], sealed: &[u8]) -> Vec<u8> {
        let alg = if key.len() == 16 {
            &AES_128_GCM
        } else {
            &AES_256_GCM
        };
        let k = LessSafeKey::new(UnboundKey::new(alg, key).unwrap());
        let nonce = Nonce::try_assume_unique_for_key(&sealed[..12]).unwrap();
        let mut body = sealed[12..].to_vec();
        k.open_in_place(nonce, Aad::empty(), &mut body)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn sealed_output_is_tink_shaped_and_opens() {
        for (len, prefix) in [(16, PREFIX_TINK), (32, PREFIX_RAW)] {
            let key = vec![7u8; len];
            let k = SessionKey::parse(&keyset(AES_GCM_TYPE_URL, &key, 1, prefix)).unwrap();
            let a = k.seal(b"boundary").unwrap();
            let b = k.seal(b"boundary").unwrap();
            let body = if prefix == PREFIX_TINK {
                assert_eq!(&a[..5], &[1, 1, 2, 3, 4]);
                &a[5..]
            } else {
                &a[..]
            };
            assert_eq!(body.len(), 12 + 8 + 16);
            assert_eq!(open(&key, body), b"boundary");
            assert_ne!(a, b, "nonces differ");
        }
    }

    #[test]
    fn minted_tokens_append_the_sealed_boundary() {
        let key = [9u8; 16];
        let intermediary = Intermediary {
            head: SecretString::from("ya29.intermediary."),
            key: SessionKey::parse(&keyset(AES_GCM_TYPE_URL, &key, 1, PREFIX_TINK)).unwrap(),
            token_expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000),
            usable_until: SystemTime::now(),
        };
        let boundary = AccessBoundary::new(vec![AccessBoundaryRule::new(
            "//storage.googleapis.com/projects/_/buckets/b",
            ["inRole:roles/storage.objectViewer"],
        )])
        .unwrap();
        let prepared = prepare(&boundary).unwrap();
        let token = mint(&intermediary, &prepared).unwrap();
        assert_eq!(token.expires_at(), intermediary.token_expires_at);
        let (head, tail) = token.secret().expose().rsplit_once('.').unwrap();
        assert_eq!(head, "ya29.intermediary");
        assert!(!tail.contains('='));
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tail)
            .unwrap();
        let plain = open(&key, &sealed[5..]);
        let decoded = ClientSideAccessBoundary::decode(plain.as_slice()).unwrap();
        assert_eq!(
            decoded.access_boundary_rules[0].available_permissions,
            ["inRole:roles/storage.objectViewer"]
        );
    }

    #[tokio::test]
    async fn the_intermediary_refreshes_at_45_minutes_left_and_blocks_at_30() {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        for lifetime in [60, 120] {
            let expires_at = SystemTime::now() + minutes(lifetime);
            let cache = TokenCache::with_options(
                move || async move {
                    Ok(Intermediary {
                        head: SecretString::from("ya29.i."),
                        key: SessionKey::parse(&keyset(
                            AES_GCM_TYPE_URL,
                            &[1; 16],
                            1,
                            PREFIX_TINK,
                        ))?,
                        token_expires_at: expires_at,
                        usable_until: usable_until(expires_at, SystemTime::now()),
                    })
                },
                intermediary_cache_config(),
                SystemClock,
            );
            cache.get().await.unwrap();
            let usable = cache.remaining().unwrap();
            let refresh = cache.refresh_in().unwrap();
            // Usable (minted from) until 30 minutes are left; refreshed from 45 minutes left
            // (up to a minute later, jitter).
            let blocks_at_left = minutes(lifetime) - usable;
            let refreshes_at_left = minutes(lifetime) - refresh;
            assert!(
                blocks_at_left >= minutes(30)
                    && blocks_at_left < minutes(30) + Duration::from_secs(5),
                "{lifetime}: {blocks_at_left:?}"
            );
            assert!(
                refreshes_at_left <= minutes(45)
                    && refreshes_at_left >= minutes(44) - Duration::from_secs(5),
                "{lifetime}: {refreshes_at_left:?}"
            );
        }
        // Shorter than 30 minutes: half of what is left.
        let now = SystemTime::now();
        assert_eq!(usable_until(now + minutes(20), now), now + minutes(10));
        assert_eq!(usable_until(now, now + minutes(1)), now + minutes(1));
    }

    #[test]
    fn minted_tokens_are_base64url_for_every_boundary_length() {
        // Every remainder of the SIMD encoder's blocks, checked against the base64 crate.
        let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let key = [3u8; 32];
        let intermediary = Intermediary {
            head: SecretString::from("ya29.i."),
            key: SessionKey::parse(&keyset(AES_GCM_TYPE_URL, &key, 1, PREFIX_RAW)).unwrap(),
            token_expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000),
            usable_until: SystemTime::now(),
        };
        let mut plaintext = Vec::new();
        for len in 0..300u32 {
            let prepared = PreparedBoundary {
                plaintext: Arc::from(plaintext.as_slice()),
            };
            let token = mint(&intermediary, &prepared).unwrap();
            let text = token.secret().expose();
            let tail = text.strip_prefix("ya29.i.").unwrap();
            let sealed = engine.decode(tail).unwrap();
            assert_eq!(engine.encode(&sealed), tail, "{len}");
            assert_eq!(open(&key, &sealed), plaintext, "{len}");
            plaintext.push((len.wrapping_mul(151) ^ (len >> 3)) as u8);
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let k = SessionKey::parse(&keyset(AES_GCM_TYPE_URL, &[0x41; 16], 1, PREFIX_TINK)).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains("65") && !shown.contains("AAAA"), "{shown}");
    }
}
