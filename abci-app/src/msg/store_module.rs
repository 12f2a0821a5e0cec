//! `StoreModule{wasm}`: stores a job module under `module_id = sha3_256(wasm)`.
//!
//! Validation is the sandbox's chain-side check (wasmparser only: size, the
//! job ABI's exports and signatures, no imports, bounded functions): cheap
//! and deterministic, so every validator reaches the same verdict.

use compute_proto::{pb, AccountId, ModuleId};
use compute_sandbox::{validate_module, ModuleInfo, ModuleLimits};

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::msg::update_stats;
use crate::state::{keys, StateRead};
use crate::store::StateTx;

/// Shape: the module is admissible under the chain's limits.
pub fn check_stateless(
    msg: &pb::StoreModule,
    params: &pb::Params,
) -> Result<ModuleInfo, Rejection> {
    let limits = ModuleLimits {
        module_bytes_max: u32::try_from(params.max_module_bytes).unwrap_or(u32::MAX),
        memory_pages_initial_max: params.sandbox_memory_pages,
        ..ModuleLimits::default()
    };
    validate_module(&msg.wasm, &limits).map_err(|e| Rejection::InvalidModule(e.to_string()))
}

/// Novelty: the module is not stored yet.
pub fn check_stateful(info: &ModuleInfo, state: &impl StateRead) -> Result<(), Rejection> {
    match state.module(&info.id) {
        Some(_) => Err(Rejection::ModuleExists(info.id)),
        None => Ok(()),
    }
}

/// Stores the metadata and the bytes.
pub fn execute(
    msg: &pb::StoreModule,
    info: &ModuleInfo,
    owner: &AccountId,
    height: u64,
    state: &mut StateTx<'_>,
) -> Result<Vec<Event>, Rejection> {
    let id: ModuleId = info.id;
    let record = pb::ModuleRecord {
        owner: owner.0.to_vec(),
        size: msg.wasm.len() as u64,
        has_verify: info.has_verify,
        height: i64::try_from(height).map_err(|_| Rejection::Overflow("height"))?,
        functions: info.functions,
    };
    state.put_record(keys::module(&id), &record);
    state.put_raw(keys::module_code(&id), msg.wasm.clone());
    update_stats(state, |s| s.modules = s.modules.saturating_add(1));
    Ok(vec![event(
        "module_stored",
        &[
            ("module", id.to_hex(), true),
            ("owner", owner.to_hex(), true),
            ("size", record.size.to_string(), false),
            ("has_verify", info.has_verify.to_string(), false),
        ],
    )])
}
