//! The sandbox: prepares modules (validate, instrument, compile, cache) and
//! runs tasks in fresh instances.
//!
//! Per task, a warm run costs: a `Store` (a few hundred bytes), an instance
//! from the pooling allocator through the module's `InstancePre` (no export
//! resolution, no linking), copying data segments into memory, `alloc`,
//! copying the input in, `run`, copying the output out, and returning the
//! slot to the pool (which resets the memory it used). See docs/SANDBOX.md
//! for the measured figures.

use crate::engine::{build_engine, runtime_hash, EngineSettings};
use crate::instrument::{instrument, InstrumentError, DEPTH_EXPORT, DEPTH_UNITS_MAX};
use crate::limits::{ModuleLimits, TaskLimits};
use crate::outcome::{Execution, Failure, Outcome, Verdict, Verification, WorkerFault};
use crate::validate::{analyze, ModuleInfo, ValidationError};
use compute_proto::{sha3_256_concat as sha3_256_parts, ModuleId};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{Engine, Extern, InstancePre, Linker, Module, ModuleExport, Store, Trap, TypedFunc};

/// Configuration of a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Engine settings (pool size, memory reservation, metering switches).
    pub engine: EngineSettings,
    /// Admission limits for modules.
    pub module_limits: ModuleLimits,
    /// Directory of compiled artifacts; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Compiled modules kept in memory.
    pub memory_cache_modules_max: usize,
    /// Period of the watchdog's clock.
    pub watchdog_tick_ms: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            engine: EngineSettings::default(),
            module_limits: ModuleLimits::default(),
            cache_dir: None,
            memory_cache_modules_max: 256,
            watchdog_tick_ms: 10,
        }
    }
}

/// Why a module could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The module was refused at admission: a property of the module.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The instrumentation pass failed (a bug).
    #[error(transparent)]
    Instrument(#[from] InstrumentError),
    /// wasmtime refused a module that passed admission (a bug).
    #[error("compilation failed: {0}")]
    Compile(String),
    /// The on-disk cache could not be written.
    #[error("compiled-module cache: {0}")]
    Cache(#[from] std::io::Error),
}

/// Why a sandbox could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// wasmtime refused the configuration.
    #[error("engine configuration refused: {0}")]
    Engine(String),
    /// The cache directory could not be created.
    #[error("cache directory: {0}")]
    Cache(#[from] std::io::Error),
    /// The watchdog thread could not be started.
    #[error("watchdog thread: {0}")]
    Watchdog(String),
}

/// A module ready to run: admitted, instrumented, compiled and pre-linked.
pub struct PreparedModule {
    info: ModuleInfo,
    pre: InstancePre<HostState>,
    exports: AbiExports,
}

impl std::fmt::Debug for PreparedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedModule")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl PreparedModule {
    /// What admission learned about the module.
    #[must_use]
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    /// The module's id.
    #[must_use]
    pub fn id(&self) -> ModuleId {
        self.info.id
    }
}

/// Export handles resolved once per module, so a task does no name lookups.
struct AbiExports {
    memory: ModuleExport,
    alloc: ModuleExport,
    run: ModuleExport,
    verify: Option<ModuleExport>,
    depth: ModuleExport,
}

impl AbiExports {
    fn resolve(module: &Module) -> Result<Self, PrepareError> {
        let get = |name: &str| {
            module.get_export_index(name).ok_or_else(|| {
                PrepareError::Compile(format!("compiled module lacks export `{name}`"))
            })
        };
        Ok(Self {
            memory: get("memory")?,
            alloc: get("alloc")?,
            run: get("run")?,
            verify: module.get_export_index("verify"),
            depth: get(DEPTH_EXPORT)?,
        })
    }
}

/// Which limit a denied growth hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Denied {
    Memory,
    Table,
}

/// The error a denied growth raises inside wasmtime; it makes the growing
/// instruction trap, deterministically, at the same point on every worker.
#[derive(Debug, thiserror::Error)]
#[error("growth past the task's limit")]
struct LimitReached;

/// Per-store state: the task's limits and what was denied.
struct HostState {
    memory_bytes_max: usize,
    table_elements_max: usize,
    denied: Option<Denied>,
}

impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            self.denied = Some(Denied::Memory);
            return Err(wasmtime::Error::new(LimitReached));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements_max {
            self.denied = Some(Denied::Table);
            return Err(wasmtime::Error::new(LimitReached));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        crate::limits::TABLES_MAX as usize
    }

    fn memories(&self) -> usize {
        1
    }
}

/// Advances the engine's epoch every tick until dropped.
struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sandbox-watchdog".to_owned())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // The thread only sleeps and counts; it cannot panic.
            let _ = thread.join();
        }
    }
}

/// Compiled modules kept in memory, oldest evicted first.
#[derive(Default)]
struct MemoryCache {
    modules: HashMap<ModuleId, Arc<PreparedModule>>,
    order: VecDeque<ModuleId>,
}

/// The sandbox: one engine, one pool, a module cache and a watchdog.
///
/// `Sandbox` is `Send + Sync`; tasks may run on many threads at once (up to
/// the pool size). WebAssembly runs on the calling thread, which must have
/// [`crate::engine::MAX_WASM_STACK_BYTES`] of stack free plus a margin.
pub struct Sandbox {
    engine: Engine,
    config: SandboxConfig,
    cache_key: String,
    memory_cache: Mutex<MemoryCache>,
    watchdog: Watchdog,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Feeds `Hash` output into SHA3, to turn wasmtime's compatibility hash into
/// stable bytes.
struct Sha3Hasher(Vec<u8>);

impl std::hash::Hasher for Sha3Hasher {
    fn finish(&self) -> u64 {
        let digest = sha3_256_parts(&[&self.0]);
        u64::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ])
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

impl Sandbox {
    /// Builds the engine, the pool and the watchdog.
    ///
    /// # Errors
    /// When wasmtime refuses the configuration, the cache directory cannot be
    /// created, or the watchdog thread cannot start.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let engine =
            build_engine(&config.engine).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir)?;
        }
        // Artifacts are only valid for this runtime, this wasmtime build and
        // these code-generation switches.
        let mut compat = Sha3Hasher(Vec::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut compat);
        let key = sha3_256_parts(&[
            &runtime_hash(),
            &compat.0,
            &[
                u8::from(config.engine.fuel),
                u8::from(config.engine.nan_canonicalization),
            ],
        ]);
        let tick = Duration::from_millis(config.watchdog_tick_ms.max(1));
        let watchdog = Watchdog::start(engine.clone(), tick)
            .map_err(|e| SandboxError::Watchdog(e.to_string()))?;
        Ok(Self {
            engine,
            cache_key: hex::encode(&key[..8]),
            config,
            memory_cache: Mutex::new(MemoryCache::default()),
            watchdog,
        })
    }

    /// The configuration this sandbox was built with.
    #[must_use]
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Admits, instruments and compiles a module, or returns it from the
    /// cache (memory first, then disk).
    ///
    /// # Errors
    /// [`PrepareError::Invalid`] when the module is refused (a property of
    /// the module); the other variants are faults of this worker.
    pub fn prepare(&self, wasm: &[u8]) -> Result<Arc<PreparedModule>, PrepareError> {
        let id = ModuleId::of(wasm);
        if let Some(found) = self.lock_cache().modules.get(&id) {
            return Ok(Arc::clone(found));
        }
        let analysis = analyze(wasm, &self.config.module_limits)?;
        let module = match self.artifact_path(id) {
            Some(path) => self.load_or_compile(wasm, &analysis, &path)?,
            None => self.compile(wasm, &analysis)?,
        };
        let prepared = Arc::new(self.link(module, analysis.info)?);
        let mut cache = self.lock_cache();
        if !cache.modules.contains_key(&id) {
            while cache.modules.len() >= self.config.memory_cache_modules_max.max(1) {
                let Some(oldest) = cache.order.pop_front() else {
                    break;
                };
                cache.modules.remove(&oldest);
            }
            cache.modules.insert(id, Arc::clone(&prepared));
            cache.order.push_back(id);
        }
        Ok(prepared)
    }

    /// The prepared module with this id, if it is in the memory cache: the
    /// warm path when the caller already knows the id (from the chain), which
    /// skips hashing the module bytes.
    #[must_use]
    pub fn cached(&self, id: ModuleId) -> Option<Arc<PreparedModule>> {
        self.lock_cache().modules.get(&id).cloned()
    }

    /// Compiles without any cache and returns how long it took; for
    /// measuring cold starts.
    ///
    /// # Errors
    /// As [`Sandbox::prepare`].
    pub fn prepare_uncached(&self, wasm: &[u8]) -> Result<PreparedModule, PrepareError> {
        let analysis = analyze(wasm, &self.config.module_limits)?;
        let module = self.compile(wasm, &analysis)?;
        self.link(module, analysis.info)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, MemoryCache> {
        // A panic while holding the lock cannot leave the map half-updated
        // (each operation is a single insert or remove), so a poisoned lock
        // is still usable.
        self.memory_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn artifact_path(&self, id: ModuleId) -> Option<PathBuf> {
        self.config
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{}-{}.cwasm", id.to_hex(), self.cache_key)))
    }

    fn compile(
        &self,
        wasm: &[u8],
        analysis: &crate::validate::Analysis,
    ) -> Result<Module, PrepareError> {
        let instrumented = instrument(wasm, analysis)?;
        Module::new(&self.engine, &instrumented)
            .map_err(|e| PrepareError::Compile(format!("{e:#}")))
    }

    fn load_or_compile(
        &self,
        wasm: &[u8],
        analysis: &crate::validate::Analysis,
        path: &Path,
    ) -> Result<Module, PrepareError> {
        if path.is_file() {
            #[allow(unsafe_code)]
            // SAFETY: wasmtime trusts a serialized artifact to be machine code
            // it produced. Only files this worker wrote are read: the name
            // carries the module id and the engine's compatibility key, the
            // directory is the worker's own, files are written under a
            // temporary name and renamed into place whole, and wasmtime checks
            // the header against this engine again on load.
            let loaded = unsafe { Module::deserialize_file(&self.engine, path) };
            if let Ok(module) = loaded {
                return Ok(module);
            }
            // An artifact from another build of the engine: compile afresh.
        }
        let module = self.compile(wasm, analysis)?;
        let bytes = module
            .serialize()
            .map_err(|e| PrepareError::Compile(format!("{e:#}")))?;
        // Tasks prepare on threads of their own, so two may compile one
        // module at once: each writes its own temporary file.
        let temporary = path.with_extension(format!(
            "tmp{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        // The module is compiled: a cache that cannot be written (a full
        // or read-only disk) only costs a compile next time, never the task.
        let stored =
            std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
        if stored.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        Ok(module)
    }

    fn link(&self, module: Module, info: ModuleInfo) -> Result<PreparedModule, PrepareError> {
        let exports = AbiExports::resolve(&module)?;
        // No host functions: the linker is empty, and pre-instantiation does
        // the type checks once instead of per task.
        let linker: Linker<HostState> = Linker::new(&self.engine);
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| PrepareError::Compile(format!("{e:#}")))?;
        Ok(PreparedModule { info, pre, exports })
    }

    /// Runs `module` on `input` under `limits`.
    ///
    /// # Errors
    /// A [`WorkerFault`] when this worker could not produce a result; a
    /// deterministic failure is an `Ok` [`Execution`].
    pub fn run(
        &self,
        module: &PreparedModule,
        input: &[u8],
        limits: &TaskLimits,
    ) -> Result<Execution, WorkerFault> {
        let mut task = match self.start(module, limits)? {
            Ok(task) => task,
            Err(failure) => {
                return Ok(Execution {
                    outcome: Outcome::Failed(failure),
                    fuel_used: 0,
                })
            }
        };
        let outcome = task.run(input, limits);
        task.finish(outcome)
    }

    /// Runs the module's `verify` export on an input and a claimed output.
    ///
    /// # Errors
    /// A [`WorkerFault`] when this worker could not produce a verdict.
    pub fn verify(
        &self,
        module: &PreparedModule,
        input: &[u8],
        output: &[u8],
        limits: &TaskLimits,
    ) -> Result<Verification, WorkerFault> {
        if module.exports.verify.is_none() {
            return Ok(Verification {
                verdict: Verdict::Failed(Failure::VerifyMissing),
                fuel_used: 0,
            });
        }
        let mut task = match self.start(module, limits)? {
            Ok(task) => task,
            Err(failure) => {
                return Ok(Verification {
                    verdict: Verdict::Failed(failure),
                    fuel_used: 0,
                })
            }
        };
        let result = task.verify(input, output, limits);
        let execution = task.finish(result.map(|accepted| {
            let verdict = if accepted {
                Verdict::Accepted
            } else {
                Verdict::Rejected
            };
            // Carry the verdict through `finish` as a one-byte output.
            Outcome::Completed(vec![u8::from(verdict == Verdict::Accepted)])
        }))?;
        let verdict = match execution.outcome {
            Outcome::Completed(flag) if flag == [1] => Verdict::Accepted,
            Outcome::Completed(_) => Verdict::Rejected,
            Outcome::Failed(failure) => Verdict::Failed(failure),
        };
        Ok(Verification {
            verdict,
            fuel_used: execution.fuel_used,
        })
    }

    /// Creates the store and the instance; an inner `Err` is a deterministic
    /// failure at instantiation (the initial memory is over the limit).
    fn start<'m>(
        &self,
        module: &'m PreparedModule,
        limits: &TaskLimits,
    ) -> Result<Result<Task<'m>, Failure>, WorkerFault> {
        if limits.memory_bytes_max > self.config.engine.memory_bytes_max
            || limits.table_elements_max > self.config.engine.table_elements_max
        {
            return Err(WorkerFault::Unsupported(format!(
                "the task allows {} memory bytes and {} table elements; this engine has {} and {}",
                limits.memory_bytes_max,
                limits.table_elements_max,
                self.config.engine.memory_bytes_max,
                self.config.engine.table_elements_max
            )));
        }
        let state = HostState {
            memory_bytes_max: usize::try_from(limits.memory_bytes_max).unwrap_or(usize::MAX),
            table_elements_max: limits.table_elements_max as usize,
            denied: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        if self.config.engine.fuel {
            store
                .set_fuel(limits.fuel_max)
                .map_err(|e| WorkerFault::Internal(format!("{e:#}")))?;
        }
        let tick_ms = self.config.watchdog_tick_ms.max(1);
        // One extra tick: the first may come at once.
        store.set_epoch_deadline(limits.timeout_ms.div_ceil(tick_ms).saturating_add(1));
        store.epoch_deadline_trap();
        let mut task = Task {
            store,
            module,
            instance: None,
            fuel: self.config.engine.fuel,
            timeout_ms: limits.timeout_ms,
            fuel_max: limits.fuel_max,
        };
        match module.pre.instantiate(&mut task.store) {
            Ok(instance) => {
                task.instance = Some(instance);
                Ok(Ok(task))
            }
            Err(error) => Ok(Err(task.classify(&error)?)),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Stop the watchdog before the engine's last handle goes.
        self.watchdog.stop.store(true, Ordering::Relaxed);
    }
}

/// One task in flight: a store with its instance.
struct Task<'m> {
    store: Store<HostState>,
    module: &'m PreparedModule,
    instance: Option<wasmtime::Instance>,
    fuel: bool,
    fuel_max: u64,
    timeout_ms: u64,
}

/// A step either fails deterministically or hits a worker fault.
type Step<T> = Result<T, Stop>;

enum Stop {
    Failed(Failure),
    Fault(WorkerFault),
}

impl From<WorkerFault> for Stop {
    fn from(fault: WorkerFault) -> Self {
        Stop::Fault(fault)
    }
}

impl From<Failure> for Stop {
    fn from(failure: Failure) -> Self {
        Stop::Failed(failure)
    }
}

impl Task<'_> {
    fn instance(&self) -> Step<wasmtime::Instance> {
        self.instance
            .ok_or_else(|| Stop::Fault(WorkerFault::Internal("no instance".to_owned())))
    }

    fn export(&mut self, export: &ModuleExport) -> Step<Extern> {
        let instance = self.instance()?;
        instance
            .get_module_export(&mut self.store, export)
            .ok_or_else(|| {
                Stop::Fault(WorkerFault::Internal(
                    "export missing from instance".to_owned(),
                ))
            })
    }

    fn memory(&mut self) -> Step<wasmtime::Memory> {
        let export = &self.module.exports.memory;
        match self.export(export)? {
            Extern::Memory(memory) => Ok(memory),
            _ => Err(Stop::Fault(WorkerFault::Internal(
                "`memory` is not a memory".to_owned(),
            ))),
        }
    }

    fn func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        export: &ModuleExport,
    ) -> Step<TypedFunc<P, R>> {
        match self.export(export)? {
            Extern::Func(func) => func.typed::<P, R>(&self.store).map_err(|e| {
                Stop::Fault(WorkerFault::Internal(format!(
                    "ABI export has the wrong type: {e:#}"
                )))
            }),
            _ => Err(Stop::Fault(WorkerFault::Internal(
                "ABI export is not a function".to_owned(),
            ))),
        }
    }

    /// Calls `alloc(len)` and copies `bytes` there; returns the pointer.
    fn copy_in(&mut self, bytes: &[u8], limits: &TaskLimits) -> Step<i32> {
        if bytes.len() > limits.input_bytes_max as usize || bytes.len() > i32::MAX as usize {
            return Err(Failure::InputTooLarge.into());
        }
        let alloc_export = &self.module.exports.alloc;
        let alloc: TypedFunc<i32, i32> = self.func(alloc_export)?;
        let len = bytes.len() as i32;
        let ptr = alloc
            .call(&mut self.store, len)
            .map_err(|e| self.stop(&e))?;
        let memory = self.memory()?;
        let start = ptr as u32 as usize;
        let in_bounds = start
            .checked_add(bytes.len())
            .is_some_and(|end| end <= memory.data_size(&self.store));
        if !in_bounds {
            return Err(Failure::InputOutOfBounds.into());
        }
        memory.data_mut(&mut self.store)[start..start + bytes.len()].copy_from_slice(bytes);
        Ok(ptr)
    }

    fn run(&mut self, input: &[u8], limits: &TaskLimits) -> Step<Outcome> {
        let in_ptr = self.copy_in(input, limits)?;
        let run_export = &self.module.exports.run;
        let run: TypedFunc<(i32, i32), i64> = self.func(run_export)?;
        let packed = run
            .call(&mut self.store, (in_ptr, input.len() as i32))
            .map_err(|e| self.stop(&e))?;
        let bits = packed as u64;
        let (out_ptr, out_len) = ((bits >> 32) as usize, (bits & 0xffff_ffff) as usize);
        if out_len > limits.output_bytes_max as usize {
            return Err(Failure::OutputTooLarge.into());
        }
        let memory = self.memory()?;
        let data = memory.data(&self.store);
        let output = out_ptr
            .checked_add(out_len)
            .and_then(|end| data.get(out_ptr..end))
            .ok_or(Stop::Failed(Failure::OutputOutOfBounds))?;
        Ok(Outcome::Completed(output.to_vec()))
    }

    fn verify(&mut self, input: &[u8], output: &[u8], limits: &TaskLimits) -> Step<bool> {
        let in_ptr = self.copy_in(input, limits)?;
        let out_ptr = self.copy_in(output, limits)?;
        let Some(verify_export) = &self.module.exports.verify else {
            return Err(Failure::VerifyMissing.into());
        };
        let verify: TypedFunc<(i32, i32, i32, i32), i32> = self.func(verify_export)?;
        let verdict = verify
            .call(
                &mut self.store,
                (in_ptr, input.len() as i32, out_ptr, output.len() as i32),
            )
            .map_err(|e| self.stop(&e))?;
        Ok(verdict == 1)
    }

    /// Turns a step's end into an execution with its fuel.
    fn finish(self, step: Step<Outcome>) -> Result<Execution, WorkerFault> {
        let outcome = match step {
            Ok(outcome) => outcome,
            Err(Stop::Failed(failure)) => Outcome::Failed(failure),
            Err(Stop::Fault(fault)) => return Err(fault),
        };
        let fuel_used = if outcome == Outcome::Failed(Failure::OutOfFuel) {
            self.fuel_max
        } else if self.fuel {
            let left = self
                .store
                .get_fuel()
                .map_err(|e| WorkerFault::Internal(format!("{e:#}")))?;
            self.fuel_max.saturating_sub(left)
        } else {
            0
        };
        Ok(Execution { outcome, fuel_used })
    }

    fn stop(&mut self, error: &wasmtime::Error) -> Stop {
        match self.classify(error) {
            Ok(failure) => Stop::Failed(failure),
            Err(fault) => Stop::Fault(fault),
        }
    }

    /// Sorts an error from wasmtime into a deterministic failure or a fault
    /// of this worker.
    fn classify(&mut self, error: &wasmtime::Error) -> Result<Failure, WorkerFault> {
        match self.store.data().denied {
            Some(Denied::Memory) => return Ok(Failure::MemoryLimit),
            Some(Denied::Table) => return Ok(Failure::TableLimit),
            None => {}
        }
        if error
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return Err(WorkerFault::HostExhausted(format!("{error:#}")));
        }
        let Some(trap) = error.downcast_ref::<Trap>() else {
            return Err(WorkerFault::Internal(format!("{error:#}")));
        };
        Ok(match trap {
            Trap::OutOfFuel => Failure::OutOfFuel,
            Trap::StackOverflow => return Err(WorkerFault::NativeStackOverflow),
            Trap::Interrupt => {
                return Err(WorkerFault::Timeout {
                    timeout_ms: self.timeout_ms,
                })
            }
            Trap::UnreachableCodeReached => {
                if self.depth_exceeded() {
                    Failure::DepthLimit
                } else {
                    Failure::Unreachable
                }
            }
            Trap::MemoryOutOfBounds => Failure::MemoryOutOfBounds,
            Trap::TableOutOfBounds => Failure::TableOutOfBounds,
            Trap::IndirectCallToNull => Failure::IndirectCallToNull,
            Trap::BadSignature => Failure::BadSignature,
            Trap::IntegerOverflow => Failure::IntegerOverflow,
            Trap::IntegerDivisionByZero => Failure::IntegerDivisionByZero,
            Trap::BadConversionToInteger => Failure::BadConversionToInteger,
            other => return Err(WorkerFault::Internal(format!("unexpected trap: {other}"))),
        })
    }

    /// Whether the depth counter is past the budget: the instrumentation
    /// raises it before checking, so after its trap it stays above.
    fn depth_exceeded(&mut self) -> bool {
        let export = &self.module.exports.depth;
        match self.export(export) {
            Ok(Extern::Global(global)) => match global.get(&mut self.store) {
                wasmtime::Val::I32(depth) => depth as u32 > DEPTH_UNITS_MAX,
                _ => false,
            },
            _ => false,
        }
    }
}
