//! The C API's string inputs, called in-process as a C program would: the fuzzed bytes split at
//! NUL bytes into NUL-terminated C strings, given to every `wa_*` function that parses without a
//! network — credentials JSON (generic, allow-listed and typed loaders), verifier policies (`any`, IDs, `td:`, `prefix:`), the peer chain
//! of a verifier (DER) — then the error accessors.
#![no_main]

use std::ffi::{CString, c_char};
use std::ptr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use workload_auth_c::{
    WA_PEER_IS_CLIENT, WA_PEER_IS_SERVER, wa_credentials, wa_credentials_free,
    wa_credentials_new_from_authorized_user_json,
    wa_credentials_new_from_external_account_authorized_user_json,
    wa_credentials_new_from_external_account_json,
    wa_credentials_new_from_impersonated_service_account_json, wa_credentials_new_from_json,
    wa_credentials_new_from_json_typed, wa_credentials_new_from_service_account_json,
    wa_credentials_quota_project_id, wa_credentials_type, wa_last_error_code,
    wa_last_error_message, wa_result, wa_result_name, wa_string_free, wa_verifier,
    wa_verifier_free, wa_verifier_new, wa_verifier_verify, wa_workload_identity,
    wa_workload_identity_load,
};
use workload_auth_emulator::ca::TrustDomainCa;
use workload_auth_emulator::credentials_writer::{CredentialsContents, CredentialsDirWriter};

const TD: &str = "fuzz.example";

/// A workload identity loaded (once) from a credentials directory the emulator's CA wrote.
struct Identity(*mut wa_workload_identity);
// SAFETY: `wa_workload_identity` is documented thread-safe; the handle lives for the process.
unsafe impl Send for Identity {}
// SAFETY: as above.
unsafe impl Sync for Identity {}

fn identity() -> *const wa_workload_identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY
        .get_or_init(|| {
            let parent = std::env::temp_dir().join(format!("wa-fuzz-c-api-{}", std::process::id()));
            let ca = TrustDomainCa::new(TD).expect("a CA");
            let svid = ca
                .issue(&format!("spiffe://{TD}/ns/fuzz/sa/me"))
                .expect("an SVID");
            let writer = CredentialsDirWriter::new(&parent);
            writer
                .write(&CredentialsContents::new(&svid, &ca, []))
                .expect("a credentials directory");
            let dir =
                CString::new(writer.link_path().to_string_lossy().into_owned()).expect("a path");
            let mut out = ptr::null_mut();
            // SAFETY: a NUL-terminated string and a writable out pointer.
            let rc = unsafe { wa_workload_identity_load(dir.as_ptr(), &mut out) };
            assert!(
                matches!(rc, wa_result::WA_OK) && !out.is_null(),
                "the fixture loads"
            );
            Identity(out)
        })
        .0
}

/// Reads the thread's last error as a C program would, checking the accessors never fail.
fn last_error() {
    let mut buf = [0 as c_char; 64];
    // SAFETY: a writable buffer of `buf.len()` bytes.
    let needed = unsafe { wa_last_error_message(buf.as_mut_ptr(), buf.len()) };
    if needed > 0 {
        assert_eq!(
            buf[buf.len().min(needed) - 1],
            0,
            "the message is NUL-terminated"
        );
    }
    let code = wa_last_error_code();
    assert!(!wa_result_name(code as i32).is_null());
}

/// Uses and frees credentials a loader made, or checks its failure left nothing behind.
fn check_credentials(rc: wa_result, creds: *mut wa_credentials) {
    if matches!(rc, wa_result::WA_OK) {
        assert!(!creds.is_null());
        // SAFETY: a live handle.
        assert!(!unsafe { wa_credentials_type(creds) }.is_null());
        let mut project = ptr::null_mut();
        // SAFETY: a live handle and a writable out pointer; the string is ours to free.
        unsafe {
            // Either result is fine here: on failure `project` stays NULL, which frees as nothing.
            let _ = wa_credentials_quota_project_id(creds, &mut project);
            wa_string_free(project);
            wa_credentials_free(creds);
        }
    } else {
        assert!(creds.is_null());
        last_error();
    }
}

fuzz_target!(|data: &[u8]| {
    let strings: Vec<CString> = data
        .split(|&b| b == 0)
        .filter_map(|s| CString::new(s).ok())
        .collect();
    let Some(first) = strings.first() else {
        return;
    };

    // Credentials from JSON, by the generic, allow-listed and typed loaders: each parses and
    // sends nothing until a token is asked for. The second string is the type allow-list.
    let allowed = strings.get(1).map_or(c"".as_ptr(), |s| s.as_ptr());
    type Loader = unsafe extern "C" fn(*const c_char, *mut *mut wa_credentials) -> wa_result;
    let loaders: [Loader; 6] = [
        wa_credentials_new_from_json,
        wa_credentials_new_from_service_account_json,
        wa_credentials_new_from_authorized_user_json,
        wa_credentials_new_from_impersonated_service_account_json,
        wa_credentials_new_from_external_account_json,
        wa_credentials_new_from_external_account_authorized_user_json,
    ];
    for loader in loaders {
        let mut creds: *mut wa_credentials = ptr::null_mut();
        // SAFETY: a NUL-terminated string and a writable out pointer.
        let rc = unsafe { loader(first.as_ptr(), &mut creds) };
        check_credentials(rc, creds);
    }
    let mut creds: *mut wa_credentials = ptr::null_mut();
    // SAFETY: NUL-terminated strings and a writable out pointer.
    let rc = unsafe { wa_credentials_new_from_json_typed(first.as_ptr(), allowed, &mut creds) };
    check_credentials(rc, creds);

    // Every string as one verifier policy list; then the last string's bytes as a peer's DER leaf.
    let policies: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    let role = if data.len() % 2 == 0 {
        WA_PEER_IS_SERVER
    } else {
        WA_PEER_IS_CLIENT
    };
    let mut verifier: *mut wa_verifier = ptr::null_mut();
    // SAFETY: a live identity, `policies.len()` NUL-terminated strings, a writable out pointer.
    let rc = unsafe {
        wa_verifier_new(
            identity(),
            role,
            policies.as_ptr(),
            policies.len(),
            &mut verifier,
        )
    };
    if !matches!(rc, wa_result::WA_OK) {
        assert!(verifier.is_null());
        last_error();
        return;
    }
    let der = strings.last().map_or(&b""[..], |s| s.as_bytes());
    let ders = [der.as_ptr()];
    let lens = [der.len()];
    let mut id = ptr::null_mut();
    // SAFETY: one certificate of `lens[0]` readable bytes; a live verifier; a writable out pointer.
    let rc = unsafe { wa_verifier_verify(verifier, ders.as_ptr(), lens.as_ptr(), 1, &mut id) };
    // Fuzzed bytes are never a certificate the fixture's CA signed.
    assert!(!matches!(rc, wa_result::WA_OK));
    last_error();
    // SAFETY: our handles, freed once.
    unsafe {
        wa_string_free(id);
        wa_verifier_free(verifier);
    }
});
