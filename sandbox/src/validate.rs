//! Admission of modules: the checks the chain runs in `CheckTx` for
//! `StoreModule`, and that a worker repeats before compiling.
//!
//! Only `wasmparser` is used: validation is a single linear pass over the
//! bytes, deterministic, and allocates in proportion to the module, which
//! is itself capped first.

use crate::features::wasm_features;
use crate::limits::{
    operator_joins, operator_units, ModuleLimits, BR_TABLE_TARGETS_ENGINE_MAX,
    BR_TABLE_TARGET_UNITS, DATA_SEGMENT_UNITS, ELEMENT_ITEM_UNITS, ELEMENT_SEGMENT_UNITS,
    ESCAPING_FUNCTION_UNITS, ESCAPING_VALUE_UNITS, FRAME_BASE_UNITS, FRAME_UNITS_MAX,
    FUNCTION_UNITS, FUNCTION_VALUE_UNITS, GLOBAL_UNITS, JOIN_LOCAL_PAIRS_PER_UNIT,
    STACK_HEIGHTS_PER_UNIT, TYPE_UNITS, TYPE_VALUE_UNITS,
};
use compute_proto::ModuleId;
use wasmparser::{
    CompositeInnerType, ConstExpr, DataKind, ElementItems, ExternalKind, FuncType, Operator,
    OperatorsReader, Parser, Payload, ValType, ValidPayload, Validator,
};

/// Export names reserved for the runtime's own instrumentation.
pub const RESERVED_EXPORT_PREFIX: &str = "__compute";

/// Why a module was refused. Each message names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The module is larger than the cap.
    #[error("module is {bytes} bytes, more than the limit `module_bytes_max` of {max} bytes")]
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
    #[error("too many {what}: {count}, more than the limit `{limit}` of {max}")]
    TooMany {
        /// What is counted.
        what: &'static str,
        /// The [`ModuleLimits`] field that sets the limit.
        limit: &'static str,
        /// How many the module has.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// One function body is too large.
    #[error(
        "function {index} has a body of {bytes} bytes, more than the limit \
         `function_body_bytes_max` of {max}"
    )]
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
        "function {index} has {count} locals (parameters included), more than the limit \
         `function_locals_max` of {max}"
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
    /// A `br_table` has too many targets.
    #[error(
        "function {index} has a br_table of {targets} targets, more than the limit \
         `br_table_targets_max` of {max}"
    )]
    BrTableTooLarge {
        /// Index of the function.
        index: u32,
        /// Targets of the `br_table`, the default not included.
        targets: u32,
        /// The limit.
        max: u32,
    },
    /// Blocks, loops and ifs are nested too deep.
    #[error(
        "function {index} nests blocks {depth} deep, more than the limit \
         `nesting_depth_max` of {max}"
    )]
    NestedTooDeep {
        /// Index of the function.
        index: u32,
        /// How deep.
        depth: u32,
        /// The limit.
        max: u32,
    },
    /// One function would take too long to compile.
    #[error(
        "function {index} costs {units} compile units, more than the limit \
         `function_units_max` of {max}"
    )]
    FunctionTooCostly {
        /// Index of the function.
        index: u32,
        /// Its compile units.
        units: u64,
        /// The limit.
        max: u32,
    },
    /// The module would take too long to compile.
    #[error(
        "the module costs at least {units} compile units, more than the limit \
         `compile_units_max` of {max}"
    )]
    TooCostly {
        /// Compile units counted when the budget ran out.
        units: u64,
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
    /// Compile units the module costs (see [`crate::limits`]).
    pub compile_units: u64,
    /// Bytes of the active data segments: what instantiation copies into
    /// memory, and charges fuel for.
    pub active_data_bytes: u64,
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
    limit: &'static str,
    count: impl Into<u64>,
    max: impl Into<u64>,
) -> Result<(), ValidationError> {
    let (count, max) = (count.into(), max.into());
    if count > max {
        Err(ValidationError::TooMany {
            what,
            limit,
            count,
            max,
        })
    } else {
        Ok(())
    }
}

/// Compile units counted so far, checked against the budget as they grow so
/// that a refused module costs little.
struct Budget {
    units: u64,
    max: u32,
}

impl Budget {
    fn add(&mut self, units: u64) -> Result<(), ValidationError> {
        self.units = self.units.saturating_add(units);
        if self.units > u64::from(self.max) {
            return Err(ValidationError::TooCostly {
                units: self.units,
                max: self.max,
            });
        }
        Ok(())
    }
}

/// The compile units of one function body as its operators are read.
#[derive(Debug, Default)]
struct BodyCost {
    /// Locals, parameters included.
    locals: u32,
    /// Units of the operators themselves.
    operators: u64,
    /// Operand stack heights after each operator, summed.
    heights: u64,
    /// Pairs of a join and a local or operand live across it.
    pairs: u64,
}

impl BodyCost {
    /// Prices one operator; `height` is the operand stack's height after it.
    fn add(&mut self, operator: &Operator<'_>, height: u32) {
        self.operators = self
            .operators
            .saturating_add(u64::from(operator_units(operator)));
        self.heights = self.heights.saturating_add(u64::from(height));
        let live = u64::from(self.locals).saturating_add(u64::from(height));
        self.pairs = self
            .pairs
            .saturating_add(u64::from(operator_joins(operator)).saturating_mul(live));
    }

    /// Prices the targets of a `br_table` read just before.
    fn add_br_table_targets(&mut self, targets: u64, height: u32) {
        self.operators = self
            .operators
            .saturating_add(BR_TABLE_TARGET_UNITS.saturating_mul(targets));
        let live = u64::from(self.locals).saturating_add(u64::from(height));
        self.pairs = self.pairs.saturating_add(targets.saturating_mul(live));
    }

    /// The operators, the depth of the operand stack they ran at, and
    /// every join priced for every local and operand it may make cranelift
    /// look up or keep alive.
    fn units(&self) -> u64 {
        self.operators
            .saturating_add(self.heights / STACK_HEIGHTS_PER_UNIT)
            .saturating_add(self.pairs / JOIN_LOCAL_PAIRS_PER_UNIT)
    }
}

/// Marks the functions a constant expression names with `ref.func`.
fn mark_ref_funcs(expr: &ConstExpr<'_>, escaping: &mut [bool]) -> Result<(), ValidationError> {
    for operator in expr.get_operators_reader() {
        if let Operator::RefFunc { function_index } = operator.map_err(invalid)? {
            // An index out of range is refused by the validator right after.
            if let Some(flag) = escaping.get_mut(function_index as usize) {
                *flag = true;
            }
        }
    }
    Ok(())
}

pub(crate) fn analyze(wasm: &[u8], limits: &ModuleLimits) -> Result<Analysis, ValidationError> {
    // The size cap comes first, so that every later step is bounded by it.
    if wasm.len() > limits.module_bytes_max as usize {
        return Err(ValidationError::TooLarge {
            bytes: wasm.len(),
            max: limits.module_bytes_max,
        });
    }
    // The engine's own limit holds whatever the configured one says.
    let br_table_targets_max = limits.br_table_targets_max.min(BR_TABLE_TARGETS_ENGINE_MAX);
    let mut validator = Validator::new_with_features(wasm_features());
    let mut frame_units = Vec::new();
    let mut function_types = Vec::new();
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    let mut types = None;
    let mut allocations = wasmparser::FuncValidatorAllocations::default();
    let mut budget = Budget {
        units: 0,
        max: limits.compile_units_max,
    };
    // Functions callable from outside the module, which get a trampoline.
    let mut escaping: Vec<bool> = Vec::new();
    // Parameters and results of each type.
    let mut type_values: Vec<u64> = Vec::new();
    let mut code_bytes = 0u64;
    let mut data_bytes = 0u64;
    let mut active_data_bytes = 0u64;

    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        // Structural checks that do not need validated types come before
        // validation of the payload, so that a refused module costs little.
        match &payload {
            Payload::TypeSection(reader) => {
                // Without the GC proposal every recursion group is one type.
                too_many("types", "types_max", reader.count(), limits.types_max)?;
                for group in reader.clone() {
                    for sub_type in group.map_err(invalid)?.types() {
                        let values = match &sub_type.composite_type.inner {
                            CompositeInnerType::Func(func_type) => {
                                (func_type.params().len() + func_type.results().len()) as u64
                            }
                            _ => 0,
                        };
                        type_values.push(values);
                        budget.add(
                            TYPE_UNITS.saturating_add(TYPE_VALUE_UNITS.saturating_mul(values)),
                        )?;
                    }
                }
            }
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
                too_many(
                    "functions",
                    "functions_max",
                    reader.count(),
                    limits.functions_max,
                )?;
                for type_index in reader.clone() {
                    let type_index = type_index.map_err(invalid)?;
                    // A bad index is refused by the validator right after.
                    let values = type_values.get(type_index as usize).copied().unwrap_or(0);
                    budget.add(
                        FUNCTION_UNITS.saturating_add(FUNCTION_VALUE_UNITS.saturating_mul(values)),
                    )?;
                    function_types.push(type_index);
                }
                escaping = vec![false; function_types.len()];
            }
            Payload::GlobalSection(reader) => {
                too_many("globals", "globals_max", reader.count(), limits.globals_max)?;
                budget.add(GLOBAL_UNITS.saturating_mul(u64::from(reader.count())))?;
                for global in reader.clone() {
                    mark_ref_funcs(&global.map_err(invalid)?.init_expr, &mut escaping)?;
                }
            }
            Payload::ExportSection(reader) => {
                too_many("exports", "exports_max", reader.count(), limits.exports_max)?;
                for export in reader.clone() {
                    let export = export.map_err(invalid)?;
                    if export.name.starts_with(RESERVED_EXPORT_PREFIX) {
                        return Err(ValidationError::ReservedExport(export.name.to_owned()));
                    }
                    if export.kind == ExternalKind::Func {
                        if let Some(flag) = escaping.get_mut(export.index as usize) {
                            *flag = true;
                        }
                    }
                    exports.push((export.name.to_owned(), export.kind, export.index));
                }
            }
            Payload::StartSection { .. } => return Err(ValidationError::StartFunction),
            Payload::ElementSection(reader) => {
                too_many(
                    "element segments",
                    "element_segments_max",
                    reader.count(),
                    limits.element_segments_max,
                )?;
                budget.add(ELEMENT_SEGMENT_UNITS.saturating_mul(u64::from(reader.count())))?;
                let mut items = 0u64;
                for element in reader.clone() {
                    match element.map_err(invalid)?.items {
                        ElementItems::Functions(functions) => {
                            items = items.saturating_add(u64::from(functions.count()));
                            for function in functions {
                                let index = function.map_err(invalid)? as usize;
                                if let Some(flag) = escaping.get_mut(index) {
                                    *flag = true;
                                }
                            }
                        }
                        ElementItems::Expressions(_, expressions) => {
                            items = items.saturating_add(u64::from(expressions.count()));
                            for expression in expressions {
                                mark_ref_funcs(&expression.map_err(invalid)?, &mut escaping)?;
                            }
                        }
                    }
                    too_many(
                        "element items",
                        "element_items_max",
                        items,
                        limits.element_items_max,
                    )?;
                }
                budget.add(ELEMENT_ITEM_UNITS.saturating_mul(items))?;
            }
            Payload::DataSection(reader) => {
                too_many(
                    "data segments",
                    "data_segments_max",
                    reader.count(),
                    limits.data_segments_max,
                )?;
                for data in reader.clone() {
                    let data = data.map_err(invalid)?;
                    let bytes = data.data.len() as u64;
                    data_bytes = data_bytes.saturating_add(bytes);
                    too_many(
                        "bytes of data segments",
                        "data_bytes_max",
                        data_bytes,
                        limits.data_bytes_max,
                    )?;
                    if let DataKind::Active { .. } = data.kind {
                        active_data_bytes = active_data_bytes.saturating_add(bytes);
                        budget.add(DATA_SEGMENT_UNITS)?;
                    }
                }
            }
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
                code_bytes = code_bytes.saturating_add(body_bytes as u64);
                too_many(
                    "bytes of function bodies",
                    "code_bytes_max",
                    code_bytes,
                    limits.code_bytes_max,
                )?;
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
                let mut cost = BodyCost {
                    locals,
                    ..BodyCost::default()
                };
                let mut operators = OperatorsReader::new(reader);
                while !operators.eof() {
                    let (operator, offset) = operators.read_with_offset().map_err(invalid)?;
                    func.op(offset, &operator).map_err(invalid)?;
                    let height = func.operand_stack_height();
                    cost.add(&operator, height);
                    if let Operator::BrTable { targets } = &operator {
                        if targets.len() > br_table_targets_max {
                            return Err(ValidationError::BrTableTooLarge {
                                index,
                                targets: targets.len(),
                                max: br_table_targets_max,
                            });
                        }
                        // Priced with the default target, a branch too.
                        cost.add_br_table_targets(
                            u64::from(targets.len()).saturating_add(1),
                            height,
                        );
                    }
                    // The function's own frame is the first on the stack.
                    let depth = func.control_stack_height().saturating_sub(1);
                    if depth > limits.nesting_depth_max {
                        return Err(ValidationError::NestedTooDeep {
                            index,
                            depth,
                            max: limits.nesting_depth_max,
                        });
                    }
                    if cost.units() > u64::from(limits.function_units_max) {
                        return Err(ValidationError::FunctionTooCostly {
                            index,
                            units: cost.units(),
                            max: limits.function_units_max,
                        });
                    }
                    stack_max = stack_max.max(height);
                }
                operators.finish().map_err(invalid)?;
                budget.add(cost.units())?;
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
        "memory_pages_initial_max",
        memory.initial,
        limits.memory_pages_initial_max,
    )?;
    for table in 0..types.table_count() {
        too_many(
            "initial table elements",
            "table_elements_initial_max",
            types.table_at(table).initial,
            limits.table_elements_initial_max,
        )?;
    }
    too_many(
        "tables",
        "TABLES_MAX",
        types.table_count(),
        crate::limits::TABLES_MAX,
    )?;
    for (type_index, _) in function_types
        .iter()
        .zip(&escaping)
        .filter(|(_, escapes)| **escapes)
    {
        let values = type_values.get(*type_index as usize).copied().unwrap_or(0);
        budget.add(
            ESCAPING_FUNCTION_UNITS.saturating_add(ESCAPING_VALUE_UNITS.saturating_mul(values)),
        )?;
    }

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
            compile_units: budget.units,
            active_data_bytes,
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
