//! A cache of peer chains that passed verification, so a repeat handshake with a known peer skips
//! certificate parsing and path validation.
//!
//! See [`VerifiedChainCache`].

use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustls_pki_types::CertificateDer;

use crate::cert::Purpose;
use crate::spiffe_id::SpiffeId;

/// The most shards a cache is split into.
const MAX_SHARDS: usize = 16;

/// What one entry costs beyond its chain bytes and SPIFFE ID (the entry itself, two `Arc`s).
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 64;

/// A bounded, shared cache of peer chains that passed verification.
///
/// What is cached is only the outcome of [`verify_x509_svid`](crate::verify_x509_svid) for one
/// exact chain: its SPIFFE ID. An entry is used only when, at the moment of use,
///
/// - the chain presented is byte for byte the chain verified (leaf and every intermediate, same
///   order; the hash only picks the slot, the bytes are compared),
/// - it is verified for the same purpose (`serverAuth` / `clientAuth`),
/// - the trust bundles are still the very set it was verified against
///   ([`TrustBundleSet::generation`](crate::TrustBundleSet::generation)): any reload or change of
///   the bundles makes every entry stale, and
/// - `now` lies within the validity period of every certificate of the chain.
///
/// The authorizer is not cached at all: it runs on every handshake, so a policy change (or a
/// predicate that changes its mind) applies to known peers at once. The handshake signature
/// (CertificateVerify) is still checked against the presented leaf by rustls on every handshake,
/// so a cached chain proves nothing without its private key.
///
/// Only a peer that completed its part of a handshake gets in: a chain that verified and that the
/// authorizer allowed is only *staged*, and becomes an entry when the peer then proves it holds
/// the leaf's private key (its handshake signature verifies, see
/// [`SpiffeVerifier::confirm_key_possession`](crate::SpiffeVerifier::confirm_key_possession)).
/// So a refused peer, or one replaying a chain it has no key for, cannot fill the cache and push
/// out the chains of real peers. Staged chains are bounded like entries and dropped oldest first.
///
/// The cache is bounded by entries and by bytes (least recently used entries go first; a chain
/// larger than a shard's share of the bytes is never cached) and split into shards, each behind
/// its own mutex held only for a scan of a few dozen slots, so concurrent handshakes rarely wait
/// on each other.
///
/// Cloning shares the cache. Give one to [`SpiffeVerifier::with_cache`](crate::SpiffeVerifier::with_cache)
/// or [`MtlsConfig::with_chain_cache`](crate::MtlsConfig::with_chain_cache). Share one cache only
/// among verifiers reading the same bundles (one [`SvidStore`](crate::SvidStore)): an entry made
/// against other bundles is a miss, and is dropped.
///
/// ```
/// use workload_auth_mtls::VerifiedChainCache;
/// let cache = VerifiedChainCache::new(256);
/// assert!(cache.is_empty());
/// assert_eq!(VerifiedChainCache::default().capacity(), VerifiedChainCache::DEFAULT_CAPACITY);
/// let small = VerifiedChainCache::with_limits(256, 64 * 1024);
/// assert_eq!(small.max_bytes(), 64 * 1024);
/// ```
#[derive(Clone)]
pub struct VerifiedChainCache {
    inner: Arc<Inner>,
}

struct Inner {
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    /// Chains that verified and were authorized, waiting for the peer's handshake signature;
    /// the shard is picked by the hash of the leaf alone (all the signature names).
    staged: Box<[Mutex<Staged>]>,
    per_shard: usize,
    per_shard_bytes: usize,
}

#[derive(Default)]
struct Shard {
    entries: Vec<Entry>,
    /// Sum of [`Entry::size`] over `entries`.
    bytes: usize,
    /// Bumped on every use; an entry's `last_used` is the tick of its last hit.
    tick: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
}

struct Entry {
    hash: u64,
    /// The chain: for each certificate, its length (4 bytes, big endian) then its DER.
    chain: Box<[u8]>,
    purpose: Purpose,
    bundles_generation: u64,
    /// Latest notBefore and earliest notAfter over the chain, seconds since the Unix epoch.
    not_before: i64,
    not_after: i64,
    id: SpiffeId,
    last_used: u64,
}

impl Entry {
    /// What the entry holds in memory, as counted against the byte bound.
    fn size(&self) -> usize {
        self.chain
            .len()
            .saturating_add(self.id.as_str().len())
            .saturating_add(ENTRY_OVERHEAD)
    }
}

/// Staged chains of one shard, oldest first, with the hash of each one's leaf.
#[derive(Default)]
struct Staged {
    entries: VecDeque<(u64, Entry)>,
    bytes: usize,
}

/// Counters of a [`VerifiedChainCache`], for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainCacheStats {
    /// Entries held now.
    pub entries: usize,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to verify (no entry, or a stale one).
    pub misses: u64,
    /// Entries dropped to make room.
    pub evictions: u64,
    /// Bytes the entries hold now (see [`VerifiedChainCache::max_bytes`]).
    pub bytes: usize,
    /// Chains staged now, waiting for their peer's handshake signature.
    pub staged: usize,
}

/// The validity window of a verified chain and what it was verified against.
pub(crate) struct Verified<'a> {
    pub(crate) id: &'a SpiffeId,
    pub(crate) purpose: Purpose,
    pub(crate) bundles_generation: u64,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl VerifiedChainCache {
    /// The capacity of [`VerifiedChainCache::default`].
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// The byte bound of [`VerifiedChainCache::new`] and [`VerifiedChainCache::default`]: 4 MiB,
    /// room for the default capacity of SVID chains of a leaf and an intermediate (about 1.5 KB
    /// each) with a wide margin, yet a hard stop for peers presenting long chains.
    pub const DEFAULT_MAX_BYTES: usize = 4 << 20;

    /// A cache holding about `capacity` chains (at least 1), in at most
    /// [`VerifiedChainCache::DEFAULT_MAX_BYTES`].
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(capacity, Self::DEFAULT_MAX_BYTES)
    }

    /// A cache holding about `capacity` chains (at least 1) in about `max_bytes` (chain bytes,
    /// SPIFFE IDs and bookkeeping), whichever bound is reached first. Staged chains (see above)
    /// are bounded alike, on top.
    pub fn with_limits(capacity: usize, max_bytes: usize) -> Self {
        Self::with_shards(capacity, max_bytes, MAX_SHARDS)
    }

    fn with_shards(capacity: usize, max_bytes: usize, shards: usize) -> Self {
        let capacity = capacity.max(1);
        let shards = capacity.min(shards).max(1);
        let per_shard = capacity.div_ceil(shards);
        let per_shard_bytes = max_bytes.div_ceil(shards);
        Self {
            inner: Arc::new(Inner {
                hasher: RandomState::new(),
                shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
                staged: (0..shards).map(|_| Mutex::new(Staged::default())).collect(),
                per_shard,
                per_shard_bytes,
            }),
        }
    }

    /// How many chains it holds at most.
    pub fn capacity(&self) -> usize {
        self.inner.per_shard * self.inner.shards.len()
    }

    /// How many bytes its entries hold at most.
    pub fn max_bytes(&self) -> usize {
        self.inner
            .per_shard_bytes
            .saturating_mul(self.inner.shards.len())
    }

    /// How many chains it holds now.
    pub fn len(&self) -> usize {
        self.shards().map(|s| s.entries.len()).sum()
    }

    /// Whether it holds no chain.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every chain, staged ones too (counters are kept).
    pub fn clear(&self) {
        for mut shard in self.shards() {
            shard.entries.clear();
            shard.bytes = 0;
        }
        for staged in self.inner.staged.iter() {
            let mut staged = lock(staged);
            staged.entries.clear();
            staged.bytes = 0;
        }
    }

    /// Hits, misses, evictions and size so far.
    pub fn stats(&self) -> ChainCacheStats {
        let mut stats = ChainCacheStats::default();
        for shard in self.shards() {
            stats.entries += shard.entries.len();
            stats.hits += shard.hits;
            stats.misses += shard.misses;
            stats.evictions += shard.evictions;
            stats.bytes += shard.bytes;
        }
        for staged in self.inner.staged.iter() {
            stats.staged += lock(staged).entries.len();
        }
        stats
    }

    fn shards(&self) -> impl Iterator<Item = MutexGuard<'_, Shard>> {
        self.inner.shards.iter().map(lock)
    }

    fn hash(&self, leaf: &[u8], intermediates: &[CertificateDer<'_>]) -> u64 {
        let mut h = self.inner.hasher.build_hasher();
        for der in std::iter::once(leaf).chain(intermediates.iter().map(|c| c.as_ref())) {
            h.write_usize(der.len());
            h.write(der);
        }
        h.finish()
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        lock(&self.inner.shards[self.index(hash)])
    }

    fn index(&self, hash: u64) -> usize {
        // The high bits pick the shard; the whole hash is compared within it.
        let n = self.inner.shards.len() as u64;
        ((hash >> 32) % n) as usize
    }

    /// The SPIFFE ID of `leaf` + `intermediates` if that exact chain was verified for `purpose`
    /// against bundles of `bundles_generation` and `now` (seconds) is within its validity.
    pub(crate) fn get(
        &self,
        leaf: &[u8],
        intermediates: &[CertificateDer<'_>],
        purpose: Purpose,
        bundles_generation: u64,
        now: i64,
    ) -> Option<SpiffeId> {
        let hash = self.hash(leaf, intermediates);
        let mut shard = self.shard(hash);
        shard.tick += 1;
        let tick = shard.tick;
        let found = shard.entries.iter().position(|e| {
            e.hash == hash && e.purpose == purpose && same_chain(&e.chain, leaf, intermediates)
        });
        let Some(index) = found else {
            shard.misses += 1;
            return None;
        };
        if shard.entries[index].bundles_generation != bundles_generation {
            // Verified against bundles that are gone: never usable again.
            let gone = shard.entries.swap_remove(index);
            shard.bytes = shard.bytes.saturating_sub(gone.size());
            shard.misses += 1;
            return None;
        }
        let entry = &mut shard.entries[index];
        if now < entry.not_before || now > entry.not_after {
            shard.misses += 1;
            return None;
        }
        entry.last_used = tick;
        let id = entry.id.clone();
        shard.hits += 1;
        Some(id)
    }

    fn entry(
        &self,
        leaf: &[u8],
        intermediates: &[CertificateDer<'_>],
        verified: Verified<'_>,
    ) -> Entry {
        Entry {
            hash: self.hash(leaf, intermediates),
            chain: encode_chain(leaf, intermediates),
            purpose: verified.purpose,
            bundles_generation: verified.bundles_generation,
            not_before: verified.not_before,
            not_after: verified.not_after,
            id: verified.id.clone(),
            last_used: 0,
        }
    }

    /// Stages `leaf` + `intermediates`, which verified as `verified` says and were authorized:
    /// it becomes an entry only when [`VerifiedChainCache::commit`] is called for its leaf.
    pub(crate) fn stage(
        &self,
        leaf: &[u8],
        intermediates: &[CertificateDer<'_>],
        verified: Verified<'_>,
    ) {
        let entry = self.entry(leaf, intermediates, verified);
        let size = entry.size();
        if size > self.inner.per_shard_bytes {
            return;
        }
        let leaf_hash = self.hash(leaf, &[]);
        let mut staged = lock(&self.inner.staged[self.index(leaf_hash)]);
        if let Some(i) = staged
            .entries
            .iter()
            .position(|(_, e)| e.hash == entry.hash && e.chain == entry.chain)
            && let Some((_, old)) = staged.entries.remove(i)
        {
            staged.bytes = staged.bytes.saturating_sub(old.size());
        }
        while staged.entries.len() >= self.inner.per_shard
            || staged.bytes.saturating_add(size) > self.inner.per_shard_bytes
        {
            let Some((_, oldest)) = staged.entries.pop_front() else {
                break;
            };
            staged.bytes = staged.bytes.saturating_sub(oldest.size());
        }
        staged.bytes = staged.bytes.saturating_add(size);
        staged.entries.push_back((leaf_hash, entry));
    }

    /// Makes entries of the staged chains whose leaf is `leaf`: the peer presenting it has just
    /// proved it holds the leaf's private key.
    pub(crate) fn commit(&self, leaf: &[u8]) {
        let leaf_hash = self.hash(leaf, &[]);
        let mut ready = Vec::new();
        {
            let mut staged = lock(&self.inner.staged[self.index(leaf_hash)]);
            let mut i = 0;
            while i < staged.entries.len() {
                let (hash, entry) = &staged.entries[i];
                if *hash == leaf_hash && chain_starts_with(&entry.chain, leaf) {
                    if let Some((_, entry)) = staged.entries.remove(i) {
                        staged.bytes = staged.bytes.saturating_sub(entry.size());
                        ready.push(entry);
                    }
                } else {
                    i += 1;
                }
            }
        }
        for entry in ready {
            self.insert_entry(entry);
        }
    }

    /// Records that `leaf` + `intermediates` verified as `verified` says (no staging).
    #[cfg(test)]
    pub(crate) fn insert(
        &self,
        leaf: &[u8],
        intermediates: &[CertificateDer<'_>],
        verified: Verified<'_>,
    ) {
        self.insert_entry(self.entry(leaf, intermediates, verified));
    }

    fn insert_entry(&self, mut entry: Entry) {
        let size = entry.size();
        let per_shard = self.inner.per_shard;
        let per_shard_bytes = self.inner.per_shard_bytes;
        if size > per_shard_bytes {
            return;
        }
        let mut shard = self.shard(entry.hash);
        shard.tick += 1;
        entry.last_used = shard.tick;
        let existing = shard.entries.iter().position(|e| {
            e.hash == entry.hash && e.purpose == entry.purpose && e.chain == entry.chain
        });
        if let Some(index) = existing {
            let old = std::mem::replace(&mut shard.entries[index], entry);
            shard.bytes = shard.bytes.saturating_sub(old.size()).saturating_add(size);
            return;
        }
        while shard.entries.len() >= per_shard || shard.bytes.saturating_add(size) > per_shard_bytes
        {
            let oldest = shard
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i);
            let Some(index) = oldest else {
                break;
            };
            let gone = shard.entries.swap_remove(index);
            shard.bytes = shard.bytes.saturating_sub(gone.size());
            shard.evictions += 1;
        }
        shard.bytes = shard.bytes.saturating_add(size);
        shard.entries.push(entry);
    }
}

impl Default for VerifiedChainCache {
    /// A cache of [`VerifiedChainCache::DEFAULT_CAPACITY`] chains.
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for VerifiedChainCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedChainCache")
            .field("capacity", &self.capacity())
            .field("max_bytes", &self.max_bytes())
            .field("stats", &self.stats())
            .finish()
    }
}

fn lock<T>(shard: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves the entries consistent (each change is one step).
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn encode_chain(leaf: &[u8], intermediates: &[CertificateDer<'_>]) -> Box<[u8]> {
    let certs = std::iter::once(leaf).chain(intermediates.iter().map(|c| c.as_ref()));
    let total = certs.clone().map(|c| c.len() + 4).sum();
    let mut out = Vec::with_capacity(total);
    for der in certs {
        // Certificates are far below 4 GiB; a longer one saturates, and the bytes still compare.
        out.extend_from_slice(&u32::try_from(der.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(der);
    }
    out.into_boxed_slice()
}

/// Whether the first certificate of `encoded` (see [`encode_chain`]) is `leaf`.
fn chain_starts_with(encoded: &[u8], leaf: &[u8]) -> bool {
    match encoded.split_first_chunk::<4>() {
        Some((len, tail)) => {
            u32::from_be_bytes(*len) as usize == leaf.len() && tail.starts_with(leaf)
        }
        None => false,
    }
}

/// Whether `encoded` (see [`encode_chain`]) is exactly `leaf` followed by `intermediates`.
fn same_chain(encoded: &[u8], leaf: &[u8], intermediates: &[CertificateDer<'_>]) -> bool {
    let mut rest = encoded;
    for der in std::iter::once(leaf).chain(intermediates.iter().map(|c| c.as_ref())) {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return false;
        };
        if u32::from_be_bytes(*len) as usize != der.len() || !tail.starts_with(der) {
            return false;
        }
        rest = &tail[der.len()..];
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn verified(id: &SpiffeId, generation: u64) -> Verified<'_> {
        Verified {
            id,
            purpose: Purpose::ClientAuth,
            bundles_generation: generation,
            not_before: 100,
            not_after: 200,
        }
    }

    #[test]
    fn chains_compare_byte_for_byte_and_by_boundaries() {
        let a = CertificateDer::from(vec![1u8, 2, 3]);
        let b = CertificateDer::from(vec![4u8, 5]);
        let enc = encode_chain(&[9, 9], &[a.clone(), b.clone()]);
        assert!(same_chain(&enc, &[9, 9], &[a.clone(), b.clone()]));
        assert!(!same_chain(&enc, &[9, 9], std::slice::from_ref(&a)));
        assert!(!same_chain(&enc, &[9, 9], &[b.clone(), a.clone()]));
        assert!(!same_chain(
            &enc,
            &[9, 9, 1],
            &[CertificateDer::from(vec![2u8, 3]), b.clone()]
        ));
        assert!(!same_chain(&enc, &[9, 8], &[a, b]));
    }

    #[test]
    fn hits_only_within_window_generation_and_purpose() {
        let cache = VerifiedChainCache::new(8);
        let who = id("spiffe://td/ns/a/sa/b");
        let leaf = [7u8; 40];
        assert_eq!(cache.get(&leaf, &[], Purpose::ClientAuth, 1, 150), None);
        cache.insert(&leaf, &[], verified(&who, 1));
        assert_eq!(
            cache.get(&leaf, &[], Purpose::ClientAuth, 1, 150),
            Some(who.clone())
        );
        assert_eq!(cache.get(&leaf, &[], Purpose::ServerAuth, 1, 150), None);
        assert_eq!(cache.get(&leaf, &[], Purpose::ClientAuth, 1, 201), None);
        assert_eq!(cache.get(&leaf, &[], Purpose::ClientAuth, 1, 99), None);
        assert_eq!(
            cache.get(&[7u8; 39], &[], Purpose::ClientAuth, 1, 150),
            None
        );
        // A new bundle generation drops the entry for good.
        assert_eq!(cache.get(&leaf, &[], Purpose::ClientAuth, 2, 150), None);
        assert_eq!(cache.get(&leaf, &[], Purpose::ClientAuth, 1, 150), None);
        assert!(cache.is_empty());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 7));
    }

    #[test]
    fn stays_bounded_and_evicts_the_least_recently_used() {
        let cache = VerifiedChainCache::new(4);
        assert_eq!(cache.capacity(), 4);
        let who = id("spiffe://td/w");
        // With 4 slots in 4 shards of 1, every insert into a full shard evicts its one entry.
        for i in 0..64u8 {
            cache.insert(&[i; 8], &[], verified(&who, 1));
            assert!(cache.len() <= 4);
        }
        assert_eq!(cache.stats().evictions, 60);

        let one = VerifiedChainCache::new(1);
        one.insert(&[1; 8], &[], verified(&who, 1));
        one.insert(&[2; 8], &[], verified(&who, 1));
        assert_eq!(one.get(&[1; 8], &[], Purpose::ClientAuth, 1, 150), None);
        assert!(one.get(&[2; 8], &[], Purpose::ClientAuth, 1, 150).is_some());
    }

    #[test]
    fn a_full_shard_evicts_the_least_recently_used() {
        let cache = VerifiedChainCache::with_shards(3, VerifiedChainCache::DEFAULT_MAX_BYTES, 1);
        let who = id("spiffe://td/w");
        for k in 1..=3u8 {
            cache.insert(&[k; 8], &[], verified(&who, 1));
        }
        // Use 1 and 3; 2 is now the least recently used and goes when 4 arrives.
        assert!(
            cache
                .get(&[1; 8], &[], Purpose::ClientAuth, 1, 150)
                .is_some()
        );
        assert!(
            cache
                .get(&[3; 8], &[], Purpose::ClientAuth, 1, 150)
                .is_some()
        );
        cache.insert(&[4; 8], &[], verified(&who, 1));
        assert_eq!(cache.len(), 3);
        for (k, present) in [(1u8, true), (2, false), (3, true), (4, true)] {
            let hit = cache
                .get(&[k; 8], &[], Purpose::ClientAuth, 1, 150)
                .is_some();
            assert_eq!(hit, present, "entry {k}");
        }
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn finding_6_staged_chains_count_only_once_their_leaf_is_committed() {
        let cache = VerifiedChainCache::new(8);
        let who = id("spiffe://td/w");
        let inter = CertificateDer::from(vec![5u8; 30]);
        cache.stage(&[1; 40], std::slice::from_ref(&inter), verified(&who, 1));
        assert!(cache.is_empty(), "staged is not cached");
        assert_eq!(cache.stats().staged, 1);
        let get = |leaf: &[u8]| {
            cache.get(
                leaf,
                std::slice::from_ref(&inter),
                Purpose::ClientAuth,
                1,
                150,
            )
        };
        assert_eq!(get(&[1; 40]), None);
        // Another leaf's proof commits nothing; a leaf that is a prefix of it neither.
        cache.commit(&[2; 40]);
        cache.commit(&[1; 39]);
        assert!(cache.is_empty());
        cache.commit(&[1; 40]);
        assert_eq!(cache.stats().staged, 0);
        assert_eq!(get(&[1; 40]), Some(who.clone()));
        // Staging is bounded too: the oldest staged chains go first.
        for i in 0..100u8 {
            cache.stage(&[i; 40], &[], verified(&who, 1));
        }
        assert!(cache.stats().staged <= 8, "{:?}", cache.stats());
        cache.clear();
        assert_eq!(cache.stats().staged, 0);
    }

    #[test]
    fn finding_6_the_byte_bound_evicts() {
        // 16 chains by count, but only room for about 4 chains of 1000 bytes.
        let cache = VerifiedChainCache::with_shards(16, 4 * (1000 + 200 + ENTRY_OVERHEAD), 1);
        let who = id("spiffe://td/w");
        for i in 0..10u8 {
            cache.insert(&[i; 1000], &[], verified(&who, 1));
            assert!(
                cache.stats().bytes <= cache.max_bytes(),
                "{:?}",
                cache.stats()
            );
        }
        let stats = cache.stats();
        assert_eq!(stats.entries, 4, "{stats:?}");
        assert_eq!(stats.evictions, 6, "{stats:?}");
        // The most recent survive.
        assert!(
            cache
                .get(&[9; 1000], &[], Purpose::ClientAuth, 1, 150)
                .is_some()
        );
        assert!(
            cache
                .get(&[0; 1000], &[], Purpose::ClientAuth, 1, 150)
                .is_none()
        );
        // A chain larger than the whole bound is never cached, staged or not.
        cache.stage(&[7; 10_000], &[], verified(&who, 1));
        cache.commit(&[7; 10_000]);
        cache.insert(&[8; 10_000], &[], verified(&who, 1));
        assert!(
            cache
                .get(&[8; 10_000], &[], Purpose::ClientAuth, 1, 150)
                .is_none()
        );
        assert_eq!(cache.stats().staged, 0);
        assert_eq!(cache.len(), 4);
        cache.clear();
        assert_eq!(cache.stats().bytes, 0);
    }
}
