//! A `authorized_user` credentials file, through the public ADC JSON loader (no network).
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_fuzz::{load_credentials, shaped};

fuzz_target!(|data: &[u8]| {
    if let Some(json) = shaped(data, "authorized_user", None) {
        load_credentials(&json);
    }
});
