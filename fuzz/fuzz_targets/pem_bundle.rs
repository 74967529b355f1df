//! PEM bundles: trust-bundle roots (`TrustBundle::from_pem`), an X509-SVID's chain and private
//! key (`X509Svid::from_pem`, `from_combined_pem`), and SPIFFE IDs read from DER certificates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_mtls::{
    CertificateDer, PemObject, TrustBundle, TrustDomain, X509Svid, spiffe_id_of,
};

fuzz_target!(|data: &[u8]| {
    let Some((&which, pem)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(td) = TrustDomain::new("example.org") {
                if let Ok(bundle) = TrustBundle::from_pem(td, pem) {
                    assert!(!bundle.roots().is_empty());
                    assert_eq!(bundle.roots().len(), bundle.anchors().len());
                }
            }
        }
        1 => {
            if let Ok(svid) = X509Svid::from_combined_pem(pem) {
                assert_eq!(spiffe_id_of(svid.leaf()).as_ref(), Some(svid.spiffe_id()));
            }
        }
        2 => {
            if let Ok(svid) = X509Svid::from_pem(pem, pem) {
                assert!(!svid.chain().is_empty());
            }
        }
        _ => {
            // The bytes as one DER certificate, and every PEM certificate in them.
            let _ = spiffe_id_of(&CertificateDer::from(pem));
            for cert in CertificateDer::pem_slice_iter(pem).flatten() {
                let _ = spiffe_id_of(&cert);
            }
        }
    }
});
