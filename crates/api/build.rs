//! Compiles proto/husk.proto and husk's copy of the CRI, proto/runtime/v1/api.proto (needs
//! `protoc`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure().compile_protos(
        &["proto/husk.proto", "proto/runtime/v1/api.proto"],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto/husk.proto");
    println!("cargo:rerun-if-changed=proto/runtime/v1/api.proto");
    Ok(())
}
