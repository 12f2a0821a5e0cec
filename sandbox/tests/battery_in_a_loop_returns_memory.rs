//! The hostile battery run many times in one sandbox: resident memory must
//! not grow with the number of rounds.

mod common;

use common::{abi_module, limits, sandbox};
use compute_sandbox::{Failure, Outcome, TaskLimits};

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

#[test]
fn hostile_modules_in_a_loop_leave_no_growth() {
    let sandbox = sandbox();
    let cases: Vec<(Vec<u8>, TaskLimits, Failure)> = vec![
        (
            abi_module("(loop br 0) i64.const 0", ""),
            TaskLimits {
                fuel_max: 200_000,
                ..limits()
            },
            Failure::OutOfFuel,
        ),
        (
            abi_module(
                "(loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) i64.const 0",
                "",
            ),
            TaskLimits {
                memory_bytes_max: 32 * 1024 * 1024,
                ..limits()
            },
            Failure::MemoryLimit,
        ),
        (
            abi_module(
                "i32.const 0 call $down i64.extend_i32_u",
                "(func $down (param i32) (result i32) local.get 0 i32.const 1 i32.add call $down)",
            ),
            limits(),
            Failure::DepthLimit,
        ),
        (
            abi_module(
                "(drop (table.grow $t (ref.null func) (i32.const 1000000))) i64.const 0",
                "(table $t 1 funcref)",
            ),
            limits(),
            Failure::TableLimit,
        ),
        (
            abi_module("i64.const 0xffff000000000010", ""),
            limits(),
            Failure::OutputOutOfBounds,
        ),
        (
            abi_module("unreachable", ""),
            limits(),
            Failure::Unreachable,
        ),
    ];
    let modules: Vec<_> = cases
        .iter()
        .map(|(wasm, _, _)| sandbox.prepare(wasm).expect("admitted"))
        .collect();
    let round = |expected_fuel: &mut Vec<u64>| {
        for ((module, (_, limits, failure)), index) in modules.iter().zip(&cases).zip(0..) {
            let execution = sandbox
                .run(module, &[1; 64], limits)
                .expect("no worker fault");
            assert_eq!(execution.outcome, Outcome::Failed(*failure));
            match expected_fuel.get(index) {
                Some(fuel) => assert_eq!(execution.fuel_used, *fuel, "fuel differs between rounds"),
                None => expected_fuel.push(execution.fuel_used),
            }
        }
    };
    let mut fuel = Vec::new();
    // Warm up: the pool's slots and the allocator reach their steady state.
    for _ in 0..20 {
        round(&mut fuel);
    }
    let before = resident_bytes();
    const ROUNDS: usize = 200;
    for _ in 0..ROUNDS {
        round(&mut fuel);
    }
    let after = resident_bytes();
    let growth = after.saturating_sub(before);
    assert!(
        growth < 16 * 1024 * 1024,
        "resident memory grew by {growth} bytes over {ROUNDS} rounds"
    );
}
