//! One LLVM function per step of the schedule: `void step(void *ctx, int64_t task)`.
//!
//! The context is an array of 8-byte slots built by the run function ([`CtxSlot`]): the
//! symbols, an error flag, the row range split and the buffers. Every kernel works on "rows":
//! the run function splits `[0, rows)` into chunks of `chunk` rows and task `t` does rows
//! `t * chunk .. min((t + 1) * chunk, rows)`. What a row is depends on the kernel (a line of
//! the output's innermost axis, a row of a matrix, a batch matrix, one normalised line, ...);
//! [`Parallel`] says how many there are and how much work each is.
//!
//! Kernels that index with data (gathers) check every index and, on one out of range, set the
//! error flag (the run then fails with `TCC_ERR_INTERNAL`) instead of reading out of bounds.
//!
//! This file holds what every kernel shares (the context [`Ctx`], [`Parallel`], strides) and
//! the dispatch from a step's [`Kernel`] to its family, one file each: `elementwise` (fused
//! loops), `matmul`, `attention`, `softmax`, `norm` (layer and RMS normalisation), `reduce`,
//! `movement` (transpose, slice, concat, pad, ...), `gather`, `shape` (`shape_of`, `dims`,
//! `range`), `conv` and `int8` (`matmul_integer`, `qgemm`). The vector math they call (`exp`,
//! `erf`, the GELUs) is [`crate::kernels::vmath`]'s.

mod attention;
mod conv;
mod elementwise;
mod gather;
mod int8;
mod matmul;
mod movement;
mod norm;
mod pack;
mod reduce;
mod shape;
mod softmax;

use std::sync::Arc;

use inkwell::module::Module;
use inkwell::values::{BasicValueEnum, FunctionValue, IntValue, PointerValue};
use inkwell::AddressSpace;
use tcc_ir::{DType, Dim, Graph, NodeId, Op, Shape};

use super::dims::DimEmitter;
use super::scalar;
use super::schedule::{Kernel, Step};
use crate::error::{Error, Result};
use crate::kernels::gemm::NextGemm;
use crate::kernels::{KernelBuilder, Param};
use crate::target::Target;

/// The fixed slots of a step's context; buffers follow from [`CtxSlot::FIRST_BUFFER`].
pub struct CtxSlot;

impl CtxSlot {
    /// `const int64_t *symbols`.
    pub const SYMBOLS: u32 = 0;
    /// `int32_t *error`: set to 1 by a kernel that meets bad data.
    pub const ERROR: u32 = 1;
    /// Rows per task.
    pub const CHUNK: u32 = 2;
    /// Rows in all.
    pub const ROWS: u32 = 3;
    /// Column groups: task `t` computes row chunk `t / COL_GROUPS` and column group
    /// `t % COL_GROUPS` (1 for a step split by rows only).
    pub const COL_GROUPS: u32 = 4;
    /// Column units (such as a GEMM's panels) per column group.
    pub const COL_CHUNK: u32 = 5;
    /// The destination buffer; the inputs follow, then the scratch if any.
    pub const FIRST_BUFFER: u32 = 6;
}

/// How a step splits into tasks.
#[derive(Clone, Debug)]
pub struct Parallel {
    /// The number of rows.
    pub rows: Dim,
    /// The work per row (elements or multiply-adds), to decide whether threads pay.
    pub work: Dim,
    /// Chunks are rounded up to a multiple of this many rows.
    pub align: i64,
    /// Units along the columns the step can also be split into (a GEMM's panels of `B`), or 1.
    /// The kernel reads its range as [`Ctx::c0`]`..`[`Ctx::c1`] (clamped to this count).
    pub cols: i64,
    /// The column split is used only up to this many rows. Splitting a GEMM by columns makes
    /// every thread read all of `A` (`rows x k`), splitting by rows makes every thread read all
    /// of `B` (`k x n`), but keeps each thread on the rows it wrote in the step before: the
    /// columns pay only while the rows are too few to give every thread whole tiles.
    pub col_max_rows: i64,
}

impl Parallel {
    /// `rows` rows of `work` each, split by rows only, in any chunks.
    pub fn rows(rows: Dim, work: Dim) -> Parallel {
        Parallel {
            rows,
            work,
            align: 1,
            cols: 1,
            col_max_rows: 0,
        }
    }
}

/// An [`Error::Unsupported`] for node `step.node`.
pub fn unsupported(graph: &Graph, step: &Step, why: impl Into<String>) -> Error {
    unsupported_node(graph, step.node, why)
}

/// An [`Error::Unsupported`] for node `id`.
pub fn unsupported_node(graph: &Graph, id: NodeId, why: impl Into<String>) -> Error {
    let node = graph.node(id);
    Error::Unsupported {
        node: node
            .origin
            .clone()
            .unwrap_or_else(|| format!("%{}", id.index())),
        op: node.op.name().to_owned(),
        why: why.into(),
    }
}

/// The shape of the operand a product reads from input `i` of `step`: the input's, permuted
/// by `perm` if given (axis `a` of the result is the input's axis `perm[a]`).
fn logical_shape(graph: &Graph, step: &Step, i: usize, perm: &Option<Vec<usize>>) -> Shape {
    let src = &graph.ty(step.inputs[i]).shape;
    match perm {
        Some(p) => Shape::from(p.iter().map(|&a| src.dims()[a].clone()).collect::<Vec<_>>()),
        None => src.clone(),
    }
}

/// Contiguous (row-major) strides of a shape, in elements.
pub fn strides(shape: &Shape) -> Vec<Dim> {
    let mut out = vec![Dim::constant(1); shape.rank()];
    for a in (0..shape.rank().saturating_sub(1)).rev() {
        out[a] = out[a + 1].mul(&shape.dims()[a + 1]);
    }
    out
}

/// The strides that read `shape` broadcast (numpy, right-aligned) to an index of rank `rank`.
///
/// An axis of size 1 broadcasts with stride 0. A symbolic size may be 1 at run time (the IR
/// types `[s]` against `[t]` as `[max(s, t)]`, and `[s]` against `[5]` as `[5]`), so its
/// stride is `stride * min(d - 1, 1)`: 0 when `d` is 1, the stride otherwise (sizes are at
/// least 1).
pub fn bcast_strides(shape: &Shape, rank: usize) -> Vec<Dim> {
    bcast_strides_impl(shape, rank, None)
}

/// [`bcast_strides`] to the index space `out`: an axis whose size is the output's (the same
/// [`Dim`]) keeps its plain stride, so a contiguous operand stays contiguous (if the size is 1
/// at run time, so is the output's, and the index is always 0).
pub fn bcast_strides_to(shape: &Shape, out: &[Dim]) -> Vec<Dim> {
    bcast_strides_impl(shape, out.len(), Some(out))
}

fn bcast_strides_impl(shape: &Shape, rank: usize, out_dims: Option<&[Dim]>) -> Vec<Dim> {
    bcast_strides_from(shape, &strides(shape), rank, out_dims)
}

/// [`bcast_strides`] of a view of `shape` whose own strides are `own` (not contiguous, such as
/// a transposed view of a buffer).
pub fn bcast_strides_with(shape: &Shape, own: &[Dim], rank: usize) -> Vec<Dim> {
    bcast_strides_from(shape, own, rank, None)
}

fn bcast_strides_from(
    shape: &Shape,
    own: &[Dim],
    rank: usize,
    out_dims: Option<&[Dim]>,
) -> Vec<Dim> {
    let lead = rank - shape.rank().min(rank);
    let skip = shape.rank() - shape.rank().min(rank);
    let mut out = vec![Dim::constant(0); rank];
    for a in 0..shape.rank().min(rank) {
        let d = &shape.dims()[a + skip];
        let stride = &own[a + skip];
        out[lead + a] = match d.as_const() {
            Some(1) => Dim::constant(0),
            Some(_) => stride.clone(),
            None if out_dims.is_some_and(|o| &o[lead + a] == d) => stride.clone(),
            None => {
                let one = Dim::constant(1);
                stride.mul(&d.sub(&one).min_dim(&one))
            }
        };
    }
    out
}

/// A product of dims.
fn product(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::constant(1), |p, d| p.mul(d))
}

/// One task doing all the step's `work`.
fn serial(work: Dim) -> Parallel {
    Parallel::rows(Dim::constant(1), work)
}

/// The rows of `shape`: the product of all its axes but the innermost (1 for a scalar).
fn rows_of(shape: &Shape) -> Dim {
    match shape.dims().split_last() {
        Some((_, outer)) => product(outer),
        None => Dim::constant(1),
    }
}

/// A row per line of `shape`'s innermost axis, of that axis's length: the split of the kernels
/// that compute each element of the result on its own.
fn lines(shape: &Shape) -> Parallel {
    let last = shape.dims().last().cloned().unwrap_or(Dim::constant(1));
    Parallel::rows(rows_of(shape), last)
}

/// `(outer, len, inner)` of an axis.
fn split_axis(shape: &Shape, axis: usize) -> (Dim, Dim, Dim) {
    (
        product(&shape.dims()[..axis]),
        shape.dims()[axis].clone(),
        product(&shape.dims()[axis + 1..]),
    )
}

/// `v`, of `dtype`, as an `f64`.
fn f64_of<'ctx>(
    c: &Ctx<'_, 'ctx>,
    dtype: DType,
    v: BasicValueEnum<'ctx>,
) -> Result<inkwell::values::FloatValue<'ctx>> {
    Ok(scalar::cast(&c.kb, dtype, DType::F64, v)?.into_float_value())
}

/// The state a kernel body works with.
pub struct Ctx<'a, 'ctx> {
    /// The module.
    pub m: &'a Module<'ctx>,
    /// The kernel's builder.
    pub kb: KernelBuilder<'a, 'ctx>,
    names: &'a [Arc<str>],
    symbols: PointerValue<'ctx>,
    error: PointerValue<'ctx>,
    /// The destination buffer.
    pub dest: PointerValue<'ctx>,
    /// The input buffers.
    pub inputs: Vec<PointerValue<'ctx>>,
    /// The scratch buffer, if the step has one.
    pub scratch: Option<PointerValue<'ctx>>,
    /// The first row of this task.
    pub r0: IntValue<'ctx>,
    /// One past the last row of this task.
    pub r1: IntValue<'ctx>,
    /// The first column unit of this task (see [`Parallel::cols`]).
    pub c0: IntValue<'ctx>,
    /// One past the last column unit of this task (may exceed [`Parallel::cols`]).
    pub c1: IntValue<'ctx>,
    /// The GEMM with constant weights that runs after this step's, for a step that is one
    /// (see [`crate::kernels::gemm::emit_gemm_const_b_then`]).
    pub next_gemm: Option<NextGemm<'a>>,
}

impl<'a, 'ctx> Ctx<'a, 'ctx> {
    fn dims(&self) -> DimEmitter<'_, 'ctx> {
        DimEmitter::new(self.kb.builder(), self.symbols, self.names, "step")
    }

    /// The value of a dim.
    pub fn dim(&self, d: &Dim) -> Result<IntValue<'ctx>> {
        self.dims().dim(d)
    }

    fn dim_list(&self, ds: &[Dim]) -> Result<Vec<IntValue<'ctx>>> {
        ds.iter().map(|d| self.dim(d)).collect()
    }

    fn b(&self) -> &inkwell::builder::Builder<'ctx> {
        self.kb.builder()
    }

    fn add(&self, x: IntValue<'ctx>, y: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        self.b().build_int_add(x, y, "a").map_err(self.kb.err())
    }

    fn mul(&self, x: IntValue<'ctx>, y: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        self.b().build_int_mul(x, y, "m").map_err(self.kb.err())
    }

    fn div(&self, x: IntValue<'ctx>, y: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        self.b()
            .build_int_unsigned_div(x, y, "d")
            .map_err(self.kb.err())
    }

    fn rem(&self, x: IntValue<'ctx>, y: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        self.b()
            .build_int_unsigned_rem(x, y, "r")
            .map_err(self.kb.err())
    }

    /// Stores `value` as symbol `k` of the run's symbols (a derived symbol, such as the token
    /// count a `pack` finds).
    fn store_symbol(&self, k: usize, value: IntValue<'ctx>) -> Result<()> {
        let i64t = self.kb.context().i64_type();
        // SAFETY: `k` indexes the run's symbols array, which holds the derived ones too.
        let p = unsafe {
            self.b()
                .build_in_bounds_gep(
                    i64t,
                    self.symbols,
                    &[i64t.const_int(k as u64, false)],
                    "sym",
                )
                .map_err(self.kb.err())?
        };
        self.b().build_store(p, value).map_err(self.kb.err())?;
        Ok(())
    }

    fn set_error(&self) -> Result<()> {
        self.b()
            .build_store(self.error, self.kb.context().i32_type().const_int(1, false))
            .map_err(self.kb.err())?;
        Ok(())
    }

    /// `for i in start..end { body(i) }`.
    fn for_range(
        &self,
        start: IntValue<'ctx>,
        end: IntValue<'ctx>,
        name: &str,
        body: impl FnOnce(&Self, IntValue<'ctx>) -> Result<()>,
    ) -> Result<()> {
        let one = self.kb.i64_const(1);
        self.kb
            .for_loop(start, end, one, name, |_, i| body(self, i))
    }

    /// `if cond { then() }`.
    fn if_then(&self, cond: IntValue<'ctx>, then: impl FnOnce(&Self) -> Result<()>) -> Result<()> {
        let yes = self.kb.append_block("then");
        let done = self.kb.append_block("endif");
        self.b()
            .build_conditional_branch(cond, yes, done)
            .map_err(self.kb.err())?;
        self.b().position_at_end(yes);
        then(self)?;
        self.b()
            .build_unconditional_branch(done)
            .map_err(self.kb.err())?;
        self.b().position_at_end(done);
        Ok(())
    }

    /// A stack slot holding a value, for loop-carried accumulators.
    fn var(&self, init: BasicValueEnum<'ctx>) -> Result<PointerValue<'ctx>> {
        let slot = self
            .kb
            .entry_builder()?
            .build_alloca(init.get_type(), "var")
            .map_err(self.kb.err())?;
        self.b().build_store(slot, init).map_err(self.kb.err())?;
        Ok(slot)
    }

    fn get(
        &self,
        slot: PointerValue<'ctx>,
        like: BasicValueEnum<'ctx>,
    ) -> Result<BasicValueEnum<'ctx>> {
        self.b()
            .build_load(like.get_type(), slot, "v")
            .map_err(self.kb.err())
    }

    fn set(&self, slot: PointerValue<'ctx>, v: BasicValueEnum<'ctx>) -> Result<()> {
        self.b().build_store(slot, v).map_err(self.kb.err())?;
        Ok(())
    }

    /// Splits row `r` of a row-major index space with outer dims `outer` into indices.
    fn unflatten(
        &self,
        mut r: IntValue<'ctx>,
        outer: &[IntValue<'ctx>],
    ) -> Result<Vec<IntValue<'ctx>>> {
        let mut idx = vec![self.kb.i64_const(0); outer.len()];
        for a in (0..outer.len()).rev() {
            if a == 0 {
                idx[a] = r;
            } else {
                idx[a] = self.rem(r, outer[a])?;
                r = self.div(r, outer[a])?;
            }
        }
        Ok(idx)
    }

    /// `sum idx[a] * strides[a]` plus `base`.
    fn offset(
        &self,
        base: IntValue<'ctx>,
        idx: &[IntValue<'ctx>],
        strides: &[IntValue<'ctx>],
    ) -> Result<IntValue<'ctx>> {
        let mut off = base;
        for (i, s) in idx.iter().zip(strides) {
            if s.get_zero_extended_constant() == Some(0) {
                continue;
            }
            let t = self.mul(*i, *s)?;
            off = self.add(off, t)?;
        }
        Ok(off)
    }

    /// A loop nest over `dims` (rows are the outer axes, split by task): calls
    /// `body(offsets, index)` with, per access `(base, strides)`, the element offset.
    #[allow(clippy::type_complexity)]
    fn strided(
        &self,
        dims: &[IntValue<'ctx>],
        accesses: &[(IntValue<'ctx>, Vec<IntValue<'ctx>>)],
        r0: IntValue<'ctx>,
        r1: IntValue<'ctx>,
        body: &mut dyn FnMut(&Self, &[IntValue<'ctx>], &[IntValue<'ctx>]) -> Result<()>,
    ) -> Result<()> {
        let one = self.kb.i64_const(1);
        let (outer, inner) = match dims.split_last() {
            Some((last, outer)) => (outer.to_vec(), *last),
            None => (vec![], one),
        };
        let rank = dims.len();
        self.for_range(r0, r1, "row", |c, r| {
            let idx = c.unflatten(r, &outer)?;
            let mut bases = Vec::new();
            for (base, st) in accesses {
                bases.push(c.offset(*base, &idx, &st[..outer.len()])?);
            }
            c.for_range(c.kb.i64_const(0), inner, "col", |c, j| {
                let mut offs = Vec::new();
                for ((_, st), base) in accesses.iter().zip(&bases) {
                    offs.push(if rank == 0 {
                        *base
                    } else {
                        let s = st[rank - 1];
                        match s.get_zero_extended_constant() {
                            Some(0) => *base,
                            Some(1) => c.add(*base, j)?,
                            _ => {
                                let t = c.mul(j, s)?;
                                c.add(*base, t)?
                            }
                        }
                    });
                }
                let mut full = idx.clone();
                if rank > 0 {
                    full.push(j);
                }
                body(c, &offs, &full)
            })
        })
    }
}

/// Emits the function of `step` and says how it splits.
#[allow(clippy::too_many_arguments)]
pub fn emit_step<'a, 'ctx>(
    module: &'a Module<'ctx>,
    target: &'a Target,
    graph: &Graph,
    names: &'a [Arc<str>],
    step: &Step,
    n_buffers: u32,
    has_scratch: bool,
    name: &str,
    next_gemm: Option<NextGemm<'a>>,
) -> Result<(FunctionValue<'ctx>, Parallel)> {
    let kb = KernelBuilder::new(
        module,
        target,
        name,
        &[Param::Ptr, Param::I64],
        target.f32_lanes(),
    )?;
    // Kept out of `run`: inlined there (each step is called once on the serial path) the steps
    // of a large model made one function of hundreds of thousands of instructions, which LLVM
    // optimises in superlinear time (minutes for an int8 BERT-base); a call per step costs
    // nothing measurable.
    let noinline = inkwell::attributes::Attribute::get_named_enum_kind_id("noinline");
    kb.function().add_attribute(
        inkwell::attributes::AttributeLoc::Function,
        kb.context().create_enum_attribute(noinline, 0),
    );
    let ctx_ptr = kb.ptr_param(0)?;
    let task = kb.int_param(1)?;
    let context = kb.context();
    let ptr_t = context.ptr_type(AddressSpace::default());
    let i64t = context.i64_type();
    let slot = |k: u32| -> Result<PointerValue<'ctx>> {
        // SAFETY: the run function builds the context with every slot this reads.
        unsafe {
            kb.builder()
                .build_in_bounds_gep(
                    i64t,
                    ctx_ptr,
                    &[i64t.const_int(u64::from(k), false)],
                    "slot",
                )
                .map_err(kb.err())
        }
    };
    let load_ptr = |k: u32| -> Result<PointerValue<'ctx>> {
        Ok(kb
            .builder()
            .build_load(ptr_t, slot(k)?, "p")
            .map_err(kb.err())?
            .into_pointer_value())
    };
    let load_int = |k: u32| -> Result<IntValue<'ctx>> {
        Ok(kb
            .builder()
            .build_load(i64t, slot(k)?, "i")
            .map_err(kb.err())?
            .into_int_value())
    };
    let symbols = load_ptr(CtxSlot::SYMBOLS)?;
    let error = load_ptr(CtxSlot::ERROR)?;
    let chunk = load_int(CtxSlot::CHUNK)?;
    let rows = load_int(CtxSlot::ROWS)?;
    let dest = load_ptr(CtxSlot::FIRST_BUFFER)?;
    let mut inputs = Vec::new();
    for k in 1..n_buffers {
        inputs.push(load_ptr(CtxSlot::FIRST_BUFFER + k)?);
    }
    let scratch = if has_scratch {
        Some(load_ptr(CtxSlot::FIRST_BUFFER + n_buffers)?)
    } else {
        None
    };
    let groups = load_int(CtxSlot::COL_GROUPS)?;
    let col_chunk = load_int(CtxSlot::COL_CHUNK)?;
    let bld = kb.builder();
    let row_task = bld
        .build_int_signed_div(task, groups, "row.task")
        .map_err(kb.err())?;
    let col_task = bld
        .build_int_signed_rem(task, groups, "col.task")
        .map_err(kb.err())?;
    let c0 = bld
        .build_int_mul(col_task, col_chunk, "c0")
        .map_err(kb.err())?;
    let c1 = bld.build_int_add(c0, col_chunk, "c1").map_err(kb.err())?;
    let r0 = kb
        .builder()
        .build_int_mul(row_task, chunk, "r0")
        .map_err(kb.err())?;
    let r1 = kb
        .builder()
        .build_int_add(r0, chunk, "r1")
        .map_err(kb.err())?;
    let r1 = kb.min_i64(r1, rows)?;
    let c = Ctx {
        m: module,
        kb,
        names,
        symbols,
        error,
        dest,
        inputs,
        scratch,
        r0,
        r1,
        c0,
        c1,
        next_gemm,
    };
    let parallel = body(&c, graph, step, target)?;
    c.kb.builder().build_return(None).map_err(c.kb.err())?;
    Ok((c.kb.function(), parallel))
}

/// The scratch (in bytes) of a step, if it has one: the runtime-B GEMM's packed `B`, the
/// fused attention's packed `K` and `V` and block of scores, a convolution's blocks of
/// unfolded input, or the quantised GEMM's quantised rows of `A`.
pub fn scratch_bytes(graph: &Graph, step: &Step, target: &Target) -> Option<Dim> {
    match &step.kernel {
        Kernel::Attention { .. } => attention::scratch_bytes(graph, step, target),
        Kernel::MatMul { product, perms, .. } => {
            Some(matmul::scratch_bytes(graph, step, target, product, perms))
        }
        Kernel::Op(Op::Conv { group, .. }) => conv::scratch_bytes(graph, step, target, *group),
        Kernel::Op(Op::PackedAttention { .. }) => {
            Some(attention::packed_scratch_bytes(graph, step, target))
        }
        Kernel::Op(Op::QGemm {
            bias,
            saturate_pairs,
            ..
        }) => int8::qgemm_scratch_bytes(graph, step, target, *bias, *saturate_pairs),
        Kernel::Fused(_) | Kernel::GemmConstB { .. } | Kernel::Copy | Kernel::Op(_) => None,
    }
}

/// Emits the body of `step`'s kernel into `c` and says how it splits.
fn body(c: &Ctx<'_, '_>, graph: &Graph, step: &Step, target: &Target) -> Result<Parallel> {
    match &step.kernel {
        Kernel::Fused(expr) => elementwise::fused(c, graph, step, expr),
        Kernel::Copy => movement::copy(c, graph, step),
        Kernel::GemmConstB {
            b,
            bias,
            activation,
        } => matmul::gemm_const_b(c, graph, step, target, b, bias.as_deref(), *activation),
        Kernel::MatMul {
            product,
            perms,
            out_perm,
        } => matmul::matmul(c, graph, step, target, product, perms, out_perm.as_deref()),
        Kernel::Attention { .. } => attention::attention(c, graph, step, target),
        Kernel::Op(op) => op_body(c, graph, step, target, op),
    }
}

/// The kernel of a plain op: its family's.
fn op_body(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    target: &Target,
    op: &Op,
) -> Result<Parallel> {
    let dtype = graph.ty(step.node).dtype;
    if matches!(dtype, DType::F16 | DType::BF16)
        || step
            .inputs
            .iter()
            .any(|&i| matches!(graph.ty(i).dtype, DType::F16 | DType::BF16))
    {
        return Err(unsupported(
            graph,
            step,
            "16-bit floats are not supported by the code generator yet",
        ));
    }
    match op {
        Op::Transpose { perm } => movement::transpose(c, graph, step, perm),
        Op::Expand { .. } => movement::expand(c, graph, step),
        Op::Slice {
            axes,
            starts,
            steps,
            ..
        } => movement::slice(c, graph, step, axes, starts, steps),
        Op::Concat { axis } => movement::concat(c, graph, step, *axis),
        Op::Tile { .. } => movement::tile(c, graph, step),
        Op::Trilu { upper, k } => movement::trilu(c, graph, step, *upper, *k),
        Op::Pad {
            mode,
            pads_begin,
            pads_end,
        } => movement::pad(c, graph, step, *mode, pads_begin, pads_end),
        Op::Range { start, delta, .. } => shape::range(c, graph, step, start, *delta),
        Op::Dims { values, .. } => shape::dims(c, graph, step, values),
        Op::ShapeOf { start, end } => shape::shape_of(c, graph, step, *start, *end),
        Op::Gather { axis } => gather::gather(c, graph, step, *axis),
        Op::GatherElements { axis } => gather::gather_elements(c, graph, step, *axis),
        Op::GatherNd { batch_dims } => gather::gather_nd(c, graph, step, *batch_dims),
        Op::Softmax { axis } => softmax::softmax(c, graph, step, *axis, false),
        Op::LogSoftmax { axis } => softmax::softmax(c, graph, step, *axis, true),
        Op::LayerNorm { axis, epsilon } => norm::layer_norm(c, graph, step, *axis, *epsilon, false),
        Op::AddLayerNorm { axis, epsilon } => {
            norm::layer_norm(c, graph, step, *axis, *epsilon, true)
        }
        Op::RmsNorm { axis, epsilon } => norm::rms_norm(c, graph, step, *axis, *epsilon),
        Op::Reduce { kind, axes, .. } => reduce::reduce(c, graph, step, *kind, axes),
        Op::ArgReduce {
            max,
            axis,
            select_last,
            ..
        } => reduce::arg_reduce(c, graph, step, *max, *axis, *select_last),
        Op::CumSum {
            axis,
            exclusive,
            reverse,
        } => reduce::cum_sum(c, graph, step, *axis, *exclusive, *reverse),
        Op::MatMulInteger { saturate_pairs } => {
            int8::matmul_integer(c, graph, step, target, *saturate_pairs)
        }
        Op::QGemm {
            activation,
            bias,
            saturate_pairs,
        } => int8::qgemm(c, graph, step, target, *activation, *bias, *saturate_pairs),
        Op::MatMul => matmul::matmul_scalar(c, graph, step),
        Op::Conv {
            strides: st,
            pads_begin,
            dilations,
            group,
            ..
        } => conv::conv(c, graph, step, target, st, pads_begin, dilations, *group),
        Op::Gemm { .. } | Op::Attention { .. } | Op::Fused { .. } => Err(unsupported(
            graph,
            step,
            "a fused op scheduled as a plain op (internal error)",
        )),
        Op::Pack { tokens } => {
            let k = c
                .names
                .iter()
                .position(|n| **n == **tokens)
                .ok_or_else(|| unsupported(graph, step, "its token symbol is not the run's"))?;
            pack::pack(c, graph, step, k)
        }
        Op::Unpack => pack::unpack(c, graph, step),
        Op::PackedAttention { scale } => {
            attention::packed_attention(c, graph, step, target, *scale)
        }
        Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast { .. } => Err(unsupported(
            graph,
            step,
            "this elementwise op on 16-bit floats",
        )),
        Op::Input { .. } | Op::Const(_) | Op::Reshape { .. } => {
            Err(unsupported(graph, step, "not a kernel (internal error)"))
        }
    }
}
