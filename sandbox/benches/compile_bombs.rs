//! How long the slowest admissible modules take to prepare: for each class
//! (a limit reached with the most expensive content admission lets through,
//! or a kind of code filled up to the compile-unit budget), the time of
//! `Sandbox::prepare` without caches (validate, instrument, compile, link)
//! and of the first task (instantiation included), against the example job
//! `primes` measured in the same run. Then the data-heavy modules with
//! copy-on-write memory images on and off.
//!
//! Run with `cargo bench --workspace --bench compile_bombs --profile dev`
//! (add a word to run only the classes whose name contains it); it prints
//! Markdown tables. Each figure is the median of 3 runs.

use compute_sandbox::{bombs, ModuleLimits, Sandbox, SandboxConfig, TaskLimits};
use std::time::{Duration, Instant};

const RUNS: usize = 3;

fn sandbox(memory_init_cow: bool) -> Sandbox {
    let mut config = SandboxConfig::default();
    config.engine.instances_max = 4;
    config.engine.memory_init_cow = memory_init_cow;
    Sandbox::new(config).expect("sandbox builds")
}

fn limits() -> TaskLimits {
    TaskLimits {
        fuel_max: 1 << 40,
        ..TaskLimits::default()
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e3)
}

/// Median time to prepare `wasm` from nothing, and of its first task
/// (which instantiates it) on a fresh sandbox; and the task's fuel.
fn measure(sandbox_of: impl Fn() -> Sandbox, wasm: &[u8]) -> (Duration, Duration, u64) {
    let mut prepares = Vec::new();
    let mut firsts = Vec::new();
    let mut fuel = 0;
    for _ in 0..RUNS {
        let sandbox = sandbox_of();
        let started = Instant::now();
        let module = sandbox.prepare(wasm).expect("an admitted module prepares");
        prepares.push(started.elapsed());
        let started = Instant::now();
        let execution = sandbox.run(&module, b"", &limits()).expect("no fault");
        firsts.push(started.elapsed());
        fuel = execution.fuel_used;
    }
    (median(prepares), median(firsts), fuel)
}

/// Median time of a warm task (the module prepared, its first task done).
fn warm_task(sandbox: &Sandbox, wasm: &[u8]) -> Duration {
    let module = sandbox.prepare(wasm).expect("admitted");
    sandbox.run(&module, b"", &limits()).expect("no fault");
    median(
        (0..2_000)
            .map(|_| {
                let started = Instant::now();
                sandbox.run(&module, b"", &limits()).expect("no fault");
                started.elapsed()
            })
            .collect(),
    )
}

fn us(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e6)
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--test`: nothing to check.
    if std::env::args().any(|arg| arg == "--test") {
        return;
    }
    let filter = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .unwrap_or_default();
    let module_limits = ModuleLimits::default();

    let (primes, primes_first, _) = measure(|| sandbox(true), compute_jobs::PRIMES_WASM);
    let primes_units = compute_sandbox::validate_module(compute_jobs::PRIMES_WASM, &module_limits)
        .expect("primes is admitted")
        .compile_units;
    println!("### Slowest admissible module of each class (default `ModuleLimits`)\n");
    println!(
        "Baseline, same run: `primes` ({} bytes, {primes_units} compile units) \
         prepares in {} ms, first task {} ms.\n",
        compute_jobs::PRIMES_WASM.len(),
        ms(primes),
        ms(primes_first),
    );
    println!("| class | bytes | compile units | prepare ms | x primes | first task ms |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut slowest = (String::new(), Duration::ZERO);
    for (name, wasm) in bombs::slowest_admissible_under(&module_limits) {
        if !name.contains(&filter) {
            continue;
        }
        let info = compute_sandbox::validate_module(&wasm, &module_limits)
            .unwrap_or_else(|e| panic!("{name} is refused: {e}"));
        let (prepare, first, _) = measure(|| sandbox(true), &wasm);
        println!(
            "| {name} | {} | {} | {} | {:.1}x | {} |",
            wasm.len(),
            info.compile_units,
            ms(prepare),
            prepare.as_secs_f64() / primes.as_secs_f64(),
            ms(first),
        );
        if prepare > slowest.1 {
            slowest = (name, prepare);
        }
    }
    println!("\nSlowest: {} ({} ms).\n", slowest.0, ms(slowest.1));

    println!("### Copy-on-write memory images on and off\n");
    println!(
        "| module | images on: prepare ms | first task ms | warm task us | fuel \
         | images off: prepare ms | first task ms | warm task us | fuel |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let segments = module_limits.data_segments_max;
    let bytes = module_limits.data_bytes_max;
    let each = bytes / segments;
    for (name, wasm) in [
        ("primes".to_owned(), compute_jobs::PRIMES_WASM.to_vec()),
        (
            format!("{segments} adjacent 16-byte data segments"),
            bombs::data_segments(segments, 16, 16),
        ),
        (
            format!("{segments} sparse 1-byte data segments"),
            bombs::data_segments(segments, 1, 4_096),
        ),
        (
            format!("{bytes} bytes of data in {segments} sparse segments"),
            bombs::data_segments(segments, each, (each * 4).max(4_096)),
        ),
        (
            format!("{bytes} bytes of data in one segment"),
            bombs::data_segments(1, bytes, 0),
        ),
    ] {
        if !name.contains(&filter) && !"cow".contains(&filter) {
            continue;
        }
        let (on, on_first, on_fuel) = measure(|| sandbox(true), &wasm);
        let (off, off_first, off_fuel) = measure(|| sandbox(false), &wasm);
        let on_warm = warm_task(&sandbox(true), &wasm);
        let off_warm = warm_task(&sandbox(false), &wasm);
        println!(
            "| {name} | {} | {} | {} | {on_fuel} | {} | {} | {} | {off_fuel} |",
            ms(on),
            ms(on_first),
            us(on_warm),
            ms(off),
            ms(off_first),
            us(off_warm),
        );
    }
}
