//! Compiles `proto/csi.proto` (the CSI v1 Identity and Node services) into tonic server and
//! client code, without a system `protoc`: protox parses the file (and the well-known
//! `google/protobuf/wrappers.proto` it imports) into a descriptor set for tonic-prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/csi.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
