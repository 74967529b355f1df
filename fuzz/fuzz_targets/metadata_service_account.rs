//! The metadata server's `service-accounts/default/?recursive=true` answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use workload_auth_metadata::fuzzing::service_account;

fuzz_target!(|data: &[u8]| {
    let _ = service_account(data);
});
