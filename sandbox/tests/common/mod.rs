//! Helpers shared by the integration tests.

#![allow(dead_code)] // each test binary uses a subset

use compute_jobs::{hashsearch, mandelbrot, matmul, nbody, primes};
use compute_sandbox::{Execution, Sandbox, SandboxConfig, TaskLimits};

/// A sandbox with a small pool, so that parallel tests stay light.
pub fn sandbox() -> Sandbox {
    let mut config = SandboxConfig::default();
    config.engine.instances_max = 8;
    Sandbox::new(config).expect("sandbox builds")
}

/// Limits for tests: enough fuel for the examples, a short watchdog.
pub fn limits() -> TaskLimits {
    TaskLimits {
        fuel_max: 20_000_000_000,
        timeout_ms: 30_000,
        ..TaskLimits::default()
    }
}

/// A module with the job ABI around a `run` body (in WAT), plus extra items.
pub fn abi_module(run_body: &str, extra: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
            (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) i32.const 1024)
            (func (export "run") (param i32 i32) (result i64) {run_body})
            {extra})"#
    );
    wat::parse_str(&text).expect("test module is valid WAT")
}

/// Prepares and runs a module, panicking on worker faults.
pub fn run(sandbox: &Sandbox, wasm: &[u8], input: &[u8], limits: &TaskLimits) -> Execution {
    let module = sandbox.prepare(wasm).expect("module is admitted");
    sandbox
        .run(&module, input, limits)
        .expect("no worker fault")
}

/// One input per example, small enough for a debug test run: name, module,
/// native `run` and input.
pub fn inputs() -> Vec<(
    &'static str,
    &'static [u8],
    compute_jobs::NativeJob,
    Vec<u8>,
)> {
    let a: Vec<i32> = (0..32 * 32).map(|i| (i * 7919 % 201) - 100).collect();
    let b: Vec<i32> = (0..32 * 32).map(|i| (i * 104_729 % 199) - 99).collect();
    vec![
        (
            "primes",
            compute_jobs::PRIMES_WASM,
            primes::job,
            primes::encode_input(1_000_000, 1_100_000),
        ),
        (
            "mandelbrot",
            compute_jobs::MANDELBROT_WASM,
            mandelbrot::job,
            mandelbrot::Tile {
                x0: -2.0,
                y0: -1.25,
                step: 0.05,
                width: 64,
                height: 50,
                iterations_max: 200,
            }
            .encode(),
        ),
        (
            "matmul",
            compute_jobs::MATMUL_WASM,
            matmul::job,
            matmul::encode_input(32, &a, &b),
        ),
        (
            "nbody",
            compute_jobs::NBODY_WASM,
            nbody::job,
            nbody::encode_input(20, 0.01, &nbody::lattice(16)),
        ),
        (
            "hashsearch",
            compute_jobs::HASHSEARCH_WASM,
            hashsearch::job,
            hashsearch::Search {
                difficulty_bits: 10,
                nonce_start: 0,
                nonce_count: 1 << 20,
                prefix: b"compute",
            }
            .encode(),
        ),
    ]
}
