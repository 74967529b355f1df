//! Compiles `proto/workload.proto` with protox (a protobuf compiler in Rust), so building needs no
//! system `protoc`, and generates the tonic client and server from it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/workload.proto");
    let descriptors = protox::compile(["proto/workload.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        // X509SVID carries the private key: its Debug is written by hand, redacted.
        .skip_debug([".X509SVID"])
        .compile_fds(descriptors)?;
    Ok(())
}
