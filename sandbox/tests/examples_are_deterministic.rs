//! Determinism: each example job gives byte-identical output and identical
//! fuel across runs and across fresh engines, and the n-body witness's
//! output hash is pinned so that a different result on another machine
//! shows up here.

mod common;

use common::{limits, sandbox};
use compute_jobs::nbody;
use compute_sandbox::{Execution, Sandbox, SandboxConfig};

fn run_all(sandbox: &Sandbox) -> Vec<Execution> {
    common::inputs()
        .into_iter()
        .map(|(_, wasm, _, input)| {
            let module = sandbox.prepare(wasm).unwrap();
            sandbox.run(&module, &input, &limits()).unwrap()
        })
        .collect()
}

#[test]
fn repeated_runs_and_fresh_engines_agree_on_bytes_and_fuel() {
    let first = sandbox();
    let reference = run_all(&first);
    for _ in 0..3 {
        assert_eq!(run_all(&first), reference, "a repeated run differs");
    }
    for _ in 0..2 {
        assert_eq!(run_all(&sandbox()), reference, "a fresh engine differs");
    }
    // A cold compile through the disk cache and a load from it agree too.
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..SandboxConfig::default()
    };
    let compiled = run_all(&Sandbox::new(config.clone()).unwrap());
    let loaded = run_all(&Sandbox::new(config).unwrap());
    assert_eq!(compiled, reference);
    assert_eq!(loaded, reference);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        reference.len(),
        "one artifact per module"
    );
}

/// The n-body witness: 64 bodies, 50 steps. Only `+ - * / sqrt`, so the
/// bits are fixed by IEEE 754 on any machine and any compiler.
#[test]
fn nbody_output_hash_is_pinned() {
    let sandbox = sandbox();
    let module = sandbox.prepare(compute_jobs::NBODY_WASM).unwrap();
    let input = nbody::encode_input(50, 0.001, &nbody::lattice(64));
    let execution = sandbox.run(&module, &input, &limits()).unwrap();
    let output = execution.output().expect("completes");
    assert_eq!(output, nbody::job(&input), "wasm and native differ");
    assert_eq!(
        hex(&compute_proto::sha3_256(output)),
        PINNED_NBODY_OUTPUT_SHA3
    );
}

const PINNED_NBODY_OUTPUT_SHA3: &str =
    "88f5de75954f87521ed33047d8dfe1deebd2977432fc208e740def5c2767641c";

/// A hand-written reference job, independent of any Rust compiler: its fuel
/// count pins the cost table and wasmtime's metering. A change here is a
/// protocol change (a new `RUNTIME_ID`).
#[test]
fn reference_job_fuel_is_pinned() {
    let sandbox = sandbox();
    let wasm = common::abi_module(
        r#"(local $i i32) (local $acc i32)
           (loop $l
             (local.set $acc (i32.add (local.get $acc) (i32.div_u (local.get $i) (i32.const 3))))
             (local.set $i (i32.add (local.get $i) (i32.const 1)))
             (br_if $l (i32.lt_u (local.get $i) (i32.const 10000))))
           (i32.store (i32.const 0) (local.get $acc))
           (memory.fill (i32.const 16) (i32.const 0) (i32.const 1000))
           (drop (call $leaf))
           i64.const 4"#,
        "(func $leaf (result i32) i32.const 1)",
    );
    let execution = common::run(&sandbox, &wasm, b"abc", &limits());
    assert_eq!(execution.output(), Some(&16_661_667u32.to_le_bytes()[..]));
    assert_eq!(execution.fuel_used, PINNED_REFERENCE_FUEL);
    assert_eq!(
        compute_sandbox::RUNTIME_ID,
        "wasmtime-48.0.8/costs-1/depth-1/instantiate-1"
    );
}

const PINNED_REFERENCE_FUEL: u64 = 171_032;

/// Instantiation is priced by the active data it holds, one fuel per byte,
/// with copy-on-write memory images on or off: the reference job with 100
/// bytes of data costs exactly 100 more, and passive data costs nothing
/// until it is used.
#[test]
fn instantiation_fuel_is_pinned() {
    let body = "(i32.store (i32.const 0) (i32.load (i32.const 2048))) i64.const 4";
    let without = common::abi_module(body, "");
    let active = common::abi_module(
        body,
        &format!(r#"(data (i32.const 2048) "{}")"#, "x".repeat(100)),
    );
    let passive = common::abi_module(body, &format!(r#"(data "{}")"#, "x".repeat(100)));
    for memory_init_cow in [true, false] {
        let mut config = SandboxConfig::default();
        config.engine.instances_max = 2;
        config.engine.memory_init_cow = memory_init_cow;
        let sandbox = Sandbox::new(config).unwrap();
        let base = common::run(&sandbox, &without, b"", &limits());
        let data = common::run(&sandbox, &active, b"", &limits());
        assert_eq!(base.output(), Some(&[0u8; 4][..]));
        assert_eq!(data.output(), Some(&b"xxxx"[..]));
        assert_eq!(
            base.fuel_used, PINNED_TRIVIAL_FUEL,
            "images {memory_init_cow}"
        );
        assert_eq!(
            data.fuel_used,
            PINNED_TRIVIAL_FUEL + 100,
            "images {memory_init_cow}"
        );
        assert_eq!(
            common::run(&sandbox, &passive, b"", &limits()).fuel_used,
            PINNED_TRIVIAL_FUEL
        );
    }
}

const PINNED_TRIVIAL_FUEL: u64 = 8;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
