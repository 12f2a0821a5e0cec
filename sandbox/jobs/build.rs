//! Compiles the example jobs to `wasm32-unknown-unknown` so that tests and
//! benchmarks can embed them.
//!
//! The nested cargo uses a target directory of its own (beside the outer
//! one), so it never waits on the lock the outer build holds, and it keeps
//! its cache between runs: a second build only checks fingerprints.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Job crates compiled to wasm, by package name.
const JOBS: [&str; 5] = [
    "job-primes",
    "job-mandelbrot",
    "job-matmul",
    "job-nbody",
    "job-hashsearch",
];

const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let sandbox_dir = manifest_dir
        .parent()
        .expect("sandbox/jobs has a parent")
        .to_path_buf();
    let workspace_manifest = sandbox_dir
        .parent()
        .expect("sandbox has a parent")
        .join("Cargo.toml");

    for watched in ["guest/src", "guest/Cargo.toml"] {
        println!(
            "cargo:rerun-if-changed={}",
            sandbox_dir.join(watched).display()
        );
    }
    for job in JOBS {
        let dir = manifest_dir.join(job.trim_start_matches("job-"));
        println!("cargo:rerun-if-changed={}", dir.join("src").display());
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("Cargo.toml").display()
        );
    }

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    check_wasm_target_installed(&rustc);

    let target_dir = nested_target_dir(&out_dir);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--manifest-path")
        .arg(&workspace_manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    for job in JOBS {
        command.arg("-p").arg(job);
    }
    // The outer build's settings (flags meant for the host, a clippy or
    // coverage wrapper, its target directory) must not leak into the guest
    // build; registry and network settings may.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let keep = key == "CARGO_HOME"
            || key.starts_with("CARGO_NET_")
            || key.starts_with("CARGO_HTTP_")
            || key.starts_with("CARGO_REGISTRIES_")
            || key.starts_with("CARGO_REGISTRY_");
        let host_only = key.starts_with("CARGO")
            || key.starts_with("RUSTC_")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS";
        if host_only && !keep {
            command.env_remove(key.as_ref());
        }
    }
    // SIMD128 lets LLVM vectorise loops as it does natively; the engine
    // admits fixed-width SIMD (deterministic, NaNs canonicalised).
    command.env(
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
        "-Ctarget-feature=+simd128",
    );
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("could not start cargo for the wasm jobs: {error}"));
    assert!(
        status.success(),
        "building the example jobs for {WASM_TARGET} failed ({status}); if the target is missing, run `rustup target add {WASM_TARGET}`"
    );

    let artifacts = target_dir.join(WASM_TARGET).join("release");
    for job in JOBS {
        let file = format!("{}.wasm", job.replace('-', "_"));
        let from = artifacts.join(&file);
        let to = out_dir.join(&file);
        std::fs::copy(&from, &to).unwrap_or_else(|error| {
            panic!("copying {} to {}: {error}", from.display(), to.display())
        });
    }
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("cargo sets {key} for build scripts"))
}

/// Fails with the command that fixes it when the standard library for
/// `wasm32-unknown-unknown` is not installed.
fn check_wasm_target_installed(rustc: &str) {
    let output = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .unwrap_or_else(|error| panic!("could not run {rustc}: {error}"));
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let target_lib = Path::new(&sysroot)
        .join("lib")
        .join("rustlib")
        .join(WASM_TARGET);
    assert!(
        target_lib.is_dir(),
        "the Rust standard library for {WASM_TARGET} is not installed (looked in {}); run `rustup target add {WASM_TARGET}`",
        target_lib.display()
    );
}

/// `<outer target dir>/wasm-jobs`: `OUT_DIR` is
/// `<target dir>[/<triple>]/<profile>/build/<package>-<hash>/out`, and one
/// cache shared by every profile and by `check`, `clippy` and `test` keeps
/// the nested build fast.
fn nested_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .map(|target| target.join("wasm-jobs"))
        .unwrap_or_else(|| out_dir.join("wasm-jobs"))
}
