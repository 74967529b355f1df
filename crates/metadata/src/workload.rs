//! Managed workload identity: the `instance/gce-workload-certificates/*` endpoints.

use std::collections::BTreeMap;
use std::fmt;

use workload_auth_core::{Error, Result, SecretString};

use workload_auth_core::json::Fields;

use crate::request::{malformed, parse_json};

/// The workload's X.509 SPIFFE credential (X509-SVID) from `workload-identities`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkloadIdentities {
    /// The SPIFFE ID the certificate was issued for, e.g.
    /// `spiffe://POOL.global.PROJECT_NUMBER.workload.id.goog/ns/NS/sa/ID`.
    pub spiffe_id: String,
    /// The leaf certificate followed by its intermediates, PEM.
    pub certificate_pem: String,
    /// The private key of the leaf (PKCS#8 or SEC1 EC), PEM.
    pub private_key_pem: SecretString,
    /// The `status` the server reported, when it reported one (normally `OK`).
    pub status: Option<String>,
}

/// Where the bodies parsed by [`WorkloadIdentities::from_json`] and [`trust_anchors_from_json`]
/// are said to come from in their errors.
const WORKLOAD_IDENTITIES_PLACE: &str = "instance/gce-workload-certificates/workload-identities";
const TRUST_ANCHORS_PLACE: &str = "instance/gce-workload-certificates/trust-anchors";

impl WorkloadIdentities {
    /// Parses a body of `instance/gce-workload-certificates/workload-identities`:
    /// `{"status":"OK","workloadCredentials":{"spiffe://...":{"certificatePem":..,"privateKeyPem":..}}}`
    /// with exactly one credential.
    ///
    /// The one parser of this body, used by [`MetadataClient::workload_identities`] and by
    /// every other reader (the mtls crate's metadata source and `X509Material::from_metadata_json`),
    /// so all of them refuse duplicate keys, never quote a value in an error, and hold the key in
    /// a [`SecretString`] (zeroed when dropped).
    ///
    /// [`MetadataClient::workload_identities`]: crate::MetadataClient::workload_identities
    pub fn from_json(body: &[u8]) -> Result<Self> {
        parse_workload_identities(body, WORKLOAD_IDENTITIES_PLACE)
    }
}

/// Parses a body of `instance/gce-workload-certificates/trust-anchors`,
/// `{"trustAnchors":{"TD":{"trustAnchorsPem":"<roots>"}}}`, into trust domain → roots PEM: the
/// parser [`MetadataClient::trust_anchors`](crate::MetadataClient::trust_anchors) uses.
/// Duplicate keys (also `TD` next to `spiffe://TD`) are refused.
pub fn trust_anchors_from_json(body: &[u8]) -> Result<BTreeMap<String, String>> {
    parse_trust_anchors(body, TRUST_ANCHORS_PLACE)
}

/// Why the workload-certificate endpoints have nothing to give; find it with
/// [`WorkloadCertificatesUnavailable::of`].
///
/// Callers that can fall back (for example to the credentials directory) match on this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkloadCertificatesUnavailable {
    /// HTTP 412: managed workload identity was never configured for this VM.
    NotConfigured,
    /// HTTP 404 `workload certificate feature not enabled`: the feature is off for this VM.
    FeatureDisabled,
}

impl WorkloadCertificatesUnavailable {
    /// The reason carried by `error`, when it is one of these.
    pub fn of(error: &Error) -> Option<Self> {
        std::error::Error::source(error)?
            .downcast_ref::<Self>()
            .copied()
    }

    pub(crate) fn into_error(self, status: u16, endpoint: &str) -> Error {
        let hint = match self {
            Self::NotConfigured => {
                "create the VM with managed workload identity (a workload identity pool and a \
                 partner metadata configuration), or use the credentials directory"
            }
            Self::FeatureDisabled => {
                "enable managed workload identity (gce-workload-certificates) for this VM"
            }
        };
        Error::http_status(
            status,
            endpoint.to_owned(),
            "cannot get workload certificates",
        )
        .with_source(self)
        .with_hint(hint)
    }

    /// Interprets a non-success status from a workload-certificate endpoint.
    pub(crate) fn from_status(status: u16, body: &str) -> Option<Self> {
        match status {
            412 => Some(Self::NotConfigured),
            404 if body
                .to_ascii_lowercase()
                .contains("workload certificate feature not enabled") =>
            {
                Some(Self::FeatureDisabled)
            }
            _ => None,
        }
    }
}

impl fmt::Display for WorkloadCertificatesUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotConfigured => "workload certificates not configured on this VM",
            Self::FeatureDisabled => "the workload certificate feature is not enabled on this VM",
        })
    }
}

impl std::error::Error for WorkloadCertificatesUnavailable {}

/// Parses `{"status":"OK","workloadCredentials":{"spiffe://...":{"certificatePem":..,"privateKeyPem":..}}}`.
pub(crate) fn parse_workload_identities(body: &[u8], endpoint: &str) -> Result<WorkloadIdentities> {
    let doc = parse_json(body, endpoint)?;
    let fields = Fields::of_response(&doc, endpoint);
    let status = fields.opt_str("status")?.map(str::to_owned);
    let credentials = fields.object("workloadCredentials")?;
    let count = credentials.len();
    let mut entries = credentials.object_entries()?;
    let (spiffe_id, entry) = match (entries.pop(), count) {
        (Some(one), 1) => one,
        _ => {
            return Err(fields.invalid(
                "workloadCredentials",
                &format!(
                    "has {count} entries, expected exactly one (status {:?})",
                    status.as_deref().unwrap_or("absent")
                ),
            ));
        }
    };
    if !spiffe_id.starts_with("spiffe://") || spiffe_id.len() <= "spiffe://".len() {
        return Err(malformed(
            endpoint,
            format!("the key of `workloadCredentials` is not a SPIFFE ID: {spiffe_id:?}"),
        ));
    }
    let certificate_pem = entry.str("certificatePem")?.to_owned();
    if !certificate_pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(entry.invalid("certificatePem", "holds no PEM certificate"));
    }
    let private_key_pem = entry.secret("privateKeyPem")?;
    if !private_key_pem.expose().contains("PRIVATE KEY-----") {
        return Err(entry.invalid("privateKeyPem", "holds no PEM private key"));
    }
    Ok(WorkloadIdentities {
        spiffe_id: spiffe_id.to_owned(),
        certificate_pem,
        private_key_pem,
        status,
    })
}

/// Parses `{"trustAnchors":{"TD":{"trustAnchorsPem":"<roots>"}}}` into trust domain → roots PEM.
pub(crate) fn parse_trust_anchors(body: &[u8], endpoint: &str) -> Result<BTreeMap<String, String>> {
    let doc = parse_json(body, endpoint)?;
    let anchors = Fields::of_response(&doc, endpoint).object("trustAnchors")?;
    let mut out = BTreeMap::new();
    for (domain, entry) in anchors.object_entries()? {
        // Keys are bare trust domains; tolerate a `spiffe://` prefix rather than fail on it.
        let bare = domain.strip_prefix("spiffe://").unwrap_or(domain);
        if bare.is_empty() || bare.contains('/') {
            return Err(malformed(
                endpoint,
                format!("the key {domain:?} of `trustAnchors` is not a trust domain"),
            ));
        }
        let pem = entry.str("trustAnchorsPem")?.to_owned();
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(entry.invalid("trustAnchorsPem", "holds no PEM certificate"));
        }
        if out.insert(bare.to_owned(), pem).is_some() {
            return Err(malformed(
                endpoint,
                format!("trust domain {bare:?} appears twice in `trustAnchors`"),
            ));
        }
    }
    Ok(out)
}

/// Parses `config-status`: any JSON object.
pub(crate) fn parse_config_status(body: &[u8], endpoint: &str) -> Result<serde_json::Value> {
    Ok(parse_json(body, endpoint)?.into_value())
}

#[cfg(test)]
mod tests {
    use super::*;
    use workload_auth_core::ErrorKind;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n";
    const KEY: &str = "-----BEGIN EC PRIVATE KEY-----\\nsekrit\\n-----END EC PRIVATE KEY-----\\n";

    fn identities(status: &str, entries: &str) -> String {
        format!(r#"{{{status}"workloadCredentials":{{{entries}}}}}"#)
    }

    fn entry(id: &str) -> String {
        format!(r#""{id}":{{"certificatePem":"{CERT}","privateKeyPem":"{KEY}"}}"#)
    }

    #[test]
    fn parses_one_identity_with_or_without_status() {
        let id = "spiffe://pool.global.1.workload.id.goog/ns/ns1/sa/sa1";
        for status in [r#""status":"OK","#, ""] {
            let body = identities(status, &entry(id));
            let w = parse_workload_identities(body.as_bytes(), "e").unwrap();
            assert_eq!(w.spiffe_id, id);
            assert!(
                w.certificate_pem
                    .starts_with("-----BEGIN CERTIFICATE-----\n")
            );
            assert!(w.private_key_pem.expose().contains("sekrit"));
            assert!(!format!("{w:?}").contains("sekrit"));
        }
    }

    #[test]
    fn refuses_zero_or_several_identities_and_bad_entries() {
        let a = entry("spiffe://td/ns/a/sa/a");
        let b = entry("spiffe://td/ns/b/sa/b");
        for (body, needle) in [
            (identities("", ""), "has 0 entries"),
            (identities("", &format!("{a},{b}")), "has 2 entries"),
            (identities("", &entry("td/ns/a")), "not a SPIFFE ID"),
            (
                identities("", r#""spiffe://td/x":{"privateKeyPem":"k"}"#),
                "`workloadCredentials[\"spiffe://td/x\"].certificatePem` field is missing",
            ),
            (
                identities(
                    "",
                    &format!(r#""spiffe://td/x":{{"certificatePem":"{CERT}"}}"#),
                ),
                "privateKeyPem` field is missing",
            ),
            (
                identities(
                    "",
                    &format!(
                        r#""spiffe://td/x":{{"certificatePem":"{CERT}","privateKeyPem":"sekrit"}}"#
                    ),
                ),
                "holds no PEM private key",
            ),
            (
                identities("", r#""spiffe://td/x":"x""#),
                "is a string, expected an object",
            ),
            (
                r#"{"status":"OK"}"#.to_owned(),
                "`workloadCredentials` field is missing",
            ),
            (
                r#"{"status":5,"workloadCredentials":{}}"#.to_owned(),
                "`status` field is a number",
            ),
        ] {
            let err = parse_workload_identities(body.as_bytes(), "e").unwrap_err();
            let text = err.to_string();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{text}");
            assert!(text.contains(needle), "{text}");
            assert!(!text.contains("sekrit"), "{text}");
        }
    }

    #[test]
    fn finding_7_duplicate_keys_are_refused_and_errors_never_quote_the_key() {
        let id = "spiffe://td/ns/a/sa/a";
        let other_key = "-----BEGIN EC PRIVATE KEY-----\\nother\\n-----END EC PRIVATE KEY-----\\n";
        for body in [
            // The same credential twice: with serde derive the last one silently won.
            identities("", &format!("{},{}", entry(id), entry(id))),
            // Two private keys in one credential.
            identities(
                "",
                &format!(
                    r#""{id}":{{"certificatePem":"{CERT}","privateKeyPem":"{KEY}","privateKeyPem":"{other_key}"}}"#
                ),
            ),
            // Two statuses, two credential maps.
            identities(r#""status":"OK","status":"ERROR","#, &entry(id)),
            format!(
                r#"{{"workloadCredentials":{{{}}},"workloadCredentials":{{}}}}"#,
                entry(id)
            ),
        ] {
            let err = WorkloadIdentities::from_json(body.as_bytes()).unwrap_err();
            let text = format!("{err} {err:?}");
            assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{text}");
            assert!(text.contains("duplicate key"), "{text}");
            assert!(
                !text.contains("sekrit") && !text.contains("other"),
                "{text}"
            );
            assert!(text.contains("workload-identities"), "{text}");
        }
        // A key of the wrong type, or a truncated body: the error names the field, not the PEM.
        for body in [
            identities(
                "",
                &format!(r#""{id}":{{"certificatePem":"{CERT}","privateKeyPem":["{KEY}"]}}"#),
            ),
            identities("", &entry(id))[..120].to_owned(),
            format!(r#"{{"workloadCredentials":"{KEY}"}}"#),
            format!(r#"["{KEY}"]"#),
        ] {
            let err = WorkloadIdentities::from_json(body.as_bytes()).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(
                !text.contains("sekrit") && !text.contains("PRIVATE KEY"),
                "{text}"
            );
        }
        let ok = WorkloadIdentities::from_json(identities("", &entry(id)).as_bytes()).unwrap();
        assert!(!format!("{ok:?}").contains("sekrit"));
        assert!(trust_anchors_from_json(br#"{"trustAnchors":{},"trustAnchors":{}}"#).is_err());
    }

    #[test]
    fn parses_trust_anchors_by_bare_domain() {
        let body = format!(
            r#"{{"trustAnchors":{{"a.example":{{"trustAnchorsPem":"{CERT}"}},"spiffe://b.example":{{"trustAnchorsPem":"{CERT}"}}}}}}"#
        );
        let map = parse_trust_anchors(body.as_bytes(), "e").unwrap();
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a.example", "b.example"]);
        for (body, needle) in [
            (
                format!(
                    r#"{{"trustAnchors":{{"a":{{"trustAnchorsPem":"{CERT}"}},"spiffe://a":{{"trustAnchorsPem":"{CERT}"}}}}}}"#
                ),
                "appears twice",
            ),
            (
                format!(
                    r#"{{"trustAnchors":{{"a":{{"trustAnchorsPem":"{CERT}"}},"a":{{"trustAnchorsPem":"{CERT}"}}}}}}"#
                ),
                "duplicate key",
            ),
            (
                r#"{"trustAnchors":{"a":{"trustAnchorsPem":"x"}}}"#.to_owned(),
                "holds no PEM",
            ),
            (
                r#"{"trustAnchors":{"a":{}}}"#.to_owned(),
                "trustAnchorsPem` field is missing",
            ),
            (
                r#"{"trustAnchors":[]}"#.to_owned(),
                "`trustAnchors` field is an array",
            ),
            (
                r#"{"trustAnchors":{"":{}}}"#.to_owned(),
                "not a trust domain",
            ),
        ] {
            let err = parse_trust_anchors(body.as_bytes(), "e").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse);
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn unavailable_reasons_come_from_status_and_body() {
        use WorkloadCertificatesUnavailable as U;
        assert_eq!(U::from_status(412, ""), Some(U::NotConfigured));
        assert_eq!(
            U::from_status(404, "workload certificate feature not enabled"),
            Some(U::FeatureDisabled)
        );
        assert_eq!(U::from_status(404, "Not Found"), None);
        assert_eq!(U::from_status(500, ""), None);
        let err = U::NotConfigured.into_error(412, "e");
        assert_eq!(U::of(&err), Some(U::NotConfigured));
        assert_eq!(err.status(), Some(412));
        assert!(
            err.to_string()
                .contains("workload certificates not configured on this VM")
        );
        assert_eq!(U::of(&Error::http_status(404, "e", "x")), None);
    }
}
