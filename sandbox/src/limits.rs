//! Limits on modules and tasks, with their defaults.
//!
//! Module limits are checked at admission (the chain's `StoreModule` and the
//! worker's compile step run the same checks). Task limits are named by the
//! job and the chain's parameters, so every worker runs a task under the
//! same ones; that is what makes "memory limit reached" a result.

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

/// Limits on a module, checked before it is stored or compiled.
///
/// They bound compile time and memory: compilation is close to linear in
/// code size, and capping each function body keeps a single huge function
/// (the usual compile bomb) from dominating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleLimits {
    /// Bytes of the whole module.
    pub module_bytes_max: u32,
    /// Functions defined.
    pub functions_max: u32,
    /// Bytes of one function body.
    pub function_body_bytes_max: u32,
    /// Locals of one function, parameters included.
    pub function_locals_max: u32,
    /// Globals defined.
    pub globals_max: u32,
    /// Exports.
    pub exports_max: u32,
    /// Initial pages of the memory.
    pub memory_pages_initial_max: u32,
    /// Initial elements of each table.
    pub table_elements_initial_max: u32,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        Self {
            module_bytes_max: MODULE_BYTES_MAX_DEFAULT,
            functions_max: 20_000,
            function_body_bytes_max: 512 * 1024,
            function_locals_max: 2_048,
            globals_max: 1_024,
            exports_max: 1_024,
            memory_pages_initial_max: (MEMORY_BYTES_MAX_DEFAULT / WASM_PAGE_BYTES) as u32,
            table_elements_initial_max: TABLE_ELEMENTS_MAX_DEFAULT,
        }
    }
}

/// Limits of one task run; all of them are part of the job's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLimits {
    /// Fuel the task may burn (alloc, input copy-in and run together).
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
