//! Trust bundles: the root certificates of each trust domain, kept apart per domain.
//!
//! A peer is verified only against the roots of *its own* trust domain; roots of different domains
//! are never pooled, so a CA of one domain cannot vouch for an identity in another.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use rustls_pki_types::{CertificateDer, TrustAnchor};
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use crate::error::CredentialError;
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// The roots of one trust domain.
#[derive(Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    sequence: Option<u64>,
}

impl TrustBundle {
    /// A bundle of DER root certificates. Each must parse as a trust anchor.
    pub fn new(
        trust_domain: TrustDomain,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, CredentialError> {
        let mut bundle = Self {
            trust_domain,
            roots: Vec::with_capacity(roots.len()),
            anchors: Vec::with_capacity(roots.len()),
            sequence: None,
        };
        for root in roots {
            bundle.add_root(root)?;
        }
        Ok(bundle)
    }

    /// A bundle from PEM text holding one or more `CERTIFICATE` sections (e.g. `ca_certificates.pem`).
    pub fn from_pem(trust_domain: TrustDomain, pem: &[u8]) -> Result<Self, CredentialError> {
        let roots = crate::pem::certificates(pem)?;
        Self::new(trust_domain, roots)
    }

    fn add_root(&mut self, root: CertificateDer<'static>) -> Result<(), CredentialError> {
        if self.roots.contains(&root) {
            return Ok(());
        }
        let anchor = webpki::anchor_from_trusted_cert(&root)
            .map_err(|e| CredentialError::BadRoot {
                trust_domain: self.trust_domain.to_string(),
                detail: format!("{e:?}"),
            })?
            .to_owned();
        self.anchors.push(anchor);
        self.roots.push(root);
        Ok(())
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The root certificates, DER.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The roots as trust anchors for path validation.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// `spiffe_sequence` from the bundle map, when it had one.
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("trust_domain", &self.trust_domain.name())
            .field("roots", &self.roots.len())
            .field("sequence", &self.sequence)
            .finish()
    }
}

/// Trust bundles of any number of trust domains, looked up by the peer's domain.
///
/// ```
/// use workload_auth_mtls::TrustBundleSet;
/// let json = br#"{"trust_domains": {"example.org": {"spiffe_sequence": 1, "keys": []},
///                                   "example.org": {"keys": []}}}"#;
/// assert!(TrustBundleSet::from_bundle_map_json(json).is_err()); // duplicate trust domain
/// ```
#[derive(Clone)]
pub struct TrustBundleSet {
    bundles: HashMap<TrustDomain, Arc<TrustBundle>>,
    generation: u64,
}

/// Source of [`TrustBundleSet::generation`] numbers: unique in the process, never reused.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

impl Default for TrustBundleSet {
    fn default() -> Self {
        Self {
            bundles: HashMap::new(),
            generation: next_generation(),
        }
    }
}

impl TrustBundleSet {
    /// An empty set: every peer is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// A number naming this set's contents: it changes on every change of the set, and two sets
    /// built apart (e.g. loaded by two reloads of the same directory) never share it; a clone
    /// shares it until either is changed. The verified-chain cache drops entries whose generation
    /// is not the current one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Adds a bundle, merging its roots with any already held for the same trust domain.
    pub fn add(&mut self, bundle: TrustBundle) -> Result<(), CredentialError> {
        self.generation = next_generation();
        match self.bundles.get_mut(&bundle.trust_domain) {
            None => {
                self.bundles
                    .insert(bundle.trust_domain.clone(), Arc::new(bundle));
            }
            Some(existing) => {
                let merged = Arc::make_mut(existing);
                for root in bundle.roots {
                    merged.add_root(root)?;
                }
                merged.sequence = merged.sequence.max(bundle.sequence);
            }
        }
        Ok(())
    }

    /// Builder form of [`TrustBundleSet::add`].
    pub fn with(mut self, bundle: TrustBundle) -> Result<Self, CredentialError> {
        self.add(bundle)?;
        Ok(self)
    }

    /// The bundle of `trust_domain`, if any.
    pub fn for_domain(&self, trust_domain: &TrustDomain) -> Option<&TrustBundle> {
        self.bundles.get(trust_domain).map(|b| b.as_ref())
    }

    /// The bundle of the trust domain `id` belongs to, if any.
    pub fn for_id(&self, id: &SpiffeId) -> Option<&TrustBundle> {
        self.bundles.get(id.trust_domain_name()).map(|b| b.as_ref())
    }

    /// The trust domains held, in no particular order.
    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        self.bundles.keys()
    }

    /// How many trust domains are held.
    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    /// Whether no trust domain is held.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }

    /// Parses a SPIFFE bundle map (`trust_bundles.json`):
    /// `{"trust_domains": {"TD": {"spiffe_sequence": N, "keys": [JWK, ...]}}}`.
    ///
    /// Only JWKs with `"use": "x509-svid"` are read (others, such as `jwt-svid` keys, are skipped);
    /// each must carry exactly one base64 DER certificate in `x5c`. A trust domain named twice is an
    /// error, as is bad base64 or a certificate that is not a usable root.
    pub fn from_bundle_map_json(json: &[u8]) -> Result<Self, CredentialError> {
        let doc: BundleMapDoc =
            serde_json::from_slice(json).map_err(|e| CredentialError::BundleJson(e.to_string()))?;
        let mut set = Self::new();
        for (name, doc) in doc.trust_domains.0 {
            let trust_domain =
                TrustDomain::new(&name).map_err(|reason| CredentialError::InvalidTrustDomain {
                    name: name.clone(),
                    reason,
                })?;
            if set.bundles.contains_key(&trust_domain) {
                return Err(CredentialError::DuplicateTrustDomain(
                    trust_domain.to_string(),
                ));
            }
            let mut roots = Vec::new();
            for key in doc.keys {
                if key.use_.as_deref() != Some("x509-svid") {
                    continue;
                }
                let x5c = key.x5c.unwrap_or_default();
                let [b64] = x5c.as_slice() else {
                    return Err(CredentialError::X5cCount {
                        trust_domain: trust_domain.to_string(),
                        count: x5c.len(),
                    });
                };
                let der = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|_| CredentialError::BadBase64(trust_domain.to_string()))?;
                roots.push(CertificateDer::from(der));
            }
            let mut bundle = TrustBundle::new(trust_domain, roots)?;
            bundle.sequence = doc.spiffe_sequence;
            set.bundles
                .insert(bundle.trust_domain.clone(), Arc::new(bundle));
        }
        set.generation = next_generation();
        Ok(set)
    }
}

impl fmt::Debug for TrustBundleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.bundles.keys().map(|td| td.name()).collect();
        names.sort_unstable();
        f.debug_struct("TrustBundleSet")
            .field("trust_domains", &names)
            .finish()
    }
}

#[derive(Deserialize)]
struct BundleMapDoc {
    trust_domains: Entries<BundleDoc>,
}

#[derive(Deserialize)]
struct BundleDoc {
    #[serde(default)]
    spiffe_sequence: Option<u64>,
    #[serde(default)]
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    #[serde(rename = "use", default)]
    use_: Option<String>,
    #[serde(default)]
    x5c: Option<Vec<String>>,
}

/// A JSON object read as a list of entries, so duplicate keys are seen rather than silently merged.
struct Entries<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entries<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for EntriesVisitor<T> {
            type Value = Entries<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object keyed by trust domain")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, T>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(std::marker::PhantomData))
    }
}
