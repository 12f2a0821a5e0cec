//! The sandbox: prepares modules (validate, instrument, compile, cache) and
//! runs tasks in fresh instances.
//!
//! Per task, a warm run costs: a `Store` (a few hundred bytes), an instance
//! from the pooling allocator through the module's `InstancePre` (no export
//! resolution, no linking), copying data segments into memory, `alloc`,
//! copying the input in, `run`, copying the output out, and returning the
//! slot to the pool (which resets the memory it used). See docs/SANDBOX.md
//! for the measured figures.

use crate::engine::{build_engine, instantiation_fuel, runtime_hash, EngineSettings};
use crate::instrument::{instrument, InstrumentError, DEPTH_EXPORT};
use crate::limits::{ModuleLimits, TaskLimits, DEPTH_UNITS_MAX};
use crate::outcome::{Execution, Failure, Outcome, Verdict, Verification, WorkerFault};
use crate::validate::{analyze, ModuleInfo, ValidationError};
use compute_proto::{sha3_256_concat as sha3_256_parts, ModuleId};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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
    /// Compiled modules kept in memory, at most.
    pub memory_cache_modules_max: usize,
    /// Bytes of compiled modules kept in memory, at most (each module
    /// counted by [`PreparedModule::cache_bytes`]); least recently used
    /// modules are evicted first.
    pub memory_cache_bytes_max: usize,
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
            memory_cache_bytes_max: 256 * 1024 * 1024,
            watchdog_tick_ms: 10,
        }
    }
}

/// Why a module could not be prepared.
///
/// Only [`PrepareError::Invalid`] is a property of the module (see
/// [`PrepareError::is_module_fault`]); every other variant is a fault of
/// this machine, and may go away on a retry.
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

impl PrepareError {
    /// Whether the module itself is at fault: true only for
    /// [`PrepareError::Invalid`], which every honest machine reaches for
    /// the same bytes. Anything else (a compile or instrumentation failure
    /// of an admitted module, an I/O error) is this machine's fault: the
    /// chain halts rather than disagree with the other validators, a worker
    /// reports it and may retry.
    #[must_use]
    pub fn is_module_fault(&self) -> bool {
        matches!(self, PrepareError::Invalid(_))
    }

    /// The same error for another thread that waited on this preparation
    /// (an I/O error keeps its kind and message, not its source).
    fn duplicate(&self) -> PrepareError {
        match self {
            PrepareError::Invalid(error) => PrepareError::Invalid(error.clone()),
            PrepareError::Instrument(error) => PrepareError::Instrument(error.clone()),
            PrepareError::Compile(message) => PrepareError::Compile(message.clone()),
            PrepareError::Cache(error) => {
                PrepareError::Cache(std::io::Error::new(error.kind(), error.to_string()))
            }
        }
    }
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
    /// The module limits admit modules this engine cannot instantiate, so
    /// an admitted module could fail to compile.
    #[error("module limits exceed the engine: {0}")]
    Limits(String),
}

/// A module ready to run: admitted, instrumented, compiled and pre-linked.
pub struct PreparedModule {
    info: ModuleInfo,
    pre: InstancePre<HostState>,
    exports: AbiExports,
    /// Fuel charged for instantiating, whatever the memory strategy.
    instantiate_fuel: u64,
    /// What the module counts for in the memory cache.
    cache_bytes: usize,
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

    /// Fuel every task of this module pays for instantiation (see
    /// [`crate::engine::instantiation_fuel`]).
    #[must_use]
    pub fn instantiate_fuel(&self) -> u64 {
        self.instantiate_fuel
    }

    /// What this module counts for against
    /// [`SandboxConfig::memory_cache_bytes_max`]: the length of its compiled
    /// image in memory (machine code and metadata, wasmtime's
    /// `Module::image_range`) plus its active data bytes (the most its
    /// copy-on-write memory image can hold). Fixed once the module is
    /// compiled, the same for every load of one module on one engine build.
    #[must_use]
    pub fn cache_bytes(&self) -> usize {
        self.cache_bytes
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

/// Compiled modules kept in memory, least recently used evicted first,
/// and the preparations under way.
#[derive(Default)]
struct MemoryCache {
    modules: HashMap<ModuleId, CacheEntry>,
    /// The cached modules by last use, oldest first.
    recency: BTreeMap<u64, ModuleId>,
    /// The next use's stamp: increases with every insertion and hit.
    clock: u64,
    /// Sum of the cached modules' [`PreparedModule::cache_bytes`].
    bytes: usize,
    /// One entry per module being prepared: the threads that ask for it
    /// meanwhile wait for that preparation instead of compiling it again.
    in_flight: HashMap<ModuleId, Arc<Flight>>,
}

/// A cached module and the stamp of its last use.
struct CacheEntry {
    module: Arc<PreparedModule>,
    used: u64,
}

impl MemoryCache {
    /// The cached module with this id, marked as used now.
    fn hit(&mut self, id: ModuleId) -> Option<Arc<PreparedModule>> {
        let stamp = self.clock;
        let entry = self.modules.get_mut(&id)?;
        self.recency.remove(&entry.used);
        entry.used = stamp;
        self.recency.insert(stamp, id);
        self.clock += 1;
        Some(Arc::clone(&entry.module))
    }

    /// Adds a module as used now, then evicts the least recently used
    /// until both bounds hold. A module larger than the whole byte budget
    /// is evicted too: it is returned to its caller but not kept.
    fn insert(
        &mut self,
        id: ModuleId,
        module: &Arc<PreparedModule>,
        modules_max: usize,
        bytes_max: usize,
    ) {
        if self.modules.contains_key(&id) {
            return;
        }
        let stamp = self.clock;
        self.clock += 1;
        self.bytes = self.bytes.saturating_add(module.cache_bytes);
        self.modules.insert(
            id,
            CacheEntry {
                module: Arc::clone(module),
                used: stamp,
            },
        );
        self.recency.insert(stamp, id);
        while self.modules.len() > modules_max.max(1) || self.bytes > bytes_max {
            let Some((_, oldest)) = self.recency.pop_first() else {
                break;
            };
            if let Some(evicted) = self.modules.remove(&oldest) {
                self.bytes = self.bytes.saturating_sub(evicted.module.cache_bytes);
            }
        }
    }
}

/// One preparation under way and, once it ends, its result.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<Arc<PreparedModule>, PrepareError>>>,
    done: Condvar,
}

impl Flight {
    /// Waits for the preparing thread and returns its result.
    fn wait(&self) -> Result<Arc<PreparedModule>, PrepareError> {
        // A panic while holding this lock leaves at worst `None`, which the
        // loop keeps waiting on; the preparing thread's guard then fills it.
        let mut result = self
            .result
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            match &*result {
                Some(Ok(module)) => return Ok(Arc::clone(module)),
                Some(Err(error)) => return Err(error.duplicate()),
                None => {
                    result = self
                        .done
                        .wait(result)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
        }
    }
}

/// Held by the thread that prepares a module: publishes the result to the
/// waiting threads and clears the in-flight entry, also when the
/// preparation panics, so that a failure is never cached and a later call
/// tries again.
struct FlightGuard<'s> {
    sandbox: &'s Sandbox,
    id: ModuleId,
    flight: Arc<Flight>,
    finished: bool,
}

impl FlightGuard<'_> {
    fn finish(mut self, result: &Result<Arc<PreparedModule>, PrepareError>) {
        self.publish(match result {
            Ok(module) => Ok(Arc::clone(module)),
            Err(error) => Err(error.duplicate()),
        });
        self.finished = true;
    }

    fn publish(&self, result: Result<Arc<PreparedModule>, PrepareError>) {
        {
            // The cache entry and the end of the flight change under one
            // lock, so a new caller finds one or the other.
            let mut cache = self.sandbox.lock_cache();
            if let Ok(module) = &result {
                self.sandbox.remember(&mut cache, self.id, module);
            }
            cache.in_flight.remove(&self.id);
        }
        *self
            .flight
            .result
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
        self.flight.done.notify_all();
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.publish(Err(PrepareError::Compile(
                "the preparing thread panicked".to_owned(),
            )));
        }
    }
}

/// Whether this thread prepares a module or waits for another.
enum Role {
    Prepare(Arc<Flight>),
    Wait(Arc<Flight>),
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
    /// Modules compiled by cranelift so far.
    compiles: AtomicU64,
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
        check_limits_fit_engine(&config)?;
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
                u8::from(config.engine.memory_init_cow),
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
            compiles: AtomicU64::new(0),
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
    /// Single flight: when several threads ask for the same module at once,
    /// one prepares it and the others wait for that result (the module, or
    /// the error). A failure is not cached, so a later call tries again.
    ///
    /// # Errors
    /// [`PrepareError::Invalid`] when the module is refused (a property of
    /// the module); the other variants are faults of this worker.
    pub fn prepare(&self, wasm: &[u8]) -> Result<Arc<PreparedModule>, PrepareError> {
        let id = ModuleId::of(wasm);
        self.prepare_once(id, || self.prepare_new(wasm, id))
    }

    /// The single flight behind [`Sandbox::prepare`]: returns the cached
    /// module, or waits for the thread preparing it, or runs `prepare`.
    fn prepare_once(
        &self,
        id: ModuleId,
        prepare: impl FnOnce() -> Result<PreparedModule, PrepareError>,
    ) -> Result<Arc<PreparedModule>, PrepareError> {
        let role = {
            let mut cache = self.lock_cache();
            if let Some(found) = cache.hit(id) {
                return Ok(found);
            }
            match cache.in_flight.get(&id) {
                Some(flight) => Role::Wait(Arc::clone(flight)),
                None => {
                    let flight = Arc::new(Flight::default());
                    cache.in_flight.insert(id, Arc::clone(&flight));
                    Role::Prepare(flight)
                }
            }
        };
        match role {
            Role::Wait(flight) => flight.wait(),
            Role::Prepare(flight) => {
                let guard = FlightGuard {
                    sandbox: self,
                    id,
                    flight,
                    finished: false,
                };
                let result = prepare().map(Arc::new);
                guard.finish(&result);
                result
            }
        }
    }

    /// Validates, then loads or compiles, and links.
    fn prepare_new(&self, wasm: &[u8], id: ModuleId) -> Result<PreparedModule, PrepareError> {
        let analysis = analyze(wasm, &self.config.module_limits)?;
        let module = match self.artifact_path(id) {
            Some(path) => self.load_or_compile(wasm, &analysis, &path)?,
            None => self.compile(wasm, &analysis)?,
        };
        self.link(module, analysis.info)
    }

    /// Puts a prepared module in the memory cache, evicting the least
    /// recently used beyond either bound.
    fn remember(&self, cache: &mut MemoryCache, id: ModuleId, module: &Arc<PreparedModule>) {
        cache.insert(
            id,
            module,
            self.config.memory_cache_modules_max,
            self.config.memory_cache_bytes_max,
        );
    }

    /// Modules in the memory cache and the sum of their
    /// [`PreparedModule::cache_bytes`]; for tests and metrics.
    #[must_use]
    pub fn memory_cache_usage(&self) -> (usize, usize) {
        let cache = self.lock_cache();
        (cache.modules.len(), cache.bytes)
    }

    /// Modules compiled by cranelift since this sandbox was built (loads
    /// from the disk cache and memory-cache hits do not count); for tests
    /// and metrics.
    #[must_use]
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// The prepared module with this id, if it is in the memory cache: the
    /// warm path when the caller already knows the id (from the chain), which
    /// skips hashing the module bytes. A hit counts as a use for eviction.
    #[must_use]
    pub fn cached(&self, id: ModuleId) -> Option<Arc<PreparedModule>> {
        self.lock_cache().hit(id)
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
        // A panic while holding the lock cannot leave the cache half-updated
        // (its operations are map and counter updates that do not panic;
        // an allocation failure aborts), so a poisoned lock is still usable.
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
        self.compiles.fetch_add(1, Ordering::Relaxed);
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
        let instantiate_fuel = instantiation_fuel(info.active_data_bytes);
        let image = module.image_range();
        let cache_bytes = image
            .end
            .addr()
            .saturating_sub(image.start.addr())
            .saturating_add(usize::try_from(info.active_data_bytes).unwrap_or(usize::MAX));
        Ok(PreparedModule {
            info,
            pre,
            exports,
            instantiate_fuel,
            cache_bytes,
        })
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
                    fuel_used: start_failure_fuel(failure, limits),
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
                    fuel_used: start_failure_fuel(failure, limits),
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
        let fuel = self.config.engine.fuel;
        if fuel {
            // Instantiation is priced by the module's active data, whatever
            // the engine does to initialise memory (copy-on-write or copy):
            // what wasmtime meters while instantiating depends on that
            // strategy, so it runs on an allowance that is then replaced by
            // the fixed price. Instantiation runs no module code (no start
            // function is admitted), so its work is bounded by the module.
            if module.instantiate_fuel > limits.fuel_max {
                return Ok(Err(Failure::OutOfFuel));
            }
            store
                .set_fuel(INSTANTIATION_FUEL_ALLOWANCE)
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
            fuel,
            timeout_ms: limits.timeout_ms,
            fuel_max: limits.fuel_max,
        };
        match module.pre.instantiate(&mut task.store) {
            Ok(instance) => {
                if fuel {
                    // Checked above: the price is within the limit.
                    let left = limits.fuel_max.saturating_sub(module.instantiate_fuel);
                    task.store
                        .set_fuel(left)
                        .map_err(|e| WorkerFault::Internal(format!("{e:#}")))?;
                }
                task.instance = Some(instance);
                Ok(Ok(task))
            }
            Err(error) => match task.classify(&error)? {
                // Not reachable on the allowance; if it were, it would be
                // this machine's problem, not a result.
                Failure::OutOfFuel => Err(WorkerFault::Internal(format!(
                    "instantiation ran out of its fuel allowance: {error:#}"
                ))),
                failure => Ok(Err(failure)),
            },
        }
    }
}

/// Fuel wasmtime may meter while instantiating, before the fixed price
/// replaces it: far above anything instantiation of an admitted module
/// does (its data and table initialisation, each bounded by admission).
const INSTANTIATION_FUEL_ALLOWANCE: u64 = 1 << 62;

/// Fuel charged for a task that failed at instantiation: the whole limit
/// when it could not pay for instantiation (as for any `OutOfFuel`),
/// nothing otherwise (the module trapped before any of its code ran).
fn start_failure_fuel(failure: Failure, limits: &TaskLimits) -> u64 {
    if failure == Failure::OutOfFuel {
        limits.fuel_max
    } else {
        0
    }
}

/// Refuses module limits that admit a module the engine cannot take: its
/// pool would refuse the module at compile time, which admission promises
/// never happens.
fn check_limits_fit_engine(config: &SandboxConfig) -> Result<(), SandboxError> {
    let limits = &config.module_limits;
    let memory_bytes =
        u64::from(limits.memory_pages_initial_max).saturating_mul(crate::limits::WASM_PAGE_BYTES);
    if memory_bytes > config.engine.memory_bytes_max {
        return Err(SandboxError::Limits(format!(
            "memory_pages_initial_max admits {memory_bytes} bytes of initial memory, the engine's \
             pool holds {}",
            config.engine.memory_bytes_max
        )));
    }
    if limits.table_elements_initial_max > config.engine.table_elements_max {
        return Err(SandboxError::Limits(format!(
            "table_elements_initial_max admits {} elements, the engine's pool holds {}",
            limits.table_elements_initial_max, config.engine.table_elements_max
        )));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn small_sandbox() -> Sandbox {
        let mut config = SandboxConfig::default();
        config.engine.instances_max = 2;
        Sandbox::new(config).expect("sandbox builds")
    }

    fn module_bytes() -> Vec<u8> {
        wat::parse_str(
            r#"(module (memory (export "memory") 1)
                (func (export "alloc") (param i32) (result i32) i32.const 0)
                (func (export "run") (param i32 i32) (result i64) i64.const 0))"#,
        )
        .expect("valid WAT")
    }

    /// A distinct small module per `n`: the constant `run` returns.
    fn variant(n: u32) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module (memory (export "memory") 1)
                (func (export "alloc") (param i32) (result i32) i32.const 0)
                (func (export "run") (param i32 i32) (result i64) i64.const {n}))"#
        ))
        .expect("valid WAT")
    }

    fn sandbox_with_cache(modules_max: usize, bytes_max: usize) -> Sandbox {
        let mut config = SandboxConfig::default();
        config.engine.instances_max = 2;
        config.memory_cache_modules_max = modules_max;
        config.memory_cache_bytes_max = bytes_max;
        Sandbox::new(config).expect("sandbox builds")
    }

    /// Each variant's `cache_bytes`, measured with unbounded caches.
    fn sizes(count: u32) -> Vec<usize> {
        let sandbox = sandbox_with_cache(usize::MAX, usize::MAX);
        (0..count)
            .map(|n| {
                let module = sandbox.prepare(&variant(n)).expect("prepares");
                assert!(module.cache_bytes() > 0);
                module.cache_bytes()
            })
            .collect()
    }

    #[test]
    fn the_memory_cache_evicts_by_bytes() {
        let sizes = sizes(4);
        // Room for the first three, not for a fourth.
        let budget = sizes[..3].iter().sum::<usize>();
        let sandbox = sandbox_with_cache(usize::MAX, budget);
        let ids: Vec<_> = (0..4).map(|n| ModuleId::of(&variant(n))).collect();
        for n in 0..3 {
            sandbox.prepare(&variant(n)).expect("prepares");
        }
        assert_eq!(sandbox.memory_cache_usage(), (3, budget));
        sandbox.prepare(&variant(3)).expect("prepares");
        let (modules, bytes) = sandbox.memory_cache_usage();
        assert!(bytes <= budget, "{bytes} > {budget}");
        assert!(modules < 4);
        assert!(sandbox.cached(ids[0]).is_none(), "the oldest goes first");
        assert!(sandbox.cached(ids[3]).is_some(), "the newest stays");
        // A module larger than the whole budget is returned, not kept.
        let tiny = sandbox_with_cache(usize::MAX, 1);
        let module = tiny.prepare(&variant(0)).expect("prepares");
        assert_eq!(module.id(), ids[0]);
        assert_eq!(tiny.memory_cache_usage(), (0, 0));
        // The count bound still holds on its own.
        let counted = sandbox_with_cache(2, usize::MAX);
        for n in 0..4 {
            counted.prepare(&variant(n)).expect("prepares");
        }
        assert_eq!(counted.memory_cache_usage().0, 2);
        assert!(counted.cached(ids[1]).is_none());
        assert!(counted.cached(ids[3]).is_some());
    }

    #[test]
    fn the_memory_cache_evicts_the_least_recently_used() {
        let sizes = sizes(3);
        let ids: Vec<_> = (0..3).map(|n| ModuleId::of(&variant(n))).collect();
        // Room for any two of the three.
        let budget = sizes.iter().sum::<usize>() - 1;
        let sandbox = sandbox_with_cache(usize::MAX, budget);
        sandbox.prepare(&variant(0)).expect("prepares");
        sandbox.prepare(&variant(1)).expect("prepares");
        // A hit through `prepare` makes 0 the most recently used: 1 goes.
        sandbox.prepare(&variant(0)).expect("a hit");
        sandbox.prepare(&variant(2)).expect("prepares");
        assert_eq!(sandbox.compiles(), 3, "the hit compiled nothing");
        assert!(sandbox.cached(ids[1]).is_none());
        assert!(sandbox.cached(ids[0]).is_some());
        assert!(sandbox.cached(ids[2]).is_some());
        // The `cached` calls above are hits too: 0, then 2, were used last,
        // so bringing 1 back evicts 0.
        assert!(sandbox.cached(ids[2]).is_some());
        sandbox.prepare(&variant(1)).expect("prepares");
        assert!(sandbox.cached(ids[0]).is_none());
        assert!(sandbox.cached(ids[1]).is_some());
        assert!(sandbox.cached(ids[2]).is_some());
        assert_eq!(
            sandbox.memory_cache_usage(),
            (2, sizes[1] + sizes[2]),
            "the byte count follows evictions"
        );
    }

    #[test]
    fn only_an_invalid_module_is_a_module_fault() {
        assert!(PrepareError::Invalid(ValidationError::StartFunction).is_module_fault());
        assert!(!PrepareError::Compile("cranelift said no".to_owned()).is_module_fault());
        assert!(!PrepareError::Instrument(InstrumentError {
            offset: 0,
            message: "bug".to_owned()
        })
        .is_module_fault());
        assert!(!PrepareError::Cache(std::io::Error::other("disk full")).is_module_fault());
    }

    /// A fault is shared with the threads that waited for it, and not kept:
    /// the next call prepares again and can succeed.
    #[test]
    fn a_failed_preparation_is_shared_then_retried() {
        let sandbox = small_sandbox();
        let wasm = module_bytes();
        let id = ModuleId::of(&wasm);
        let threads = 8;
        let barrier = Barrier::new(threads);
        let attempts = AtomicU64::new(0);
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        sandbox.prepare_once(id, || {
                            attempts.fetch_add(1, Ordering::SeqCst);
                            // Long enough for the others to find the flight.
                            std::thread::sleep(Duration::from_millis(200));
                            Err(PrepareError::Compile("a machine fault".to_owned()))
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("no panic"))
                .collect()
        });
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "one attempt for all");
        for result in results {
            assert!(
                matches!(&result, Err(PrepareError::Compile(m)) if m == "a machine fault"),
                "{result:?}"
            );
        }
        assert!(sandbox.cached(id).is_none(), "a failure is not cached");
        let module = sandbox.prepare(&wasm).expect("the retry succeeds");
        assert_eq!(module.id(), id);
        assert!(sandbox.cached(id).is_some());
    }

    #[test]
    fn a_panicking_preparation_releases_its_waiters() {
        let sandbox = small_sandbox();
        let wasm = module_bytes();
        let id = ModuleId::of(&wasm);
        let barrier = Barrier::new(2);
        std::thread::scope(|scope| {
            let panicking = scope.spawn(|| {
                sandbox.prepare_once(id, || {
                    barrier.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!("a bug while compiling");
                })
            });
            barrier.wait();
            // The flight exists now; this call waits for it.
            let waiter = sandbox.prepare_once(id, || panic!("must not prepare twice"));
            assert!(
                matches!(&waiter, Err(PrepareError::Compile(m)) if m.contains("panicked")),
                "{waiter:?}"
            );
            assert!(panicking.join().is_err());
        });
        sandbox
            .prepare(&wasm)
            .expect("a later call prepares afresh");
    }
}
