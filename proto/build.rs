//! Compiles `proto/` with the pure-Rust `protox` compiler (no system `protoc`)
//! and generates prost messages and the tonic gateway service.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/compute/v1/tx.proto",
        "proto/compute/v1/state.proto",
        "proto/compute/v1/gateway.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept for gRPC server reflection.
    std::fs::write(
        out_dir.join("compute_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Parameters are also read from genesis JSON; unknown names are
        // refused so that a typo never silently falls back to a default.
        .type_attribute(
            "compute.v1.Params",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(deny_unknown_fields)]",
        )
        .compile_fds(fds)?;
    Ok(())
}
