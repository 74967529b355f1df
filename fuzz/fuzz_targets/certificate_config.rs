//! `certificate_config.json` (the workload certificate's configuration), read from a real file
//! as the X.509 credential source and `GOOGLE_API_USE_CLIENT_CERTIFICATE` read it.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use workload_auth_adc::fuzzing::certificate_config;
use workload_auth_fuzz::assert_no_secret_in;

fn config_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!(
            "wa-fuzz-certificate-config-{}.json",
            std::process::id()
        ))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = config_path();
    if std::fs::write(path, data).is_err() {
        return;
    }
    if let Err(error) = certificate_config(path) {
        assert_no_secret_in(data, &format!("{error} {error:?}"));
    }
});
