//! The deterministic call-depth limit, added to every admitted module.
//!
//! How deep native recursion may go before the stack runs out depends on the
//! frame sizes the compiler picks, so it differs between code generators
//! and even CPU feature sets. A module therefore gets a logical counter: a
//! new mutable global, raised by the callee's frame cost before every
//! `call` and `call_indirect` and lowered after it returns. Past
//! [`DEPTH_UNITS_MAX`] the module executes `unreachable`; the counter,
//! exported as [`DEPTH_EXPORT`], tells the runtime that this trap was the
//! depth limit.
//!
//! A frame's cost in units is
//! [`FRAME_BASE_UNITS`](crate::limits::FRAME_BASE_UNITS) plus its locals
//! (with parameters) plus its highest operand stack, so a function with a
//! large frame gets proportionally fewer levels, as in Substrate's
//! stack-height metering. An indirect call is charged the largest frame of
//! any function of its type. A trap ends the instance, so the counter is
//! never unwound after one. The frame costs are computed at admission
//! ([`crate::validate`]); the budget is with the other limits
//! ([`crate::limits`]).
//!
//! Everything else is copied byte for byte; custom sections are dropped.

use crate::limits::DEPTH_UNITS_MAX;
use crate::validate::Analysis;
use wasm_encoder::{ConstExpr, Encode, ExportKind, GlobalType, Instruction, RawSection, ValType};
use wasmparser::{BinaryReader, Operator, Parser, Payload};

/// Export name of the depth counter.
pub const DEPTH_EXPORT: &str = "__compute_depth";

/// Why instrumentation failed; only a module that passed validation is ever
/// instrumented, so this means a bug in the pass or in the validator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instrumentation failed at byte {offset}: {message}")]
pub struct InstrumentError {
    /// Byte offset in the original module.
    pub offset: usize,
    /// What went wrong.
    pub message: String,
}

fn error(offset: usize, message: impl std::fmt::Display) -> InstrumentError {
    InstrumentError {
        offset,
        message: message.to_string(),
    }
}

/// Position of a section id in the order the binary format requires.
fn section_rank(id: u8) -> u8 {
    match id {
        1..=5 => id, // type, import, function, table, memory
        13 => 6,     // tag
        6 => 7,      // global
        7 => 8,      // export
        8 => 9,      // start
        9 => 10,     // element
        12 => 11,    // data count
        10 => 12,    // code
        11 => 13,    // data
        _ => 0,      // custom sections are dropped
    }
}

const GLOBAL_SECTION: u8 = 6;
const EXPORT_SECTION: u8 = 7;
const CODE_SECTION: u8 = 10;

/// Adds the depth counter to a validated module.
///
/// # Errors
/// Only if the module does not match its analysis (a bug, never a property
/// of the module).
pub(crate) fn instrument(wasm: &[u8], analysis: &Analysis) -> Result<Vec<u8>, InstrumentError> {
    let depth_global = analysis.globals;
    let mut module = wasm_encoder::Module::new();
    let mut global_done = false;
    let mut export_done = false;
    let mut code = wasm_encoder::CodeSection::new();
    let mut code_remaining = 0u32;
    let mut function_index = 0usize;

    let new_global = || {
        let mut bytes = Vec::new();
        GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        }
        .encode(&mut bytes);
        ConstExpr::i32_const(0).encode(&mut bytes);
        bytes
    };
    let new_export = || {
        let mut bytes = Vec::new();
        DEPTH_EXPORT.encode(&mut bytes);
        ExportKind::Global.encode(&mut bytes);
        depth_global.encode(&mut bytes);
        bytes
    };

    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| error(e.offset(), e))?;
        match payload {
            Payload::CodeSectionStart { count, .. } => {
                emit_missing(
                    &mut module,
                    section_rank(CODE_SECTION),
                    &mut global_done,
                    &mut export_done,
                    &new_global,
                    &new_export,
                );
                code_remaining = count;
                if count == 0 {
                    module.section(&code);
                }
            }
            Payload::CodeSectionEntry(body) => {
                let body_bytes =
                    instrument_body(wasm, &body, function_index, analysis, depth_global)?;
                code.raw(&body_bytes);
                function_index += 1;
                code_remaining = code_remaining.saturating_sub(1);
                if code_remaining == 0 {
                    module.section(&code);
                }
            }
            Payload::CustomSection(_) | Payload::Version { .. } | Payload::End(_) => {}
            other => {
                let Some((id, range)) = other.as_section() else {
                    return Err(error(0, "unexpected payload in a validated module"));
                };
                let rank = section_rank(id);
                emit_missing(
                    &mut module,
                    rank,
                    &mut global_done,
                    &mut export_done,
                    &new_global,
                    &new_export,
                );
                let data = &wasm[range.clone()];
                if id == GLOBAL_SECTION {
                    module.section(&RawSection {
                        id,
                        data: &append_entry(data, &new_global(), range.start)?,
                    });
                    global_done = true;
                } else if id == EXPORT_SECTION {
                    module.section(&RawSection {
                        id,
                        data: &append_entry(data, &new_export(), range.start)?,
                    });
                    export_done = true;
                } else {
                    module.section(&RawSection { id, data });
                }
            }
        }
    }
    emit_missing(
        &mut module,
        u8::MAX,
        &mut global_done,
        &mut export_done,
        &new_global,
        &new_export,
    );
    Ok(module.finish())
}

/// Emits the global or export section if the module has none and the next
/// section must come after it.
fn emit_missing(
    module: &mut wasm_encoder::Module,
    next_rank: u8,
    global_done: &mut bool,
    export_done: &mut bool,
    new_global: &dyn Fn() -> Vec<u8>,
    new_export: &dyn Fn() -> Vec<u8>,
) {
    if !*global_done && next_rank > section_rank(GLOBAL_SECTION) {
        let mut data = Vec::new();
        1u32.encode(&mut data);
        data.extend_from_slice(&new_global());
        module.section(&RawSection {
            id: GLOBAL_SECTION,
            data: &data,
        });
        *global_done = true;
    }
    if !*export_done && next_rank > section_rank(EXPORT_SECTION) {
        let mut data = Vec::new();
        1u32.encode(&mut data);
        data.extend_from_slice(&new_export());
        module.section(&RawSection {
            id: EXPORT_SECTION,
            data: &data,
        });
        *export_done = true;
    }
}

/// A vector section with one more entry at the end.
fn append_entry(data: &[u8], entry: &[u8], offset: usize) -> Result<Vec<u8>, InstrumentError> {
    let mut reader = BinaryReader::new(data, offset);
    let count = reader.read_var_u32().map_err(|e| error(e.offset(), e))?;
    let entries = &data[reader.current_position()..];
    let mut out = Vec::with_capacity(data.len() + entry.len() + 5);
    count
        .checked_add(1)
        .ok_or_else(|| error(offset, "section count overflows"))?
        .encode(&mut out);
    out.extend_from_slice(entries);
    out.extend_from_slice(entry);
    Ok(out)
}

/// One function body with every call wrapped in the depth accounting.
fn instrument_body(
    wasm: &[u8],
    body: &wasmparser::FunctionBody<'_>,
    function_index: usize,
    analysis: &Analysis,
    depth_global: u32,
) -> Result<Vec<u8>, InstrumentError> {
    let range = body.range();
    let mut locals = body.get_locals_reader().map_err(|e| error(e.offset(), e))?;
    for _ in 0..locals.get_count() {
        locals.read().map_err(|e| error(e.offset(), e))?;
    }
    let operators_start = locals.original_position();
    let mut out = Vec::with_capacity(range.len() + range.len() / 4);
    out.extend_from_slice(&wasm[range.start..operators_start]);

    let mut operators = body
        .get_operators_reader()
        .map_err(|e| error(e.offset(), e))?;
    while !operators.eof() {
        let (operator, start) = operators
            .read_with_offset()
            .map_err(|e| error(e.offset(), e))?;
        let end = operators.original_position();
        let units = match operator {
            Operator::Call { function_index } => {
                analysis.frame_units.get(function_index as usize).copied()
            }
            Operator::CallIndirect { type_index, .. } => analysis
                .type_frame_units_max
                .get(type_index as usize)
                .copied(),
            _ => None,
        };
        match units {
            Some(units) => {
                // Raise, check, call, lower. Every inserted instruction is
                // stack-neutral and the `if` closes before the call, so the
                // labels the original code branches to are unchanged.
                let units = units as i32;
                let raise_and_check = [
                    Instruction::GlobalGet(depth_global),
                    Instruction::I32Const(units),
                    Instruction::I32Add,
                    Instruction::GlobalSet(depth_global),
                    Instruction::GlobalGet(depth_global),
                    Instruction::I32Const(DEPTH_UNITS_MAX as i32),
                    Instruction::I32GtU,
                    Instruction::If(wasm_encoder::BlockType::Empty),
                    Instruction::Unreachable,
                    Instruction::End,
                ];
                for instruction in &raise_and_check {
                    instruction.encode(&mut out);
                }
                out.extend_from_slice(&wasm[start..end]);
                let lower = [
                    Instruction::GlobalGet(depth_global),
                    Instruction::I32Const(units),
                    Instruction::I32Sub,
                    Instruction::GlobalSet(depth_global),
                ];
                for instruction in &lower {
                    instruction.encode(&mut out);
                }
            }
            None => {
                if matches!(
                    operator,
                    Operator::Call { .. } | Operator::CallIndirect { .. }
                ) {
                    return Err(error(
                        start,
                        format!(
                            "call in function {function_index} names an unknown callee or type"
                        ),
                    ));
                }
                out.extend_from_slice(&wasm[start..end]);
            }
        }
    }
    Ok(out)
}
