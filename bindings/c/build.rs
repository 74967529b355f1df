//! Gives the shared library its SONAME, `libworkload_auth.so.<MAJOR>`, so programs linked against
//! it keep loading compatible updates and refuse an incompatible one. Cargo names the file after
//! the Rust library (`libworkload_auth_c.so`); install.sh installs it under the SONAME's family
//! (`libworkload_auth.so.VERSION`), so the SONAME is the C name, not cargo's. A 0.x version's ABI may
//! change with the minor version, but the SONAME of 0.x stays `.so.0`: the ABI is declared
//! unstable until 1.0.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        let major = env!("CARGO_PKG_VERSION_MAJOR");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libworkload_auth.so.{major}");
    }
}
