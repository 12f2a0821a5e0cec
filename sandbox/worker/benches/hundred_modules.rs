//! Resident memory of a worker's sandbox fed a hundred distinct modules: the
//! slowest admissible module of every class (`compute_sandbox::bombs`) and
//! variants of the example jobs made distinct by a custom section, a
//! hundred in all, each prepared and run once per round on a fresh thread,
//! two at a time (as a worker with the default `--capacity 2` runs tasks),
//! through one `Sandbox` configured like the worker's (on-disk artifact
//! cache, two pool slots, the default memory cache). Prints, per round, the
//! modules and bytes in the memory cache and the process's resident memory
//! now (`VmRSS`) and at its peak (`VmHWM`).
//!
//! Run with `cargo bench --workspace --bench hundred_modules --profile dev`.
//! Options after `--`:
//! `--arenas N` caps glibc's malloc arenas at N, as the worker does with 2
//! (the default here); `--arenas default` keeps glibc's default;
//! `--cache-bytes-max N` sets the memory cache's byte budget, `unbounded`
//! for the count bound alone (as before the budget);
//! `--capacity N` runs N tasks at once with N pool slots (default 2, the
//! worker's default); `--rounds N` (default 3).

use compute_sandbox::{bombs, ModuleLimits, Sandbox, SandboxConfig, TaskLimits};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Modules in a round.
const MODULES: usize = 100;
/// Stack of a task thread, as in the worker.
const TASK_THREAD_STACK_BYTES: usize = 8 * 1024 * 1024;

/// A line of `/proc/self/status`, in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// `wasm` with a custom section carrying `n` appended: a distinct module id,
/// the same code.
fn variant(wasm: &[u8], n: u32) -> Vec<u8> {
    let name = b"variant";
    let mut content = vec![name.len() as u8];
    content.extend_from_slice(name);
    content.extend_from_slice(&n.to_le_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    out.push(content.len() as u8);
    out.extend_from_slice(&content);
    out
}

/// The value of option `name`, if given.
fn option(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|at| args.get(at + 1).cloned())
}

/// Caps glibc's malloc arenas, as the worker does at startup.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas(arenas: i32) {
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` only sets a tuning parameter of glibc's allocator;
    // it takes plain integers, and is called before any other thread exists.
    let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    assert_eq!(set, 1, "glibc refused M_ARENA_MAX {arenas}");
}

/// Other allocators need no tuning.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas(_arenas: i32) {}

/// glibc malloc's bytes in use and bytes held free, over all arenas, in MiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn malloc_mib() -> (f64, f64) {
    #[allow(unsafe_code)]
    // SAFETY: `mallinfo2` only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    (mib(info.uordblks + info.hblkhd), mib(info.fordblks))
}

/// Not measured with other allocators.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_mib() -> (f64, f64) {
    (0.0, 0.0)
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--test`: nothing to check.
    if std::env::args().any(|arg| arg == "--test") {
        return;
    }
    let arenas = option("--arenas").unwrap_or_else(|| "2".to_owned());
    if arenas != "default" {
        limit_malloc_arenas(
            arenas
                .parse()
                .expect("--arenas takes a number or `default`"),
        );
    }
    let rounds: usize = option("--rounds").map_or(3, |n| n.parse().expect("--rounds N"));
    let capacity: usize = option("--capacity").map_or(2, |n| n.parse().expect("--capacity N"));
    let mut config = SandboxConfig::default();
    match option("--cache-bytes-max").as_deref() {
        None => {}
        Some("unbounded") => config.memory_cache_bytes_max = usize::MAX,
        Some(n) => config.memory_cache_bytes_max = n.parse().expect("--cache-bytes-max N"),
    }
    let cache = tempfile::tempdir().expect("a temporary directory");
    config.cache_dir = Some(cache.path().join("compiled"));
    config.engine.instances_max = u32::try_from(capacity).expect("a small capacity");
    let budget = config.memory_cache_bytes_max;
    let sandbox = Sandbox::new(config).expect("sandbox builds");

    let mut modules = bombs::slowest_admissible_under(&ModuleLimits::default())
        .into_iter()
        .map(|(_, wasm)| wasm)
        .collect::<Vec<_>>();
    let bomb_count = modules.len();
    let mut n = 0u32;
    while modules.len() < MODULES {
        let (_, wasm, _) = compute_jobs::ALL[n as usize % compute_jobs::ALL.len()];
        modules.push(variant(wasm, n));
        n += 1;
    }
    let limits = TaskLimits::default();
    let started_mib = status_mib("VmRSS:");

    println!(
        "{MODULES} modules ({bomb_count} compile bombs, {} job variants), {capacity} at a time, \
         malloc arenas: {arenas}, memory cache: {} modules, {} bytes",
        MODULES - bomb_count,
        sandbox.config().memory_cache_modules_max,
        if budget == usize::MAX {
            "unbounded".to_owned()
        } else {
            budget.to_string()
        },
    );
    println!("start: VmRSS {started_mib:.1} MiB (modules generated)\n");
    println!(
        "| round | seconds | compiles | cached modules | cached MiB | VmRSS MiB | VmHWM MiB \
         | malloc in use MiB | malloc free MiB |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut faults = 0usize;
    let largest = AtomicUsize::new(0);
    for round in 1..=rounds {
        let began = Instant::now();
        for pair in modules.chunks(capacity) {
            faults += std::thread::scope(|scope| {
                let threads: Vec<_> = pair
                    .iter()
                    .map(|wasm| {
                        std::thread::Builder::new()
                            .stack_size(TASK_THREAD_STACK_BYTES)
                            .spawn_scoped(scope, || {
                                let module =
                                    sandbox.prepare(wasm).expect("admitted modules prepare");
                                largest.fetch_max(module.cache_bytes(), Ordering::Relaxed);
                                sandbox.run(&module, b"", &limits).is_err()
                            })
                            .expect("a task thread starts")
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|thread| thread.join().expect("no panic"))
                    .filter(|fault| *fault)
                    .count()
            });
        }
        let (cached, bytes) = sandbox.memory_cache_usage();
        let (in_use, free) = malloc_mib();
        println!(
            "| {round} | {:.1} | {} | {cached} | {:.1} | {:.1} | {:.1} | {in_use:.1} | {free:.1} |",
            began.elapsed().as_secs_f64(),
            sandbox.compiles(),
            bytes as f64 / (1024.0 * 1024.0),
            status_mib("VmRSS:"),
            status_mib("VmHWM:"),
        );
    }
    println!(
        "\nlargest module in the cache: {:.2} MiB; worker faults: {faults}",
        largest.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
    );
}
