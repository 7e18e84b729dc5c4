//! Compiles proto/husk.proto (needs `protoc`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure().compile_protos(&["proto/husk.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/husk.proto");
    Ok(())
}
