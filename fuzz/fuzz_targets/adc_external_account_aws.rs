//! An `external_account` credentials file whose `credential_source` is of the aws kind,
//! through the public ADC JSON loader (no network; nothing is read, run or fetched at load).
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_fuzz::{SourceKind, load_credentials, shaped};

fuzz_target!(|data: &[u8]| {
    if let Some(json) = shaped(data, "external_account", Some(SourceKind::Aws)) {
        load_credentials(&json);
    }
});
