//! Compiles `proto/cri.proto` (our trimmed CRI API) into a tonic client, without a system
//! `protoc`: protox parses the file into a descriptor set that tonic-prost-build turns into Rust.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/cri.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
