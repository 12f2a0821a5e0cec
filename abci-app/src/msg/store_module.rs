//! `StoreModule{wasm}`: stores a job module under `module_id = sha3_256(wasm)`.
//!
//! Validation is the sandbox's chain-side check (wasmparser only: size, the
//! job ABI's exports and signatures, no imports, and bounds on everything
//! that makes compiling slow): cheap and deterministic, so every validator
//! reaches the same verdict. Then every validator compiles the module with
//! the pinned wasmtime, once, here: a module the chain admits is one that
//! compiles, and no reveal's block ever pays for a compile. The uploader
//! pays for that work with `store_module_fee_per_kib`, to the proposer.

use compute_proto::{pb, AccountId, ModuleId};
use compute_sandbox::{validate_module, ModuleInfo, ModuleLimits};

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::ledger::{credit, debit, require_funds, update_stats, Ctx};
use crate::state::{keys, StateRead};
use crate::store::StateTx;
use crate::verify::CompileError;

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

/// What storing `bytes` of module costs: `store_module_fee_per_kib` per
/// KiB, rounded up.
pub fn store_fee(bytes: u64, params: &pb::Params) -> Option<u64> {
    bytes
        .div_ceil(1024)
        .checked_mul(params.store_module_fee_per_kib)
}

/// Novelty, and the uploader can pay the compile fee.
pub fn check_stateful(
    info: &ModuleInfo,
    signer: &AccountId,
    fee: u64,
    params: &pb::Params,
    state: &impl StateRead,
) -> Result<(), Rejection> {
    if state.module(&info.id).is_some() {
        return Err(Rejection::ModuleExists(info.id));
    }
    let charge =
        store_fee(info.bytes as u64, params).ok_or(Rejection::Overflow("module store fee"))?;
    require_funds(state, signer, charge, fee)
}

/// Compiles the module as every validator does. In CheckTx a failure only
/// refuses the transaction; in a block, a module that passed validation and
/// does not compile here is this validator's fault, and it halts rather
/// than store a module the others may have compiled.
fn compile(wasm: &[u8], ctx: &Ctx<'_>) -> Result<(), Rejection> {
    match ctx.verifier.prepare(wasm) {
        Ok(_) => Ok(()),
        Err(CompileError::Refused(why)) => Err(Rejection::InvalidModule(why)),
        Err(CompileError::Fault(fault)) if ctx.in_block => {
            tracing::error!(%fault, "a stored module does not compile on this validator; halting");
            panic!("a module admitted by validation does not compile on this validator ({fault}); halting instead of committing a different app hash")
        }
        Err(CompileError::Fault(fault)) => Err(Rejection::InvalidModule(format!(
            "the module passed validation but does not compile: {fault}"
        ))),
    }
}

/// Compiles the module, charges the fee and stores the metadata and the
/// bytes.
pub fn execute(
    msg: &pb::StoreModule,
    info: &ModuleInfo,
    owner: &AccountId,
    ctx: &Ctx<'_>,
    state: &mut StateTx<'_>,
) -> Result<Vec<Event>, Rejection> {
    compile(&msg.wasm, ctx)?;
    let charge = store_fee(msg.wasm.len() as u64, ctx.params)
        .ok_or(Rejection::Overflow("module store fee"))?;
    debit(state, owner, charge)?;
    if let Some(proposer) = ctx.proposer {
        credit(state, &proposer, charge)?;
    }
    update_stats(state, |s| {
        s.fees_collected = s.fees_collected.saturating_add(charge)
    });
    let height = ctx.height;
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
            ("fee", charge.to_string(), false),
        ],
    )])
}
