//! Admitted means runnable: a module exactly at each admission limit is
//! admitted, prepares (validate, instrument, compile, link) and runs; one
//! step past it is refused, with an error that names the limit. The
//! slowest admissible module of every class prepares, so no admitted module
//! can fail to compile on a worker or a validator, and none takes long.

mod common;

use compute_sandbox::bombs::{self, Bomb, Func, Nest};
use compute_sandbox::{
    validate_module, ModuleLimits, Outcome, PrepareError, Sandbox, ValidationError,
    BR_TABLE_TARGETS_ENGINE_MAX,
};
use std::time::{Duration, Instant};
use wasm_encoder::ValType;

/// How long the slowest admissible module may take to prepare here: the
/// bench `compile_bombs` measures a fraction of a second; this only has to
/// stay far below the chain's commit window with a loaded test machine.
const PREPARE_TIME_MAX: Duration = Duration::from_secs(5);

/// Admitted, prepared within the time bound, and run to completion.
fn runs(sandbox: &Sandbox, wasm: &[u8], what: &str) {
    if let Err(error) = validate_module(wasm, &sandbox.config().module_limits) {
        panic!("{what}: refused: {error}");
    }
    let started = Instant::now();
    let module = sandbox
        .prepare(wasm)
        .unwrap_or_else(|error| panic!("{what}: admitted but not prepared: {error}"));
    let elapsed = started.elapsed();
    assert!(elapsed < PREPARE_TIME_MAX, "{what}: took {elapsed:?}");
    let execution = sandbox
        .run(&module, b"", &common::limits())
        .unwrap_or_else(|fault| panic!("{what}: {fault}"));
    assert_eq!(execution.outcome, Outcome::Completed(Vec::new()), "{what}");
}

/// Refused by admission (and so by `prepare`) with the error `expected`
/// accepts, whose message names `limit`.
fn refused(
    sandbox: &Sandbox,
    wasm: &[u8],
    limit: &str,
    expected: impl Fn(&ValidationError) -> bool,
) {
    let error = validate_module(wasm, &sandbox.config().module_limits)
        .expect_err(&format!("one past `{limit}` is admitted"));
    assert!(expected(&error), "past `{limit}`: {error:?}");
    assert!(
        error.to_string().contains(limit),
        "the message does not name `{limit}`: {error}"
    );
    assert!(matches!(
        sandbox.prepare(wasm),
        Err(PrepareError::Invalid(_))
    ));
}

fn too_many(limit: &'static str) -> impl Fn(&ValidationError) -> bool {
    move |error| matches!(error, ValidationError::TooMany { limit: found, .. } if *found == limit)
}

fn with_functions(functions: Vec<Func>) -> Vec<u8> {
    Bomb {
        functions,
        ..Bomb::default()
    }
    .finish()
}

#[test]
fn counts_of_module_parts_are_admitted_at_their_limits() {
    let sandbox = common::sandbox();
    let limits = sandbox.config().module_limits;
    // `alloc` and `run` are functions; the ABI's types are three.
    runs(
        &sandbox,
        &bombs::functions(limits.functions_max - 2, 0),
        "functions",
    );
    refused(
        &sandbox,
        &bombs::functions(limits.functions_max - 1, 0),
        "functions_max",
        too_many("functions_max"),
    );
    runs(&sandbox, &bombs::types(limits.types_max - 3, 4), "types");
    refused(
        &sandbox,
        &bombs::types(limits.types_max - 2, 4),
        "types_max",
        too_many("types_max"),
    );
    let globals = |globals| {
        Bomb {
            globals,
            ..Bomb::default()
        }
        .finish()
    };
    runs(&sandbox, &globals(limits.globals_max), "globals");
    refused(
        &sandbox,
        &globals(limits.globals_max + 1),
        "globals_max",
        too_many("globals_max"),
    );
    let exports = |extra_exports| {
        Bomb {
            extra_exports,
            ..Bomb::default()
        }
        .finish()
    };
    runs(&sandbox, &exports(limits.exports_max - 3), "exports");
    refused(
        &sandbox,
        &exports(limits.exports_max - 2),
        "exports_max",
        too_many("exports_max"),
    );
}

#[test]
fn data_and_elements_are_admitted_at_their_limits() {
    let sandbox = common::sandbox();
    let limits = sandbox.config().module_limits;
    // Sparse, so that each segment is initialised on its own.
    runs(
        &sandbox,
        &bombs::data_segments(limits.data_segments_max, 1, 4_096),
        "data segments",
    );
    refused(
        &sandbox,
        &bombs::data_segments(limits.data_segments_max + 1, 1, 4_096),
        "data_segments_max",
        too_many("data_segments_max"),
    );
    runs(
        &sandbox,
        &bombs::data_segments(1, limits.data_bytes_max, 0),
        "data bytes",
    );
    refused(
        &sandbox,
        &bombs::data_segments(1, limits.data_bytes_max + 1, 0),
        "data_bytes_max",
        too_many("data_bytes_max"),
    );
    runs(
        &sandbox,
        &bombs::element_segments(limits.element_segments_max, 1),
        "element segments",
    );
    refused(
        &sandbox,
        &bombs::element_segments(limits.element_segments_max + 1, 1),
        "element_segments_max",
        too_many("element_segments_max"),
    );
    runs(
        &sandbox,
        &bombs::element_segments(1, limits.element_items_max),
        "element items",
    );
    refused(
        &sandbox,
        &bombs::element_segments(1, limits.element_items_max + 1),
        "element_items_max",
        too_many("element_items_max"),
    );
}

#[test]
fn function_bodies_are_admitted_at_their_limits() {
    let sandbox = common::sandbox();
    let limits = sandbox.config().module_limits;
    let body = limits.function_body_bytes_max as usize;
    runs(
        &sandbox,
        &with_functions(vec![bombs::padded_body(body)]),
        "body bytes",
    );
    refused(
        &sandbox,
        &with_functions(vec![bombs::padded_body(body + 1)]),
        "function_body_bytes_max",
        |error| {
            *error
                == ValidationError::FunctionTooLarge {
                    index: 2,
                    bytes: body + 1,
                    max: limits.function_body_bytes_max,
                }
        },
    );
    let locals = limits.function_locals_max;
    runs(&sandbox, &bombs::locals(locals, ValType::I64), "locals");
    refused(
        &sandbox,
        &bombs::locals(locals + 1, ValType::I64),
        "function_locals_max",
        |error| {
            *error
                == ValidationError::TooManyLocals {
                    index: 2,
                    count: locals + 1,
                    max: locals,
                }
        },
    );
    let units = limits.function_units_max;
    runs(
        &sandbox,
        &with_functions(vec![bombs::costing(units)]),
        "function units",
    );
    refused(
        &sandbox,
        &with_functions(vec![bombs::costing(units + 1)]),
        "function_units_max",
        |error| {
            *error
                == ValidationError::FunctionTooCostly {
                    index: 2,
                    units: u64::from(units) + 1,
                    max: units,
                }
        },
    );
    for kind in [Nest::Block, Nest::Loop, Nest::IfElse] {
        runs(
            &sandbox,
            &bombs::nesting(limits.nesting_depth_max, kind),
            &format!("nesting {kind:?}"),
        );
        refused(
            &sandbox,
            &bombs::nesting(limits.nesting_depth_max + 1, kind),
            "nesting_depth_max",
            |error| {
                *error
                    == ValidationError::NestedTooDeep {
                        index: 2,
                        depth: limits.nesting_depth_max + 1,
                        max: limits.nesting_depth_max,
                    }
            },
        );
    }
    let targets = limits.br_table_targets_max;
    runs(
        &sandbox,
        &bombs::br_table(targets, limits.nesting_depth_max),
        "br_table",
    );
    refused(
        &sandbox,
        &bombs::br_table(targets + 1, limits.nesting_depth_max),
        "br_table_targets_max",
        |error| {
            *error
                == ValidationError::BrTableTooLarge {
                    index: 2,
                    targets: targets + 1,
                    max: targets,
                }
        },
    );
}

/// Code bytes and compile units of the whole module, each exactly at its
/// limit with bodies that are cheap in the other.
#[test]
fn code_is_admitted_at_the_module_budgets() {
    let sandbox = common::sandbox();
    let limits = sandbox.config().module_limits;

    // Code bytes: `alloc` and `run`, then padded bodies up to the limit.
    let code = |bytes: usize| {
        let mut bomb = Bomb::default();
        let mut left = bytes - bomb.code_bytes();
        while left > 0 {
            let body = left.min(limits.function_body_bytes_max as usize);
            bomb.functions.push(bombs::padded_body(body));
            left -= body;
        }
        assert_eq!(bomb.code_bytes(), bytes);
        bomb.finish()
    };
    runs(
        &sandbox,
        &code(limits.code_bytes_max as usize),
        "code bytes",
    );
    refused(
        &sandbox,
        &code(limits.code_bytes_max as usize + 1),
        "code_bytes_max",
        too_many("code_bytes_max"),
    );

    // Compile units: functions of loops, topped up to the budget exactly.
    let open = ModuleLimits {
        compile_units_max: u32::MAX,
        ..limits
    };
    let module = |functions: &[u32]| {
        with_functions(
            functions
                .iter()
                .map(|units| bombs::costing(*units))
                .collect(),
        )
    };
    let units_of = |functions: &[u32]| {
        let wasm = module(functions);
        validate_module(&wasm, &open)
            .expect("within every other limit")
            .compile_units
    };
    let per_function = limits.function_units_max;
    let count = (limits.compile_units_max / per_function) as usize + 1;
    let mut functions = vec![per_function / 2; count];
    let mut missing = u64::from(limits.compile_units_max) - units_of(&functions);
    for units in &mut functions {
        let add = missing.min(u64::from(per_function - *units)) as u32;
        *units += add;
        missing -= u64::from(add);
    }
    assert_eq!(
        missing, 0,
        "the budget is reachable within the per-function cap"
    );
    assert_eq!(units_of(&functions), u64::from(limits.compile_units_max));
    runs(&sandbox, &module(&functions), "compile units");
    // One more unit, in a function with room for it.
    *functions
        .iter_mut()
        .find(|units| **units < per_function)
        .expect("a function below the cap") += 1;
    refused(
        &sandbox,
        &module(&functions),
        "compile_units_max",
        |error| {
            *error
                == ValidationError::TooCostly {
                    units: u64::from(limits.compile_units_max) + 1,
                    max: limits.compile_units_max,
                }
        },
    );
}

/// Cranelift refuses a `br_table` of more than 65,520 targets. Admission
/// enforces that limit whatever the configured one says, so the largest
/// table it can ever admit compiles, and the next is refused by admission
/// rather than by the compiler.
#[test]
fn br_table_at_the_engine_limit_compiles_and_past_it_is_refused() {
    let open = ModuleLimits {
        br_table_targets_max: u32::MAX,
        function_units_max: u32::MAX,
        compile_units_max: u32::MAX,
        ..ModuleLimits::default()
    };
    let mut config = compute_sandbox::SandboxConfig {
        module_limits: open,
        ..compute_sandbox::SandboxConfig::default()
    };
    config.engine.instances_max = 2;
    let sandbox = Sandbox::new(config).unwrap();
    runs(
        &sandbox,
        &bombs::br_table(BR_TABLE_TARGETS_ENGINE_MAX, 64),
        "br_table at the engine's limit",
    );
    refused(
        &sandbox,
        &bombs::br_table(BR_TABLE_TARGETS_ENGINE_MAX + 1, 64),
        "br_table_targets_max",
        |error| {
            *error
                == ValidationError::BrTableTooLarge {
                    index: 2,
                    targets: BR_TABLE_TARGETS_ENGINE_MAX + 1,
                    max: BR_TABLE_TARGETS_ENGINE_MAX,
                }
        },
    );
}

/// The slowest module of each class (a limit reached with the dearest
/// content admission lets through) prepares and runs.
#[test]
fn the_slowest_module_at_each_limit_prepares() {
    let sandbox = common::sandbox();
    for (name, wasm) in bombs::slowest_at_limits(&sandbox.config().module_limits) {
        runs(&sandbox, &wasm, &name);
    }
}

/// Each kind of code, as much of it as the compile-unit budget admits,
/// prepares and runs.
#[test]
fn the_slowest_module_of_each_kind_of_code_prepares() {
    let sandbox = common::sandbox();
    for (name, wasm) in bombs::slowest_at_budget(&sandbox.config().module_limits) {
        runs(&sandbox, &wasm, &name);
    }
}

/// The example jobs stay well inside every limit.
#[test]
fn the_examples_use_a_fraction_of_the_budget() {
    let limits = ModuleLimits::default();
    for (name, wasm, _, _) in common::inputs() {
        let info = validate_module(wasm, &limits).expect("an example is admitted");
        assert!(
            info.compile_units * 5 < u64::from(limits.compile_units_max),
            "{name} costs {} compile units",
            info.compile_units
        );
        let tight = ModuleLimits {
            functions_max: limits.functions_max / 10,
            types_max: limits.types_max / 10,
            code_bytes_max: limits.code_bytes_max / 10,
            function_body_bytes_max: limits.function_body_bytes_max / 10,
            function_units_max: limits.function_units_max / 4,
            data_segments_max: limits.data_segments_max / 10,
            data_bytes_max: limits.data_bytes_max / 10,
            element_items_max: limits.element_items_max / 10,
            nesting_depth_max: limits.nesting_depth_max / 10,
            br_table_targets_max: limits.br_table_targets_max / 10,
            ..limits
        };
        validate_module(wasm, &tight)
            .unwrap_or_else(|error| panic!("{name} is close to a limit: {error}"));
    }
}

/// Many threads asking for one module at once compile it once and share
/// it; an invalid module is refused to all of them and compiles nothing.
#[test]
fn concurrent_prepares_compile_once() {
    let sandbox = common::sandbox();
    let threads = 16;
    let barrier = std::sync::Barrier::new(threads);
    // Slow enough to compile (tens of milliseconds) that the threads meet.
    let wasm = bombs::functions(1_000, 0);
    let modules: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    sandbox.prepare(&wasm).expect("admitted")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("no panic"))
            .collect()
    });
    assert_eq!(sandbox.compiles(), 1, "one compile for {threads} threads");
    assert!(modules
        .iter()
        .all(|module| std::sync::Arc::ptr_eq(module, &modules[0])));

    let invalid = bombs::functions(ModuleLimits::default().functions_max, 0);
    let errors: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    sandbox.prepare(&invalid).expect_err("refused")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("no panic"))
            .collect()
    });
    assert!(errors.iter().all(PrepareError::is_module_fault));
    assert_eq!(sandbox.compiles(), 1, "a refused module compiles nothing");
}
