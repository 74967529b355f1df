//! `include/workload_auth.h` is generated from this crate by cbindgen and checked in; this test
//! regenerates it and fails when the checked-in copy differs.
//!
//! After changing the C API, regenerate it with
//!
//! ```text
//! WA_REGENERATE_HEADER=1 cargo test -p workload-auth-c --test header
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

fn generate() -> String {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    // The version macros come from the package version, so a release cannot forget them.
    let version = format!(
        "\n\n/* The version of this header; wa_version() gives the library's at run time. */\n\
         #define WA_VERSION_MAJOR {}\n#define WA_VERSION_MINOR {}\n#define WA_VERSION_PATCH {}\n\
         #define WA_VERSION_STRING \"{}\"",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION"),
    );
    config.after_includes = Some(config.after_includes.unwrap_or_default() + &version);
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen failed to read bindings/c/src");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn checked_in_header_is_current() {
    let header = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../include/workload_auth.h");
    let generated = generate();
    if std::env::var_os("WA_REGENERATE_HEADER").is_some_and(|v| v == "1") {
        std::fs::write(&header, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&header).unwrap_or_default();
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one is a prefix of the other".to_owned(),
                |i| format!("first difference at line {}", i + 1),
            );
        panic!(
            "include/workload_auth.h is stale ({first_difference}); regenerate it with\n    \
             WA_REGENERATE_HEADER=1 cargo test -p workload-auth-c --test header"
        );
    }
}

#[test]
fn header_declares_the_functions_users_depend_on() {
    // Compare with all runs of whitespace made one space, so line wrapping does not matter.
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let header = squash(&generate());
    for declaration in [
        "wa_result wa_credentials_new_default(wa_credentials **out);",
        "wa_result wa_credentials_new_from_file(const char *path, wa_credentials **out);",
        "wa_result wa_credentials_new_from_service_account_json(const char *json, wa_credentials **out);",
        "wa_result wa_credentials_new_from_json_typed(const char *json, const char *allowed_types, wa_credentials **out);",
        "wa_result wa_credentials_access_token(const wa_credentials *c, const char *scopes_or_null, char **out_token, int64_t *out_expires_unix);",
        "wa_result wa_credentials_id_token(const wa_credentials *c, const char *audience, char **out_token);",
        "void wa_credentials_free(wa_credentials *c);",
        "void wa_string_free(char *s);",
        "size_t wa_last_error_message(char *buf, size_t len);",
        "wa_result wa_workload_identity_load(const char *dir_or_null, wa_workload_identity **out);",
        "WA_OK = 0,",
    ] {
        assert!(header.contains(declaration), "missing: {declaration}");
    }
}
