//! A certificate authority for managed workload identity: X509-SVIDs for any SPIFFE ID.
//!
//! Each [`TrustDomainCa`] has a root and an intermediate CA (ECDSA P-256). Leaves are issued as
//! Google's managed workload identity issues them: 24 hours, an empty subject, one critical URI SAN
//! holding the SPIFFE ID, `CA:FALSE`, key usage `digitalSignature` + `keyEncipherment`, extended key
//! usage `serverAuth` + `clientAuth`, and the chain delivered as leaf then intermediate.
//!
//! [`SvidBuilder`] has knobs to issue deliberately bad certificates for tests (a CA leaf, two URI
//! SANs, no SAN, DNS names only, a non-SPIFFE URI, expired or not yet valid, wrong EKU, odd key
//! usage), and [`CaOptions`] makes an expired or not-yet-valid intermediate.
//!
//! ```
//! use workload_auth_emulator::ca::TrustDomainCa;
//! let ca = TrustDomainCa::new("example.org").unwrap();
//! let svid = ca.issue("spiffe://example.org/ns/default/sa/web").unwrap();
//! assert!(svid.chain_pem().starts_with("-----BEGIN CERTIFICATE-----"));
//! ```
//!
//! The CA keys live in memory and are thrown away with the value: nothing issued here is worth
//! anything outside tests.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom as _;
use workload_auth_core::{Error, ErrorKind, Result, SecretString};

use crate::config::WorkloadCertificates;

/// How long a leaf lives unless told otherwise (as Google issues them).
pub const DEFAULT_SVID_LIFETIME: Duration = Duration::from_secs(24 * 3600);

fn ca_error(what: &str, e: rcgen::Error) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("emulator CA: {what}: {e}"),
    )
}

fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| {
            Error::new(
                ErrorKind::Io,
                "emulator CA: no randomness for a serial number",
            )
        })?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // and not zero-prefixed
    Ok(SerialNumber::from_slice(&bytes))
}

/// Validity and shape of the CA certificates of a [`TrustDomainCa`].
#[derive(Clone, Debug)]
pub struct CaOptions {
    /// Root notBefore / notAfter. Default: one hour ago to ten years from now.
    pub root_validity: (SystemTime, SystemTime),
    /// Intermediate notBefore / notAfter. Default: one hour ago to one year from now.
    pub intermediate_validity: (SystemTime, SystemTime),
    /// The intermediate's key usages. Default: `keyCertSign`, `cRLSign`, `digitalSignature`;
    /// leave out `keyCertSign` to make a signing certificate the SPIFFE X509-SVID specification
    /// forbids.
    pub intermediate_key_usages: Vec<KeyUsage>,
    /// Whether the root carries its trust domain's SPIFFE ID (`spiffe://<td>`) as a URI SAN, as
    /// the X509-SVID specification lets a signing certificate do. Default: no.
    pub root_spiffe_id: bool,
}

impl Default for CaOptions {
    fn default() -> Self {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        Self {
            root_validity: (now - hour, now + Duration::from_secs(10 * 365 * 24 * 3600)),
            intermediate_validity: (now - hour, now + Duration::from_secs(365 * 24 * 3600)),
            intermediate_key_usages: vec![
                KeyUsage::KeyCertSign,
                KeyUsage::CrlSign,
                KeyUsage::DigitalSignature,
            ],
            root_spiffe_id: false,
        }
    }
}

/// Root and intermediate CA of one trust domain.
pub struct TrustDomainCa {
    trust_domain: String,
    root_der: Vec<u8>,
    root_pem: String,
    root_public_key: Vec<u8>,
    intermediate_der: Vec<u8>,
    intermediate_pem: String,
    intermediate: Issuer<'static, KeyPair>,
    root: Issuer<'static, KeyPair>,
}

impl TrustDomainCa {
    /// A new CA for `trust_domain` (bare name, e.g. `example.org`) with fresh P-256 keys.
    pub fn new(trust_domain: &str) -> Result<Self> {
        Self::with_options(trust_domain, CaOptions::default())
    }

    /// A new CA with the given validity periods (e.g. an expired intermediate).
    pub fn with_options(trust_domain: &str, options: CaOptions) -> Result<Self> {
        let root_key = KeyPair::generate().map_err(|e| ca_error("root key", e))?;
        let mut root_params = CertificateParams::default();
        root_params.distinguished_name = ca_name(trust_domain, "root CA");
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root_params.not_before = options.root_validity.0.into();
        root_params.not_after = options.root_validity.1.into();
        root_params.serial_number = Some(random_serial()?);
        if options.root_spiffe_id {
            let uri = format!("spiffe://{trust_domain}")
                .as_str()
                .try_into()
                .map_err(|e| ca_error("root URI SAN", e))?;
            root_params.subject_alt_names.push(SanType::URI(uri));
        }
        let root_cert = root_params
            .self_signed(&root_key)
            .map_err(|e| ca_error("root certificate", e))?;
        let root_public_key = root_key.public_key_raw().to_vec();
        let root = Issuer::new(root_params, root_key);

        let int_key = KeyPair::generate().map_err(|e| ca_error("intermediate key", e))?;
        let mut int_params = CertificateParams::default();
        int_params.distinguished_name = ca_name(trust_domain, "intermediate CA");
        int_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        int_params.key_usages = options
            .intermediate_key_usages
            .iter()
            .map(|u| u.purpose())
            .collect();
        int_params.not_before = options.intermediate_validity.0.into();
        int_params.not_after = options.intermediate_validity.1.into();
        int_params.use_authority_key_identifier_extension = true;
        int_params.serial_number = Some(random_serial()?);
        let int_cert = int_params
            .signed_by(&int_key, &root)
            .map_err(|e| ca_error("intermediate certificate", e))?;

        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            root_der: root_cert.der().to_vec(),
            root_pem: root_cert.pem(),
            root_public_key,
            intermediate_der: int_cert.der().to_vec(),
            intermediate_pem: int_cert.pem(),
            intermediate: Issuer::new(int_params, int_key),
            root,
        })
    }

    /// The trust domain (bare name).
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The root certificate, PEM (what `ca_certificates.pem` holds).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The intermediate certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// The intermediate certificate, PEM.
    pub fn intermediate_pem(&self) -> &str {
        &self.intermediate_pem
    }

    /// Issues a well-formed X509-SVID for `spiffe_id` with the defaults.
    pub fn issue(&self, spiffe_id: &str) -> Result<IssuedSvid> {
        self.svid(spiffe_id).issue()
    }

    /// A builder for a leaf with knobs, starting from the well-formed defaults.
    pub fn svid(&self, spiffe_id: &str) -> SvidBuilder<'_> {
        SvidBuilder {
            ca: self,
            uris: vec![spiffe_id.to_owned()],
            dns_names: Vec::new(),
            is_ca: false,
            validity: None,
            lifetime: DEFAULT_SVID_LIFETIME,
            extended_key_usages: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            key_usages: vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            key_format: KeyFormat::Pkcs8,
            signer: Signer::Intermediate,
        }
    }

    /// This domain's entry of a SPIFFE bundle map: `{"spiffe_sequence":N,"keys":[JWK]}` with the
    /// root as an `x509-svid` EC JWK.
    pub fn bundle_json(&self, sequence: u64) -> serde_json::Value {
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // Uncompressed P-256 point: 0x04 || X (32) || Y (32).
        let point = &self.root_public_key;
        let (x, y) = if point.len() == 65 {
            (b64url.encode(&point[1..33]), b64url.encode(&point[33..65]))
        } else {
            (String::new(), String::new())
        };
        serde_json::json!({
            "spiffe_sequence": sequence,
            "keys": [{
                "kty": "EC",
                "use": "x509-svid",
                "crv": "P-256",
                "x": x,
                "y": y,
                "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.root_der)],
            }],
        })
    }
}

impl fmt::Debug for TrustDomainCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustDomainCa")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

fn ca_name(trust_domain: &str, what: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "workload-auth emulator");
    dn.push(DnType::CommonName, format!("{trust_domain} {what}"));
    dn
}

/// A SPIFFE bundle map (`trust_bundles.json`) of the given CAs, each at `spiffe_sequence` 1.
pub fn bundle_map_json<'a>(cas: impl IntoIterator<Item = &'a TrustDomainCa>) -> String {
    let domains: serde_json::Map<String, serde_json::Value> = cas
        .into_iter()
        .map(|ca| (ca.trust_domain.clone(), ca.bundle_json(1)))
        .collect();
    serde_json::json!({ "trust_domains": domains }).to_string()
}

/// How the leaf's private key is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFormat {
    /// PKCS#8 `PRIVATE KEY`.
    Pkcs8,
    /// SEC1 `EC PRIVATE KEY` (the metadata server may hand these out).
    Sec1,
}

/// Which key signs the leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// The intermediate (normal); the chain is leaf + intermediate.
    Intermediate,
    /// The root directly; the chain is the leaf alone.
    Root,
}

/// A leaf being issued, with knobs for the bad certificates tests need.
#[derive(Debug)]
pub struct SvidBuilder<'a> {
    ca: &'a TrustDomainCa,
    uris: Vec<String>,
    dns_names: Vec<String>,
    is_ca: bool,
    validity: Option<(SystemTime, SystemTime)>,
    lifetime: Duration,
    extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    key_usages: Vec<KeyUsagePurpose>,
    key_format: KeyFormat,
    signer: Signer,
}

/// Extended key usages a test may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eku {
    /// `id-kp-serverAuth`.
    ServerAuth,
    /// `id-kp-clientAuth`.
    ClientAuth,
    /// `id-kp-codeSigning`.
    CodeSigning,
}

/// Key usages a test may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUsage {
    /// `digitalSignature`.
    DigitalSignature,
    /// `keyEncipherment`.
    KeyEncipherment,
    /// `keyAgreement`.
    KeyAgreement,
    /// `keyCertSign`.
    KeyCertSign,
    /// `cRLSign`.
    CrlSign,
}

impl KeyUsage {
    fn purpose(self) -> KeyUsagePurpose {
        match self {
            Self::DigitalSignature => KeyUsagePurpose::DigitalSignature,
            Self::KeyEncipherment => KeyUsagePurpose::KeyEncipherment,
            Self::KeyAgreement => KeyUsagePurpose::KeyAgreement,
            Self::KeyCertSign => KeyUsagePurpose::KeyCertSign,
            Self::CrlSign => KeyUsagePurpose::CrlSign,
        }
    }
}

impl<'a> SvidBuilder<'a> {
    /// Adds another URI SAN (two make an invalid SVID).
    #[must_use]
    pub fn extra_uri(mut self, uri: &str) -> Self {
        self.uris.push(uri.to_owned());
        self
    }

    /// Replaces the URI SANs (e.g. one non-SPIFFE URI); an empty list leaves none.
    #[must_use]
    pub fn uris(mut self, uris: &[&str]) -> Self {
        self.uris = uris.iter().map(|u| (*u).to_owned()).collect();
        self
    }

    /// Adds a DNS SAN.
    #[must_use]
    pub fn dns_name(mut self, name: &str) -> Self {
        self.dns_names.push(name.to_owned());
        self
    }

    /// Makes the leaf a CA (`CA:TRUE`, with `keyCertSign`).
    #[must_use]
    pub fn ca(mut self) -> Self {
        self.is_ca = true;
        self
    }

    /// Lifetime from now (default 24 h).
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// An explicit validity period (e.g. in the past, or in the future).
    #[must_use]
    pub fn validity(mut self, not_before: SystemTime, not_after: SystemTime) -> Self {
        self.validity = Some((not_before, not_after));
        self
    }

    /// Valid from two days ago until yesterday.
    #[must_use]
    pub fn expired(self) -> Self {
        let now = SystemTime::now();
        self.validity(now - 2 * DEFAULT_SVID_LIFETIME, now - DEFAULT_SVID_LIFETIME)
    }

    /// Valid from tomorrow.
    #[must_use]
    pub fn not_yet_valid(self) -> Self {
        let now = SystemTime::now();
        self.validity(now + DEFAULT_SVID_LIFETIME, now + 2 * DEFAULT_SVID_LIFETIME)
    }

    /// Replaces the extended key usages; an empty list leaves the extension out.
    #[must_use]
    pub fn extended_key_usages(mut self, ekus: &[Eku]) -> Self {
        self.extended_key_usages = ekus
            .iter()
            .map(|e| match e {
                Eku::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
                Eku::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
                Eku::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
            })
            .collect();
        self
    }

    /// Replaces the key usages; an empty list leaves the extension out.
    #[must_use]
    pub fn key_usages(mut self, usages: &[KeyUsage]) -> Self {
        self.key_usages = usages.iter().map(|u| u.purpose()).collect();
        self
    }

    /// Encodes the private key as SEC1 `EC PRIVATE KEY` instead of PKCS#8.
    #[must_use]
    pub fn key_format(mut self, format: KeyFormat) -> Self {
        self.key_format = format;
        self
    }

    /// Has the root sign the leaf directly.
    #[must_use]
    pub fn signer(mut self, signer: Signer) -> Self {
        self.signer = signer;
        self
    }

    /// Issues the certificate.
    ///
    /// Longer than most functions on purpose: each knob of the builder becomes one field of the
    /// certificate parameters in order, with the note on why rcgen's default is overridden beside
    /// it; tests of malformed SVIDs read this to see exactly what they get.
    pub fn issue(self) -> Result<IssuedSvid> {
        let key = KeyPair::generate().map_err(|e| ca_error("leaf key", e))?;
        let mut params = CertificateParams::default();
        // An empty subject: rcgen then marks the SAN extension critical, as RFC 5280 requires.
        params.distinguished_name = DistinguishedName::new();
        for uri in &self.uris {
            let ia5 = uri
                .as_str()
                .try_into()
                .map_err(|e| ca_error("URI SAN", e))?;
            params.subject_alt_names.push(SanType::URI(ia5));
        }
        for name in &self.dns_names {
            let ia5 = name
                .as_str()
                .try_into()
                .map_err(|e| ca_error("DNS SAN", e))?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        if params.subject_alt_names.is_empty() {
            // No SAN at all: a subject keeps the certificate well-formed X.509.
            params
                .distinguished_name
                .push(DnType::CommonName, "no subject alternative name");
        }
        if self.is_ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        } else {
            // CA:FALSE as DER requires: an empty SEQUENCE (cA's DEFAULT FALSE is omitted), critical.
            // rcgen's `ExplicitNoCa` writes the default out, which strict parsers (Python's
            // cryptography) refuse.
            params.is_ca = IsCa::NoCa;
            let mut basic_constraints =
                rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
            basic_constraints.set_criticality(true);
            params.custom_extensions.push(basic_constraints);
        }
        params.key_usages = self.key_usages.clone();
        if self.is_ca && !params.key_usages.contains(&KeyUsagePurpose::KeyCertSign) {
            params.key_usages.push(KeyUsagePurpose::KeyCertSign);
        }
        params.extended_key_usages = self.extended_key_usages.clone();
        let (not_before, not_after) = self.validity.unwrap_or_else(|| {
            let now = SystemTime::now();
            (now - Duration::from_secs(60), now + self.lifetime)
        });
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);

        let (issuer, intermediate_pem, intermediate_der) = match self.signer {
            Signer::Intermediate => (
                &self.ca.intermediate,
                Some(self.ca.intermediate_pem.as_str()),
                Some(self.ca.intermediate_der.clone()),
            ),
            Signer::Root => (&self.ca.root, None, None),
        };
        let cert = params
            .signed_by(&key, issuer)
            .map_err(|e| ca_error("leaf certificate", e))?;

        let mut chain_pem = cert.pem();
        let mut chain_der = vec![cert.der().to_vec()];
        if let (Some(pem), Some(der)) = (intermediate_pem, intermediate_der) {
            chain_pem.push_str(pem);
            chain_der.push(der);
        }
        let pkcs8 = key.serialize_der();
        let (key_der, key_pem) = match self.key_format {
            KeyFormat::Pkcs8 => (pkcs8.clone(), key.serialize_pem()),
            KeyFormat::Sec1 => {
                let sec1 = pkcs8_p256_to_sec1(&pkcs8).ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        "emulator CA: cannot re-encode key",
                    )
                })?;
                let pem = pem_encode("EC PRIVATE KEY", &sec1);
                (sec1, pem)
            }
        };
        Ok(IssuedSvid {
            spiffe_id: self.uris.first().cloned().unwrap_or_default(),
            trust_domain: self.ca.trust_domain.clone(),
            chain_pem,
            chain_der,
            key_der: SecretBytes(key_der),
            key_pem: SecretString::new(key_pem),
            pkcs8_der: SecretBytes(pkcs8),
            not_before,
            not_after,
        })
    }
}

/// Bytes that never print themselves.
#[derive(Clone)]
struct SecretBytes(Vec<u8>);

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}

/// An issued leaf, its chain and its private key.
#[derive(Clone)]
pub struct IssuedSvid {
    spiffe_id: String,
    trust_domain: String,
    chain_pem: String,
    chain_der: Vec<Vec<u8>>,
    key_der: SecretBytes,
    key_pem: SecretString,
    pkcs8_der: SecretBytes,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl IssuedSvid {
    /// The first URI SAN it was issued with (the SPIFFE ID, for well-formed SVIDs).
    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }

    /// The trust domain of the CA that issued it.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Leaf then intermediate, PEM (what `certificates.pem` holds).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// Leaf then intermediate, DER.
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain_der
    }

    /// The leaf, DER.
    pub fn leaf_der(&self) -> &[u8] {
        self.chain_der
            .first()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The leaf alone, PEM.
    pub fn leaf_pem(&self) -> String {
        pem_encode("CERTIFICATE", self.leaf_der())
    }

    /// The private key, PEM, in the format asked for (PKCS#8 by default).
    pub fn private_key_pem(&self) -> &SecretString {
        &self.key_pem
    }

    /// The private key, DER, in the format asked for.
    pub fn private_key_der(&self) -> &[u8] {
        &self.key_der.0
    }

    /// The private key as PKCS#8 DER, whatever format was asked for.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der.0
    }

    /// notBefore.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// notAfter.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Bodies for the metadata server's `gce-workload-certificates` endpoints: this SVID under
    /// `workload-identities`, and the roots of `trust_anchors` (usually the issuing CA and any
    /// federated ones) under `trust-anchors`.
    pub fn workload_certificates<'a>(
        &self,
        trust_anchors: impl IntoIterator<Item = &'a TrustDomainCa>,
    ) -> WorkloadCertificates {
        let anchors: Vec<(&str, &str)> = trust_anchors
            .into_iter()
            .map(|ca| (ca.trust_domain(), ca.root_pem()))
            .collect();
        WorkloadCertificates::from_pem(&self.spiffe_id, &self.chain_pem, &self.key_pem, anchors)
    }
}

impl fmt::Debug for IssuedSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedSvid")
            .field("spiffe_id", &self.spiffe_id)
            .field("chain_len", &self.chain_der.len())
            .field("not_after", &self.not_after)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// PEM with 64-column lines: the emulator's one PEM encoder (rustls-pki-types only decodes).
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Reads one DER TLV: (tag, contents, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 2 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn der_write(tag: u8, contents: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    match contents.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
        n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(contents);
}

/// Re-encodes ring's PKCS#8 P-256 key as a SEC1 `ECPrivateKey` with the curve named, as OpenSSL
/// writes it.
pub(crate) fn pkcs8_p256_to_sec1(pkcs8: &[u8]) -> Option<Vec<u8>> {
    const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let (_, info, _) = der_tlv(pkcs8)?; // PrivateKeyInfo SEQUENCE
    let (_, _version, rest) = der_tlv(info)?;
    let (_, _algorithm, rest) = der_tlv(rest)?;
    let (_, inner, _) = der_tlv(rest)?; // OCTET STRING holding ECPrivateKey
    let (_, ec, _) = der_tlv(inner)?;
    let (_, _ec_version, mut rest) = der_tlv(ec)?;
    let (_, private, after) = der_tlv(rest)?;
    rest = after;
    let mut public = None;
    while !rest.is_empty() {
        let (tag, contents, after) = der_tlv(rest)?;
        if tag == 0xa1 {
            public = Some(contents.to_vec()); // [1] { BIT STRING }
        }
        rest = after;
    }
    let mut body = Vec::new();
    der_write(0x02, &[1], &mut body);
    der_write(0x04, private, &mut body);
    let mut oid = Vec::new();
    der_write(0x06, PRIME256V1, &mut oid);
    der_write(0xa0, &oid, &mut body);
    der_write(0xa1, &public?, &mut body);
    let mut out = Vec::new();
    der_write(0x30, &body, &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_leaf_plus_intermediate_with_the_spiffe_id() {
        let ca = TrustDomainCa::new("example.org").unwrap();
        let svid = ca.issue("spiffe://example.org/ns/a/sa/b").unwrap();
        assert_eq!(svid.chain_der().len(), 2);
        assert_eq!(svid.chain_der()[1], ca.intermediate_der());
        assert_eq!(svid.chain_pem().matches("BEGIN CERTIFICATE").count(), 2);
        let life = svid.not_after().duration_since(svid.not_before()).unwrap();
        assert!(
            life >= DEFAULT_SVID_LIFETIME
                && life < DEFAULT_SVID_LIFETIME + Duration::from_secs(120)
        );
        assert!(
            svid.private_key_pem()
                .expose()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert!(!format!("{svid:?}").contains("PRIVATE"));
    }

    #[test]
    fn sec1_keys_keep_the_same_secret() {
        let ca = TrustDomainCa::new("example.org").unwrap();
        let svid = ca
            .svid("spiffe://example.org/x")
            .key_format(KeyFormat::Sec1)
            .issue()
            .unwrap();
        assert!(
            svid.private_key_pem()
                .expose()
                .starts_with("-----BEGIN EC PRIVATE KEY-----")
        );
        let sec1 = svid.private_key_der();
        // The 32-byte secret inside the SEC1 structure is the one inside the PKCS#8 structure.
        let (_, ec, _) = der_tlv(sec1).unwrap();
        let (_, _, rest) = der_tlv(ec).unwrap();
        let (_, secret, _) = der_tlv(rest).unwrap();
        assert_eq!(secret.len(), 32);
        assert!(svid.pkcs8_der().windows(32).any(|w| w == secret));
    }

    #[test]
    fn bundle_map_has_one_x509_svid_key_per_domain() {
        let a = TrustDomainCa::new("a.example").unwrap();
        let b = TrustDomainCa::new("b.example").unwrap();
        let json: serde_json::Value = serde_json::from_str(&bundle_map_json([&a, &b])).unwrap();
        let keys = &json["trust_domains"]["a.example"]["keys"];
        assert_eq!(keys[0]["use"], "x509-svid");
        assert_eq!(keys[0]["x5c"].as_array().unwrap().len(), 1);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(keys[0]["x5c"][0].as_str().unwrap())
                .unwrap(),
            a.root_der()
        );
        assert!(json["trust_domains"]["b.example"].is_object());
    }

    #[test]
    fn metadata_bodies_match_the_wire_format() {
        let ca = TrustDomainCa::new("td.example").unwrap();
        let svid = ca.issue("spiffe://td.example/ns/a/sa/b").unwrap();
        let bodies = svid.workload_certificates([&ca]);
        let ids: serde_json::Value =
            serde_json::from_str(bodies.workload_identities.expose()).unwrap();
        let entry = &ids["workloadCredentials"]["spiffe://td.example/ns/a/sa/b"];
        assert_eq!(entry["certificatePem"], svid.chain_pem());
        assert_eq!(entry["privateKeyPem"], svid.private_key_pem().expose());
        let anchors: serde_json::Value = serde_json::from_str(&bodies.trust_anchors).unwrap();
        assert_eq!(
            anchors["trustAnchors"]["td.example"]["trustAnchorsPem"],
            ca.root_pem()
        );
    }
}
