//! Generators of hostile modules that stress one cost of compiling or
//! instantiating at a time: many functions, types, data or element
//! segments, a wide `br_table`, deep nesting, many locals, a deep operand
//! stack, large bodies of the most expensive code per byte. Each is a
//! complete job (`memory`, `alloc`, `run` returning an empty output), so a
//! module that is admitted can also be prepared and run.
//!
//! [`slowest_admissible`] gives the slowest module the default limits admit
//! in each class: what the admission tests, the `compile_bombs` benchmark
//! and the chain's block-time benchmarks measure. Nothing here is used to
//! run jobs.

use crate::limits::ModuleLimits;
use crate::validate::validate_module;
use wasm_encoder::{
    CodeSection, ConstExpr, DataCountSection, DataSection, ElementSection, Elements, ExportKind,
    ExportSection, Function, FunctionSection, Instruction, MemArg, MemorySection, MemoryType,
    Module, RefType, TableSection, TableType, TypeSection, ValType,
};

/// Type index of `alloc`: `(i32) -> i32`.
pub const TYPE_ALLOC: u32 = 0;
/// Type index of `run`: `(i32, i32) -> i64`.
pub const TYPE_RUN: u32 = 1;
/// Type index of `() -> ()`.
pub const TYPE_NULLARY: u32 = 2;
/// Function index of the first extra function.
pub const FIRST_EXTRA: u32 = 2;

/// One extra function: its type, its locals and its body (without the
/// final `end`).
#[derive(Debug, Clone)]
pub struct Func {
    /// Type index.
    pub ty: u32,
    /// Locals after the parameters.
    pub locals: Vec<(u32, ValType)>,
    /// Encoded instructions, without the final `end`.
    pub body: Vec<u8>,
}

impl Func {
    /// A `() -> ()` function with this body.
    pub fn nullary(locals: Vec<(u32, ValType)>, body: Vec<u8>) -> Self {
        Self {
            ty: TYPE_NULLARY,
            locals,
            body,
        }
    }

    /// Bytes of the body as it appears in the code section (locals and the
    /// final `end` included, the size prefix not).
    pub fn body_bytes(&self) -> usize {
        let mut function = Function::new(self.locals.iter().copied());
        function.raw(self.body.iter().copied());
        function.instruction(&Instruction::End);
        function.byte_len()
    }
}

/// An element segment.
#[derive(Debug, Clone)]
pub enum Elem {
    /// Active at a constant offset of table 0, function indices.
    Active(u32, Vec<u32>),
    /// Passive, function indices.
    Passive(Vec<u32>),
    /// Passive, `ref.func` expressions.
    PassiveExpressions(Vec<u32>),
}

/// A data segment.
#[derive(Debug, Clone)]
pub enum Data {
    /// Active at a constant offset of memory 0.
    Active(u32, Vec<u8>),
    /// Passive.
    Passive(Vec<u8>),
}

/// A job module with extra parts; `run` calls nothing and returns an empty
/// output, so the extras only cost compile and instantiation time.
#[derive(Debug, Clone)]
pub struct Bomb {
    /// Extra function types, after the three fixed ones.
    pub types: Vec<(Vec<ValType>, Vec<ValType>)>,
    /// Extra functions, indices from [`FIRST_EXTRA`].
    pub functions: Vec<Func>,
    /// Mutable `i32` globals defined.
    pub globals: u32,
    /// Exports beyond the ABI's three (more names for `alloc`).
    pub extra_exports: u32,
    /// Minimum size of table 0, if there is one.
    pub table: Option<u32>,
    /// Initial pages of the memory.
    pub memory_pages: u64,
    /// Element segments.
    pub elements: Vec<Elem>,
    /// Data segments.
    pub data: Vec<Data>,
    /// Body of `run` (without `end`); it must leave one `i64`.
    pub run: Vec<u8>,
}

impl Default for Bomb {
    fn default() -> Self {
        Self {
            types: Vec::new(),
            functions: Vec::new(),
            globals: 0,
            extra_exports: 0,
            table: None,
            memory_pages: 1,
            elements: Vec::new(),
            data: Vec::new(),
            run: encode(&[Instruction::I64Const(0)]),
        }
    }
}

/// Encodes instructions.
pub fn encode(instructions: &[Instruction<'_>]) -> Vec<u8> {
    let mut function = Function::new([]);
    for instruction in instructions {
        function.instruction(instruction);
    }
    // Drop the empty locals vector `Function::new` wrote first.
    function.into_raw_body()[1..].to_vec()
}

impl Bomb {
    /// Bytes of all function bodies, `alloc` and `run` included, as
    /// admission counts them.
    pub fn code_bytes(&self) -> usize {
        let alloc = Func {
            ty: TYPE_ALLOC,
            locals: Vec::new(),
            body: encode(&[Instruction::I32Const(1024)]),
        };
        let run = Func {
            ty: TYPE_RUN,
            locals: Vec::new(),
            body: self.run.clone(),
        };
        alloc.body_bytes()
            + run.body_bytes()
            + self.functions.iter().map(Func::body_bytes).sum::<usize>()
    }

    /// Encodes the module.
    pub fn finish(&self) -> Vec<u8> {
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([ValType::I32], [ValType::I32]);
        types
            .ty()
            .function([ValType::I32, ValType::I32], [ValType::I64]);
        types.ty().function([], []);
        for (params, results) in &self.types {
            types
                .ty()
                .function(params.iter().copied(), results.iter().copied());
        }
        module.section(&types);

        let mut functions = FunctionSection::new();
        functions.function(TYPE_ALLOC);
        functions.function(TYPE_RUN);
        for function in &self.functions {
            functions.function(function.ty);
        }
        module.section(&functions);

        if let Some(minimum) = self.table {
            let mut tables = TableSection::new();
            tables.table(TableType {
                element_type: RefType::FUNCREF,
                table64: false,
                minimum: u64::from(minimum),
                maximum: None,
                shared: false,
            });
            module.section(&tables);
        }

        let mut memories = MemorySection::new();
        memories.memory(MemoryType {
            minimum: self.memory_pages,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        module.section(&memories);

        if self.globals > 0 {
            let mut globals = wasm_encoder::GlobalSection::new();
            for _ in 0..self.globals {
                globals.global(
                    wasm_encoder::GlobalType {
                        val_type: ValType::I32,
                        mutable: true,
                        shared: false,
                    },
                    &ConstExpr::i32_const(0),
                );
            }
            module.section(&globals);
        }

        let mut exports = ExportSection::new();
        exports.export("memory", ExportKind::Memory, 0);
        exports.export("alloc", ExportKind::Func, 0);
        exports.export("run", ExportKind::Func, 1);
        for index in 0..self.extra_exports {
            exports.export(&format!("alloc{index}"), ExportKind::Func, 0);
        }
        module.section(&exports);

        if !self.elements.is_empty() {
            let mut elements = ElementSection::new();
            for element in &self.elements {
                match element {
                    Elem::Active(offset, functions) => {
                        elements.active(
                            None,
                            &ConstExpr::i32_const(*offset as i32),
                            Elements::Functions(functions.as_slice().into()),
                        );
                    }
                    Elem::Passive(functions) => {
                        elements.passive(Elements::Functions(functions.as_slice().into()));
                    }
                    Elem::PassiveExpressions(functions) => {
                        let expressions: Vec<ConstExpr> =
                            functions.iter().map(|f| ConstExpr::ref_func(*f)).collect();
                        elements.passive(Elements::Expressions(
                            RefType::FUNCREF,
                            expressions.as_slice().into(),
                        ));
                    }
                }
            }
            module.section(&elements);
        }

        if self.data.iter().any(|d| matches!(d, Data::Passive(_))) {
            module.section(&DataCountSection {
                count: self.data.len() as u32,
            });
        }

        let mut code = CodeSection::new();
        let mut alloc = Function::new([]);
        alloc
            .instruction(&Instruction::I32Const(1024))
            .instruction(&Instruction::End);
        code.function(&alloc);
        let mut run = Function::new([]);
        run.raw(self.run.iter().copied());
        run.instruction(&Instruction::End);
        code.function(&run);
        for function in &self.functions {
            let mut body = Function::new(function.locals.iter().copied());
            body.raw(function.body.iter().copied());
            body.instruction(&Instruction::End);
            code.function(&body);
        }
        module.section(&code);

        if !self.data.is_empty() {
            let mut data = DataSection::new();
            for segment in &self.data {
                match segment {
                    Data::Active(offset, bytes) => {
                        data.active(
                            0,
                            &ConstExpr::i32_const(*offset as i32),
                            bytes.iter().copied(),
                        );
                    }
                    Data::Passive(bytes) => {
                        data.passive(bytes.iter().copied());
                    }
                }
            }
            module.section(&data);
        }
        module.finish()
    }
}

/// `count` functions `(i32) -> i32` returning their argument; the first
/// `escaping` of them are put in the table, so each also gets an entry
/// trampoline.
pub fn functions(count: u32, escaping: u32) -> Vec<u8> {
    let body = encode(&[Instruction::LocalGet(0)]);
    let functions = (0..count)
        .map(|_| Func {
            ty: TYPE_ALLOC,
            locals: Vec::new(),
            body: body.clone(),
        })
        .collect();
    let escaping = escaping.min(count);
    Bomb {
        functions,
        table: (escaping > 0).then_some(escaping),
        elements: if escaping > 0 {
            vec![Elem::Active(
                0,
                (FIRST_EXTRA..FIRST_EXTRA + escaping).collect(),
            )]
        } else {
            Vec::new()
        },
        ..Bomb::default()
    }
    .finish()
}

/// `count` distinct function types (each with `params` parameters drawn
/// from the four number types, and one result), none used by a function.
pub fn types(count: u32, params: u32) -> Vec<u8> {
    let numbers = [ValType::I32, ValType::I64, ValType::F32, ValType::F64];
    let types = (0..count)
        .map(|index| {
            // The index in base 4 picks each parameter's type; more
            // parameters than digits make the types long, not more distinct.
            let params = (0..params.max(1))
                .map(|digit| {
                    let shift = 2 * digit.min(15);
                    numbers[((index >> shift) & 3) as usize]
                })
                .collect::<Vec<_>>();
            // Types that still collide differ by their result count.
            let results = vec![ValType::I32; (index >> 30) as usize + 1];
            (params, results)
        })
        .collect();
    Bomb {
        types,
        ..Bomb::default()
    }
    .finish()
}

/// `count` active data segments of `bytes_each` bytes, one every
/// `spacing` bytes. Segments one page apart are too sparse for any engine
/// to fold into one memory image, so each is initialised on its own;
/// adjacent ones (`spacing == bytes_each`) fold into one image when the
/// engine makes images.
pub fn data_segments(count: u32, bytes_each: u32, spacing: u32) -> Vec<u8> {
    let spacing = spacing.max(bytes_each).max(1);
    let data = (0..count)
        .map(|index| {
            Data::Active(
                index.saturating_mul(spacing),
                vec![index as u8 | 1; bytes_each as usize],
            )
        })
        .collect();
    let end = u64::from(count) * u64::from(spacing);
    Bomb {
        memory_pages: end.div_ceil(65_536).max(1),
        data,
        ..Bomb::default()
    }
    .finish()
}

/// `count` passive element segments of `items_each` `ref.func` expressions
/// each (the form that is evaluated item by item at instantiation).
pub fn element_segments(count: u32, items_each: u32) -> Vec<u8> {
    let elements = (0..count)
        .map(|_| Elem::PassiveExpressions(vec![0; items_each as usize]))
        .collect();
    Bomb {
        table: Some(1),
        elements,
        ..Bomb::default()
    }
    .finish()
}

/// One function with `depth` nested blocks around a `br_table` of
/// `targets` targets spread over all of them.
pub fn br_table(targets: u32, depth: u32) -> Vec<u8> {
    let depth = depth.max(1);
    let mut body = Vec::new();
    for _ in 0..depth {
        body.extend(encode(&[Instruction::Block(
            wasm_encoder::BlockType::Empty,
        )]));
    }
    let labels: Vec<u32> = (0..targets).map(|i| i % depth).collect();
    body.extend(encode(&[
        Instruction::I32Const(0),
        Instruction::BrTable(labels.into(), 0),
    ]));
    for _ in 0..depth {
        body.extend(encode(&[Instruction::End]));
    }
    Bomb {
        functions: vec![Func::nullary(Vec::new(), body)],
        ..Bomb::default()
    }
    .finish()
}

/// The kind of structured instruction [`nesting`] nests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nest {
    /// `block`.
    Block,
    /// `loop` (each loop head is metered and checked for the epoch).
    Loop,
    /// `if` with an `else`.
    IfElse,
}

/// One function with `depth` nested blocks, loops or ifs.
pub fn nesting(depth: u32, kind: Nest) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..depth {
        match kind {
            Nest::Block => body.extend(encode(&[Instruction::Block(
                wasm_encoder::BlockType::Empty,
            )])),
            Nest::Loop => body.extend(encode(&[Instruction::Loop(wasm_encoder::BlockType::Empty)])),
            Nest::IfElse => body.extend(encode(&[
                Instruction::LocalGet(0),
                Instruction::If(wasm_encoder::BlockType::Empty),
            ])),
        }
    }
    body.extend(encode(&[Instruction::Nop]));
    for _ in 0..depth {
        if kind == Nest::IfElse {
            body.extend(encode(&[
                Instruction::Else,
                Instruction::LocalGet(0),
                Instruction::Drop,
            ]));
        }
        body.extend(encode(&[Instruction::End]));
    }
    Bomb {
        functions: vec![Func::nullary(vec![(1, ValType::I32)], body)],
        ..Bomb::default()
    }
    .finish()
}

/// One function with `count` locals (parameters included), all live at
/// once: each is set from a different value, then all are combined.
pub fn locals(count: u32, ty: ValType) -> Vec<u8> {
    let count = count.max(2);
    let mut body = Vec::new();
    // Loaded from memory, so that no value is known when compiling.
    for i in 0..count {
        body.extend(encode(&[
            Instruction::I32Const((i % 4096) as i32 * 4),
            Instruction::I32Load(MemArg {
                offset: 0,
                align: 0,
                memory_index: 0,
            }),
        ]));
        body.extend(convert_i32(ty));
        body.extend(encode(&[Instruction::LocalSet(i)]));
    }
    body.extend(encode(&[Instruction::LocalGet(0)]));
    for i in 1..count {
        body.extend(encode(&[Instruction::LocalGet(i)]));
        body.extend(combine(ty));
    }
    // The combination is stored, so none of it is dead.
    body.extend(encode(&[Instruction::LocalSet(0)]));
    body.extend(store_locals(&[(1, ty)]));
    Bomb {
        functions: vec![Func::nullary(vec![(count, ty)], body)],
        ..Bomb::default()
    }
    .finish()
}

fn convert_i32(ty: ValType) -> Vec<u8> {
    match ty {
        ValType::I32 => Vec::new(),
        ValType::I64 => encode(&[Instruction::I64ExtendI32U]),
        ValType::F32 => encode(&[Instruction::F32ConvertI32U]),
        ValType::F64 => encode(&[Instruction::F64ConvertI32U]),
        ValType::V128 => encode(&[Instruction::I32x4Splat]),
        ValType::Ref(_) => unreachable!("no reference locals here"),
    }
}

fn combine(ty: ValType) -> Vec<u8> {
    match ty {
        ValType::I32 => encode(&[Instruction::I32Xor]),
        ValType::I64 => encode(&[Instruction::I64Xor]),
        ValType::F32 => encode(&[Instruction::F32Add]),
        ValType::F64 => encode(&[Instruction::F64Add]),
        ValType::V128 => encode(&[Instruction::V128Xor]),
        ValType::Ref(_) => unreachable!("no reference locals here"),
    }
}

/// What a body is filled with, per unit of a few bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// `local.get a; local.get b; i32.add; local.set c` over 4 locals.
    Adds,
    /// `call $f` of a function that does nothing (each call is wrapped
    /// in the depth accounting).
    Calls,
    /// `call_indirect` through the table.
    IndirectCalls,
    /// `memory.fill` of zero bytes.
    MemoryFills,
    /// Loads and stores.
    LoadsStores,
    /// `f64` arithmetic (each result NaN-canonicalised).
    Floats,
    /// SIMD arithmetic (each float result NaN-canonicalised).
    Simd,
    /// Empty loops (each head is metered and checks the epoch).
    Loops,
    /// Loops that each read and write one of `BODY_LOCALS` locals, so
    /// many variables are live across many loop heads.
    LoopsOverLocals,
    /// `br_table`s of 64 targets inside 4 nested blocks.
    BrTables,
    /// Empty blocks.
    Blocks,
    /// `if` / `else` on a local.
    IfElses,
    /// `br_if` out of the function body.
    BrIfs,
    /// Reads and writes of a global.
    Globals,
    /// `memory.grow` by zero pages.
    MemoryGrows,
    /// Integer division (two trap checks each).
    Divisions,
    /// `memory.copy` of zero bytes.
    MemoryCopies,
    /// `select` on locals.
    Selects,
    /// `table.get` and `table.set`.
    TableOps,
    /// `memory.size`.
    MemorySizes,
    /// SIMD operators with long lowerings (`i64x2.mul`, shifts by a
    /// variable, saturating conversions, `popcnt`, shuffles).
    SimdHeavy,
    /// 64 values pushed, then added up: register pressure.
    DeepStacks,
    /// Conversions of floats to integers (range checks).
    Truncations,
}

/// Every kind of [`Fill`].
pub const FILLS: [Fill; 23] = [
    Fill::Adds,
    Fill::Calls,
    Fill::IndirectCalls,
    Fill::MemoryFills,
    Fill::LoadsStores,
    Fill::Floats,
    Fill::Simd,
    Fill::Loops,
    Fill::LoopsOverLocals,
    Fill::BrTables,
    Fill::Blocks,
    Fill::IfElses,
    Fill::BrIfs,
    Fill::Globals,
    Fill::MemoryGrows,
    Fill::Divisions,
    Fill::MemoryCopies,
    Fill::Selects,
    Fill::TableOps,
    Fill::MemorySizes,
    Fill::SimdHeavy,
    Fill::DeepStacks,
    Fill::Truncations,
];

/// Locals of the [`Fill::LoopsOverLocals`] bodies.
pub const BODY_LOCALS: u32 = 1_000;

fn fill_locals(fill: Fill) -> Vec<(u32, ValType)> {
    match fill {
        Fill::Adds
        | Fill::LoadsStores
        | Fill::Calls
        | Fill::IndirectCalls
        | Fill::IfElses
        | Fill::BrIfs
        | Fill::Divisions
        | Fill::Selects => vec![(4, ValType::I32)],
        Fill::MemoryFills
        | Fill::Loops
        | Fill::BrTables
        | Fill::Blocks
        | Fill::Globals
        | Fill::MemoryGrows
        | Fill::MemoryCopies
        | Fill::TableOps
        | Fill::MemorySizes => Vec::new(),
        Fill::Floats | Fill::Truncations => vec![(4, ValType::F64)],
        Fill::Simd | Fill::SimdHeavy => vec![(4, ValType::V128)],
        Fill::DeepStacks => vec![(4, ValType::I64)],
        Fill::LoopsOverLocals => vec![(BODY_LOCALS, ValType::I64)],
    }
}

fn fill_unit(fill: Fill, i: u32) -> Vec<u8> {
    let (a, b, c) = (i % 4, (i + 1) % 4, (i + 2) % 4);
    let memarg = MemArg {
        offset: u64::from(i % 64) * 4,
        align: 2,
        memory_index: 0,
    };
    let empty = wasm_encoder::BlockType::Empty;
    match fill {
        Fill::Blocks => encode(&[Instruction::Block(empty), Instruction::End]),
        Fill::IfElses => encode(&[
            Instruction::LocalGet(a),
            Instruction::If(empty),
            Instruction::Else,
            Instruction::End,
        ]),
        Fill::BrIfs => encode(&[Instruction::LocalGet(a), Instruction::BrIf(0)]),
        // Global 0 is the module's own mutable `i32` (see `code`).
        Fill::Globals => encode(&[Instruction::GlobalGet(0), Instruction::GlobalSet(0)]),
        Fill::MemoryGrows => encode(&[
            Instruction::I32Const(0),
            Instruction::MemoryGrow(0),
            Instruction::Drop,
        ]),
        Fill::Divisions => encode(&[
            Instruction::LocalGet(a),
            Instruction::LocalGet(b),
            Instruction::I32DivS,
            Instruction::LocalSet(c),
        ]),
        Fill::MemoryCopies => encode(&[
            Instruction::I32Const(0),
            Instruction::I32Const(0),
            Instruction::I32Const(0),
            Instruction::MemoryCopy {
                src_mem: 0,
                dst_mem: 0,
            },
        ]),
        Fill::Selects => encode(&[
            Instruction::LocalGet(a),
            Instruction::LocalGet(b),
            Instruction::LocalGet(c),
            Instruction::Select,
            Instruction::LocalSet(a),
        ]),
        Fill::TableOps => encode(&[
            Instruction::I32Const(0),
            Instruction::I32Const(0),
            Instruction::TableGet(0),
            Instruction::TableSet(0),
        ]),
        Fill::MemorySizes => encode(&[Instruction::MemorySize(0), Instruction::Drop]),
        Fill::SimdHeavy => {
            let lanes: [u8; 16] = std::array::from_fn(|lane| ((lane as u32 * 7 + i) % 32) as u8);
            encode(&[
                Instruction::LocalGet(a),
                Instruction::LocalGet(b),
                Instruction::I64x2Mul,
                Instruction::I32Const(i as i32),
                Instruction::I8x16ShrS,
                Instruction::I32x4TruncSatF32x4S,
                Instruction::I8x16Popcnt,
                Instruction::LocalGet(c),
                Instruction::I8x16Shuffle(lanes),
                Instruction::LocalSet(c),
            ])
        }
        Fill::DeepStacks => {
            let mut unit = Vec::new();
            for k in 0..64 {
                unit.push(Instruction::LocalGet((a + k) % 4));
            }
            for _ in 0..63 {
                unit.push(Instruction::I64Mul);
            }
            unit.push(Instruction::LocalSet(c));
            encode(&unit)
        }
        Fill::Truncations => encode(&[
            Instruction::LocalGet(a),
            Instruction::I64TruncF64S,
            Instruction::F64ConvertI64U,
            Instruction::I32TruncSatF64U,
            Instruction::F64ConvertI32S,
            Instruction::LocalSet(b),
        ]),
        Fill::Adds => encode(&[
            Instruction::LocalGet(a),
            Instruction::LocalGet(b),
            Instruction::I32Add,
            Instruction::LocalSet(c),
        ]),
        // The callee is the first extra function, a nullary no-op.
        Fill::Calls => encode(&[Instruction::Call(FIRST_EXTRA)]),
        Fill::IndirectCalls => encode(&[
            Instruction::I32Const(0),
            Instruction::CallIndirect {
                type_index: TYPE_NULLARY,
                table_index: 0,
            },
        ]),
        Fill::MemoryFills => encode(&[
            Instruction::I32Const(0),
            Instruction::I32Const(0),
            Instruction::I32Const(0),
            Instruction::MemoryFill(0),
        ]),
        Fill::LoadsStores => encode(&[
            Instruction::LocalGet(a),
            Instruction::LocalGet(a),
            Instruction::I32Load(memarg),
            Instruction::I32Store(memarg),
        ]),
        Fill::Floats => encode(&[
            Instruction::LocalGet(a),
            Instruction::LocalGet(b),
            Instruction::F64Div,
            Instruction::F64Sqrt,
            Instruction::LocalSet(c),
        ]),
        Fill::Simd => encode(&[
            Instruction::LocalGet(a),
            Instruction::LocalGet(b),
            Instruction::F32x4Div,
            Instruction::F32x4Sqrt,
            Instruction::LocalSet(c),
        ]),
        Fill::Loops => encode(&[
            Instruction::Loop(wasm_encoder::BlockType::Empty),
            Instruction::End,
        ]),
        Fill::LoopsOverLocals => {
            let local = i % BODY_LOCALS;
            encode(&[
                Instruction::Loop(wasm_encoder::BlockType::Empty),
                Instruction::LocalGet(local),
                Instruction::LocalSet((local + 1) % BODY_LOCALS),
                Instruction::End,
            ])
        }
        Fill::BrTables => {
            let block = Instruction::Block(wasm_encoder::BlockType::Empty);
            let labels: Vec<u32> = (0..64).map(|t| t % 4).collect();
            encode(&[
                block.clone(),
                block.clone(),
                block.clone(),
                block,
                Instruction::I32Const(i as i32),
                Instruction::BrTable(labels.into(), 3),
                Instruction::End,
                Instruction::End,
                Instruction::End,
                Instruction::End,
            ])
        }
    }
}

/// Stores every local to memory, so that no computation on them is dead.
fn store_locals(locals: &[(u32, ValType)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut index = 0;
    for (count, ty) in locals {
        for _ in 0..*count {
            let memarg = MemArg {
                offset: 0,
                align: 0,
                memory_index: 0,
            };
            let store = match ty {
                ValType::I32 => Instruction::I32Store(memarg),
                ValType::I64 => Instruction::I64Store(memarg),
                ValType::F32 => Instruction::F32Store(memarg),
                ValType::F64 => Instruction::F64Store(memarg),
                ValType::V128 => Instruction::V128Store(memarg),
                ValType::Ref(_) => unreachable!("no reference locals here"),
            };
            out.extend(encode(&[
                Instruction::I32Const(0),
                Instruction::LocalGet(index),
                store,
            ]));
            index += 1;
        }
    }
    out
}

/// Loads every local from memory, so that no value is known when compiling.
fn load_locals(locals: &[(u32, ValType)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut index = 0;
    for (count, ty) in locals {
        for _ in 0..*count {
            let memarg = MemArg {
                offset: u64::from(index) * 16,
                align: 0,
                memory_index: 0,
            };
            let load = match ty {
                ValType::I32 => Instruction::I32Load(memarg),
                ValType::I64 => Instruction::I64Load(memarg),
                ValType::F32 => Instruction::F32Load(memarg),
                ValType::F64 => Instruction::F64Load(memarg),
                ValType::V128 => Instruction::V128Load(memarg),
                ValType::Ref(_) => unreachable!("no reference locals here"),
            };
            out.extend(encode(&[
                Instruction::I32Const(0),
                load,
                Instruction::LocalSet(index),
            ]));
            index += 1;
        }
    }
    out
}

/// One function body of about `bytes` bytes (at most that many) of `fill`.
pub fn filled(fill: Fill, bytes: usize) -> Func {
    let locals = fill_locals(fill);
    let epilogue = store_locals(&locals);
    let prologue = load_locals(&locals);
    let overhead = Func::nullary(
        locals.clone(),
        [prologue.clone(), epilogue.clone()].concat(),
    )
    .body_bytes();
    let mut body = prologue;
    let mut i = 0u32;
    loop {
        let unit = fill_unit(fill, i);
        if overhead + body.len() + unit.len() > bytes {
            break;
        }
        body.extend(unit);
        i += 1;
    }
    if i == 0 {
        return Func::nullary(locals, Vec::new());
    }
    body.extend(epilogue);
    Func::nullary(locals, body)
}

/// Functions of `fill` with bodies of at most `body_bytes` bytes each,
/// `code_bytes` of bodies in all (the helpers some fills need included).
pub fn code(fill: Fill, code_bytes: usize, body_bytes: usize) -> Vec<u8> {
    // The callee of `Calls` and `IndirectCalls`: a nullary no-op first.
    let mut bomb = Bomb {
        functions: vec![Func::nullary(Vec::new(), Vec::new())],
        ..Bomb::default()
    };
    let mut used = bomb.code_bytes();
    while used < code_bytes {
        let function = filled(fill, body_bytes.min(code_bytes - used));
        if function.body.is_empty() {
            break;
        }
        used += function.body_bytes();
        bomb.functions.push(function);
    }
    let functions = bomb.functions;
    Bomb {
        functions,
        globals: u32::from(fill == Fill::Globals),
        table: matches!(fill, Fill::IndirectCalls | Fill::TableOps).then_some(1),
        elements: if fill == Fill::IndirectCalls {
            vec![Elem::Active(0, vec![FIRST_EXTRA])]
        } else {
            Vec::new()
        },
        ..Bomb::default()
    }
    .finish()
}

/// One function with `locals` `i64` locals loaded from memory, then
/// `joins` empty loops (or if/else diamonds), then every local read and
/// combined: each read looks its local up through every loop head.
pub fn locals_across_joins(locals: u32, joins: u32, diamonds: bool) -> Vec<u8> {
    let locals = locals.max(2);
    let mut body = Vec::new();
    for i in 0..locals {
        body.extend(encode(&[
            Instruction::I32Const((i % 4096) as i32 * 8),
            Instruction::I64Load(MemArg {
                offset: 0,
                align: 0,
                memory_index: 0,
            }),
            Instruction::LocalSet(i),
        ]));
    }
    for i in 0..joins {
        if diamonds {
            body.extend(encode(&[
                Instruction::LocalGet(i % locals),
                Instruction::I32WrapI64,
                Instruction::If(wasm_encoder::BlockType::Empty),
                Instruction::I64Const(1),
                Instruction::LocalSet((i + 1) % locals),
                Instruction::Else,
                Instruction::End,
            ]));
        } else {
            body.extend(encode(&[
                Instruction::Loop(wasm_encoder::BlockType::Empty),
                Instruction::End,
            ]));
        }
    }
    body.extend(encode(&[Instruction::LocalGet(0)]));
    for i in 1..locals {
        body.extend(encode(&[Instruction::LocalGet(i), Instruction::I64Xor]));
    }
    body.extend(encode(&[Instruction::LocalSet(0)]));
    body.extend(store_locals(&[(1, ValType::I64)]));
    Bomb {
        functions: vec![Func::nullary(vec![(locals, ValType::I64)], body)],
        ..Bomb::default()
    }
    .finish()
}

/// The largest module of `fill` that `limits` admit: functions each as
/// large as one function may be (in bytes or compile units, whichever
/// binds first), as many as the module's budget allows (in functions, code
/// bytes or compile units, whichever binds first).
pub fn largest_admissible(fill: Fill, limits: &ModuleLimits) -> Vec<u8> {
    let admitted = |wasm: &[u8]| validate_module(wasm, limits);
    // One function of `fill` is admitted at body size `bytes`, judged with
    // the module-wide budgets out of the way.
    let one_function_limits = ModuleLimits {
        code_bytes_max: u32::MAX,
        compile_units_max: u32::MAX,
        ..*limits
    };
    let fits = |bytes: usize| {
        validate_module(&code(fill, bytes + 64, bytes), &one_function_limits).is_ok()
    };
    let (mut low, mut high) = (16usize, limits.function_body_bytes_max as usize);
    if fits(high) {
        low = high;
    }
    while high - low > 4 {
        let middle = (low + high) / 2;
        if fits(middle) {
            low = middle;
        } else {
            high = middle;
        }
    }
    let body_bytes = low;
    // Then as many functions as fit: grow the total until refused.
    let (mut low, mut high) = (body_bytes, limits.code_bytes_max as usize + body_bytes);
    while high - low > body_bytes / 4 + 4 {
        let middle = (low + high) / 2;
        if admitted(&code(fill, middle, body_bytes)).is_ok() {
            low = middle;
        } else {
            high = middle;
        }
    }
    code(fill, low, body_bytes)
}

/// One function that pushes `values` values loaded from memory, runs
/// `loops` empty loops with all of them live, then adds them up.
pub fn stack_across_loops(values: u32, loops: u32) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..values {
        body.extend(encode(&[
            Instruction::I32Const((i % 4096) as i32 * 8),
            Instruction::I64Load(MemArg {
                offset: 0,
                align: 0,
                memory_index: 0,
            }),
        ]));
    }
    for _ in 0..loops {
        body.extend(encode(&[
            Instruction::Loop(wasm_encoder::BlockType::Empty),
            Instruction::End,
        ]));
    }
    for _ in 1..values.max(1) {
        body.extend(encode(&[Instruction::I64Add]));
    }
    body.extend(encode(&[Instruction::LocalSet(0)]));
    body.extend(store_locals(&[(1, ValType::I64)]));
    Bomb {
        functions: vec![Func::nullary(vec![(1, ValType::I64)], body)],
        ..Bomb::default()
    }
    .finish()
}

/// `count` functions of one type with `params` `i64` parameters and
/// `results` `i64` results, each returning its first parameters; all of
/// them in the table when `escaping`, so each gets an entry trampoline that
/// moves every value.
pub fn wide_functions(count: u32, params: u32, results: u32, escaping: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..results {
        body.extend(encode(&[Instruction::LocalGet(i % params.max(1))]));
    }
    let ty = 3; // the first extra type
    let functions = (0..count)
        .map(|_| Func {
            ty,
            locals: Vec::new(),
            body: body.clone(),
        })
        .collect();
    Bomb {
        types: vec![(
            vec![ValType::I64; params as usize],
            vec![ValType::I64; results as usize],
        )],
        functions,
        table: escaping.then_some(count.max(1)),
        elements: if escaping {
            vec![Elem::Active(
                0,
                (FIRST_EXTRA..FIRST_EXTRA + count).collect(),
            )]
        } else {
            Vec::new()
        },
        ..Bomb::default()
    }
    .finish()
}

/// The largest `n` in `low..=high` for which `make(n)` is admitted under
/// `limits`, assuming admission is monotone in `n`; `None` when even `low`
/// is refused.
pub fn largest(
    low: u32,
    high: u32,
    limits: &ModuleLimits,
    make: impl Fn(u32) -> Vec<u8>,
) -> Option<u32> {
    let admitted = |n: u32| validate_module(&make(n), limits).is_ok();
    if !admitted(low) {
        return None;
    }
    let (mut low, mut high) = (low, high);
    if admitted(high) {
        return Some(high);
    }
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if admitted(middle) {
            low = middle;
        } else {
            high = middle;
        }
    }
    Some(low)
}

/// One function body of exactly `bytes` bytes (locals vector and `end`
/// included) that costs few compile units per byte: `i64.const` with a
/// padded ten-byte immediate and `drop`, topped up with `nop`s.
pub fn padded_body(bytes: usize) -> Func {
    // Locals vector (1 byte) and `end` (1 byte) frame the instructions.
    let instructions = bytes.saturating_sub(2);
    let mut body = Vec::with_capacity(instructions);
    while instructions - body.len() >= 12 {
        body.push(0x42); // i64.const
        body.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]);
        body.push(0x1a); // drop
    }
    body.resize(instructions, 0x01); // nop
    Func::nullary(Vec::new(), body)
}

/// A function of `nops` `nop`s: with its `end`, exactly `nops + 1` compile
/// units of operators.
pub fn nops(nops: u32) -> Func {
    Func::nullary(Vec::new(), vec![0x01; nops as usize])
}

/// A function whose operators cost exactly `units` compile units (its
/// `end` included), in few bytes: empty loops (81 units with their `end`,
/// and no locals or operands live across their heads), then `nop`s.
pub fn costing(units: u32) -> Func {
    let loops = units.saturating_sub(1) / 81;
    let nops = units.saturating_sub(1) - loops * 81;
    let mut body = Vec::new();
    for _ in 0..loops {
        body.extend(encode(&[
            Instruction::Loop(wasm_encoder::BlockType::Empty),
            Instruction::End,
        ]));
    }
    body.resize(body.len() + nops as usize, 0x01);
    Func::nullary(Vec::new(), body)
}

/// The slowest module the default [`ModuleLimits`] admit in each class, by
/// name: each limit reached with the most expensive content admission lets
/// through, and each kind of code filled up to the compile-unit budget.
/// Every one is under 512 KiB and needs at most 64 pages of memory, so it
/// is also admissible under the chain's default parameters.
///
/// # Panics
/// If a class has no admissible module (a limit set so low that even the
/// ABI's own functions exceed it).
#[must_use]
pub fn slowest_admissible() -> Vec<(String, Vec<u8>)> {
    slowest_admissible_under(&ModuleLimits::default())
}

/// [`slowest_admissible`] under other limits.
///
/// # Panics
/// As [`slowest_admissible`].
#[must_use]
pub fn slowest_admissible_under(limits: &ModuleLimits) -> Vec<(String, Vec<u8>)> {
    let mut classes = slowest_at_limits(limits);
    classes.extend(slowest_at_budget(limits));
    classes
}

/// Each kind of code in [`FILLS`], filled up to the compile-unit budget.
#[must_use]
pub fn slowest_at_budget(limits: &ModuleLimits) -> Vec<(String, Vec<u8>)> {
    FILLS
        .iter()
        .map(|fill| {
            (
                format!("{fill:?}, up to the budget"),
                largest_admissible(*fill, limits),
            )
        })
        .collect()
}

/// Each limit reached with the most expensive content admission lets
/// through.
///
/// # Panics
/// As [`slowest_admissible`].
#[must_use]
pub fn slowest_at_limits(limits: &ModuleLimits) -> Vec<(String, Vec<u8>)> {
    let mut classes = Vec::new();
    let mut add = |name: String, wasm: Option<Vec<u8>>| {
        classes.push((name, wasm.expect("the class has an admissible module")));
    };
    // `alloc` and `run` are functions and types too.
    let functions = limits.functions_max - 2;
    add(
        format!(
            "{} functions, as many escaping as fit",
            limits.functions_max
        ),
        largest(0, functions, limits, |escaping| {
            self::functions(functions, escaping)
        })
        .map(|escaping| self::functions(functions, escaping)),
    );
    let types = limits.types_max - 3;
    add(
        format!("{} types, as wide as fit", limits.types_max),
        largest(1, 1_000, limits, |params| self::types(types, params))
            .map(|params| self::types(types, params)),
    );
    add(
        "escaping functions, as many and as wide as fit".to_owned(),
        largest(1, 1_000, limits, |params| {
            let count = largest(1, functions, limits, |count| {
                wide_functions(count, params, 0, true)
            })
            .unwrap_or(1);
            wide_functions(count, params, 0, true)
        })
        .map(|params| {
            let count = largest(1, functions, limits, |count| {
                wide_functions(count, params, 0, true)
            })
            .unwrap_or(1);
            wide_functions(count, params, 0, true)
        }),
    );
    add(
        format!(
            "{} data segments, sparse (copied one by one)",
            limits.data_segments_max
        ),
        Some(data_segments(limits.data_segments_max, 1, 4_096)),
    );
    add(
        format!(
            "{} data segments, adjacent (one image)",
            limits.data_segments_max
        ),
        Some(data_segments(limits.data_segments_max, 16, 16)),
    );
    let each = limits.data_bytes_max / limits.data_segments_max;
    add(
        format!(
            "{} bytes of data in {} sparse segments",
            each * limits.data_segments_max,
            limits.data_segments_max
        ),
        // Spaced so that the data fills under half of a span over 1 MiB:
        // too sparse for a memory image, so each segment is copied.
        Some(data_segments(
            limits.data_segments_max,
            each,
            (each * 4).max(4_096),
        )),
    );
    add(
        format!("{} passive element segments", limits.element_segments_max),
        Some(element_segments(
            limits.element_segments_max,
            limits.element_items_max / limits.element_segments_max,
        )),
    );
    add(
        format!("{} element items in one segment", limits.element_items_max),
        Some(element_segments(1, limits.element_items_max)),
    );
    add(
        format!(
            "br_table of {} targets over {} nested blocks",
            limits.br_table_targets_max, limits.nesting_depth_max
        ),
        Some(br_table(
            limits.br_table_targets_max,
            limits.nesting_depth_max,
        )),
    );
    for (kind, name) in [(Nest::Loop, "loops"), (Nest::IfElse, "ifs")] {
        add(
            format!("{} nested {name}", limits.nesting_depth_max),
            Some(nesting(limits.nesting_depth_max, kind)),
        );
    }
    let locals = limits.function_locals_max;
    add(
        format!("{locals} locals across as many loops as fit"),
        largest(0, 100_000, limits, |joins| {
            locals_across_joins(locals, joins, false)
        })
        .map(|joins| locals_across_joins(locals, joins, false)),
    );
    add(
        format!("{locals} locals, all live"),
        Some(self::locals(locals, ValType::I64)),
    );
    add(
        "deepest operand stack that fits".to_owned(),
        largest(1, 100_000, limits, |values| stack_across_loops(values, 0))
            .map(|values| stack_across_loops(values, 0)),
    );
    add(
        format!("one body of {} bytes", limits.function_body_bytes_max),
        Some(
            Bomb {
                functions: vec![padded_body(limits.function_body_bytes_max as usize)],
                ..Bomb::default()
            }
            .finish(),
        ),
    );
    classes
}
