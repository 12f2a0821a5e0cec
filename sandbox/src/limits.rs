//! Limits on modules and tasks, with their defaults, the call-depth budget
//! of the instrumentation, and the compile-unit model that bounds how long a
//! module takes to compile.
//!
//! Module limits are checked at admission (the chain's `StoreModule` and the
//! worker's compile step run the same checks). Task limits are named by the
//! job and the chain's parameters, so every worker runs a task under the
//! same ones; that is what makes "memory limit reached" a result.
//!
//! Admission promises two things about every module it accepts: the pinned
//! wasmtime compiles it (no engine limit is reachable), and compiling and
//! instantiating it is fast. The chain compiles a module in the block that
//! stores it, so the slowest admissible module bounds a block's time.
//! Counting bytes is not enough for the second promise: a byte of `loop` or
//! `call_indirect` costs cranelift twenty to a hundred times what a byte of
//! arithmetic does (each loop head checks fuel and the epoch, each call is
//! wrapped in the depth accounting and each indirect call checks the table),
//! and the cost per operator grows with the size of the function. So every
//! part of a module is priced in compile units, each at most about a
//! microsecond of cranelift work on one core of the reference machine, and
//! a module and each of its functions have a budget. The weights were
//! measured with `sandbox/benches/compile_bombs.rs` (docs/SANDBOX.md has
//! the figures).

use wasmparser::Operator;

/// Bytes in one WebAssembly page.
pub const WASM_PAGE_BYTES: u64 = 65_536;

/// Default for [`ModuleLimits::module_bytes_max`].
pub const MODULE_BYTES_MAX_DEFAULT: u32 = 4 * 1024 * 1024;

/// Default for a task's linear memory: 256 MiB.
pub const MEMORY_BYTES_MAX_DEFAULT: u64 = 256 * 1024 * 1024;

/// Default for a task's table elements.
pub const TABLE_ELEMENTS_MAX_DEFAULT: u32 = 65_536;

/// Tables a module may define (Rust emits one for indirect calls).
pub const TABLES_MAX: u32 = 1;

/// Targets of the largest `br_table` that cranelift in wasmtime 48 compiles
/// (`MAX_BR_TABLE_TARGETS`, the limit V8 and SpiderMonkey also use), not
/// counting the default target; larger ones are valid WebAssembly that fails
/// to compile.
pub const BR_TABLE_TARGETS_ENGINE_MAX: u32 = 65_520;

/// Units charged for the fixed part of a native frame (return address, frame
/// pointer, saved registers, the context pointer) by the call-depth
/// instrumentation (module `instrument`).
pub const FRAME_BASE_UNITS: u32 = 8;

/// Units that nested calls may hold at once: the logical call-depth budget
/// that the instrumentation enforces, sized to stay well inside the native
/// stack the engine gives WebAssembly (`MAX_WASM_STACK_BYTES`).
pub const DEPTH_UNITS_MAX: u32 = 24_576;

/// Largest frame admitted: at least 8 of them nest within the budget.
pub const FRAME_UNITS_MAX: u32 = DEPTH_UNITS_MAX / 8;

/// Compile units of every defined function, for its own compilation and
/// linking, whatever its body.
pub const FUNCTION_UNITS: u64 = 100;

/// Extra compile units of every parameter and result of a defined
/// function (its prologue and returns move each).
pub const FUNCTION_VALUE_UNITS: u64 = 3;

/// Extra compile units of a function that can be called from outside the
/// module (exported, in an element segment, or named by `ref.func` in a
/// global): it gets an entry trampoline of its own.
pub const ESCAPING_FUNCTION_UNITS: u64 = 100;

/// Extra compile units of every parameter and result of an escaping
/// function: its entry trampoline moves each between the host's array and
/// registers or stack (1,000 parameters took 6.7 ms).
pub const ESCAPING_VALUE_UNITS: u64 = 12;

/// Compile units of every function type: each gets an exit trampoline.
pub const TYPE_UNITS: u64 = 50;

/// Extra compile units of every parameter and result of a function type.
pub const TYPE_VALUE_UNITS: u64 = 12;

/// Compile units of an active data segment: when its memory is not built
/// from an image, the instantiation code copies each segment in turn, and
/// that code is compiled twice (wasm and host calling conventions).
pub const DATA_SEGMENT_UNITS: u64 = 200;

/// Compile units of an element segment.
pub const ELEMENT_SEGMENT_UNITS: u64 = 40;

/// Compile units of each item of an element segment (stored one by one by
/// the instantiation code when the table is not precomputed).
pub const ELEMENT_ITEM_UNITS: u64 = 10;

/// Compile units of each global (its initialiser).
pub const GLOBAL_UNITS: u64 = 2;

/// Compile units of each target of a `br_table`, beyond the operator's own.
pub const BR_TABLE_TARGET_UNITS: u64 = 1;

/// Pairs of a join and a local (parameters included) or operand-stack
/// value live across it that cost one compile unit.
///
/// A join is a point where control flow from several places meets: the
/// target of a branch, or a loop head (whose fuel and epoch checks make two).
/// Cranelift builds SSA form on demand and looks a local up through every
/// join between its uses and its definition, and keeps every value on the
/// operand stack live across it, so a function's cost grows with the
/// product: 2,000 locals read after 300 loops took half a second to
/// compile, in a function of 35,000 units of operators.
pub const JOIN_LOCAL_PAIRS_PER_UNIT: u64 = 2;

/// Operand stack height, summed over a function's operators, that costs
/// one compile unit.
///
/// Values on the operand stack are all live at once; a deep stack makes
/// register allocation work hard for every operator: 1,000 values pushed
/// and added up took 55 ms to compile, 500 took 7 ms, 100 under 1 ms.
/// Compilers keep the stack shallow (a few values), so this costs them
/// little.
pub const STACK_HEIGHTS_PER_UNIT: u64 = 16;

/// Joins an operator makes (see [`JOIN_LOCAL_PAIRS_PER_UNIT`]); a
/// `br_table` makes one per target, counted with its targets.
const fn joins_of(name: &str) -> u32 {
    if eq(name, "Loop") {
        return 2;
    }
    if eq(name, "If")
        || eq(name, "Br")
        || eq(name, "BrIf")
        || eq(name, "CallIndirect")
        || starts_with(name, "Table")
    {
        return 1;
    }
    0
}

/// Compile units of one operator, by its name in `wasmparser`; see
/// [`operator_units`].
const fn units_of(proposal: &str, name: &str) -> u32 {
    // Control flow and calls: basic blocks are what cranelift's cost grows
    // with, and these make the most of them per byte.
    if eq(name, "Loop") {
        // Fuel and epoch checks at the head, each with a cold call.
        return 80;
    }
    if eq(name, "CallIndirect") {
        // Depth accounting, table bounds, lazy table initialisation, null
        // and signature checks.
        return 60;
    }
    if eq(name, "Call") {
        // Depth accounting (a branch to a trap) and fuel saved and reloaded.
        return 30;
    }
    if eq(name, "If") || eq(name, "BrIf") || eq(name, "BrTable") {
        return 30;
    }
    if eq(name, "Block") || eq(name, "Else") {
        return 2;
    }
    // Tables: lazy initialisation makes every access a branch and a call.
    if starts_with(name, "Table") || eq(name, "ElemDrop") {
        return 30;
    }
    // Bulk memory: bounds checks, fuel per byte and a call into the host.
    if eq(name, "MemoryFill") || eq(name, "MemoryCopy") || eq(name, "MemoryInit") {
        return 10;
    }
    if eq(name, "MemoryGrow") || eq(name, "DataDrop") {
        return 5;
    }
    // Floating point: each result is NaN-canonicalised (a compare and a
    // select); conversions to integers check their range.
    let float = starts_with(name, "F32") || starts_with(name, "F64");
    let moves = contains(name, "Load")
        || contains(name, "Store")
        || contains(name, "Const")
        || contains(name, "Lane")
        || contains(name, "Splat");
    if float && !moves {
        return 10;
    }
    if starts_with(name, "I") && (contains(name, "TruncF") || contains(name, "TruncSatF")) {
        return 10;
    }
    if eq(proposal, "simd") {
        return 3;
    }
    // Integer division and remainder check for zero and overflow.
    if starts_with(name, "I") && (contains(name, "Div") || contains(name, "Rem")) {
        return 8;
    }
    1
}

const fn eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn starts_with(name: &str, prefix: &str) -> bool {
    let (name, prefix) = (name.as_bytes(), prefix.as_bytes());
    if name.len() < prefix.len() {
        return false;
    }
    let mut i = 0;
    while i < prefix.len() {
        if name[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn contains(name: &str, part: &str) -> bool {
    let (name, part) = (name.as_bytes(), part.as_bytes());
    let mut start = 0;
    while start + part.len() <= name.len() {
        let mut i = 0;
        while i < part.len() && name[start + i] == part[i] {
            i += 1;
        }
        if i == part.len() {
            return true;
        }
        start += 1;
    }
    false
}

macro_rules! operator_units {
    ($(@$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*))*) => {
        /// Joins one operator makes (see [`JOIN_LOCAL_PAIRS_PER_UNIT`]; a
        /// `br_table` makes one per target, counted separately).
        #[must_use]
        pub fn operator_joins(operator: &Operator<'_>) -> u32 {
            match operator {
                $( Operator::$op { .. } => const { joins_of(stringify!($op)) }, )*
                #[allow(unreachable_patterns)]
                _ => 2,
            }
        }

        /// Compile units of one operator (a `br_table`'s targets are
        /// priced separately, [`BR_TABLE_TARGET_UNITS`] each). Only
        /// operators of the admitted features are ever priced; the table is
        /// total anyway.
        #[must_use]
        pub fn operator_units(operator: &Operator<'_>) -> u32 {
            match operator {
                $( Operator::$op { .. } => const { units_of(stringify!($proposal), stringify!($op)) }, )*
                // `Operator` is non-exhaustive: an operator added by a later
                // wasmparser is priced as the dearest known one until it is
                // measured.
                #[allow(unreachable_patterns)]
                _ => 100,
            }
        }
    };
}

wasmparser::for_each_operator!(operator_units);

/// Limits on a module, checked before it is stored or compiled.
///
/// Every count is checked against its own limit and every part of the
/// module is priced in compile units (see the module documentation); a
/// module at any single limit stays within the compile-unit budget, so each
/// limit can be reached on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleLimits {
    /// Bytes of the whole module.
    pub module_bytes_max: u32,
    /// Function types defined.
    pub types_max: u32,
    /// Functions defined.
    pub functions_max: u32,
    /// Bytes of one function body (locals included).
    pub function_body_bytes_max: u32,
    /// Locals of one function, parameters included.
    pub function_locals_max: u32,
    /// Compile units of one function body, so that no function is large
    /// enough for cranelift's superlinear passes to matter.
    pub function_units_max: u32,
    /// Bytes of all function bodies together.
    pub code_bytes_max: u32,
    /// Compile units of the whole module: the bound on its compile time.
    pub compile_units_max: u32,
    /// Targets of one `br_table`, not counting the default one (as
    /// `wasmparser` and cranelift count them); never more than
    /// [`BR_TABLE_TARGETS_ENGINE_MAX`], whatever this says.
    pub br_table_targets_max: u32,
    /// Blocks, loops and ifs open at once in a function.
    pub nesting_depth_max: u32,
    /// Globals defined.
    pub globals_max: u32,
    /// Exports.
    pub exports_max: u32,
    /// Data segments, active and passive.
    pub data_segments_max: u32,
    /// Bytes of all data segments together.
    pub data_bytes_max: u32,
    /// Element segments of any kind.
    pub element_segments_max: u32,
    /// Items of all element segments together.
    pub element_items_max: u32,
    /// Initial pages of the memory.
    pub memory_pages_initial_max: u32,
    /// Initial elements of each table.
    pub table_elements_initial_max: u32,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        Self {
            module_bytes_max: MODULE_BYTES_MAX_DEFAULT,
            types_max: 1_024,
            functions_max: 2_048,
            function_body_bytes_max: 128 * 1024,
            function_locals_max: 2_048,
            function_units_max: 32_768,
            code_bytes_max: 256 * 1024,
            compile_units_max: 400_000,
            br_table_targets_max: 16_384,
            nesting_depth_max: 256,
            globals_max: 1_024,
            exports_max: 1_024,
            data_segments_max: 1_024,
            data_bytes_max: 256 * 1024,
            element_segments_max: 1_024,
            element_items_max: 16_384,
            memory_pages_initial_max: (MEMORY_BYTES_MAX_DEFAULT / WASM_PAGE_BYTES) as u32,
            table_elements_initial_max: TABLE_ELEMENTS_MAX_DEFAULT,
        }
    }
}

/// Limits of one task run; all of them are part of the job's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLimits {
    /// Fuel the task may burn (instantiation, alloc, input copy-in and run
    /// together).
    pub fuel_max: u64,
    /// Bytes the linear memory may reach.
    pub memory_bytes_max: u64,
    /// Elements a table may reach.
    pub table_elements_max: u32,
    /// Bytes of input accepted.
    pub input_bytes_max: u32,
    /// Bytes of output accepted; a larger output is a deterministic failure.
    pub output_bytes_max: u32,
    /// Wall-clock watchdog. Not part of the result: expiry is a worker fault
    /// (a slow machine must not be able to decide an outcome).
    pub timeout_ms: u64,
}

impl Default for TaskLimits {
    fn default() -> Self {
        Self {
            fuel_max: 10_000_000_000,
            memory_bytes_max: MEMORY_BYTES_MAX_DEFAULT,
            table_elements_max: TABLE_ELEMENTS_MAX_DEFAULT,
            input_bytes_max: 64 * 1024 * 1024,
            output_bytes_max: 64 * 1024 * 1024,
            timeout_ms: 60_000,
        }
    }
}

impl TaskLimits {
    /// The limits every replica of a task runs under, on a worker and in
    /// the chain's referee alike: the job's fuel limit, a linear memory of
    /// `memory_pages` wasm pages (the chain's `sandbox_memory_pages`), and
    /// the default table, input and output bounds. Only the watchdog is the
    /// caller's: its expiry is a fault of the machine, never a result.
    #[must_use]
    pub fn for_task(fuel_limit: u64, memory_pages: u64, timeout_ms: u64) -> Self {
        Self {
            fuel_max: fuel_limit,
            memory_bytes_max: memory_pages.saturating_mul(WASM_PAGE_BYTES),
            timeout_ms,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_priced_by_what_they_cost_cranelift() {
        let memarg = wasmparser::MemArg {
            align: 3,
            max_align: 3,
            offset: 0,
            memory: 0,
        };
        let empty = wasmparser::BlockType::Empty;
        for (operator, units, joins) in [
            (Operator::I32Add, 1, 0),
            (Operator::Nop, 1, 0),
            (Operator::F64Load { memarg }, 1, 0),
            (Operator::Block { blockty: empty }, 2, 0),
            (Operator::Loop { blockty: empty }, 80, 2),
            (Operator::If { blockty: empty }, 30, 1),
            (Operator::BrIf { relative_depth: 0 }, 30, 1),
            (Operator::Call { function_index: 0 }, 30, 0),
            (
                Operator::CallIndirect {
                    type_index: 0,
                    table_index: 0,
                },
                60,
                1,
            ),
            (Operator::TableGet { table: 0 }, 30, 1),
            (Operator::MemoryFill { mem: 0 }, 10, 0),
            (Operator::F64Sqrt, 10, 0),
            (Operator::F32x4Add, 10, 0),
            (Operator::I32TruncF64S, 10, 0),
            (Operator::I64DivU, 8, 0),
            (Operator::I32x4Add, 3, 0),
        ] {
            assert_eq!(operator_units(&operator), units, "{operator:?}");
            assert_eq!(operator_joins(&operator), joins, "{operator:?}");
        }
    }

    /// Each limit must be reachable on its own within the budget, or it
    /// would be a dead letter.
    #[test]
    fn every_default_limit_fits_in_the_compile_unit_budget() {
        let limits = ModuleLimits::default();
        let budget = u64::from(limits.compile_units_max);
        // Two functions (`alloc` and `run`) and the ABI's two types exist in
        // any module; allow a margin for them.
        let base = 2 * (FUNCTION_UNITS + ESCAPING_FUNCTION_UNITS + 10) + 2 * (TYPE_UNITS + 16);
        let parts = [
            (
                "functions",
                u64::from(limits.functions_max) * (FUNCTION_UNITS + 4),
            ),
            (
                "types",
                u64::from(limits.types_max) * (TYPE_UNITS + 2 * TYPE_VALUE_UNITS),
            ),
            (
                "data segments",
                u64::from(limits.data_segments_max) * DATA_SEGMENT_UNITS,
            ),
            (
                "element segments",
                u64::from(limits.element_segments_max)
                    * (ELEMENT_SEGMENT_UNITS + ELEMENT_ITEM_UNITS),
            ),
            (
                "element items",
                u64::from(limits.element_items_max) * ELEMENT_ITEM_UNITS + ELEMENT_SEGMENT_UNITS,
            ),
            ("globals", u64::from(limits.globals_max) * GLOBAL_UNITS),
            (
                "one function",
                u64::from(limits.function_units_max) + FUNCTION_UNITS,
            ),
        ];
        for (what, units) in parts {
            assert!(
                base + units <= budget,
                "{what} at the limit cost {units} units"
            );
        }
        assert!(limits.br_table_targets_max <= BR_TABLE_TARGETS_ENGINE_MAX);
        assert!(
            u64::from(limits.br_table_targets_max) * BR_TABLE_TARGET_UNITS
                < u64::from(limits.function_units_max)
        );
    }
}
