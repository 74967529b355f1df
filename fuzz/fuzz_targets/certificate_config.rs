//! `certificate_config.json` (the workload certificate's configuration), read from a real file
//! as the X.509 credential source and `GOOGLE_API_USE_CLIENT_CERTIFICATE` read it.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use workload_auth_adc::fuzzing::certificate_config;
use workload_auth_fuzz::{assert_no_secret_in, shown};

fn config_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // Memory-backed when the system has it: one file rewritten per input.
        let shm = PathBuf::from("/dev/shm");
        let dir = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        dir.join(format!(
            "wa-fuzz-certificate-config-{}.json",
            std::process::id()
        ))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = config_path();
    assert_no_secret_in(data, |data| {
        if std::fs::write(path, data).is_err() {
            return String::new();
        }
        shown(&certificate_config(path))
    });
});
