//! Any bytes as a credentials file, through the public generic ADC JSON loader (no network).
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_fuzz::load_credentials;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = std::str::from_utf8(data) {
        load_credentials(json);
    }
});
