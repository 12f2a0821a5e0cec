//! Admission of modules: the checks the chain runs in `CheckTx` for
//! `StoreModule`, and that a worker repeats before compiling.
//!
//! Only `wasmparser` is used: validation is a single linear pass over the
//! bytes, deterministic, and allocates in proportion to the module, which
//! is itself capped first.

use crate::engine::wasm_features;
use crate::instrument::{FRAME_BASE_UNITS, FRAME_UNITS_MAX};
use crate::limits::ModuleLimits;
use compute_proto::ModuleId;
use wasmparser::{
    CompositeInnerType, ExternalKind, FuncType, Parser, Payload, ValType, ValidPayload, Validator,
};

/// Export names reserved for the runtime's own instrumentation.
pub const RESERVED_EXPORT_PREFIX: &str = "__compute";

/// Why a module was refused. Each message names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The module is larger than the cap.
    #[error("module is {bytes} bytes, more than the limit of {max} bytes")]
    TooLarge {
        /// Size of the module.
        bytes: usize,
        /// The cap.
        max: u32,
    },
    /// The bytes are not a valid WebAssembly module with the admitted features.
    #[error("not a valid WebAssembly module: {0}")]
    Invalid(String),
    /// The module imports something; no import is allowed.
    #[error("import {module}::{name} is not allowed: jobs may not import anything")]
    ImportNotAllowed {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
    },
    /// A required export is missing.
    #[error("missing export `{0}` required by the job ABI")]
    MissingExport(&'static str),
    /// An ABI export has the wrong kind or signature.
    #[error("export `{export}` must be {expected}, found {found}")]
    WrongExport {
        /// The export.
        export: &'static str,
        /// What the ABI requires.
        expected: &'static str,
        /// What the module has.
        found: String,
    },
    /// The module exports a name reserved for the runtime.
    #[error("export `{0}` uses the prefix `__compute`, which is reserved for the runtime")]
    ReservedExport(String),
    /// The module has a start function; a job's only entry points are its exports.
    #[error("a start function is not allowed: the job's entry point is `run`")]
    StartFunction,
    /// A count exceeds its limit.
    #[error("too many {what}: {count}, the limit is {max}")]
    TooMany {
        /// What is counted.
        what: &'static str,
        /// How many the module has.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// One function body is too large.
    #[error("function {index} has a body of {bytes} bytes, more than the limit of {max}")]
    FunctionTooLarge {
        /// Index of the function.
        index: u32,
        /// Size of its body.
        bytes: usize,
        /// The limit.
        max: u32,
    },
    /// One function has too many locals.
    #[error(
        "function {index} has {count} locals (parameters included), more than the limit of {max}"
    )]
    TooManyLocals {
        /// Index of the function.
        index: u32,
        /// Its locals.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// One function's frame (locals and operand stack) is too large for the
    /// depth budget.
    #[error("function {index} needs {units} stack units per call, more than the limit of {max}")]
    FrameTooLarge {
        /// Index of the function.
        index: u32,
        /// Its frame cost.
        units: u32,
        /// The limit.
        max: u32,
    },
}

/// What admission learned about a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// `sha3_256` of the bytes.
    pub id: ModuleId,
    /// Size of the module.
    pub bytes: usize,
    /// Whether the module exports `verify`.
    pub has_verify: bool,
    /// Functions defined.
    pub functions: u32,
    /// Initial pages of the memory.
    pub memory_pages_initial: u64,
}

/// The result of the analysis pass that instrumentation builds on.
#[derive(Debug, Clone)]
pub(crate) struct Analysis {
    pub(crate) info: ModuleInfo,
    /// Stack units charged for a call to each function.
    pub(crate) frame_units: Vec<u32>,
    /// Largest frame of any function of each type, for `call_indirect`.
    pub(crate) type_frame_units_max: Vec<u32>,
    /// Globals defined (the depth counter is appended after them).
    pub(crate) globals: u32,
}

/// Checks a module against the job ABI and the limits.
///
/// # Errors
/// The first problem found, naming what is wrong.
pub fn validate_module(wasm: &[u8], limits: &ModuleLimits) -> Result<ModuleInfo, ValidationError> {
    analyze(wasm, limits).map(|analysis| analysis.info)
}

fn invalid(error: impl std::fmt::Display) -> ValidationError {
    ValidationError::Invalid(error.to_string())
}

fn too_many(
    what: &'static str,
    count: impl Into<u64>,
    max: impl Into<u64>,
) -> Result<(), ValidationError> {
    let (count, max) = (count.into(), max.into());
    if count > max {
        Err(ValidationError::TooMany { what, count, max })
    } else {
        Ok(())
    }
}

pub(crate) fn analyze(wasm: &[u8], limits: &ModuleLimits) -> Result<Analysis, ValidationError> {
    // The size cap comes first, so that every later step is bounded by it.
    if wasm.len() > limits.module_bytes_max as usize {
        return Err(ValidationError::TooLarge {
            bytes: wasm.len(),
            max: limits.module_bytes_max,
        });
    }
    let mut validator = Validator::new_with_features(wasm_features());
    let mut frame_units = Vec::new();
    let mut function_types = Vec::new();
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    let mut types = None;
    let mut allocations = wasmparser::FuncValidatorAllocations::default();

    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        // Structural checks that do not need validated types come before
        // validation of the payload, so that a refused module costs little.
        match &payload {
            Payload::ImportSection(reader) => {
                if let Some(import) = reader.clone().into_imports().next() {
                    let import = import.map_err(invalid)?;
                    return Err(ValidationError::ImportNotAllowed {
                        module: import.module.to_owned(),
                        name: import.name.to_owned(),
                    });
                }
            }
            Payload::FunctionSection(reader) => {
                too_many("functions", reader.count(), limits.functions_max)?;
                for type_index in reader.clone() {
                    function_types.push(type_index.map_err(invalid)?);
                }
            }
            Payload::GlobalSection(reader) => {
                too_many("globals", reader.count(), limits.globals_max)?
            }
            Payload::ExportSection(reader) => {
                too_many("exports", reader.count(), limits.exports_max)?;
                for export in reader.clone() {
                    let export = export.map_err(invalid)?;
                    if export.name.starts_with(RESERVED_EXPORT_PREFIX) {
                        return Err(ValidationError::ReservedExport(export.name.to_owned()));
                    }
                    exports.push((export.name.to_owned(), export.kind, export.index));
                }
            }
            Payload::StartSection { .. } => return Err(ValidationError::StartFunction),
            _ => {}
        }
        match validator.payload(&payload).map_err(invalid)? {
            ValidPayload::Ok | ValidPayload::Parser(_) => {}
            ValidPayload::End(end_types) => types = Some(end_types),
            ValidPayload::Func(to_validate, body) => {
                let index = to_validate.index;
                let body_bytes = body.range().len();
                if body_bytes > limits.function_body_bytes_max as usize {
                    return Err(ValidationError::FunctionTooLarge {
                        index,
                        bytes: body_bytes,
                        max: limits.function_body_bytes_max,
                    });
                }
                let mut func = to_validate.into_validator(allocations);
                let mut reader = body.get_binary_reader();
                func.read_locals(&mut reader).map_err(invalid)?;
                let locals = func.len_locals();
                if locals > limits.function_locals_max {
                    return Err(ValidationError::TooManyLocals {
                        index,
                        count: locals,
                        max: limits.function_locals_max,
                    });
                }
                let mut stack_max = 0u32;
                while !reader.eof() {
                    reader
                        .visit_operator(&mut func.visitor(reader.original_position()))
                        .map_err(invalid)?
                        .map_err(invalid)?;
                    stack_max = stack_max.max(func.operand_stack_height());
                }
                reader
                    .finish_expression(&func.visitor(reader.original_position()))
                    .map_err(invalid)?;
                // One unit per local and operand slot (a v128 counts as one,
                // the frame base covers the difference) plus the fixed part
                // of a native frame.
                let units = FRAME_BASE_UNITS
                    .saturating_add(locals)
                    .saturating_add(stack_max);
                if units > FRAME_UNITS_MAX {
                    return Err(ValidationError::FrameTooLarge {
                        index,
                        units,
                        max: FRAME_UNITS_MAX,
                    });
                }
                frame_units.push(units);
                allocations = func.into_allocations();
            }
        }
    }
    let types_owned = types.ok_or_else(|| invalid("unexpected end of module"))?;
    // Every index below was checked by the validator, so the lookups, which
    // panic on a bad index, cannot panic.
    let types = types_owned.as_ref();

    // The ABI: memory 0 exported as `memory`, and the functions.
    let find = |name: &'static str| {
        exports
            .iter()
            .find(|(export, _, _)| export == name)
            .map(|(_, kind, index)| (*kind, *index))
    };
    let Some((memory_kind, memory_index)) = find("memory") else {
        return Err(ValidationError::MissingExport("memory"));
    };
    if memory_kind != ExternalKind::Memory {
        return Err(ValidationError::WrongExport {
            export: "memory",
            expected: "a memory",
            found: format!("{memory_kind:?}"),
        });
    }
    let memory = types.memory_at(memory_index);
    too_many(
        "initial memory pages",
        memory.initial,
        limits.memory_pages_initial_max,
    )?;
    for table in 0..types.table_count() {
        too_many(
            "initial table elements",
            types.table_at(table).initial,
            limits.table_elements_initial_max,
        )?;
    }
    too_many("tables", types.table_count(), crate::limits::TABLES_MAX)?;

    let check_function = |name: &'static str,
                          params: &[ValType],
                          results: &[ValType],
                          expected: &'static str|
     -> Result<bool, ValidationError> {
        let Some((kind, index)) = find(name) else {
            return Ok(false);
        };
        if kind != ExternalKind::Func {
            return Err(ValidationError::WrongExport {
                export: name,
                expected,
                found: format!("{kind:?}"),
            });
        }
        let found = &types_owned[types.core_function_at(index)];
        let CompositeInnerType::Func(func_type) = &found.composite_type.inner else {
            return Err(ValidationError::WrongExport {
                export: name,
                expected,
                found: "a non-function type".to_owned(),
            });
        };
        if func_type.params() != params || func_type.results() != results {
            return Err(ValidationError::WrongExport {
                export: name,
                expected,
                found: describe(func_type),
            });
        }
        Ok(true)
    };
    use ValType::{I32, I64};
    if !check_function("alloc", &[I32], &[I32], "a function (i32) -> i32")? {
        return Err(ValidationError::MissingExport("alloc"));
    }
    if !check_function("run", &[I32, I32], &[I64], "a function (i32, i32) -> i64")? {
        return Err(ValidationError::MissingExport("run"));
    }
    let has_verify = check_function(
        "verify",
        &[I32, I32, I32, I32],
        &[I32],
        "a function (i32, i32, i32, i32) -> i32",
    )?;

    let type_count = types.core_type_count_in_module() as usize;
    let mut type_frame_units_max = vec![0u32; type_count];
    for (type_index, units) in function_types.iter().zip(&frame_units) {
        if let Some(max) = type_frame_units_max.get_mut(*type_index as usize) {
            *max = (*max).max(*units);
        }
    }
    let globals = types.global_count();
    Ok(Analysis {
        info: ModuleInfo {
            id: ModuleId::of(wasm),
            bytes: wasm.len(),
            has_verify,
            functions: frame_units.len() as u32,
            memory_pages_initial: memory.initial,
        },
        frame_units,
        type_frame_units_max,
        globals,
    })
}

fn describe(func_type: &FuncType) -> String {
    let list = |types: &[ValType]| {
        types
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "a function ({}) -> ({})",
        list(func_type.params()),
        list(func_type.results())
    )
}
