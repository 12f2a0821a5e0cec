//! The one wasmtime configuration of the network, its fuel cost table and the
//! runtime id that a job is priced for.
//!
//! Fuel counts are a function of the wasmtime version, the cost table and the
//! instrumentation this crate applies at admission. All three are therefore
//! part of the protocol: [`RUNTIME_ID`] names them, [`runtime_hash`] commits
//! to them, and any change is a protocol upgrade checked against the pinned
//! reference jobs in the tests.

use crate::features::wasm_features;
use crate::limits::{DEPTH_UNITS_MAX, FRAME_BASE_UNITS};
use compute_proto::sha3_256_concat as sha3_256_parts;
use wasmtime::{OperatorCost, VariableOperatorCost, WasmFeatures};

/// Name of the runtime a job is priced for: wasmtime version, cost table
/// version, instrumentation version and instantiation price version.
pub const RUNTIME_ID: &str = "wasmtime-48.0.8/costs-1/depth-1/instantiate-1";

/// Version of the fuel cost table built by [`operator_cost_table`].
pub const COST_TABLE_VERSION: u32 = 1;

/// Bytes of native stack that WebAssembly may use on the calling thread.
///
/// The logical depth limit (see [`crate::instrument`]) is sized to stay well
/// inside this, so a native stack overflow only happens if the sizing
/// assumption is broken, and is then a worker fault rather than a result.
/// The calling thread must have this much stack free plus a margin for the
/// host: 512 KiB fits in the 2 MiB of a default spawned Rust thread.
pub const MAX_WASM_STACK_BYTES: usize = 512 * 1024;

/// Fuel charged for one operator, by its name in `wasmparser`.
///
/// The aim is not cycle accuracy but a fixed, written-down price in which
/// operators that are much slower than an add cost more.
fn operator_cost(proposal: &str, name: &str) -> u8 {
    match name {
        // No machine code is generated for these.
        "Nop" | "Drop" | "Block" | "Loop" | "Unreachable" | "Return" | "Else" | "End" => 0,
        // Integer division and remainder take tens of cycles.
        "I32DivS" | "I32DivU" | "I32RemS" | "I32RemU" | "I64DivS" | "I64DivU" | "I64RemS"
        | "I64RemU" => 4,
        // Division and square root are the slow floating-point operators.
        "F32Div" | "F64Div" | "F32Sqrt" | "F64Sqrt" => 4,
        // A call saves registers and sets up a frame; an indirect call also
        // checks the table bounds and the signature.
        "Call" => 4,
        "CallIndirect" => 6,
        // Growing is a call into the host plus the per-page charge below.
        "MemoryGrow" | "TableGrow" => 16,
        // Bulk operators pay their fixed part here and per byte below.
        "MemoryCopy" | "MemoryFill" | "MemoryInit" | "TableCopy" | "TableFill" | "TableInit" => 4,
        _ if proposal == "simd" => 2,
        _ => 1,
    }
}

/// Fuel charged per unit of work for the operators whose work depends on an
/// operand; without these, one `memory.fill` of the whole memory would cost
/// as little as an add.
fn variable_costs() -> VariableOperatorCost {
    VariableOperatorCost {
        memory_copy_per_byte: 1,
        memory_fill_per_byte: 1,
        memory_init_per_byte: 1,
        // A fresh page is zeroed when it is first touched: charge a share.
        memory_grow_per_page: 64,
        table_copy_per_element: 1,
        table_fill_per_element: 1,
        table_init_per_element: 1,
        table_grow_per_element: 1,
        // GC is off; these operators cannot occur, but the table is total.
        array_copy_per_element: 1,
        array_fill_per_element: 1,
        array_new_data_per_element: 1,
        array_init_data_per_element: 1,
        array_new_elem_per_element: 1,
        array_init_elem_per_element: 1,
        array_new_default_per_element: 1,
        array_new_per_element: 1,
    }
}

macro_rules! cost_table {
    ($(@$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*))*) => {
        /// The fuel cost table: every operator, set explicitly.
        #[must_use]
        pub fn operator_cost_table() -> OperatorCost {
            let mut table = OperatorCost::new();
            $( table.$op = operator_cost(stringify!($proposal), stringify!($op)); )*
            table.variable = variable_costs();
            table
        }

        /// The cost table as text, one `operator=fuel` line per operator in
        /// `wasmparser`'s order, then the variable costs: the bytes that
        /// [`cost_table_hash`] hashes.
        #[must_use]
        pub fn cost_table_text() -> String {
            let table = operator_cost_table();
            let mut text = format!("compute/costs/v{COST_TABLE_VERSION}\n");
            $( text.push_str(&format!("{}={}\n", stringify!($op), table.$op)); )*
            let v = &table.variable;
            for (name, cost) in [
                ("memory_copy_per_byte", v.memory_copy_per_byte),
                ("memory_fill_per_byte", v.memory_fill_per_byte),
                ("memory_init_per_byte", v.memory_init_per_byte),
                ("memory_grow_per_page", v.memory_grow_per_page),
                ("table_copy_per_element", v.table_copy_per_element),
                ("table_fill_per_element", v.table_fill_per_element),
                ("table_init_per_element", v.table_init_per_element),
                ("table_grow_per_element", v.table_grow_per_element),
            ] {
                text.push_str(&format!("{name}={cost}\n"));
            }
            text
        }
    };
}

wasmparser::for_each_operator!(cost_table);

/// Fuel a task pays for instantiating a module whose active data segments
/// hold `active_data_bytes` bytes: `memory_init_per_byte` per byte, as if
/// each segment were a `memory.init`, and nothing else.
///
/// The price is fixed here rather than metered, because what wasmtime does
/// (and meters) at instantiation depends on the memory strategy: with
/// copy-on-write images the data is mapped and never copied, without them
/// it is copied segment by segment, and which one happens depends on the
/// layout of the segments and on the host. A task must cost the same on
/// every machine.
#[must_use]
pub fn instantiation_fuel(active_data_bytes: u64) -> u64 {
    active_data_bytes.saturating_mul(u64::from(variable_costs().memory_init_per_byte))
}

/// SHA3-256 of [`cost_table_text`].
#[must_use]
pub fn cost_table_hash() -> [u8; 32] {
    sha3_256_parts(&[cost_table_text().as_bytes()])
}

/// SHA3-256 over everything that decides outputs and fuel counts: the
/// runtime id, the cost table, the feature set and the depth budget.
#[must_use]
pub fn runtime_hash() -> [u8; 32] {
    sha3_256_parts(&[
        RUNTIME_ID.as_bytes(),
        &[0],
        &cost_table_hash(),
        &wasm_features().bits().to_be_bytes(),
        &DEPTH_UNITS_MAX.to_be_bytes(),
        &FRAME_BASE_UNITS.to_be_bytes(),
    ])
}

/// Settings of the engine that are a worker's own choice (they change speed
/// and capacity, never results).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Instances alive at once (pool slots); more concurrent tasks than this
    /// is host exhaustion, a worker fault.
    pub instances_max: u32,
    /// Bytes of linear memory one instance may reach; must be at least the
    /// largest `memory_bytes_max` of any task.
    pub memory_bytes_max: u64,
    /// Table elements one instance may reach.
    pub table_elements_max: u32,
    /// Whether fuel is metered. Always on in the network; off only to
    /// measure what metering costs.
    pub fuel: bool,
    /// Whether NaNs are canonicalised. Always on in the network; off only to
    /// measure what it costs.
    pub nan_canonicalization: bool,
    /// Whether linear memories start from copy-on-write images of the
    /// module's data. On in the network: it only changes speed, since
    /// instantiation is priced by [`instantiation_fuel`] either way; off
    /// only to measure it.
    pub memory_init_cow: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            instances_max: 64,
            memory_bytes_max: crate::limits::MEMORY_BYTES_MAX_DEFAULT,
            table_elements_max: crate::limits::TABLE_ELEMENTS_MAX_DEFAULT,
            fuel: true,
            nan_canonicalization: true,
            memory_init_cow: true,
        }
    }
}

/// Bytes of each pooled linear memory kept resident between tasks.
pub const KEEP_RESIDENT_BYTES: usize = 2 * 1024 * 1024;

/// Largest memory image built for a module regardless of how sparse its
/// data is. Beyond it wasmtime only builds an image when the data fills at
/// least half of it, so an image is at most this or twice the module's
/// data: a tiny module cannot make every worker hold megabytes of zeros in
/// its caches (wasmtime's default is 16 MiB).
pub const MEMORY_IMAGE_DENSE_BYTES_MAX: u64 = 1024 * 1024;

/// Bytes of each pooled table kept resident between tasks.
pub const TABLE_KEEP_RESIDENT_BYTES: usize = 64 * 1024;

/// Builds the engine.
///
/// # Errors
/// When wasmtime refuses the configuration (for example, the host cannot
/// reserve the pool's address space).
pub fn build_engine(settings: &EngineSettings) -> wasmtime::Result<wasmtime::Engine> {
    let mut config = wasmtime::Config::new();
    // Fuel is the deterministic unit of work the chain credits, and the
    // deterministic way to stop an endless loop.
    config.consume_fuel(settings.fuel);
    // An explicit table, so that fuel does not silently change with a
    // wasmtime default.
    config.operator_cost(operator_cost_table());
    // The wall-clock watchdog: a tick thread advances the epoch; a task past
    // its deadline traps with `Interrupt`, which is a worker fault.
    config.epoch_interruption(true);
    // NaN bit patterns are the one nondeterminism of scalar and SIMD floats.
    config.cranelift_nan_canonicalization(settings.nan_canonicalization);
    // Exactly the features the chain's validator admits; relaxed SIMD is off
    // and would be deterministic if it ever were on.
    config.wasm_features(WasmFeatures::all(), false);
    config.wasm_features(wasm_features(), true);
    config.relaxed_simd_deterministic(true);
    // Memory starts from a copy-on-write image of the module's data: a
    // module's data segments cost nothing at instantiation and, folded into
    // one image, nothing at compile time either (copying them instead
    // compiles code for every segment: 4,096 segments took 0.8 s against
    // 10 ms). Fuel does not depend on it (`instantiation_fuel`).
    config.memory_init_cow(settings.memory_init_cow);
    config.memory_guaranteed_dense_image_size(MEMORY_IMAGE_DENSE_BYTES_MAX);
    // A fixed native stack for wasm; see MAX_WASM_STACK_BYTES.
    config.max_wasm_stack(MAX_WASM_STACK_BYTES);
    // No backtraces: a module trapping in a loop must not make the host walk
    // stacks, and a trap's kind is all a result records.
    config.wasm_backtrace_max_frames(None);
    // Unwind tables are only for external profilers and debuggers.
    config.native_unwind_info(false);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config.parallel_compilation(true);

    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_core_instances(settings.instances_max);
    pool.total_memories(settings.instances_max);
    pool.total_tables(settings.instances_max);
    pool.max_memories_per_module(1);
    pool.max_tables_per_module(crate::limits::TABLES_MAX);
    pool.max_memory_size(usize::try_from(settings.memory_bytes_max).unwrap_or(usize::MAX));
    pool.table_elements(usize::try_from(settings.table_elements_max).unwrap_or(usize::MAX));
    // Reset the first pages of a returned slot with memset instead of
    // madvise, so the next task does not fault them in again: a typical job
    // touches about a megabyte (stack, data segments, input), and the page
    // faults were most of its start-up cost. Costs at most
    // `instances_max x KEEP_RESIDENT_BYTES` of resident memory.
    pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
    pool.table_keep_resident(TABLE_KEEP_RESIDENT_BYTES);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));

    wasmtime::Engine::new(&config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_table_lists_every_operator_once_and_prices_division_higher() {
        let text = cost_table_text();
        assert!(text.contains("\nI32Add=1\n"));
        assert!(text.contains("\nI64DivU=4\n"));
        assert!(text.contains("\nNop=0\n"));
        assert!(text.contains("\nmemory_grow_per_page=64\n"));
        let lines: Vec<&str> = text.lines().collect();
        let mut names: Vec<&str> = lines
            .iter()
            .filter_map(|line| line.split('=').next())
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "an operator appears twice");
    }

    /// Changing this hash changes fuel counts: it is a protocol upgrade.
    #[test]
    fn cost_table_hash_is_pinned() {
        assert_eq!(hex::encode(cost_table_hash()), PINNED_COST_TABLE_HASH);
    }

    const PINNED_COST_TABLE_HASH: &str =
        "afc122fa41933e8bec496002c8e389c03c3433bcda6b9b292de99ec96addd1c1";
}
