//! Sandbox benchmarks: kernels in wasm against the same Rust compiled
//! natively (in the same run), the cost of fuel metering and NaN
//! canonicalisation, per-task overhead, and cold against warm start.
//!
//! Run with `cargo bench -p compute-sandbox --bench sandbox`; it prints
//! Markdown tables. Timing is done here rather than with criterion because
//! the per-task figures need a p99 and every ratio needs both sides measured
//! in one process.

use compute_jobs::{hashsearch, mandelbrot, matmul, nbody, primes};
use compute_sandbox::{Outcome, Sandbox, SandboxConfig, TaskLimits};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Durations of `runs` calls of `f` (after one warm-up call), sorted.
fn sample(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    f();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    times.sort_unstable();
    times
}

fn median(times: &[Duration]) -> Duration {
    times[times.len() / 2]
}

fn p99(times: &[Duration]) -> Duration {
    times[(times.len() * 99 / 100).min(times.len() - 1)]
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1e3)
}

fn us(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e6)
}

fn sandbox(fuel: bool, nan_canonicalization: bool) -> Sandbox {
    let mut config = SandboxConfig::default();
    config.engine.fuel = fuel;
    config.engine.nan_canonicalization = nan_canonicalization;
    Sandbox::new(config).expect("sandbox builds")
}

fn limits() -> TaskLimits {
    TaskLimits {
        fuel_max: u64::MAX / 4,
        timeout_ms: 600_000,
        ..TaskLimits::default()
    }
}

type Kernel = (
    &'static str,
    &'static [u8],
    fn(&[u8]) -> Vec<u8>,
    Vec<u8>,
    bool,
);

fn kernels() -> Vec<Kernel> {
    let n = 192u32;
    let cells = (n * n) as i32;
    let a: Vec<i32> = (0..cells).map(|i| i.wrapping_mul(7919) % 1000).collect();
    let b: Vec<i32> = (0..cells).map(|i| i.wrapping_mul(104_729) % 1000).collect();
    vec![
        (
            "primes (integer)",
            compute_jobs::PRIMES_WASM,
            primes::job,
            primes::encode_input(0, 20_000_000),
            false,
        ),
        (
            "matmul 192 (integer)",
            compute_jobs::MATMUL_WASM,
            matmul::job,
            matmul::encode_input(n, &a, &b),
            false,
        ),
        (
            "hashsearch (integer, sha3)",
            compute_jobs::HASHSEARCH_WASM,
            hashsearch::job,
            hashsearch::Search {
                difficulty_bits: 64,
                nonce_start: 0,
                nonce_count: 100_000,
                prefix: b"bench",
            }
            .encode(),
            false,
        ),
        (
            "mandelbrot 256x256 (float)",
            compute_jobs::MANDELBROT_WASM,
            mandelbrot::job,
            mandelbrot::Tile {
                x0: -2.0,
                y0: -1.25,
                step: 2.5 / 256.0,
                width: 256,
                height: 256,
                iterations_max: 500,
            }
            .encode(),
            true,
        ),
        (
            "nbody 256x10 (float)",
            compute_jobs::NBODY_WASM,
            nbody::job,
            nbody::encode_input(10, 0.001, &nbody::lattice(256)),
            true,
        ),
    ]
}

fn run_median(sandbox: &Sandbox, wasm: &[u8], input: &[u8], runs: usize) -> Duration {
    let module = sandbox.prepare(wasm).expect("admitted");
    let limits = limits();
    median(&sample(runs, || {
        let execution = sandbox
            .run(&module, black_box(input), &limits)
            .expect("no fault");
        assert!(matches!(execution.outcome, Outcome::Completed(_)));
    }))
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--test`: nothing to check.
    if std::env::args().any(|arg| arg == "--test") {
        return;
    }
    let runs = 7;
    let metered = sandbox(true, true);
    let unmetered = sandbox(false, true);
    let raw = sandbox(false, false);

    println!("### Kernels: wasm against native\n");
    println!("| kernel | native ms | wasm ms (fuel, NaN canon.) | native/wasm | wasm ms, no fuel | fuel overhead | wasm ms, no fuel, no canon. | canon. overhead |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, wasm, native, input, float) in kernels() {
        let native_time = median(&sample(runs, || {
            black_box(native(black_box(&input)));
        }));
        let wasm_time = run_median(&metered, wasm, &input, runs);
        let no_fuel = run_median(&unmetered, wasm, &input, runs);
        let (no_canon, canon_overhead) = if float {
            let time = run_median(&raw, wasm, &input, runs);
            (
                ms(time),
                format!(
                    "{:+.0}%",
                    (no_fuel.as_secs_f64() / time.as_secs_f64() - 1.0) * 100.0
                ),
            )
        } else {
            ("-".to_owned(), "-".to_owned())
        };
        println!(
            "| {name} | {} | {} | {:.2}x | {} | {:+.0}% | {no_canon} | {canon_overhead} |",
            ms(native_time),
            ms(wasm_time),
            native_time.as_secs_f64() / wasm_time.as_secs_f64(),
            ms(no_fuel),
            (wasm_time.as_secs_f64() / no_fuel.as_secs_f64() - 1.0) * 100.0,
        );
    }

    println!(
        "\n### Per-task overhead, warm (trivial job: instantiate, alloc, copy in, run, copy out)\n"
    );
    println!("| job | input bytes | median us | p99 us |");
    println!("| --- | --- | --- | --- |");
    let trivial = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) i32.const 1024)
            (func (export "run") (param i32 i32) (result i64)
              (i64.or (i64.const 0x40000000000) (i64.extend_i32_u (local.get 1)))))"#,
    )
    .expect("valid WAT");
    let limits = limits();
    for (name, wasm) in [
        ("hand-written (1 page)", &trivial[..]),
        (
            "Rust guest SDK (primes.wasm, primes below 10)",
            compute_jobs::PRIMES_WASM,
        ),
    ] {
        let module = metered.prepare(wasm).expect("admitted");
        let inputs = if name.starts_with("Rust") {
            vec![primes::encode_input(0, 10)]
        } else {
            vec![Vec::new(), vec![7u8; 1024], vec![7u8; 60 * 1024]]
        };
        for input in inputs {
            let input_len = input.len();
            let times = sample(20_000, || {
                black_box(
                    metered
                        .run(&module, black_box(&input), &limits)
                        .expect("no fault"),
                );
            });
            println!(
                "| {name} | {input_len} | {} | {} |",
                us(median(&times)),
                us(p99(&times))
            );
        }
    }

    println!("\n### Cold start (compile) against warm start (cached)\n");
    println!("| module | bytes | compile ms | load from disk cache ms | memory cache by id us |");
    println!("| --- | --- | --- | --- | --- |");
    let dir = std::env::temp_dir().join(format!("compute-sandbox-bench-{}", std::process::id()));
    for (name, wasm, _, _, _) in kernels() {
        let compile = median(&sample(5, || {
            black_box(metered.prepare_uncached(wasm).expect("admitted"));
        }));
        let config = SandboxConfig {
            cache_dir: Some(dir.clone()),
            ..SandboxConfig::default()
        };
        let writer = Sandbox::new(config.clone()).expect("sandbox builds");
        writer.prepare(wasm).expect("admitted");
        drop(writer);
        // Only the `prepare` call is timed: a fresh sandbox each time so
        // that the memory cache is empty and the artifact comes from disk.
        let mut loads: Vec<Duration> = (0..5)
            .map(|_| {
                let reader = Sandbox::new(config.clone()).expect("sandbox builds");
                let started = Instant::now();
                black_box(reader.prepare(wasm).expect("admitted"));
                started.elapsed()
            })
            .collect();
        loads.sort_unstable();
        let disk = median(&loads);
        let id = metered.prepare(wasm).expect("admitted").id();
        let memory = median(&sample(1000, || {
            black_box(metered.cached(id).expect("cached"));
        }));
        println!(
            "| {name} | {} | {} | {} | {} |",
            wasm.len(),
            ms(compile),
            ms(disk),
            us(memory)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
