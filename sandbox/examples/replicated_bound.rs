//! The demo job's lower bound on this machine: every replicated sandboxed
//! run of the job, on as many threads as there are cores, with no chain,
//! gateway or network in between. The demo's time divided by this one is
//! the network's overhead.
//!
//! ```text
//! replicated_bound [--hi N] [--tasks N] [--replicas N] [--threads N]
//! ```
//!
//! Defaults are the demo's job (primes below 320,000,000 in 32 tasks, 3
//! replicas each) on this machine's cores. It prints one line of JSON:
//! the wall time of the replicated runs, their summed CPU time, the
//! native one-core count of the same range, and the count.

use compute_jobs::{primes, PRIMES_WASM};
use compute_sandbox::{Outcome, Sandbox, SandboxConfig, TaskLimits};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The job and the machine the bound is taken for.
struct Options {
    hi: u64,
    tasks: u64,
    replicas: u64,
    threads: usize,
}

fn parse() -> Result<Options, String> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut options = Options {
        hi: 320_000_000,
        tasks: 32,
        replicas: 3,
        threads: cores,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value: u64 = args
            .next()
            .ok_or(format!("{flag} needs a value"))?
            .parse()
            .map_err(|_| format!("{flag} needs a whole number"))?;
        match flag.as_str() {
            "--hi" => options.hi = value,
            "--tasks" => options.tasks = value,
            "--replicas" => options.replicas = value,
            "--threads" => options.threads = usize::try_from(value).map_err(|e| e.to_string())?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if options.hi == 0 || options.tasks == 0 || options.replicas == 0 || options.threads == 0 {
        return Err("every value must be at least 1".into());
    }
    Ok(options)
}

/// The demo's inputs: `[0, hi)` cut into `tasks` equal ranges.
fn inputs(hi: u64, tasks: u64) -> Vec<Vec<u8>> {
    let span = hi.div_ceil(tasks);
    (0..tasks)
        .map(|i| {
            let start = i * span;
            primes::encode_input(start.min(hi), (start + span).min(hi))
        })
        .collect()
}

fn count(output: &[u8]) -> u64 {
    u64::from_le_bytes(<[u8; 8]>::try_from(output).unwrap_or_default())
}

fn main() -> Result<(), String> {
    let options = parse()?;
    let inputs = inputs(options.hi, options.tasks);
    let mut config = SandboxConfig::default();
    config.engine.instances_max = u32::try_from(options.threads).unwrap_or(u32::MAX);
    let sandbox = Arc::new(Sandbox::new(config).map_err(|e| e.to_string())?);
    let module = sandbox.prepare(PRIMES_WASM).map_err(|e| e.to_string())?;
    let limits = TaskLimits {
        fuel_max: 5_000_000_000,
        timeout_ms: 600_000,
        ..TaskLimits::default()
    };

    // Every (task, replica) in the order the workers take them, shared out
    // to the threads as each finishes its last run.
    let runs: Vec<usize> = (0..inputs.len())
        .flat_map(|task| std::iter::repeat_n(task, usize::try_from(options.replicas).unwrap_or(1)))
        .collect();
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let (cpu, total) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..options.threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut cpu = Duration::ZERO;
                    let mut counts = Vec::new();
                    loop {
                        let at = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&task) = runs.get(at) else { break };
                        let run_started = Instant::now();
                        let execution = sandbox
                            .run(&module, &inputs[task], &limits)
                            .map_err(|e| e.to_string())?;
                        cpu += run_started.elapsed();
                        match execution.outcome {
                            Outcome::Completed(output) => counts.push((task, count(&output))),
                            other => return Err(format!("task {task} failed: {other:?}")),
                        }
                    }
                    Ok::<_, String>((cpu, counts))
                })
            })
            .collect();
        let mut cpu = Duration::ZERO;
        let mut per_task = vec![None; inputs.len()];
        for thread in threads {
            let (spent, counts) = thread.join().map_err(|_| "a run panicked".to_string())??;
            cpu += spent;
            for (task, counted) in counts {
                if per_task[task].is_some_and(|seen| seen != counted) {
                    return Err(format!("task {task}: replicas disagree"));
                }
                per_task[task] = Some(counted);
            }
        }
        Ok::<_, String>((cpu, per_task.iter().flatten().sum::<u64>()))
    })?;
    let wall = started.elapsed();

    let native_started = Instant::now();
    let native = count(&primes::job(&primes::encode_input(0, options.hi)));
    let native_time = native_started.elapsed();
    if native != total {
        return Err(format!(
            "sandboxed count {total} differs from native {native}"
        ));
    }
    println!(
        "{{\"runs\":{},\"threads\":{},\"replicated_wall_ms\":{},\"replicated_cpu_ms\":{},\"native_one_core_ms\":{},\"count\":{}}}",
        runs.len(),
        options.threads,
        wall.as_millis(),
        cpu.as_millis(),
        native_time.as_millis(),
        total
    );
    Ok(())
}
