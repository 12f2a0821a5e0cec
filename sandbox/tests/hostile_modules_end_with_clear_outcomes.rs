//! The hostile-module battery: every case ends with the expected,
//! deterministic outcome, and the process never crashes.

mod common;

use common::{abi_module, limits, run, sandbox};
use compute_sandbox::{
    bombs, Failure, ModuleLimits, Outcome, PrepareError, TaskLimits, ValidationError, WorkerFault,
};
use std::time::{Duration, Instant};

fn failed(failure: Failure) -> Outcome {
    Outcome::Failed(failure)
}

#[test]
fn endless_loop_runs_out_of_fuel_and_is_charged_all_of_it() {
    let sandbox = sandbox();
    let wasm = abi_module("(loop br 0) i64.const 0", "");
    let limits = TaskLimits {
        fuel_max: 5_000_000,
        ..limits()
    };
    let execution = run(&sandbox, &wasm, b"", &limits);
    assert_eq!(execution.outcome, failed(Failure::OutOfFuel));
    assert_eq!(execution.fuel_used, limits.fuel_max);
}

#[test]
fn memory_bomb_stops_at_the_memory_limit() {
    let sandbox = sandbox();
    let wasm = abi_module(
        "(loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) i64.const 0",
        "",
    );
    let limits = TaskLimits {
        memory_bytes_max: 16 * 1024 * 1024,
        ..limits()
    };
    let first = run(&sandbox, &wasm, b"", &limits);
    assert_eq!(first.outcome, failed(Failure::MemoryLimit));
    assert_eq!(
        run(&sandbox, &wasm, b"", &limits),
        first,
        "same fuel every time"
    );
}

#[test]
fn initial_memory_above_the_task_limit_fails_at_instantiation() {
    let sandbox = sandbox();
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 300)
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "run") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap();
    let limits = TaskLimits {
        memory_bytes_max: 64 * 65_536,
        ..limits()
    };
    let execution = run(&sandbox, &wasm, b"", &limits);
    assert_eq!(
        execution,
        compute_sandbox::Execution {
            outcome: failed(Failure::MemoryLimit),
            fuel_used: 0
        }
    );
}

#[test]
fn deep_recursion_hits_the_logical_depth_limit_not_the_native_stack() {
    let sandbox = sandbox();
    let wasm = abi_module(
        "i32.const 0 call $down i64.extend_i32_u",
        "(func $down (param i32) (result i32) local.get 0 i32.const 1 i32.add call $down)",
    );
    let execution = run(&sandbox, &wasm, b"", &limits());
    assert_eq!(execution.outcome, failed(Failure::DepthLimit));
    // Frames with many locals get fewer levels, and still the same outcome.
    let locals = "(local ".to_owned() + &"i64 ".repeat(1000) + ")";
    let wide = abi_module(
        "i32.const 0 call $down i64.extend_i32_u",
        &format!("(func $down (param i32) (result i32) {locals} local.get 0 i32.const 1 i32.add call $down)"),
    );
    assert_eq!(
        run(&sandbox, &wide, b"", &limits()).outcome,
        failed(Failure::DepthLimit)
    );
    // Indirect recursion through a table is counted too.
    let indirect = abi_module(
        "i32.const 0 call $down i64.extend_i32_u",
        r#"(type $t (func (param i32) (result i32)))
           (table 1 funcref) (elem (i32.const 0) $down)
           (func $down (param i32) (result i32) local.get 0 i32.const 0 call_indirect (type $t))"#,
    );
    assert_eq!(
        run(&sandbox, &indirect, b"", &limits()).outcome,
        failed(Failure::DepthLimit)
    );
}

#[test]
fn moderate_recursion_completes() {
    let sandbox = sandbox();
    // Sum 1..=1000 recursively, well inside the budget; output 4 bytes at 0.
    let wasm = abi_module(
        "(i32.store (i32.const 0) (call $sum (i32.const 1000))) i64.const 4",
        r#"(func $sum (param i32) (result i32)
             (if (result i32) (i32.eqz (local.get 0))
               (then (i32.const 0))
               (else (i32.add (local.get 0) (call $sum (i32.sub (local.get 0) (i32.const 1)))))))"#,
    );
    let execution = run(&sandbox, &wasm, b"", &limits());
    assert_eq!(
        execution.outcome,
        Outcome::Completed(500_500u32.to_le_bytes().to_vec())
    );
}

#[test]
fn huge_tables_are_refused_or_stopped_at_the_limit() {
    let sandbox = sandbox();
    let declared = abi_module("i64.const 0", "(table 10000000 funcref)");
    assert!(matches!(
        sandbox.prepare(&declared),
        Err(PrepareError::Invalid(ValidationError::TooMany {
            what: "initial table elements",
            ..
        }))
    ));
    let grown = abi_module(
        "(drop (table.grow $t (ref.null func) (i32.const 1000000))) i64.const 0",
        "(table $t 1 funcref)",
    );
    assert_eq!(
        run(&sandbox, &grown, b"", &limits()).outcome,
        failed(Failure::TableLimit)
    );
}

#[test]
fn imports_of_forbidden_functions_are_refused() {
    let sandbox = sandbox();
    for (module, name) in [
        ("env", "clock"),
        ("wasi_snapshot_preview1", "fd_write"),
        ("", ""),
    ] {
        let wasm = wat::parse_str(format!(
            r#"(module (import "{module}" "{name}" (func)) (memory (export "memory") 1)
                (func (export "alloc") (param i32) (result i32) i32.const 0)
                (func (export "run") (param i32 i32) (result i64) i64.const 0))"#
        ))
        .unwrap();
        match sandbox.prepare(&wasm) {
            Err(PrepareError::Invalid(ValidationError::ImportNotAllowed {
                module: m,
                name: n,
            })) => {
                assert_eq!((m.as_str(), n.as_str()), (module, name));
            }
            other => panic!("import {module}::{name} not refused: {other:?}"),
        }
    }
}

#[test]
fn invalid_and_truncated_modules_are_refused_at_every_length() {
    let sandbox = sandbox();
    let wasm = abi_module("i64.const 0", "");
    for len in 0..wasm.len() {
        let result = sandbox.prepare(&wasm[..len]);
        assert!(
            matches!(result, Err(PrepareError::Invalid(_))),
            "prefix of {len} bytes: {result:?}"
        );
    }
    for garbage in [&b"\0asm\x02\0\0\0"[..], b"not wasm at all", &[0xff; 64]] {
        assert!(matches!(
            sandbox.prepare(garbage),
            Err(PrepareError::Invalid(ValidationError::Invalid(_)))
        ));
    }
}

#[test]
fn a_module_over_the_size_cap_is_refused_before_parsing() {
    let limits = ModuleLimits::default();
    let huge = vec![0u8; limits.module_bytes_max as usize + 1];
    assert_eq!(
        compute_sandbox::validate_module(&huge, &limits),
        Err(ValidationError::TooLarge {
            bytes: huge.len(),
            max: limits.module_bytes_max
        })
    );
}

/// A module of `functions` functions, each a long chain of adds on locals.
fn compile_bomb(functions: u32, body_ops: u32) -> Vec<u8> {
    use wasm_encoder::{Function, Instruction, ValType};
    let functions = (0..functions)
        .map(|_| {
            let mut body = Function::new([]);
            body.instruction(&Instruction::LocalGet(0));
            for i in 0..body_ops {
                body.instruction(&Instruction::LocalGet(1 + i % 4));
                body.instruction(&Instruction::I32Add);
                body.instruction(&Instruction::LocalTee(1 + (i + 1) % 4));
            }
            body.instruction(&Instruction::Drop);
            bombs::Func::nullary(vec![(5, ValType::I32)], body.into_raw_body()[1..].to_vec())
        })
        .collect();
    bombs::Bomb {
        functions,
        ..bombs::Bomb::default()
    }
    .finish()
}

#[test]
fn compile_bombs_are_refused_or_compile_in_bounded_time() {
    let sandbox = sandbox();
    let limits = ModuleLimits::default();
    let refused = |wasm: &[u8]| match sandbox.prepare(wasm) {
        Err(PrepareError::Invalid(error)) => error,
        other => panic!("not refused: {other:?}"),
    };
    // More functions than allowed: refused before any compilation.
    assert!(matches!(
        refused(&compile_bomb(limits.functions_max, 1)),
        ValidationError::TooMany {
            limit: "functions_max",
            ..
        }
    ));
    // One body over the per-function cap: refused.
    assert!(matches!(
        refused(&compile_bomb(1, limits.function_body_bytes_max / 4)),
        ValidationError::FunctionTooLarge { .. }
    ));
    // A body within the byte cap that would take too long: refused.
    assert!(matches!(
        refused(&compile_bomb(1, limits.function_units_max / 3 + 1_000)),
        ValidationError::FunctionTooCostly { .. }
    ));
    // Functions within every cap that together would take too long:
    // refused, well before the module's byte or code caps.
    let calls = bombs::code(bombs::Fill::Calls, 64 * 1024, 2 * 1024);
    assert!(matches!(refused(&calls), ValidationError::TooCostly { .. }));
    // Just within the caps: compiles, and in bounded time (the bench
    // `compile_bombs` measures it: a fraction of a second).
    let within = bombs::largest_admissible(bombs::Fill::Calls, &limits);
    let started = Instant::now();
    let module = sandbox
        .prepare(&within)
        .expect("a module within the caps compiles");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "compiling took {elapsed:?}"
    );
    assert_eq!(
        sandbox
            .run(&module, b"", &common::limits())
            .unwrap()
            .outcome,
        Outcome::Completed(Vec::new())
    );
}

/// A data segment past the end of the initial memory traps when the module
/// is instantiated, the same way with copy-on-write images on or off, and
/// the task is charged nothing (no code of the module ran).
#[test]
fn data_out_of_bounds_traps_at_instantiation_with_images_on_or_off() {
    let wasm = abi_module(
        "i64.const 0",
        r#"(data (i32.const 16) "first") (data (i32.const 65535) "over the end")"#,
    );
    for memory_init_cow in [true, false] {
        let mut config = compute_sandbox::SandboxConfig::default();
        config.engine.instances_max = 2;
        config.engine.memory_init_cow = memory_init_cow;
        let sandbox = compute_sandbox::Sandbox::new(config).unwrap();
        assert_eq!(
            run(&sandbox, &wasm, b"", &limits()),
            compute_sandbox::Execution {
                outcome: failed(Failure::MemoryOutOfBounds),
                fuel_used: 0
            },
            "images {memory_init_cow}"
        );
    }
}

/// A task that cannot pay for copying the module's data fails with
/// `OutOfFuel` before any code runs, and is charged its whole limit, as any
/// task that runs out of fuel.
#[test]
fn data_too_dear_to_instantiate_runs_out_of_fuel() {
    let sandbox = sandbox();
    let wasm = abi_module(
        "i64.const 0",
        &format!(r#"(data (i32.const 0) "{}")"#, "x".repeat(1000)),
    );
    let limits = TaskLimits {
        fuel_max: 999,
        ..limits()
    };
    let module = sandbox.prepare(&wasm).unwrap();
    assert_eq!(module.instantiate_fuel(), 1000);
    let execution = sandbox.run(&module, b"", &limits).unwrap();
    assert_eq!(execution.outcome, failed(Failure::OutOfFuel));
    assert_eq!(execution.fuel_used, 999);
    let verification = sandbox.verify(&module, b"", b"", &limits).unwrap();
    assert_eq!(
        verification.verdict,
        compute_sandbox::Verdict::Failed(Failure::VerifyMissing)
    );
}

/// A sparse data segment layout (the kind no memory image is made for) and
/// an adjacent one cost the same fuel, images on or off.
#[test]
fn data_layout_does_not_change_fuel() {
    let adjacent = bombs::data_segments(64, 100, 100);
    let sparse = bombs::data_segments(64, 100, 65_536);
    let mut fuel = Vec::new();
    for memory_init_cow in [true, false] {
        let mut config = compute_sandbox::SandboxConfig::default();
        config.engine.instances_max = 2;
        config.engine.memory_init_cow = memory_init_cow;
        let sandbox = compute_sandbox::Sandbox::new(config).unwrap();
        for wasm in [&adjacent, &sparse] {
            let execution = run(&sandbox, wasm, b"", &limits());
            assert_eq!(execution.outcome, Outcome::Completed(Vec::new()));
            fuel.push(execution.fuel_used);
        }
    }
    assert!(fuel.iter().all(|f| *f == fuel[0]), "{fuel:?}");
    assert_eq!(fuel[0], 64 * 100 + 4);
}

#[test]
fn output_pointer_out_of_bounds_is_a_failure() {
    let sandbox = sandbox();
    let wasm = abi_module("i64.const 0xffff000000000010", "");
    assert_eq!(
        run(&sandbox, &wasm, b"", &limits()).outcome,
        failed(Failure::OutputOutOfBounds)
    );
    // Pointer in bounds, length running past the end of memory.
    let wasm = abi_module("i64.const 0x0000fff000001000", "");
    assert_eq!(
        run(&sandbox, &wasm, b"", &limits()).outcome,
        failed(Failure::OutputOutOfBounds)
    );
}

#[test]
fn output_larger_than_the_cap_is_a_failure() {
    let sandbox = sandbox();
    let wasm = abi_module("i64.const 100", "");
    let limits = TaskLimits {
        output_bytes_max: 99,
        ..limits()
    };
    assert_eq!(
        run(&sandbox, &wasm, b"", &limits).outcome,
        failed(Failure::OutputTooLarge)
    );
    let limits = TaskLimits {
        output_bytes_max: 100,
        ..limits
    };
    assert_eq!(
        run(&sandbox, &wasm, b"", &limits).outcome,
        Outcome::Completed(vec![0; 100])
    );
}

#[test]
fn alloc_returning_garbage_is_a_failure() {
    let sandbox = sandbox();
    for garbage in ["-8", "65530", "0x7fffffff"] {
        let wasm = wat::parse_str(format!(
            r#"(module (memory (export "memory") 1)
                (func (export "alloc") (param i32) (result i32) i32.const {garbage})
                (func (export "run") (param i32 i32) (result i64) i64.const 0))"#
        ))
        .unwrap();
        let execution = run(&sandbox, &wasm, &[7; 16], &limits());
        assert_eq!(
            execution.outcome,
            failed(Failure::InputOutOfBounds),
            "alloc returned {garbage}"
        );
    }
}

#[test]
fn traps_are_classified_by_kind() {
    let sandbox = sandbox();
    let cases = [
        ("unreachable", Failure::Unreachable),
        (
            "(drop (i32.div_u (i32.const 1) (i32.const 0))) i64.const 0",
            Failure::IntegerDivisionByZero,
        ),
        (
            "(drop (i32.div_s (i32.const 0x80000000) (i32.const -1))) i64.const 0",
            Failure::IntegerOverflow,
        ),
        (
            "(drop (i32.load (i32.const 0x7ffffff0))) i64.const 0",
            Failure::MemoryOutOfBounds,
        ),
        (
            "(drop (i32.trunc_f64_s (f64.const nan))) i64.const 0",
            Failure::BadConversionToInteger,
        ),
    ];
    for (body, expected) in cases {
        let wasm = abi_module(body, "");
        assert_eq!(
            run(&sandbox, &wasm, b"", &limits()).outcome,
            failed(expected),
            "{body}"
        );
    }
}

#[test]
fn the_watchdog_is_a_worker_fault_not_a_result() {
    let sandbox = sandbox();
    let wasm = abi_module("(loop br 0) i64.const 0", "");
    let module = sandbox.prepare(&wasm).unwrap();
    let limits = TaskLimits {
        fuel_max: u64::MAX / 2,
        timeout_ms: 50,
        ..limits()
    };
    let started = Instant::now();
    assert_eq!(
        sandbox.run(&module, b"", &limits),
        Err(WorkerFault::Timeout { timeout_ms: 50 })
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn limits_beyond_the_engine_are_refused_as_unsupported() {
    let sandbox = sandbox();
    let module = sandbox.prepare(&abi_module("i64.const 0", "")).unwrap();
    let limits = TaskLimits {
        memory_bytes_max: u64::MAX,
        ..limits()
    };
    assert!(matches!(
        sandbox.run(&module, b"", &limits),
        Err(WorkerFault::Unsupported(_))
    ));
}

#[test]
fn abi_violations_are_refused_with_the_export_named() {
    let sandbox = sandbox();
    let no_run = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "alloc") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    assert!(matches!(
        sandbox.prepare(&no_run),
        Err(PrepareError::Invalid(ValidationError::MissingExport("run")))
    ));
    let wrong_run = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "run") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    let error = sandbox.prepare(&wrong_run).unwrap_err();
    assert_eq!(
        error.to_string(),
        "export `run` must be a function (i32, i32) -> i64, found a function (i32) -> (i32)"
    );
    let start = abi_module("i64.const 0", "(func $s) (start $s)");
    assert!(matches!(
        sandbox.prepare(&start),
        Err(PrepareError::Invalid(ValidationError::StartFunction))
    ));
    let reserved = abi_module(
        "i64.const 0",
        r#"(global (export "__compute_depth") i32 (i32.const 0))"#,
    );
    assert!(matches!(
        sandbox.prepare(&reserved),
        Err(PrepareError::Invalid(ValidationError::ReservedExport(_)))
    ));
    let threads = abi_module(
        "i64.const 0",
        "(func (drop (i32.atomic.load (i32.const 0))))",
    );
    assert!(matches!(
        sandbox.prepare(&threads),
        Err(PrepareError::Invalid(ValidationError::Invalid(_)))
    ));
}

/// The worst frame for the depth budget: as many `v128` locals as allowed,
/// all live across the recursive call, so the compiler must spill every one
/// to the native stack. The logical limit must still come first.
#[test]
fn recursion_with_the_widest_live_frames_hits_the_logical_limit_first() {
    let sandbox = sandbox();
    let locals = ModuleLimits::default().function_locals_max - 1;
    let mut body = "(func $down (param i32) (result i32) (local v128) (local".to_owned()
        + &" v128".repeat(locals as usize - 1)
        + ")";
    for i in 1..=locals {
        body += &format!("(local.set {i} (i32x4.splat (i32.add (local.get 0) (i32.const {i}))))");
    }
    body += "(drop (call $down (i32.add (local.get 0) (i32.const 1))))";
    // Every local is used after the call, so every one is live across it.
    for i in 1..=locals {
        body += &format!(
            "(v128.store offset={} (i32.const 0) (local.get {i}))",
            i * 16
        );
    }
    body += "(local.get 0))";
    let wasm = abi_module("i32.const 0 call $down i64.extend_i32_u", &body);
    let module = sandbox.prepare(&wasm).expect("admitted");
    let execution = sandbox.run(&module, b"", &limits());
    assert_eq!(
        execution.map(|e| e.outcome),
        Ok(failed(Failure::DepthLimit))
    );
}
