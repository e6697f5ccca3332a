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

use std::sync::Arc;

use inkwell::module::Module;
use inkwell::values::{BasicValue, BasicValueEnum, FunctionValue, IntValue, PointerValue};
use inkwell::{AddressSpace, FloatPredicate, IntPredicate};
use tcc_ir::{DType, Dim, Graph, NodeId, Op, ReduceKind, Shape};

use super::dims::DimEmitter;
use super::scalar::{self, load, store};
use super::schedule::{Expr, Kernel, Step};
use crate::error::{Error, Result};
use crate::kernels::gemm::{self, Epilogue, GemmLayout};
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
    /// of `B` (`k x n`): the columns pay while `rows <= n`.
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

/// Softmax over contiguous f32 rows of `len` elements, rows `c.r0..c.r1`, in the
/// target's vectors: the row's maximum; then `d = x - max` exactly, as an f32 pair
/// `hi + lo` (TwoSum), so that tcc's vector exp (about 2 ulp) sees no rounded argument;
/// `e = exp(d)` stored in f32 and summed in f64 lanes; then `e * (1 / sum)` in f64, rounded
/// once. Each result is within about 3 ulp of the exact softmax. A row holding a NaN or an
/// infinity gives NaN everywhere, as `exp(x - max)` does in exact arithmetic.
fn softmax_rows_f32<'ctx>(c: &Ctx<'_, 'ctx>, lenv: IntValue<'ctx>) -> Result<()> {
    c.for_range(c.r0, c.r1, "row", |c, r| {
        let base = c.mul(r, lenv)?;
        let src = c.kb.f32_element_ptr(c.inputs[0], base)?;
        let dst = c.kb.f32_element_ptr(c.dest, base)?;
        softmax_row_f32(c, src, dst, lenv)
    })
}

/// The maximum (`max`) or minimum of a contiguous f32 row of `len` elements, NaN-propagating
/// (`llvm.maximum` / `llvm.minimum`, which order -0 below +0), exact in any order: four
/// independent vector accumulators over blocks of four vectors (one would wait on its own
/// latency), then the rest of the row into the first. `-inf` (`+inf`) for an empty row.
fn row_extreme_f32<'ctx>(
    c: &Ctx<'_, 'ctx>,
    src: PointerValue<'ctx>,
    lenv: IntValue<'ctx>,
    max: bool,
    pre: Option<&RowMap<'_, 'ctx>>,
) -> Result<inkwell::values::FloatValue<'ctx>> {
    let kb = &c.kb;
    let b = kb.builder();
    let vt = kb.f32_vector();
    let (op, reduce, identity) = if max {
        (
            "llvm.maximum",
            "llvm.vector.reduce.fmaximum",
            f32::NEG_INFINITY,
        )
    } else {
        ("llvm.minimum", "llvm.vector.reduce.fminimum", f32::INFINITY)
    };
    let extreme = kb.intrinsic(op, &[vt.into()])?;
    let reduce = kb.intrinsic(reduce, &[vt.into()])?;
    let identity = kb.f32_splat_const(identity);
    let unroll = 4;
    let block = i64::from(kb.lanes()) * unroll;
    let accs: Vec<PointerValue> = (0..unroll)
        .map(|_| c.var(identity.into()))
        .collect::<Result<_>>()?;
    let rem = b
        .build_int_signed_rem(lenv, kb.i64_const(block), "rem")
        .map_err(kb.err())?;
    let blocked = b.build_int_sub(lenv, rem, "blocked").map_err(kb.err())?;
    kb.for_loop(
        kb.i64_const(0),
        blocked,
        kb.i64_const(block),
        "ext4",
        |kb, i| {
            for (u, &acc) in accs.iter().enumerate() {
                let at = b
                    .build_int_add(i, kb.i64_const(u as i64 * i64::from(kb.lanes())), "at")
                    .map_err(kb.err())?;
                let mut x = kb.load_f32(src, at, None)?;
                if let Some(pre) = pre {
                    x = pre(kb, at, x, None)?;
                    kb.store_f32(src, at, x, None)?;
                }
                let m = b.build_load(vt, acc, "m").map_err(kb.err())?;
                let m = kb.call(extreme, &[m.into(), x.into()], "m")?;
                b.build_store(acc, m).map_err(kb.err())?;
            }
            Ok(())
        },
    )?;
    let tail = kb.f32_element_ptr(src, blocked)?;
    kb.vector_loop_in(rem, |kb, i, mask| {
        let mut x = kb.load_f32(tail, i, mask)?;
        if let Some(pre) = pre {
            let at = b.build_int_add(blocked, i, "at").map_err(kb.err())?;
            x = pre(kb, at, x, mask)?;
            kb.store_f32(tail, i, x, mask)?;
        }
        if let Some(mask) = mask {
            x = b
                .build_select(mask, x, identity, "x")
                .map_err(kb.err())?
                .into_vector_value();
        }
        let m = b.build_load(vt, accs[0], "m").map_err(kb.err())?;
        let m = kb.call(extreme, &[m.into(), x.into()], "m")?;
        b.build_store(accs[0], m).map_err(kb.err())?;
        Ok(())
    })?;
    let mut m = b.build_load(vt, accs[0], "m").map_err(kb.err())?;
    for &acc in &accs[1..] {
        let other = b.build_load(vt, acc, "m").map_err(kb.err())?;
        m = kb.call(extreme, &[m.into(), other.into()], "m")?;
    }
    Ok(kb.call(reduce, &[m.into()], "ext")?.into_float_value())
}

/// `Σ term(i)` over a row of `len` elements in the target's vectors, summed in f64 lanes
/// (reassociated: within `len 2^-53 Σ|term|` of a sequential f64 sum): `term(kb, i, mask)`
/// gives the f64 vector of the terms at column `i`, zero in masked-off lanes (it may also
/// store results of its own).
fn sum_f64_lanes<'ctx>(
    c: &Ctx<'_, 'ctx>,
    lenv: IntValue<'ctx>,
    mut term: impl FnMut(
        &KernelBuilder<'_, 'ctx>,
        IntValue<'ctx>,
        Option<inkwell::values::VectorValue<'ctx>>,
    ) -> Result<inkwell::values::VectorValue<'ctx>>,
) -> Result<inkwell::values::FloatValue<'ctx>> {
    let kb = &c.kb;
    let b = kb.builder();
    let f64t = kb.context().f64_type();
    let vd = f64t.vec_type(kb.lanes());
    let reduce_add = kb.intrinsic("llvm.vector.reduce.fadd", &[vd.into()])?;
    let acc = c.var(vd.const_zero().into())?;
    kb.vector_loop_in(lenv, |kb, i, mask| {
        let t = term(kb, i, mask)?;
        let s = b
            .build_load(vd, acc, "s")
            .map_err(kb.err())?
            .into_vector_value();
        let s = b.build_float_add(s, t, "s").map_err(kb.err())?;
        b.build_store(acc, s).map_err(kb.err())?;
        Ok(())
    })?;
    let s = b.build_load(vd, acc, "s").map_err(kb.err())?;
    Ok(kb
        .call(reduce_add, &[f64t.const_zero().into(), s.into()], "sum")?
        .into_float_value())
}

/// The softmax of one contiguous f32 row of `len` elements from `src` into `dst` (which may
/// be `src`), as [`softmax_rows_f32`] describes.
fn softmax_row_f32<'ctx>(
    c: &Ctx<'_, 'ctx>,
    src: PointerValue<'ctx>,
    dst: PointerValue<'ctx>,
    lenv: IntValue<'ctx>,
) -> Result<()> {
    softmax_row_mapped_f32(c, src, dst, lenv, None, None)
}

/// A map of a row's vector at column `j` (masked to the row's tail, or whole): `f(kb, j, x,
/// mask)`.
type RowMap<'a, 'ctx> = dyn Fn(
        &KernelBuilder<'_, 'ctx>,
        IntValue<'ctx>,
        inkwell::values::VectorValue<'ctx>,
        Option<inkwell::values::VectorValue<'ctx>>,
    ) -> Result<inkwell::values::VectorValue<'ctx>>
    + 'a;

/// [`softmax_row_f32`] of `pre(x)`, stored as `post(softmax)`: `pre` is applied to `src` in
/// place during the pass that finds the maximum, `post` to each result before its store. The
/// values are those of the three steps apart, in one pass fewer each.
fn softmax_row_mapped_f32<'ctx>(
    c: &Ctx<'_, 'ctx>,
    src: PointerValue<'ctx>,
    dst: PointerValue<'ctx>,
    lenv: IntValue<'ctx>,
    pre: Option<&RowMap<'_, 'ctx>>,
    post: Option<&RowMap<'_, 'ctx>>,
) -> Result<()> {
    let kb = &c.kb;
    let b = kb.builder();
    let vt = kb.f32_vector();
    let f32t = kb.context().f32_type();
    let f64t = kb.context().f64_type();
    let vd = f64t.vec_type(kb.lanes());
    let zeros = vt.const_zero();
    {
        let max = row_extreme_f32(c, src, lenv, true, pre)?;
        let neg_max = kb.splat(b.build_float_neg(max, "nm").map_err(kb.err())?.into(), "nm")?;
        // e = exp(x - max), stored; the sum in f64 lanes.
        let total = sum_f64_lanes(c, lenv, |kb, i, mask| {
            let x = kb.load_f32(src, i, mask)?;
            // TwoSum: hi + lo == x + (-max) exactly.
            let hi = b.build_float_add(x, neg_max, "hi").map_err(kb.err())?;
            let bb = b.build_float_sub(hi, x, "bb").map_err(kb.err())?;
            let ab = b.build_float_sub(hi, bb, "ab").map_err(kb.err())?;
            let ea = b.build_float_sub(x, ab, "ea").map_err(kb.err())?;
            let eb = b.build_float_sub(neg_max, bb, "eb").map_err(kb.err())?;
            let lo = b.build_float_add(ea, eb, "lo").map_err(kb.err())?;
            // Where hi is infinite (x = -inf: a masked position), TwoSum's lo is NaN:
            // use 0 there, so that exp sees -inf alone.
            let hh = b.build_float_sub(hi, hi, "hh").map_err(kb.err())?;
            let finite = b
                .build_float_compare(FloatPredicate::OEQ, hh, zeros, "fin")
                .map_err(kb.err())?;
            let lo = b
                .build_select(finite, lo, zeros, "lo")
                .map_err(kb.err())?
                .into_vector_value();
            let mut e = crate::kernels::gemm::exp_split(kb, hi, Some(lo))?;
            if let Some(mask) = mask {
                e = b
                    .build_select(mask, e, zeros, "e")
                    .map_err(kb.err())?
                    .into_vector_value();
            }
            kb.store_f32(dst, i, e, mask)?;
            b.build_float_ext(e, vd, "ed").map_err(kb.err())
        })?;
        let inv = b
            .build_float_div(f64t.const_float(1.0), total, "inv")
            .map_err(kb.err())?;
        // max is finite exactly when max - max is 0 (NaN for NaN and the infinities).
        let dm = b.build_float_sub(max, max, "dm").map_err(kb.err())?;
        let finite = b
            .build_float_compare(FloatPredicate::OEQ, dm, f32t.const_zero(), "finite")
            .map_err(kb.err())?;
        let inv = b
            .build_select(finite, inv, f64t.const_float(f64::NAN), "inv")
            .map_err(kb.err())?;
        let inv_v = kb.splat(inv, "inv")?;
        kb.vector_loop_in(lenv, |kb, i, mask| {
            let e = kb.load_f32(dst, i, mask)?;
            let ed = b.build_float_ext(e, vd, "ed").map_err(kb.err())?;
            let y = b.build_float_mul(ed, inv_v, "y").map_err(kb.err())?;
            let mut y = b.build_float_trunc(y, vt, "y").map_err(kb.err())?;
            if let Some(post) = post {
                y = post(kb, i, y, mask)?;
            }
            kb.store_f32(dst, i, y, mask)
        })
    }
}

/// Layer normalisation of contiguous f32 rows of `len` elements, rows `c.r0..c.r1`, in the
/// target's vectors, computed as the scalar kernel does: the mean and the variance
/// (`Σ (x - mean)² / len`) accumulated in f64 lanes (reassociated: within `len 2^-53 Σ|x|`
/// of the interpreter's sequential f64 sums), `1 / sqrt(var + eps)` in f64, then
/// `(x - mean) * inv * scale + bias` in f64, rounded once. `scalar[k]` says whether the scale
/// (k = 0) and the bias (k = 1) are one element rather than `len`.
///
/// With `residual` (`add_layer_norm`), the row normalised is `x + r` (inputs 0 and 1, the
/// scale and bias then inputs 2 and 3), added in f32 (rounded once, as the interpreter's
/// `add` is) before it is widened: the first pass stores the sums into the destination row,
/// which the later passes read (and the last overwrites in place).
fn layer_norm_rows_f32<'ctx>(
    c: &Ctx<'_, 'ctx>,
    lenv: IntValue<'ctx>,
    eps: inkwell::values::FloatValue<'ctx>,
    scalar: [bool; 2],
    residual: bool,
) -> Result<()> {
    let kb = &c.kb;
    let b = kb.builder();
    let f64t = kb.context().f64_type();
    let vd = f64t.vec_type(kb.lanes());
    let zero = kb.i64_const(0);
    let lenf = b
        .build_signed_int_to_float(lenv, f64t, "n")
        .map_err(kb.err())?;
    let ext = |v| b.build_float_ext(v, vd, "xd").map_err(kb.err());
    // The parameters' first input: 1 (2 after a residual).
    let p0 = if residual { 2 } else { 1 };
    // Parameter k's (1: the scale, 2: the bias) vector at column i: loaded, or its one element
    // splat.
    let param = |k: usize, i: IntValue<'ctx>, mask| -> Result<inkwell::values::VectorValue<'ctx>> {
        let input = c.inputs[p0 + k - 1];
        if scalar[k - 1] {
            let one = load(kb, DType::F32, input, zero)?;
            let one = b
                .build_float_ext(one.into_float_value(), f64t, "p")
                .map_err(kb.err())?;
            kb.splat(one.into(), "p")
        } else {
            ext(kb.load_f32(input, i, mask)?)
        }
    };
    c.for_range(c.r0, c.r1, "row", |c, r| {
        let base = c.mul(r, lenv)?;
        let dst = kb.f32_element_ptr(c.dest, base)?;
        // Masked-off lanes load as 0.
        let (src, total) = if residual {
            let x = kb.f32_element_ptr(c.inputs[0], base)?;
            let res = kb.f32_element_ptr(c.inputs[1], base)?;
            let total = sum_f64_lanes(c, lenv, |kb, i, mask| {
                let s = b
                    .build_float_add(kb.load_f32(x, i, mask)?, kb.load_f32(res, i, mask)?, "xr")
                    .map_err(kb.err())?;
                kb.store_f32(dst, i, s, mask)?;
                ext(s)
            })?;
            (dst, total)
        } else {
            let src = kb.f32_element_ptr(c.inputs[0], base)?;
            let total = sum_f64_lanes(c, lenv, |kb, i, mask| ext(kb.load_f32(src, i, mask)?))?;
            (src, total)
        };
        let mean = b.build_float_div(total, lenf, "mean").map_err(kb.err())?;
        let mean_v = kb.splat(mean.into(), "mean")?;
        let v = sum_f64_lanes(c, lenv, |kb, i, mask| {
            let x = ext(kb.load_f32(src, i, mask)?)?;
            let d = b.build_float_sub(x, mean_v, "d").map_err(kb.err())?;
            let d2 = b.build_float_mul(d, d, "d2").map_err(kb.err())?;
            Ok(match mask {
                // Masked-off lanes hold (0 - mean)²: drop them.
                Some(mask) => b
                    .build_select(mask, d2, vd.const_zero(), "d2")
                    .map_err(kb.err())?
                    .into_vector_value(),
                None => d2,
            })
        })?;
        let v = b.build_float_div(v, lenf, "v").map_err(kb.err())?;
        let v = b.build_float_add(v, eps, "ve").map_err(kb.err())?;
        let sq = scalar::call_f64(c.m, kb, "sqrt", &[v])?;
        let inv = b
            .build_float_div(f64t.const_float(1.0), sq, "inv")
            .map_err(kb.err())?;
        let inv_v = kb.splat(inv.into(), "inv")?;
        kb.vector_loop_in(lenv, |kb, i, mask| {
            let x = ext(kb.load_f32(src, i, mask)?)?;
            let d = b.build_float_sub(x, mean_v, "d").map_err(kb.err())?;
            let y = b.build_float_mul(d, inv_v, "y").map_err(kb.err())?;
            let y = b
                .build_float_mul(y, param(1, i, mask)?, "ys")
                .map_err(kb.err())?;
            let y = b
                .build_float_add(y, param(2, i, mask)?, "yb")
                .map_err(kb.err())?;
            let y = b
                .build_float_trunc(y, kb.f32_vector(), "y")
                .map_err(kb.err())?;
            kb.store_f32(dst, i, y, mask)
        })
    })
}

/// RMS normalisation of contiguous f32 rows of `len` elements, rows `c.r0..c.r1`, in the
/// target's vectors: the squares (exact in f64) summed in f64 lanes, `ms = Σ / len`,
/// `rms = sqrt(ms + eps)` in f64, then `x / rms * scale` in f64, rounded once to f32.
/// `scale_scalar` says whether the scale is one element rather than `len`.
///
/// Against the interpreter, which evaluates the expansion `mul(x, x)`, `reduce_mean`,
/// `add eps`, `sqrt`, `div`, `mul`, each rounded to f32 (`u = 2^-24`): its squares and its
/// mean round (the sum of positive terms then errs by at most `u`, the mean by `2u`), adding
/// `eps` rounds (`3u` on `ms + eps`), the square root halves that and rounds (`2.5u` on
/// `rms`), the division and the product round once each: `4.5u` relative to the exact value.
/// The kernel's f64 arithmetic errs by about `len 2^-53` and its one rounding by `u`, so the
/// two differ by at most about `5.5u |y|`, below 5.5 ulp of the interpreter's result (an f32
/// `y` is less than `2^24` of its ulps).
fn rms_norm_rows_f32<'ctx>(
    c: &Ctx<'_, 'ctx>,
    lenv: IntValue<'ctx>,
    eps: inkwell::values::FloatValue<'ctx>,
    scale_scalar: bool,
) -> Result<()> {
    let kb = &c.kb;
    let b = kb.builder();
    let f64t = kb.context().f64_type();
    let vd = f64t.vec_type(kb.lanes());
    let zero = kb.i64_const(0);
    let lenf = b
        .build_signed_int_to_float(lenv, f64t, "n")
        .map_err(kb.err())?;
    let ext = |v| b.build_float_ext(v, vd, "xd").map_err(kb.err());
    // The scale's vector at column i: loaded, or its one element splat.
    let scale = |i: IntValue<'ctx>, mask| -> Result<inkwell::values::VectorValue<'ctx>> {
        if scale_scalar {
            let one = load(kb, DType::F32, c.inputs[1], zero)?;
            let one = b
                .build_float_ext(one.into_float_value(), f64t, "s")
                .map_err(kb.err())?;
            kb.splat(one.into(), "s")
        } else {
            ext(kb.load_f32(c.inputs[1], i, mask)?)
        }
    };
    c.for_range(c.r0, c.r1, "row", |c, r| {
        let base = c.mul(r, lenv)?;
        let src = kb.f32_element_ptr(c.inputs[0], base)?;
        let dst = kb.f32_element_ptr(c.dest, base)?;
        // Masked-off lanes load as 0 and square to 0.
        let total = sum_f64_lanes(c, lenv, |kb, i, mask| {
            let x = ext(kb.load_f32(src, i, mask)?)?;
            b.build_float_mul(x, x, "x2").map_err(kb.err())
        })?;
        let ms = b.build_float_div(total, lenf, "ms").map_err(kb.err())?;
        let ve = b.build_float_add(ms, eps, "ve").map_err(kb.err())?;
        let rms = scalar::call_f64(c.m, kb, "sqrt", &[ve])?;
        let rms_v = kb.splat(rms.into(), "rms")?;
        kb.vector_loop_in(lenv, |kb, i, mask| {
            let x = ext(kb.load_f32(src, i, mask)?)?;
            let y = b.build_float_div(x, rms_v, "y").map_err(kb.err())?;
            let y = b
                .build_float_mul(y, scale(i, mask)?, "ys")
                .map_err(kb.err())?;
            let y = b
                .build_float_trunc(y, kb.f32_vector(), "y")
                .map_err(kb.err())?;
            kb.store_f32(dst, i, y, mask)
        })
    })
}

/// A product of dims.
fn product(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::constant(1), |p, d| p.mul(d))
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
        let entry = self
            .kb
            .function()
            .get_first_basic_block()
            .ok_or_else(|| self.kb.internal("no entry block"))?;
        let here = self.kb.current_block()?;
        let tmp = self.kb.context().create_builder();
        match entry.get_first_instruction() {
            Some(i) => tmp.position_before(&i),
            None => tmp.position_at_end(entry),
        }
        let slot = tmp
            .build_alloca(init.get_type(), "var")
            .map_err(self.kb.err())?;
        self.b().position_at_end(here);
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
    };
    let parallel = body(&c, graph, step, target)?;
    c.kb.builder().build_return(None).map_err(c.kb.err())?;
    Ok((c.kb.function(), parallel))
}

/// The runtime-B GEMM layout and scratch (in bytes) for a step, if it has one.
pub fn scratch_bytes(graph: &Graph, step: &Step, target: &Target) -> Option<Dim> {
    if let Kernel::Attention { .. } = step.kernel {
        let a = AttentionDims::of(graph, step)?;
        return Some(
            a.batch
                .mul(&a.scratch_floats(target))
                .mul(&Dim::constant(4)),
        );
    }
    let Kernel::MatMul {
        product: out,
        perms,
        ..
    } = &step.kernel
    else {
        return None;
    };
    let layout = GemmLayout::for_target(target);
    let r = out.rank();
    let b_shape = logical_shape(graph, step, 1, &perms[1]);
    let k = b_shape.dims()[b_shape.rank() - 2].clone();
    let n = out.dims()[r - 1].clone();
    let batch = product(&out.dims()[..r - 2]);
    let nr = Dim::constant(layout.nr() as i64);
    let panels = n.add(&nr.sub(&Dim::constant(1))).floor_div(&nr);
    Some(batch.mul(&panels).mul(&nr).mul(&k).mul(&Dim::constant(4)))
}

fn body(c: &Ctx<'_, '_>, graph: &Graph, step: &Step, target: &Target) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let numel = out_shape.numel();
    let rows_of = |s: &Shape| -> Dim {
        match s.dims().split_last() {
            Some((_, outer)) => product(outer),
            None => Dim::constant(1),
        }
    };
    let last_of = |s: &Shape| -> Dim { s.dims().last().cloned().unwrap_or(Dim::constant(1)) };
    let serial = |work: Dim| Parallel::rows(Dim::constant(1), work);
    let elementwise = Parallel::rows(rows_of(out_shape), last_of(out_shape));
    let zero = c.kb.i64_const(0);
    match &step.kernel {
        Kernel::Fused(expr) => {
            let dims = c.dim_list(out_shape.dims())?;
            let mut acc = vec![(zero, c.dim_list(&strides(out_shape))?)];
            for &leaf in &step.inputs {
                acc.push((
                    zero,
                    c.dim_list(&bcast_strides_to(&graph.ty(leaf).shape, out_shape.dims()))?,
                ));
            }
            let dtype = out_ty.dtype;
            c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, _| {
                let mut leaves = Vec::new();
                for (k, &leaf) in step.inputs.iter().enumerate() {
                    leaves.push(load(&c.kb, graph.ty(leaf).dtype, c.inputs[k], offs[k + 1])?);
                }
                let v = eval(c, expr, &leaves)?;
                store(&c.kb, dtype, c.dest, offs[0], v)
            })?;
            Ok(elementwise)
        }
        Kernel::Copy => {
            let bytes = c.dim(&numel.mul(&Dim::constant(out_ty.dtype.size_bytes() as i64)))?;
            c.b()
                .build_memmove(c.dest, 1, c.inputs[0], 1, bytes)
                .map_err(c.kb.err())?;
            Ok(serial(numel))
        }
        Kernel::GemmConstB {
            b,
            bias,
            activation,
        } => {
            let layout = GemmLayout::for_target(target);
            let (k, n) = (b.shape()[0], b.shape()[1]);
            let values = b
                .as_slice::<f32>()
                .ok_or_else(|| unsupported(graph, step, "B is not f32"))?;
            let module = c.m;
            let name = format!("{}.gemm", c.kb.function().get_name().to_string_lossy());
            let g = gemm::emit_gemm_const_b(
                module,
                target,
                &name,
                &layout,
                values,
                k,
                n,
                bias.as_deref(),
                Epilogue {
                    alpha: 1.0,
                    activation: *activation,
                },
            )?;
            let m = rows_of(out_shape);
            let kk = c.kb.i64_const(k as i64);
            let nn = c.kb.i64_const(n as i64);
            let p1 = c.kb.i64_const(layout.panels(n) as i64);
            c.b()
                .build_call(
                    g,
                    &[
                        c.inputs[0].into(),
                        kk.into(),
                        c.dest.into(),
                        nn.into(),
                        c.r0.into(),
                        c.r1.into(),
                        c.c0.into(),
                        c.kb.min_i64(c.c1, p1)?.into(),
                    ],
                    "",
                )
                .map_err(c.kb.err())?;
            Ok(Parallel {
                rows: m,
                work: Dim::constant((k * n) as i64),
                align: i64::from(layout.mr),
                cols: layout.panels(n) as i64,
                col_max_rows: n as i64,
            })
        }
        Kernel::MatMul {
            product,
            perms,
            out_perm,
        } => matmul(c, graph, step, target, product, perms, out_perm.as_deref()),
        Kernel::Attention { .. } => attention(c, graph, step, target),
        Kernel::Op(op) => op_body(c, graph, step, target, op, elementwise, serial),
    }
}

/// Evaluates a fused expression.
fn eval<'ctx>(
    c: &Ctx<'_, 'ctx>,
    e: &Expr,
    leaves: &[BasicValueEnum<'ctx>],
) -> Result<BasicValueEnum<'ctx>> {
    Ok(match e {
        Expr::Leaf(k, _) => leaves[*k],
        Expr::Scalar(t) => scalar::constant(&c.kb, t),
        Expr::Unary(u, x, _) => {
            let d = x.dtype();
            scalar::unary(c.m, &c.kb, *u, d, eval(c, x, leaves)?)?
        }
        Expr::Binary(op, x, y, _) => {
            let d = x.dtype();
            let xv = eval(c, x, leaves)?;
            let yv = eval(c, y, leaves)?;
            if *op == tcc_ir::BinaryOp::Pow {
                // The exponent may be of another dtype than the base.
                scalar::pow(c.m, &c.kb, d, y.dtype(), xv, yv)?
            } else {
                scalar::binary(c.m, &c.kb, *op, d, xv, yv)?
            }
        }
        Expr::Where(parts, _) => {
            let cond = eval(c, &parts[0], leaves)?.into_int_value();
            let a = eval(c, &parts[1], leaves)?;
            let b = eval(c, &parts[2], leaves)?;
            c.b().build_select(cond, a, b, "w").map_err(c.kb.err())?
        }
        Expr::Cast(x, to) => {
            let from = x.dtype();
            scalar::cast(&c.kb, from, *to, eval(c, x, leaves)?)?
        }
    })
}

/// The batched product of two runtime operands: one runtime-B GEMM per batch matrix (a row is
/// a batch matrix). Operands are read, and the result written, through strides, so transposed
/// operands and a transposed result (see [`Kernel::MatMul`]) need no copies.
fn matmul(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    target: &Target,
    out: &Shape,
    perms: &[Option<Vec<usize>>; 2],
    out_perm: Option<&[usize]>,
) -> Result<Parallel> {
    let r = out.rank();
    let (a_shape, b_shape) = (
        logical_shape(graph, step, 0, &perms[0]),
        logical_shape(graph, step, 1, &perms[1]),
    );
    let m = out.dims()[r - 2].clone();
    let n = out.dims()[r - 1].clone();
    let k = b_shape.dims()[b_shape.rank() - 2].clone();
    let batch_dims = &out.dims()[..r - 2];
    let batch = product(batch_dims);
    // The strides of each operand's logical (transposed) view of its source buffer.
    let operand_strides = |i: usize, shape: &Shape| -> Vec<Dim> {
        let src = strides(&graph.ty(step.inputs[i]).shape);
        let own = match &perms[i] {
            Some(p) => p.iter().map(|&a| src[a].clone()).collect(),
            None => src,
        };
        bcast_strides_with(shape, &own, r)
    };
    let a_strides = operand_strides(0, &a_shape);
    let b_strides = operand_strides(1, &b_shape);
    // The product's strides in the destination: a transposed result puts the product's axis
    // perm[a] at the destination's axis a.
    let out_strides = match out_perm {
        Some(p) => {
            let dst = strides(&graph.ty(step.node).shape);
            let mut st = vec![Dim::constant(0); r];
            for (a, &from) in p.iter().enumerate() {
                st[from] = dst[a].clone();
            }
            st
        }
        None => strides(out),
    };
    if a_strides[r - 1].as_const().is_some_and(|s| s != 1) && k.as_const() != Some(1) {
        return Err(unsupported(graph, step, "A's rows are not contiguous"));
    }
    if out_strides[r - 1].as_const() != Some(1) {
        return Err(unsupported(
            graph,
            step,
            "the result's rows are not contiguous",
        ));
    }
    let layout = GemmLayout::for_target(target);
    let module = c.m;
    let name = format!("{}.gemm", c.kb.function().get_name().to_string_lossy());
    let g = gemm::emit_gemm_runtime_b(module, target, &name, &layout, false, Epilogue::default())?;
    let a_strides = c.dim_list(&a_strides)?;
    let b_strides = c.dim_list(&b_strides)?;
    let out_strides = c.dim_list(&out_strides)?;
    let bdims = c.dim_list(batch_dims)?;
    let (mv, nv, kv) = (c.dim(&m)?, c.dim(&n)?, c.dim(&k)?);
    let nr = c.kb.i64_const(layout.nr() as i64);
    let panels = c.div(c.add(nv, c.kb.i64_const(layout.nr() as i64 - 1))?, nr)?;
    let scratch_len = c.mul(c.mul(panels, nr)?, kv)?;
    let scratch = c
        .scratch
        .ok_or_else(|| c.kb.internal("the matmul has no scratch"))?;
    let null =
        c.kb.context()
            .ptr_type(AddressSpace::default())
            .const_null();
    c.for_range(c.r0, c.r1, "batch", |c, bi| {
        let idx = c.unflatten(bi, &bdims)?;
        let zero = c.kb.i64_const(0);
        let a_off = c.offset(zero, &idx, &a_strides[..r - 2])?;
        let b_off = c.offset(zero, &idx, &b_strides[..r - 2])?;
        let a = scalar::element_ptr(&c.kb, DType::F32, c.inputs[0], a_off)?;
        let b = scalar::element_ptr(&c.kb, DType::F32, c.inputs[1], b_off)?;
        let out_off = c.offset(zero, &idx, &out_strides[..r - 2])?;
        let o = scalar::element_ptr(&c.kb, DType::F32, c.dest, out_off)?;
        let ldc = out_strides[r - 2];
        let s_off = c.mul(bi, scratch_len)?;
        let s = scalar::element_ptr(&c.kb, DType::F32, scratch, s_off)?;
        // B is read with its own strides: rows of k, columns of n.
        let rs_b = b_strides[r - 2];
        let cs_b = b_strides[r - 1];
        let lda = a_strides[r - 2];
        c.b()
            .build_call(
                g,
                &[
                    a.into(),
                    lda.into(),
                    b.into(),
                    rs_b.into(),
                    cs_b.into(),
                    null.into(),
                    o.into(),
                    ldc.into(),
                    s.into(),
                    zero.into(),
                    mv.into(),
                    nv.into(),
                    kv.into(),
                    zero.into(),
                    panels.into(),
                ],
                "",
            )
            .map_err(c.kb.err())?;
        Ok(())
    })?;
    Ok(Parallel::rows(batch, m.mul(&n).mul(&k)))
}

/// Query rows per block of the fused attention kernel: the block's scores (`ROWS x n` floats)
/// stay in L2 between `Q·K`, the softmax and `· V`. A multiple of every GEMM tile's rows.
const ATTENTION_ROWS: i64 = 48;

/// A leaf of a row expression in vectors: its element at the row's start, and whether it
/// runs along the row (stride 1) or is one value for the whole row (stride 0).
#[derive(Clone, Copy)]
struct RowLeafRef<'ctx> {
    ptr: PointerValue<'ctx>,
    dtype: DType,
    contiguous: bool,
}

/// Whether [`vec_eval`] computes `e`: f32 and bool values only, the ops below; `leaf_ok(k)`
/// says whether leaf `k` can be read in vectors.
fn vec_supported(e: &Expr, leaf_ok: &dyn Fn(usize) -> bool) -> bool {
    use tcc_ir::{BinaryOp as B, UnaryOp as U};
    let vt = |d: DType| matches!(d, DType::F32 | DType::Bool);
    match e {
        Expr::Leaf(k, d) => vt(*d) && leaf_ok(*k),
        Expr::Scalar(t) => vt(t.dtype()) && t.len() == 1,
        Expr::Unary(u, x, d) => {
            vt(*d)
                && matches!(
                    (u, x.dtype()),
                    (U::Neg | U::Abs | U::IsNaN, DType::F32) | (U::Not, DType::Bool)
                )
                && vec_supported(x, leaf_ok)
        }
        Expr::Binary(op, x, y, d) => {
            vt(*d)
                && x.dtype() == y.dtype()
                && matches!(
                    (op, x.dtype()),
                    (
                        B::Add
                            | B::Sub
                            | B::Mul
                            | B::Div
                            | B::Min
                            | B::Max
                            | B::Equal
                            | B::Less
                            | B::LessEqual
                            | B::Greater
                            | B::GreaterEqual,
                        DType::F32,
                    ) | (B::And | B::Or | B::Xor, DType::Bool)
                )
                && vec_supported(x, leaf_ok)
                && vec_supported(y, leaf_ok)
        }
        Expr::Where(parts, d) => vt(*d) && parts.iter().all(|p| vec_supported(p, leaf_ok)),
        Expr::Cast(..) => false,
    }
}

/// Evaluates `e` (checked by [`vec_supported`]) on one vector of a row at column `j`: leaf 0
/// is `x`, leaf `k` is `leaves[k - 1]`. Each op is the IEEE operation the scalar kernel emits
/// (the same predicates, `llvm.minimum` / `llvm.maximum`), lane by lane.
fn vec_eval<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    e: &Expr,
    x: inkwell::values::VectorValue<'ctx>,
    leaves: &[RowLeafRef<'ctx>],
    j: IntValue<'ctx>,
    mask: Option<inkwell::values::VectorValue<'ctx>>,
) -> Result<inkwell::values::VectorValue<'ctx>> {
    use inkwell::values::VectorValue as V;
    use tcc_ir::{BinaryOp as B, UnaryOp as U};
    let b = kb.builder();
    let ctx = kb.context();
    let lanes = kb.lanes();
    let i8v = ctx.i8_type().vec_type(lanes);
    let to_bool = |v: V<'ctx>| -> Result<V<'ctx>> {
        b.build_int_compare(IntPredicate::NE, v, i8v.const_zero(), "b")
            .map_err(kb.err())
    };
    let rec = |e: &Expr| vec_eval(kb, e, x, leaves, j, mask);
    Ok(match e {
        Expr::Leaf(0, _) => x,
        Expr::Leaf(k, _) => {
            let leaf = leaves[*k - 1];
            match (leaf.dtype, leaf.contiguous) {
                (DType::F32, true) => kb.load_f32(leaf.ptr, j, mask)?,
                (DType::Bool, true) => {
                    // SAFETY: j is a column of the row the leaf covers.
                    let p = unsafe { b.build_in_bounds_gep(ctx.i8_type(), leaf.ptr, &[j], "lp") }
                        .map_err(kb.err())?;
                    let raw = match mask {
                        None => {
                            let l = b.build_load(i8v, p, "lb").map_err(kb.err())?;
                            // Bytes of a bool tensor: only 1-byte alignment is known.
                            l.as_instruction_value()
                                .ok_or_else(|| kb.internal("a load is not an instruction"))?
                                .set_alignment(1)
                                .map_err(|_| kb.internal("could not set a load's alignment"))?;
                            l.into_vector_value()
                        }
                        Some(m) => {
                            let f = kb.intrinsic(
                                "llvm.masked.load",
                                &[i8v.into(), p.get_type().into()],
                            )?;
                            kb.call(
                                f,
                                &[
                                    p.into(),
                                    ctx.i32_type().const_int(1, false).into(),
                                    m.into(),
                                    i8v.const_zero().into(),
                                ],
                                "lb",
                            )?
                            .into_vector_value()
                        }
                    };
                    to_bool(raw)?
                }
                (d, _) => {
                    let one = load(kb, d, leaf.ptr, kb.i64_const(0))?;
                    kb.splat(one, "ls")?
                }
            }
        }
        Expr::Scalar(t) => kb.splat(scalar::constant(kb, t), "sc")?,
        Expr::Unary(u, a, _) => {
            let a = rec(a)?;
            match u {
                U::Neg => b.build_float_neg(a, "neg").map_err(kb.err())?,
                U::Abs => {
                    let f = kb.intrinsic("llvm.fabs", &[a.get_type().into()])?;
                    kb.call(f, &[a.into()], "abs")?.into_vector_value()
                }
                U::IsNaN => b
                    .build_float_compare(FloatPredicate::UNO, a, a, "nan")
                    .map_err(kb.err())?,
                _ => b.build_not(a, "not").map_err(kb.err())?,
            }
        }
        Expr::Binary(op, p, q, _) => {
            let (p, q) = (rec(p)?, rec(q)?);
            let fcmp = |pred| b.build_float_compare(pred, p, q, "cmp").map_err(kb.err());
            match op {
                B::Add => b.build_float_add(p, q, "add").map_err(kb.err())?,
                B::Sub => b.build_float_sub(p, q, "sub").map_err(kb.err())?,
                B::Mul => b.build_float_mul(p, q, "mul").map_err(kb.err())?,
                B::Div => b.build_float_div(p, q, "div").map_err(kb.err())?,
                B::Min | B::Max => {
                    let name = if *op == B::Min {
                        "llvm.minimum"
                    } else {
                        "llvm.maximum"
                    };
                    let f = kb.intrinsic(name, &[p.get_type().into()])?;
                    kb.call(f, &[p.into(), q.into()], "mm")?.into_vector_value()
                }
                B::Equal => fcmp(FloatPredicate::OEQ)?,
                B::Less => fcmp(FloatPredicate::OLT)?,
                B::LessEqual => fcmp(FloatPredicate::OLE)?,
                B::Greater => fcmp(FloatPredicate::OGT)?,
                B::GreaterEqual => fcmp(FloatPredicate::OGE)?,
                B::And => b.build_and(p, q, "and").map_err(kb.err())?,
                B::Or => b.build_or(p, q, "or").map_err(kb.err())?,
                _ => b.build_xor(p, q, "xor").map_err(kb.err())?,
            }
        }
        Expr::Where(parts, _) => {
            let cnd = rec(&parts[0])?;
            let (p, q) = (rec(&parts[1])?, rec(&parts[2])?);
            b.build_select(cnd, p, q, "w")
                .map_err(kb.err())?
                .into_vector_value()
        }
        Expr::Cast(..) => return Err(kb.internal("a cast in a vector row expression")),
    })
}

/// The sizes of a [`Kernel::Attention`] step.
struct AttentionDims {
    /// `[.., m, n]`: the scores.
    scores: Shape,
    /// Batch matrices.
    batch: Dim,
    m: Dim,
    n: Dim,
    /// `Q`'s and `K`'s inner size.
    dk: Dim,
    /// `V`'s columns.
    dv: Dim,
}

impl AttentionDims {
    fn of(graph: &Graph, step: &Step) -> Option<AttentionDims> {
        let Kernel::Attention { scores, perms, .. } = &step.kernel else {
            return None;
        };
        let scores = scores.clone();
        let r = scores.rank();
        let k = logical_shape(graph, step, 1, &perms[1]);
        let v = logical_shape(graph, step, 2, &perms[2]);
        Some(AttentionDims {
            batch: product(&scores.dims()[..r - 2]),
            m: scores.dims()[r - 2].clone(),
            n: scores.dims()[r - 1].clone(),
            dk: k.dims()[k.rank() - 2].clone(),
            dv: v.dims()[v.rank() - 1].clone(),
            scores,
        })
    }

    /// Scratch floats per batch matrix: packed `K`, packed `V` and one block of scores.
    fn scratch_floats(&self, target: &Target) -> Dim {
        let layout = GemmLayout::for_target(target);
        let nr = Dim::constant(layout.nr() as i64);
        let panels = |d: &Dim| d.add(&nr.sub(&Dim::constant(1))).floor_div(&nr);
        panels(&self.n)
            .mul(&nr)
            .mul(&self.dk)
            .add(&panels(&self.dv).mul(&nr).mul(&self.n))
            .add(&Dim::constant(ATTENTION_ROWS).mul(&self.n))
    }
}

/// Fused attention (see [`Kernel::Attention`]); a task is one batch matrix.
fn attention<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    target: &Target,
) -> Result<Parallel> {
    let Kernel::Attention {
        expr,
        post,
        pre_leaves,
        perms,
        out_perm,
        ..
    } = &step.kernel
    else {
        return Err(c.kb.internal("not an attention step"));
    };
    let dims =
        AttentionDims::of(graph, step).ok_or_else(|| c.kb.internal("not an attention step"))?;
    let scores = &dims.scores;
    let r = scores.rank();
    // The logical Q, K and V the products read.
    let logical: Vec<Shape> = (0..3)
        .map(|i| logical_shape(graph, step, i, &perms[i]))
        .collect();
    // Q, K and V through their sources' (permuted) strides, broadcast to rank r.
    let mut st = Vec::new();
    for i in 0..3 {
        let src = strides(&graph.ty(step.inputs[i]).shape);
        let own: Vec<Dim> = match &perms[i] {
            Some(p) => p.iter().map(|&a| src[a].clone()).collect(),
            None => src,
        };
        st.push(bcast_strides_with(&logical[i], &own, r));
    }
    let out_strides = match out_perm {
        Some(p) => {
            let dst = strides(&graph.ty(step.node).shape);
            let mut o = vec![Dim::constant(0); r];
            for (a, &from) in p.iter().enumerate() {
                o[from] = dst[a].clone();
            }
            o
        }
        // Without a permutation the step's node holds the product itself.
        None => strides(&graph.ty(step.node).shape),
    };
    if st[0][r - 1].as_const().is_some_and(|s| s != 1) && dims.dk.as_const() != Some(1) {
        return Err(unsupported(graph, step, "Q's rows are not contiguous"));
    }
    if out_strides[r - 1].as_const() != Some(1) {
        return Err(unsupported(
            graph,
            step,
            "the result's rows are not contiguous",
        ));
    }
    // The other leaves of f (inputs 3..3 + pre_leaves) and g (the rest), read at the scores'
    // index.
    let leaf_strides: Vec<Vec<Dim>> = step.inputs[3..]
        .iter()
        .map(|&l| bcast_strides_to(&graph.ty(l).shape, scores.dims()))
        .collect();
    let pre = 3..3 + pre_leaves;

    let layout = GemmLayout::for_target(target);
    let base = c.kb.function().get_name().to_string_lossy().into_owned();
    let pack = gemm::emit_pack_b_fn(c.m, target, &format!("{base}.pack"), &layout)?;
    let gemm = gemm::emit_gemm_packed_b(
        c.m,
        target,
        &format!("{base}.gemm"),
        &layout,
        Epilogue::default(),
    )?;
    let st: Vec<Vec<IntValue>> = st.iter().map(|s| c.dim_list(s)).collect::<Result<_>>()?;
    let out_st = c.dim_list(&out_strides)?;
    let leaf_st: Vec<Vec<IntValue>> = leaf_strides
        .iter()
        .map(|s| c.dim_list(s))
        .collect::<Result<_>>()?;
    let bdims = c.dim_list(&scores.dims()[..r - 2])?;
    let (mv, nv, dkv, dvv) = (
        c.dim(&dims.m)?,
        c.dim(&dims.n)?,
        c.dim(&dims.dk)?,
        c.dim(&dims.dv)?,
    );
    let nr = layout.nr() as i64;
    let padded = |d| -> Result<IntValue> {
        let up = c.add(d, c.kb.i64_const(nr - 1))?;
        c.mul(c.div(up, c.kb.i64_const(nr))?, c.kb.i64_const(nr))
    };
    let k_len = c.mul(padded(nv)?, dkv)?;
    let v_len = c.mul(padded(dvv)?, nv)?;
    let s_len = c.mul(c.kb.i64_const(ATTENTION_ROWS), nv)?;
    let per_task = c.add(c.add(k_len, v_len)?, s_len)?;
    let scratch = c
        .scratch
        .ok_or_else(|| c.kb.internal("the attention has no scratch"))?;
    let rows_step = c.kb.i64_const(ATTENTION_ROWS);
    c.for_range(c.r0, c.r1, "batch", |c, bi| {
        let zero = c.kb.i64_const(0);
        let idx = c.unflatten(bi, &bdims)?;
        let off = |i: usize| c.offset(zero, &idx, &st[i][..r - 2]);
        let q = scalar::element_ptr(&c.kb, DType::F32, c.inputs[0], off(0)?)?;
        let k = scalar::element_ptr(&c.kb, DType::F32, c.inputs[1], off(1)?)?;
        let v = scalar::element_ptr(&c.kb, DType::F32, c.inputs[2], off(2)?)?;
        let o_off = c.offset(zero, &idx, &out_st[..r - 2])?;
        let o = scalar::element_ptr(&c.kb, DType::F32, c.dest, o_off)?;
        let leaf_base: Vec<IntValue> = leaf_st
            .iter()
            .map(|s| c.offset(zero, &idx, &s[..r - 2]))
            .collect::<Result<_>>()?;
        let task_scratch = c.mul(bi, per_task)?;
        let sk = scalar::element_ptr(&c.kb, DType::F32, scratch, task_scratch)?;
        let sv = scalar::element_ptr(&c.kb, DType::F32, sk, k_len)?;
        let sblk = scalar::element_ptr(&c.kb, DType::F32, sv, v_len)?;
        // K (dk x n) and V (n x dv), packed once per batch matrix.
        let call = |f, args: &[inkwell::values::BasicMetadataValueEnum]| {
            c.b()
                .build_call(f, args, "")
                .map_err(c.kb.err())
                .map(|_| ())
        };
        call(
            pack,
            &[
                k.into(),
                st[1][r - 2].into(),
                st[1][r - 1].into(),
                nv.into(),
                dkv.into(),
                sk.into(),
            ],
        )?;
        call(
            pack,
            &[
                v.into(),
                st[2][r - 2].into(),
                st[2][r - 1].into(),
                dvv.into(),
                nv.into(),
                sv.into(),
            ],
        )?;
        c.kb.for_loop(zero, mv, rows_step, "qblock", |_, rb| {
            let left = c.b().build_int_sub(mv, rb, "left").map_err(c.kb.err())?;
            let rows = c.kb.min_i64(left, rows_step)?;
            let q_blk = scalar::element_ptr(&c.kb, DType::F32, q, c.mul(rb, st[0][r - 2])?)?;
            // S = Q_blk · K.
            call(
                gemm,
                &[
                    q_blk.into(),
                    st[0][r - 2].into(),
                    sk.into(),
                    sblk.into(),
                    nv.into(),
                    zero.into(),
                    rows.into(),
                    nv.into(),
                    dkv.into(),
                ],
            )?;
            // S = softmax(f(S)), row by row.
            c.for_range(zero, rows, "qrow", |c, i| {
                let row = c.mul(i, nv)?;
                let srow = scalar::element_ptr(&c.kb, DType::F32, sblk, row)?;
                let qi = c.add(rb, i)?;
                // Applies `e` to the row in place; `leaf_range` are its other leaves' inputs.
                let apply = |c: &Ctx<'_, 'ctx>, e: &Expr, leaf_range: std::ops::Range<usize>| {
                    let bases: Vec<IntValue> = leaf_range
                        .clone()
                        .map(|t| c.add(leaf_base[t - 3], c.mul(qi, leaf_st[t - 3][r - 2])?))
                        .collect::<Result<_>>()?;
                    c.for_range(zero, nv, "col", |c, j| {
                        let mut leaves = vec![load(&c.kb, DType::F32, srow, j)?];
                        for (t, base) in leaf_range.clone().zip(&bases) {
                            let o = c.add(*base, c.mul(j, leaf_st[t - 3][r - 1])?)?;
                            let dt = graph.ty(step.inputs[t]).dtype;
                            leaves.push(load(&c.kb, dt, c.inputs[t], o)?);
                        }
                        let y = eval(c, e, &leaves)?;
                        store(&c.kb, DType::F32, srow, j, y)
                    })
                };
                // f and g in vectors inside the softmax's passes when they can be: leaves
                // read along the row contiguously or as one value.
                let row_leaf = |t: usize| -> Option<bool> {
                    let dt = graph.ty(step.inputs[t]).dtype;
                    let stride = leaf_st[t - 3][r - 1].get_zero_extended_constant();
                    match (dt, stride) {
                        (DType::F32 | DType::Bool, Some(0)) => Some(false),
                        (DType::F32 | DType::Bool, Some(1)) => Some(true),
                        _ => None,
                    }
                };
                let vector_ok = |e: &Expr, range: &std::ops::Range<usize>| {
                    vec_supported(e, &|k| k == 0 || row_leaf(range.start + k - 1).is_some())
                };
                let post_range = pre.end..step.inputs.len();
                let trivial_pre = matches!(expr, Expr::Leaf(0, _));
                if vector_ok(expr, &pre) && post.as_ref().is_none_or(|g| vector_ok(g, &post_range))
                {
                    let leaves_of = |range: &std::ops::Range<usize>| -> Result<Vec<RowLeafRef>> {
                        range
                            .clone()
                            .map(|t| {
                                let base =
                                    c.add(leaf_base[t - 3], c.mul(qi, leaf_st[t - 3][r - 2])?)?;
                                let dt = graph.ty(step.inputs[t]).dtype;
                                Ok(RowLeafRef {
                                    ptr: scalar::element_ptr(&c.kb, dt, c.inputs[t], base)?,
                                    dtype: dt,
                                    contiguous: row_leaf(t) == Some(true),
                                })
                            })
                            .collect()
                    };
                    let pre_leaves = leaves_of(&pre)?;
                    let post_leaves = leaves_of(&post_range)?;
                    let f_map =
                        |kb: &KernelBuilder<'_, 'ctx>,
                         j: IntValue<'ctx>,
                         x: inkwell::values::VectorValue<'ctx>,
                         mask: Option<inkwell::values::VectorValue<'ctx>>| {
                            vec_eval(kb, expr, x, &pre_leaves, j, mask)
                        };
                    let g_map =
                        |kb: &KernelBuilder<'_, 'ctx>,
                         j: IntValue<'ctx>,
                         x: inkwell::values::VectorValue<'ctx>,
                         mask: Option<inkwell::values::VectorValue<'ctx>>| {
                            match &post {
                                Some(g) => vec_eval(kb, g, x, &post_leaves, j, mask),
                                None => Ok(x),
                            }
                        };
                    let f_ref: Option<&RowMap<'_, 'ctx>> =
                        if trivial_pre { None } else { Some(&f_map) };
                    let g_ref: Option<&RowMap<'_, 'ctx>> =
                        if post.is_some() { Some(&g_map) } else { None };
                    return softmax_row_mapped_f32(c, srow, srow, nv, f_ref, g_ref);
                }
                if !trivial_pre {
                    apply(c, expr, pre.clone())?;
                }
                softmax_row_f32(c, srow, srow, nv)?;
                if let Some(g) = post {
                    apply(c, g, pre.end..step.inputs.len())?;
                }
                Ok(())
            })?;
            // O_blk = P_blk · V.
            let o_blk = scalar::element_ptr(&c.kb, DType::F32, o, c.mul(rb, out_st[r - 2])?)?;
            call(
                gemm,
                &[
                    sblk.into(),
                    nv.into(),
                    sv.into(),
                    o_blk.into(),
                    out_st[r - 2].into(),
                    zero.into(),
                    rows.into(),
                    dvv.into(),
                    nv.into(),
                ],
            )
        })
    })?;
    Ok(Parallel::rows(
        dims.batch.clone(),
        dims.m.mul(&dims.n).mul(&dims.dk.add(&dims.dv)),
    ))
}

/// `(outer, len, inner)` of an axis.
fn split_axis(shape: &Shape, axis: usize) -> (Dim, Dim, Dim) {
    (
        product(&shape.dims()[..axis]),
        shape.dims()[axis].clone(),
        product(&shape.dims()[axis + 1..]),
    )
}

/// The resolved index `i` (negative counts from the end) on an axis of size `d`, and whether
/// it is in range.
fn resolve<'ctx>(
    c: &Ctx<'_, 'ctx>,
    i: IntValue<'ctx>,
    d: IntValue<'ctx>,
) -> Result<(IntValue<'ctx>, IntValue<'ctx>)> {
    let b = c.b();
    let zero = c.kb.i64_const(0);
    let neg = b
        .build_int_compare(IntPredicate::SLT, i, zero, "neg")
        .map_err(c.kb.err())?;
    let plus = c.add(i, d)?;
    let j = b
        .build_select(neg, plus, i, "j")
        .map_err(c.kb.err())?
        .into_int_value();
    let ge = b
        .build_int_compare(IntPredicate::SGE, j, zero, "ge")
        .map_err(c.kb.err())?;
    let lt = b
        .build_int_compare(IntPredicate::SLT, j, d, "lt")
        .map_err(c.kb.err())?;
    let ok = b.build_and(ge, lt, "ok").map_err(c.kb.err())?;
    Ok((j, ok))
}

fn f64_of<'ctx>(
    c: &Ctx<'_, 'ctx>,
    dtype: DType,
    v: BasicValueEnum<'ctx>,
) -> Result<inkwell::values::FloatValue<'ctx>> {
    Ok(scalar::cast(&c.kb, dtype, DType::F64, v)?.into_float_value())
}

#[allow(clippy::too_many_lines)]
#[allow(clippy::too_many_arguments)]
fn op_body<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    target: &Target,
    op: &Op,
    elementwise: Parallel,
    serial: impl Fn(Dim) -> Parallel,
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let dtype = out_ty.dtype;
    let rank = out_shape.rank();
    let zero = c.kb.i64_const(0);
    let one = c.kb.i64_const(1);
    let in_ty = |k: usize| graph.ty(step.inputs[k]);
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
    let copy_with =
        |c: &Ctx<'_, 'ctx>, src_base: IntValue<'ctx>, src_strides: Vec<Dim>| -> Result<()> {
            let _ = src_base;
            let dims = c.dim_list(out_shape.dims())?;
            let acc = vec![
                (zero, c.dim_list(&strides(out_shape))?),
                (c.kb.i64_const(0), c.dim_list(&src_strides)?),
            ];
            c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, _| {
                let v = load(&c.kb, dtype, c.inputs[0], offs[1])?;
                store(&c.kb, dtype, c.dest, offs[0], v)
            })
        };
    match op {
        Op::Transpose { perm } => {
            let s = strides(&in_ty(0).shape);
            copy_with(c, zero, perm.iter().map(|&p| s[p].clone()).collect())?;
            Ok(elementwise)
        }
        Op::Expand { .. } => {
            copy_with(c, zero, bcast_strides_to(&in_ty(0).shape, out_shape.dims()))?;
            Ok(elementwise)
        }
        Op::Slice {
            axes,
            starts,
            steps,
            ..
        } => {
            let s = strides(&in_ty(0).shape);
            let mut st = s.clone();
            let mut base = Dim::constant(0);
            for (k, &a) in axes.iter().enumerate() {
                base = base.add(&starts[k].mul(&s[a]));
                st[a] = s[a].mul(&Dim::constant(steps[k]));
            }
            let dims = c.dim_list(out_shape.dims())?;
            let acc = vec![
                (zero, c.dim_list(&strides(out_shape))?),
                (c.dim(&base)?, c.dim_list(&st)?),
            ];
            c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, _| {
                let v = load(&c.kb, dtype, c.inputs[0], offs[1])?;
                store(&c.kb, dtype, c.dest, offs[0], v)
            })?;
            Ok(elementwise)
        }
        Op::Concat { axis } => {
            let os = strides(out_shape);
            let mut at = Dim::constant(0);
            for k in 0..step.inputs.len() {
                let shape = &in_ty(k).shape;
                let dims = c.dim_list(shape.dims())?;
                let rows = c.dim(&match shape.dims().split_last() {
                    Some((_, o)) => product(o),
                    None => Dim::constant(1),
                })?;
                let acc = vec![
                    (c.dim(&at.mul(&os[*axis]))?, c.dim_list(&os)?),
                    (zero, c.dim_list(&strides(shape))?),
                ];
                c.strided(&dims, &acc, zero, rows, &mut |c, offs, _| {
                    let v = load(&c.kb, dtype, c.inputs[k], offs[1])?;
                    store(&c.kb, dtype, c.dest, offs[0], v)
                })?;
                at = at.add(&shape.dims()[*axis]);
            }
            Ok(serial(out_shape.numel()))
        }
        Op::Tile { .. } => {
            let ishape = &in_ty(0).shape;
            let idims = c.dim_list(ishape.dims())?;
            let ist = c.dim_list(&strides(ishape))?;
            let dims = c.dim_list(out_shape.dims())?;
            let acc = vec![(zero, c.dim_list(&strides(out_shape))?)];
            c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, idx| {
                let mut off = c.kb.i64_const(0);
                for a in 0..idx.len() {
                    let i = c.rem(idx[a], idims[a])?;
                    off = c.add(off, c.mul(i, ist[a])?)?;
                }
                let v = load(&c.kb, dtype, c.inputs[0], off)?;
                store(&c.kb, dtype, c.dest, offs[0], v)
            })?;
            Ok(elementwise)
        }
        Op::Trilu { upper, k } => {
            let dims = c.dim_list(out_shape.dims())?;
            let st = c.dim_list(&strides(out_shape))?;
            let acc = vec![(zero, st.clone()), (zero, st)];
            let kv = c.kb.i64_const(*k);
            c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, idx| {
                let (i, j) = (idx[rank - 2], idx[rank - 1]);
                let d = c.b().build_int_sub(j, i, "d").map_err(c.kb.err())?;
                let p = if *upper {
                    IntPredicate::SGE
                } else {
                    IntPredicate::SLE
                };
                let keep = c
                    .b()
                    .build_int_compare(p, d, kv, "keep")
                    .map_err(c.kb.err())?;
                let v = load(&c.kb, dtype, c.inputs[0], offs[1])?;
                let z = scalar::zero(&c.kb, dtype);
                let r = c.b().build_select(keep, v, z, "t").map_err(c.kb.err())?;
                store(&c.kb, dtype, c.dest, offs[0], r)
            })?;
            Ok(elementwise)
        }
        Op::Range { start, delta, .. } => {
            let dims = c.dim_list(out_shape.dims())?;
            let acc = vec![(zero, vec![one])];
            let s = c.dim(start)?;
            let d = c.kb.i64_const(*delta);
            c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, idx| {
                let v = c.add(s, c.mul(idx[0], d)?)?;
                let v = scalar::cast(&c.kb, DType::I64, dtype, v.into())?;
                store(&c.kb, dtype, c.dest, offs[0], v)
            })?;
            Ok(elementwise)
        }
        Op::Dims { values, .. } => {
            for (k, d) in values.iter().enumerate() {
                let v = c.dim(d)?;
                let v = scalar::cast(&c.kb, DType::I64, dtype, v.into())?;
                store(&c.kb, dtype, c.dest, c.kb.i64_const(k as i64), v)?;
            }
            Ok(serial(Dim::constant(values.len() as i64)))
        }
        Op::ShapeOf { start, end } => {
            let shape = &in_ty(0).shape;
            for (k, a) in (*start..*end).enumerate() {
                let v = c.dim(&shape.dims()[a])?;
                let v = scalar::cast(&c.kb, DType::I64, dtype, v.into())?;
                store(&c.kb, dtype, c.dest, c.kb.i64_const(k as i64), v)?;
            }
            Ok(serial(Dim::constant(1)))
        }
        Op::Gather { axis } => {
            let dshape = &in_ty(0).shape;
            let ity = in_ty(1);
            let (_, d, inner) = split_axis(dshape, *axis);
            let nidx = ity.shape.numel();
            let rows = product(&dshape.dims()[..*axis]).mul(&nidx);
            let (dv, innerv, nidxv) = (c.dim(&d)?, c.dim(&inner)?, c.dim(&nidx)?);
            let idt = ity.dtype;
            c.for_range(c.r0, c.r1, "row", |c, r| {
                let o = c.div(r, nidxv)?;
                let q = c.rem(r, nidxv)?;
                let i = load(&c.kb, idt, c.inputs[1], q)?.into_int_value();
                let (j, ok) = resolve(c, i, dv)?;
                let bad = c.b().build_not(ok, "bad").map_err(c.kb.err())?;
                c.if_then(bad, |c| c.set_error())?;
                c.if_then(ok, |c| {
                    let src = c.mul(c.add(c.mul(o, dv)?, j)?, innerv)?;
                    let dst = c.mul(r, innerv)?;
                    let bytes = c.mul(innerv, c.kb.i64_const(dtype.size_bytes() as i64))?;
                    let s = scalar::element_ptr(&c.kb, dtype, c.inputs[0], src)?;
                    let t = scalar::element_ptr(&c.kb, dtype, c.dest, dst)?;
                    c.b().build_memcpy(t, 1, s, 1, bytes).map_err(c.kb.err())?;
                    Ok(())
                })
            })?;
            Ok(Parallel::rows(rows, inner))
        }
        Op::GatherElements { axis } => {
            let dshape = &in_ty(0).shape;
            let ity = in_ty(1);
            let dst = c.dim_list(&strides(dshape))?;
            let dd = c.dim(&dshape.dims()[*axis])?;
            let dims = c.dim_list(out_shape.dims())?;
            let os = c.dim_list(&strides(out_shape))?;
            let acc = vec![(zero, os)];
            c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, idx| {
                let i = load(&c.kb, ity.dtype, c.inputs[1], offs[0])?.into_int_value();
                let (j, ok) = resolve(c, i, dd)?;
                let bad = c.b().build_not(ok, "bad").map_err(c.kb.err())?;
                c.if_then(bad, |c| c.set_error())?;
                c.if_then(ok, |c| {
                    let mut off = c.kb.i64_const(0);
                    for a in 0..idx.len() {
                        let x = if a == *axis { j } else { idx[a] };
                        off = c.add(off, c.mul(x, dst[a])?)?;
                    }
                    let v = load(&c.kb, dtype, c.inputs[0], off)?;
                    store(&c.kb, dtype, c.dest, offs[0], v)
                })
            })?;
            Ok(elementwise)
        }
        Op::GatherNd { batch_dims } => {
            let dshape = &in_ty(0).shape;
            let ishape = &in_ty(1).shape;
            let ir = ishape.rank();
            let q = ishape.dims()[ir - 1]
                .as_const()
                .ok_or_else(|| unsupported(graph, step, "the index depth is symbolic"))?
                as usize;
            let b = *batch_dims;
            let rows = product(&ishape.dims()[..ir - 1]);
            let per_batch = product(&ishape.dims()[b..ir - 1]);
            let slice = product(&dshape.dims()[b + q..]);
            let batch_size = product(&dshape.dims()[b..]);
            let ds = c.dim_list(&strides(dshape))?;
            let ddims = c.dim_list(dshape.dims())?;
            let (pbv, slv, bsv) = (c.dim(&per_batch)?, c.dim(&slice)?, c.dim(&batch_size)?);
            let idt = in_ty(1).dtype;
            let qv = c.kb.i64_const(q as i64);
            c.for_range(c.r0, c.r1, "row", |c, r| {
                let bi = c.div(r, pbv)?;
                let okv = c.var(c.kb.context().bool_type().const_int(1, false).into())?;
                let mut off = c.mul(bi, bsv)?;
                for t in 0..q {
                    let at = c.add(c.mul(r, qv)?, c.kb.i64_const(t as i64))?;
                    let i = load(&c.kb, idt, c.inputs[1], at)?.into_int_value();
                    let (j, ok) = resolve(c, i, ddims[b + t])?;
                    let prev = c.get(okv, ok.into())?.into_int_value();
                    let both = c.b().build_and(prev, ok, "ok").map_err(c.kb.err())?;
                    c.set(okv, both.into())?;
                    let jj = c
                        .b()
                        .build_select(ok, j, zero, "jj")
                        .map_err(c.kb.err())?
                        .into_int_value();
                    off = c.add(off, c.mul(jj, ds[b + t])?)?;
                }
                let ok = c
                    .get(okv, c.kb.context().bool_type().const_zero().into())?
                    .into_int_value();
                let bad = c.b().build_not(ok, "bad").map_err(c.kb.err())?;
                c.if_then(bad, |c| c.set_error())?;
                c.if_then(ok, |c| {
                    let s = scalar::element_ptr(&c.kb, dtype, c.inputs[0], off)?;
                    let t = scalar::element_ptr(&c.kb, dtype, c.dest, c.mul(r, slv)?)?;
                    let bytes = c.mul(slv, c.kb.i64_const(dtype.size_bytes() as i64))?;
                    c.b().build_memcpy(t, 1, s, 1, bytes).map_err(c.kb.err())?;
                    Ok(())
                })
            })?;
            Ok(Parallel::rows(rows, slice))
        }
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            let log = matches!(op, Op::LogSoftmax { .. });
            if !dtype.is_float() {
                return Err(unsupported(graph, step, "softmax of integers"));
            }
            let (outer, len, inner) = split_axis(out_shape, *axis);
            if dtype == DType::F32 && inner.is(1) && !log {
                // Attention's softmax: f32 rows, contiguous.
                let lenv = c.dim(&len)?;
                softmax_rows_f32(c, lenv)?;
                return Ok(Parallel::rows(outer, len));
            }
            let (lenv, innerv) = (c.dim(&len)?, c.dim(&inner)?);
            let f64t = c.kb.context().f64_type();
            c.for_range(c.r0, c.r1, "row", |c, r| {
                let o = c.div(r, innerv)?;
                let i = c.rem(r, innerv)?;
                let base = c.add(c.mul(c.mul(o, lenv)?, innerv)?, i)?;
                let max = c.var(f64t.const_float(f64::NEG_INFINITY).into())?;
                c.for_range(zero, lenv, "max", |c, k| {
                    let off = c.add(base, c.mul(k, innerv)?)?;
                    let x = f64_of(c, dtype, load(&c.kb, dtype, c.inputs[0], off)?)?;
                    let m = c.get(max, x.into())?.into_float_value();
                    let f = c.kb.intrinsic("llvm.maxnum", &[f64t.into()])?;
                    let nm = c.kb.call(f, &[m.into(), x.into()], "mx")?;
                    // NaN propagates: maxnum ignores it, so OR it back in.
                    let isnan = c
                        .b()
                        .build_float_compare(FloatPredicate::UNO, x, x, "n")
                        .map_err(c.kb.err())?;
                    let v = c
                        .b()
                        .build_select(isnan, x.into(), nm, "v")
                        .map_err(c.kb.err())?;
                    let mnan = c
                        .b()
                        .build_float_compare(FloatPredicate::UNO, m, m, "mn")
                        .map_err(c.kb.err())?;
                    let v = c
                        .b()
                        .build_select(mnan, m.into(), v, "v2")
                        .map_err(c.kb.err())?;
                    c.set(max, v)
                })?;
                let sum = c.var(f64t.const_zero().into())?;
                let m = c.get(max, f64t.const_zero().into())?.into_float_value();
                c.for_range(zero, lenv, "sum", |c, k| {
                    let off = c.add(base, c.mul(k, innerv)?)?;
                    let x = f64_of(c, dtype, load(&c.kb, dtype, c.inputs[0], off)?)?;
                    let d = c.b().build_float_sub(x, m, "d").map_err(c.kb.err())?;
                    let e = scalar::call_f64(c.m, &c.kb, "exp", &[d])?;
                    let s = c.get(sum, e.into())?.into_float_value();
                    let s = c.b().build_float_add(s, e, "s").map_err(c.kb.err())?;
                    c.set(sum, s.into())
                })?;
                let s = c.get(sum, f64t.const_zero().into())?.into_float_value();
                let ls = scalar::call_f64(c.m, &c.kb, "log", &[s])?;
                c.for_range(zero, lenv, "out", |c, k| {
                    let off = c.add(base, c.mul(k, innerv)?)?;
                    let x = f64_of(c, dtype, load(&c.kb, dtype, c.inputs[0], off)?)?;
                    let d = c.b().build_float_sub(x, m, "d").map_err(c.kb.err())?;
                    let y = if log {
                        c.b().build_float_sub(d, ls, "y").map_err(c.kb.err())?
                    } else {
                        let e = scalar::call_f64(c.m, &c.kb, "exp", &[d])?;
                        c.b().build_float_div(e, s, "y").map_err(c.kb.err())?
                    };
                    let y = scalar::cast(&c.kb, DType::F64, dtype, y.into())?;
                    store(&c.kb, dtype, c.dest, off, y)
                })
            })?;
            Ok(Parallel::rows(outer.mul(&inner), len))
        }
        Op::LayerNorm { axis, epsilon } => layer_norm(c, graph, step, *axis, *epsilon, false),
        Op::AddLayerNorm { axis, epsilon } => layer_norm(c, graph, step, *axis, *epsilon, true),
        Op::RmsNorm { axis, epsilon } => rms_norm(c, graph, step, *axis, *epsilon),
        Op::Gemm { .. } | Op::Attention { .. } | Op::Fused { .. } => Err(unsupported(
            graph,
            step,
            "a fused op scheduled as a plain op (internal error)",
        )),
        Op::Reduce { kind, axes, .. } => reduce(c, graph, step, *kind, axes),
        Op::ArgReduce {
            max,
            axis,
            select_last,
            ..
        } => {
            let ity = in_ty(0);
            let (outer, len, inner) = split_axis(&ity.shape, *axis);
            let (lenv, innerv) = (c.dim(&len)?, c.dim(&inner)?);
            let idt = ity.dtype;
            c.for_range(c.r0, c.r1, "row", |c, r| {
                let o = c.div(r, innerv)?;
                let i = c.rem(r, innerv)?;
                let base = c.add(c.mul(c.mul(o, lenv)?, innerv)?, i)?;
                let first = load(&c.kb, idt, c.inputs[0], base)?;
                let best = c.var(first)?;
                let besti = c.var(zero.into())?;
                c.for_range(one, lenv, "k", |c, k| {
                    let x = load(&c.kb, idt, c.inputs[0], c.add(base, c.mul(k, innerv)?)?)?;
                    let b = c.get(best, x)?;
                    let op = match (max, select_last) {
                        (true, false) => tcc_ir::BinaryOp::Greater,
                        (true, true) => tcc_ir::BinaryOp::GreaterEqual,
                        (false, false) => tcc_ir::BinaryOp::Less,
                        (false, true) => tcc_ir::BinaryOp::LessEqual,
                    };
                    let better = scalar::binary(c.m, &c.kb, op, idt, x, b)?.into_int_value();
                    c.if_then(better, |c| {
                        c.set(best, x)?;
                        c.set(besti, k.into())
                    })
                })?;
                let bi = c.get(besti, zero.into())?;
                store(&c.kb, DType::I64, c.dest, r, bi)
            })?;
            Ok(Parallel::rows(outer.mul(&inner), len))
        }
        Op::CumSum {
            axis,
            exclusive,
            reverse,
        } => {
            let (outer, len, inner) = split_axis(out_shape, *axis);
            let (lenv, innerv) = (c.dim(&len)?, c.dim(&inner)?);
            let acc_t = if dtype.is_float() {
                DType::F64
            } else {
                DType::I64
            };
            c.for_range(c.r0, c.r1, "row", |c, r| {
                let o = c.div(r, innerv)?;
                let i = c.rem(r, innerv)?;
                let base = c.add(c.mul(c.mul(o, lenv)?, innerv)?, i)?;
                let acc = c.var(scalar::zero(&c.kb, acc_t))?;
                c.for_range(zero, lenv, "k", |c, k| {
                    let kk = if *reverse {
                        let t = c.b().build_int_sub(lenv, k, "t").map_err(c.kb.err())?;
                        c.b().build_int_sub(t, one, "kk").map_err(c.kb.err())?
                    } else {
                        k
                    };
                    let off = c.add(base, c.mul(kk, innerv)?)?;
                    let x =
                        scalar::cast(&c.kb, dtype, acc_t, load(&c.kb, dtype, c.inputs[0], off)?)?;
                    let a = c.get(acc, x)?;
                    let next = scalar::binary(c.m, &c.kb, tcc_ir::BinaryOp::Add, acc_t, a, x)?;
                    let y = if *exclusive { a } else { next };
                    c.set(acc, next)?;
                    let y = scalar::cast(&c.kb, acc_t, dtype, y)?;
                    store(&c.kb, dtype, c.dest, off, y)
                })
            })?;
            Ok(Parallel::rows(outer.mul(&inner), len))
        }
        Op::MatMulInteger { saturate_pairs } => {
            match matmul_integer_const_b(c, graph, step, target, *saturate_pairs)? {
                Some(parallel) => Ok(parallel),
                None => matmul_integer(c, graph, step, *saturate_pairs),
            }
        }
        Op::MatMul => matmul_scalar(c, graph, step),
        Op::Pad {
            mode,
            pads_begin,
            pads_end,
        } => {
            let ishape = &in_ty(0).shape;
            let idims = c.dim_list(ishape.dims())?;
            let ist = c.dim_list(&strides(ishape))?;
            let pb = c.dim_list(pads_begin)?;
            let pe = c.dim_list(pads_end)?;
            let dims = c.dim_list(out_shape.dims())?;
            let acc = vec![(zero, c.dim_list(&strides(out_shape))?)];
            let mode = *mode;
            c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, idx| {
                let d = DimEmitter::new(c.b(), c.symbols, c.names, "pad");
                let sel = |p: IntPredicate,
                           x: IntValue<'ctx>,
                           y: IntValue<'ctx>|
                 -> Result<IntValue<'ctx>> {
                    let t = c.b().build_int_compare(p, x, y, "c").map_err(c.kb.err())?;
                    Ok(c.b()
                        .build_select(t, x, y, "s")
                        .map_err(c.kb.err())?
                        .into_int_value())
                };
                let inside = c.var(c.kb.context().bool_type().const_int(1, false).into())?;
                let mut off = c.kb.i64_const(0);
                for a in 0..idx.len() {
                    // The cropped axis: start c0 = max(-pb, 0), size n = d + min(pb, 0) + min(pe, 0).
                    let npb = c.b().build_int_neg(pb[a], "npb").map_err(c.kb.err())?;
                    let c0 = sel(IntPredicate::SGT, npb, zero)?;
                    let mb = sel(IntPredicate::SLT, pb[a], zero)?;
                    let me = sel(IntPredicate::SLT, pe[a], zero)?;
                    let n = c.add(c.add(idims[a], mb)?, me)?;
                    let lead = sel(IntPredicate::SGT, pb[a], zero)?;
                    let t = c.b().build_int_sub(idx[a], lead, "t").map_err(c.kb.err())?;
                    let ge = c
                        .b()
                        .build_int_compare(IntPredicate::SGE, t, zero, "ge")
                        .map_err(c.kb.err())?;
                    let lt = c
                        .b()
                        .build_int_compare(IntPredicate::SLT, t, n, "lt")
                        .map_err(c.kb.err())?;
                    let ok = c.b().build_and(ge, lt, "ok").map_err(c.kb.err())?;
                    let src = match mode {
                        tcc_ir::PadMode::Constant => {
                            let prev = c.get(inside, ok.into())?.into_int_value();
                            let both = c.b().build_and(prev, ok, "in").map_err(c.kb.err())?;
                            c.set(inside, both.into())?;
                            c.b()
                                .build_select(ok, t, zero, "tt")
                                .map_err(c.kb.err())?
                                .into_int_value()
                        }
                        tcc_ir::PadMode::Edge => {
                            let nm1 = c.b().build_int_sub(n, one, "nm1").map_err(c.kb.err())?;
                            let lo = sel(IntPredicate::SGT, t, zero)?;
                            sel(IntPredicate::SLT, lo, nm1)?
                        }
                        tcc_ir::PadMode::Wrap => d.floor_mod(t, n)?,
                        tcc_ir::PadMode::Reflect => {
                            // Period 2n - 2 (1 when n == 1), mirrored in its second half.
                            let p = c
                                .b()
                                .build_int_sub(c.add(n, n)?, c.kb.i64_const(2), "p")
                                .map_err(c.kb.err())?;
                            let p = sel(IntPredicate::SGT, p, one)?;
                            let u = d.floor_mod(t, p)?;
                            let m = c.b().build_int_sub(p, u, "m").map_err(c.kb.err())?;
                            let hi = c
                                .b()
                                .build_int_compare(IntPredicate::SGE, u, n, "hi")
                                .map_err(c.kb.err())?;
                            c.b()
                                .build_select(hi, m, u, "r")
                                .map_err(c.kb.err())?
                                .into_int_value()
                        }
                    };
                    off = c.add(off, c.mul(c.add(c0, src)?, ist[a])?)?;
                }
                let ok = c
                    .get(inside, c.kb.context().bool_type().const_zero().into())?
                    .into_int_value();
                let v = load(&c.kb, dtype, c.inputs[0], off)?;
                let v = if mode == tcc_ir::PadMode::Constant {
                    let fill = load(&c.kb, dtype, c.inputs[1], zero)?;
                    c.b().build_select(ok, v, fill, "pv").map_err(c.kb.err())?
                } else {
                    v
                };
                store(&c.kb, dtype, c.dest, offs[0], v)
            })?;
            Ok(elementwise)
        }
        Op::Conv {
            strides: st,
            pads_begin,
            dilations,
            group,
            ..
        } => conv(c, graph, step, st, pads_begin, dilations, *group),
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

/// Layer normalisation over the axes `axis..rank` of the result, then `* scale + bias`:
/// `Op::LayerNorm` (inputs `x`, `scale`, `bias`) or, with `residual`, `Op::AddLayerNorm`
/// (inputs `x`, `r`, `scale`, `bias`) of `x + r`, that sum rounded to the dtype first, exactly
/// `layer_norm(add(x, r))` as the interpreter computes it. `f32` rows whose inputs have the
/// result's shape and whose parameters have the normalised size (or one element) run in
/// vectors ([`layer_norm_rows_f32`]); anything else (other float dtypes, `x` or `r` broadcast
/// to the result, parameters broadcast over some normalised axes) in a scalar loop that sums
/// in f64 in the interpreter's order.
fn layer_norm<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    axis: usize,
    epsilon: f32,
    residual: bool,
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let dtype = out_ty.dtype;
    let zero = c.kb.i64_const(0);
    let in_ty = |k: usize| graph.ty(step.inputs[k]);
    // Inputs 0..n_x are summed into the normalised value; the scale and bias follow.
    let n_x = if residual { 2 } else { 1 };
    let rows = product(&out_shape.dims()[..axis]);
    let len = product(&out_shape.dims()[axis..]);
    let lenv = c.dim(&len)?;
    // Per parameter: None when it has the normalised size (read at the flat index),
    // else its broadcast strides over the normalised axes (all zero for a scalar).
    let norm = Shape::from(out_shape.dims()[axis..].to_vec());
    let norm_dims = c.dim_list(norm.dims())?;
    let mut param_strides = Vec::new();
    for k in n_x..n_x + 2 {
        let shape = &in_ty(k).shape;
        if shape.numel() == len {
            param_strides.push(None);
        } else {
            param_strides.push(Some(c.dim_list(&bcast_strides(shape, norm.rank()))?));
        }
    }
    // Per summand: None when it has the result's shape (read at the flat index), else its
    // broadcast strides over the result.
    let mut x_strides = Vec::new();
    for k in 0..n_x {
        let shape = &in_ty(k).shape;
        if shape == out_shape {
            x_strides.push(None);
        } else {
            x_strides.push(Some(
                c.dim_list(&bcast_strides_to(shape, out_shape.dims()))?,
            ));
        }
    }
    let f64t = c.kb.context().f64_type();
    let lenf = c
        .b()
        .build_signed_int_to_float(lenv, f64t, "n")
        .map_err(c.kb.err())?;
    let eps = f64t.const_float(f64::from(epsilon));
    // Parameters of the normalised size or scalars: f32 rows in vectors.
    let simple = |p: &Option<Vec<IntValue<'ctx>>>| match p {
        None => Some(false),
        Some(st) if st.iter().all(|s| s.get_zero_extended_constant() == Some(0)) => Some(true),
        Some(_) => None,
    };
    if let (DType::F32, Some(scale_scalar), Some(bias_scalar), true) = (
        dtype,
        simple(&param_strides[0]),
        simple(&param_strides[1]),
        x_strides.iter().all(Option::is_none),
    ) {
        layer_norm_rows_f32(c, lenv, eps, [scale_scalar, bias_scalar], residual)?;
        return Ok(Parallel::rows(rows, len));
    }
    let out_dims = if x_strides.iter().any(Option::is_some) {
        c.dim_list(out_shape.dims())?
    } else {
        Vec::new()
    };
    // The value normalised at column `j` of the row at `base`, in f64: `x` (plus `r`, the sum
    // rounded to the dtype as the interpreter's `add` does).
    let value = |c: &Ctx<'_, 'ctx>,
                 base: IntValue<'ctx>,
                 j: IntValue<'ctx>|
     -> Result<inkwell::values::FloatValue<'ctx>> {
        let flat = c.add(base, j)?;
        let mut sum: Option<BasicValueEnum<'ctx>> = None;
        for (k, st) in x_strides.iter().enumerate() {
            let off = match st {
                None => flat,
                Some(st) => {
                    let idx = c.unflatten(flat, &out_dims)?;
                    c.offset(zero, &idx, st)?
                }
            };
            let x = load(&c.kb, dtype, c.inputs[k], off)?;
            sum = Some(match sum {
                None => x,
                Some(a) => scalar::binary(c.m, &c.kb, tcc_ir::BinaryOp::Add, dtype, a, x)?,
            });
        }
        let v = sum.ok_or_else(|| c.kb.internal("a layer norm without input"))?;
        f64_of(c, dtype, v)
    };
    c.for_range(c.r0, c.r1, "row", |c, r| {
        let base = c.mul(r, lenv)?;
        let sum = c.var(f64t.const_zero().into())?;
        c.for_range(zero, lenv, "sum", |c, j| {
            let x = value(c, base, j)?;
            let s = c.get(sum, x.into())?.into_float_value();
            c.set(
                sum,
                c.b().build_float_add(s, x, "s").map_err(c.kb.err())?.into(),
            )
        })?;
        let s = c.get(sum, f64t.const_zero().into())?.into_float_value();
        let mean = c.b().build_float_div(s, lenf, "mean").map_err(c.kb.err())?;
        let var = c.var(f64t.const_zero().into())?;
        c.for_range(zero, lenv, "var", |c, j| {
            let x = value(c, base, j)?;
            let d = c.b().build_float_sub(x, mean, "d").map_err(c.kb.err())?;
            let d2 = c.b().build_float_mul(d, d, "d2").map_err(c.kb.err())?;
            let s = c.get(var, d2.into())?.into_float_value();
            c.set(
                var,
                c.b()
                    .build_float_add(s, d2, "s")
                    .map_err(c.kb.err())?
                    .into(),
            )
        })?;
        let v = c.get(var, f64t.const_zero().into())?.into_float_value();
        let v = c.b().build_float_div(v, lenf, "v").map_err(c.kb.err())?;
        let v = c.b().build_float_add(v, eps, "ve").map_err(c.kb.err())?;
        let sq = scalar::call_f64(c.m, &c.kb, "sqrt", &[v])?;
        let inv = c
            .b()
            .build_float_div(f64t.const_float(1.0), sq, "inv")
            .map_err(c.kb.err())?;
        c.for_range(zero, lenv, "out", |c, j| {
            let off = c.add(base, j)?;
            let x = value(c, base, j)?;
            let at = |p: &Option<Vec<IntValue<'ctx>>>| -> Result<IntValue<'ctx>> {
                match p {
                    None => Ok(j),
                    Some(st) if st.iter().all(|s| s.get_zero_extended_constant() == Some(0)) => {
                        Ok(zero)
                    }
                    Some(st) => {
                        let idx = c.unflatten(j, &norm_dims)?;
                        c.offset(zero, &idx, st)
                    }
                }
            };
            let si = at(&param_strides[0])?;
            let bi = at(&param_strides[1])?;
            let sc = f64_of(c, dtype, load(&c.kb, dtype, c.inputs[n_x], si)?)?;
            let bs = f64_of(c, dtype, load(&c.kb, dtype, c.inputs[n_x + 1], bi)?)?;
            let d = c.b().build_float_sub(x, mean, "d").map_err(c.kb.err())?;
            let y = c.b().build_float_mul(d, inv, "y").map_err(c.kb.err())?;
            let y = c.b().build_float_mul(y, sc, "ys").map_err(c.kb.err())?;
            let y = c.b().build_float_add(y, bs, "yb").map_err(c.kb.err())?;
            let y = scalar::cast(&c.kb, DType::F64, dtype, y.into())?;
            store(&c.kb, dtype, c.dest, off, y)
        })
    })?;
    Ok(Parallel::rows(rows, len))
}

/// RMS normalisation over the axes `axis..rank`, `x / sqrt(mean(x²) + eps) * scale`
/// (`Op::RmsNorm`, inputs `x`, `scale`), computed in f64 and rounded once: the squares (exact
/// in f64) summed in f64, divided by the row's length, `+ eps`, `sqrt`, then each
/// `x / rms * scale`. `f32` rows with a scale of the normalised size (or one element) run in
/// vectors ([`rms_norm_rows_f32`], whose doc gives the error against the interpreter); other
/// float dtypes and scales broadcast otherwise (over leading axes, or some normalised ones)
/// in a scalar loop that sums in order (for `f64` that is the interpreter's arithmetic op for
/// op, so the results are identical). The scale must not broadcast `x` to a larger shape.
fn rms_norm<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    axis: usize,
    epsilon: f32,
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let dtype = out_ty.dtype;
    let zero = c.kb.i64_const(0);
    let (x_ty, s_ty) = (graph.ty(step.inputs[0]), graph.ty(step.inputs[1]));
    if &x_ty.shape != out_shape {
        return Err(unsupported(
            graph,
            step,
            "the scale broadcasts x to a larger shape",
        ));
    }
    let rows = product(&out_shape.dims()[..axis]);
    let len = product(&out_shape.dims()[axis..]);
    let lenv = c.dim(&len)?;
    let f64t = c.kb.context().f64_type();
    let eps = f64t.const_float(f64::from(epsilon));
    // The scale: one value (Some(true)), the normalised size read at the row's flat index
    // (Some(false)), or anything else (None: read through its strides over the result).
    let st = bcast_strides_to(&s_ty.shape, out_shape.dims());
    let zero_stride = |s: &Dim| s.as_const() == Some(0);
    let scale_kind = if !st[..axis].iter().all(zero_stride) {
        None
    } else if st[axis..].iter().all(zero_stride) {
        Some(true)
    } else if s_ty.shape.numel() == len {
        Some(false)
    } else {
        None
    };
    if let (DType::F32, Some(scale_scalar)) = (dtype, scale_kind) {
        rms_norm_rows_f32(c, lenv, eps, scale_scalar)?;
        return Ok(Parallel::rows(rows, len));
    }
    let (out_dims, scale_st) = if scale_kind.is_none() {
        (c.dim_list(out_shape.dims())?, c.dim_list(&st)?)
    } else {
        (Vec::new(), Vec::new())
    };
    let lenf = c
        .b()
        .build_signed_int_to_float(lenv, f64t, "n")
        .map_err(c.kb.err())?;
    c.for_range(c.r0, c.r1, "row", |c, r| {
        let base = c.mul(r, lenv)?;
        let sum = c.var(f64t.const_zero().into())?;
        c.for_range(zero, lenv, "sum", |c, j| {
            let x = f64_of(c, dtype, load(&c.kb, dtype, c.inputs[0], c.add(base, j)?)?)?;
            let x2 = c.b().build_float_mul(x, x, "x2").map_err(c.kb.err())?;
            let s = c.get(sum, x2.into())?.into_float_value();
            c.set(
                sum,
                c.b()
                    .build_float_add(s, x2, "s")
                    .map_err(c.kb.err())?
                    .into(),
            )
        })?;
        let s = c.get(sum, f64t.const_zero().into())?.into_float_value();
        let ms = c.b().build_float_div(s, lenf, "ms").map_err(c.kb.err())?;
        let ve = c.b().build_float_add(ms, eps, "ve").map_err(c.kb.err())?;
        let rms = scalar::call_f64(c.m, &c.kb, "sqrt", &[ve])?;
        c.for_range(zero, lenv, "out", |c, j| {
            let off = c.add(base, j)?;
            let x = f64_of(c, dtype, load(&c.kb, dtype, c.inputs[0], off)?)?;
            let si = match scale_kind {
                Some(true) => zero,
                Some(false) => j,
                None => {
                    let idx = c.unflatten(off, &out_dims)?;
                    c.offset(zero, &idx, &scale_st)?
                }
            };
            let sc = f64_of(c, dtype, load(&c.kb, dtype, c.inputs[1], si)?)?;
            let y = c.b().build_float_div(x, rms, "y").map_err(c.kb.err())?;
            let y = c.b().build_float_mul(y, sc, "ys").map_err(c.kb.err())?;
            let y = scalar::cast(&c.kb, DType::F64, dtype, y.into())?;
            store(&c.kb, dtype, c.dest, off, y)
        })
    })?;
    Ok(Parallel::rows(rows, len))
}

fn reduce(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    kind: ReduceKind,
    axes: &[usize],
) -> Result<Parallel> {
    let ity = graph.ty(step.inputs[0]);
    let dtype = ity.dtype;
    let ishape = &ity.shape;
    let kept: Vec<usize> = (0..ishape.rank()).filter(|a| !axes.contains(a)).collect();
    let ist = strides(ishape);
    let kept_dims: Vec<Dim> = kept.iter().map(|&a| ishape.dims()[a].clone()).collect();
    let red_dims: Vec<Dim> = axes.iter().map(|&a| ishape.dims()[a].clone()).collect();
    let rows = product(&kept_dims);
    let count = product(&red_dims);
    let kd = c.dim_list(&kept_dims)?;
    let ks: Vec<IntValue<'_>> =
        c.dim_list(&kept.iter().map(|&a| ist[a].clone()).collect::<Vec<_>>())?;
    let rd = c.dim_list(&red_dims)?;
    let rs: Vec<IntValue<'_>> =
        c.dim_list(&axes.iter().map(|&a| ist[a].clone()).collect::<Vec<_>>())?;
    let trailing = axes
        .iter()
        .enumerate()
        .all(|(k, &a)| a == ishape.rank() - axes.len() + k);
    let countv = c.dim(&count)?;
    let float = dtype.is_float();
    let acc_t = if float { DType::F64 } else { DType::I64 };
    let out_dtype = graph.ty(step.node).dtype;
    let zero = c.kb.i64_const(0);
    let f64t = c.kb.context().f64_type();
    let init: BasicValueEnum<'_> = match (kind, float) {
        (ReduceKind::Sum | ReduceKind::Mean, true) => f64t.const_zero().into(),
        (ReduceKind::Prod, true) => f64t.const_float(1.0).into(),
        (ReduceKind::Max, true) => f64t.const_float(f64::NEG_INFINITY).into(),
        (ReduceKind::Min, true) => f64t.const_float(f64::INFINITY).into(),
        (ReduceKind::Sum | ReduceKind::Mean, false) => zero.into(),
        (ReduceKind::Prod, false) => c.kb.i64_const(1).into(),
        (ReduceKind::Max, false) => c.kb.i64_const(int_bounds(dtype).0).into(),
        (ReduceKind::Min, false) => c.kb.i64_const(int_bounds(dtype).1).into(),
    };
    if dtype == DType::F32 && trailing && matches!(kind, ReduceKind::Sum | ReduceKind::Mean) {
        // Sums of contiguous f32 in f64 lanes: reassociated, within `len 2^-53 Σ|x|` of the
        // interpreter's sequential f64 sum, far below half an f32 ulp of the result except
        // after cancellation (as for layer norm).
        let kb = &c.kb;
        let vd = f64t.vec_type(kb.lanes());
        c.for_range(c.r0, c.r1, "row", |c, r| {
            let idx = c.unflatten(r, &kd)?;
            let base = c.offset(zero, &idx, &ks)?;
            let src = c.kb.f32_element_ptr(c.inputs[0], base)?;
            let b = c.b();
            // Masked-off lanes load as 0.
            let mut v = sum_f64_lanes(c, countv, |kb, i, mask| {
                let x = kb.load_f32(src, i, mask)?;
                b.build_float_ext(x, vd, "xd").map_err(kb.err())
            })?;
            if kind == ReduceKind::Mean {
                let n = b
                    .build_signed_int_to_float(countv, f64t, "n")
                    .map_err(c.kb.err())?;
                v = b.build_float_div(v, n, "mean").map_err(c.kb.err())?;
            }
            let v = scalar::cast(&c.kb, DType::F64, out_dtype, v.into())?;
            store(&c.kb, out_dtype, c.dest, r, v)
        })?;
        return Ok(Parallel::rows(rows, count));
    }
    if dtype == DType::F32 && trailing && matches!(kind, ReduceKind::Max | ReduceKind::Min) {
        // Max and min are exact: f32 vectors over the contiguous reduced extent.
        c.for_range(c.r0, c.r1, "row", |c, r| {
            let idx = c.unflatten(r, &kd)?;
            let base = c.offset(zero, &idx, &ks)?;
            let src = c.kb.f32_element_ptr(c.inputs[0], base)?;
            let v = row_extreme_f32(c, src, countv, kind == ReduceKind::Max, None)?;
            let v = scalar::cast(&c.kb, DType::F32, out_dtype, v.into())?;
            store(&c.kb, out_dtype, c.dest, r, v)
        })?;
        return Ok(Parallel::rows(rows, count));
    }
    c.for_range(c.r0, c.r1, "row", |c, r| {
        let idx = c.unflatten(r, &kd)?;
        let base = c.offset(zero, &idx, &ks)?;
        let acc = c.var(init)?;
        c.for_range(zero, countv, "red", |c, q| {
            let off = if trailing {
                c.add(base, q)?
            } else {
                let ridx = c.unflatten(q, &rd)?;
                c.offset(base, &ridx, &rs)?
            };
            let x = scalar::cast(&c.kb, dtype, acc_t, load(&c.kb, dtype, c.inputs[0], off)?)?;
            let a = c.get(acc, x)?;
            let op = match kind {
                ReduceKind::Sum | ReduceKind::Mean => tcc_ir::BinaryOp::Add,
                ReduceKind::Prod => tcc_ir::BinaryOp::Mul,
                ReduceKind::Max => tcc_ir::BinaryOp::Max,
                ReduceKind::Min => tcc_ir::BinaryOp::Min,
            };
            let n = scalar::binary(c.m, &c.kb, op, acc_t, a, x)?;
            c.set(acc, n)
        })?;
        let mut v = c.get(acc, init)?;
        if kind == ReduceKind::Mean {
            v = if float {
                let n = c
                    .b()
                    .build_signed_int_to_float(countv, f64t, "n")
                    .map_err(c.kb.err())?;
                c.b()
                    .build_float_div(v.into_float_value(), n, "mean")
                    .map_err(c.kb.err())?
                    .into()
            } else {
                scalar::binary(
                    c.m,
                    &c.kb,
                    tcc_ir::BinaryOp::Div,
                    DType::I64,
                    v,
                    countv.into(),
                )?
            };
        }
        let v = scalar::cast(&c.kb, acc_t, out_dtype, v)?;
        store(&c.kb, out_dtype, c.dest, r, v)
    })?;
    Ok(Parallel::rows(rows, count))
}

fn int_bounds(d: DType) -> (i64, i64) {
    match d {
        DType::I32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        DType::I8 => (i64::from(i8::MIN), i64::from(i8::MAX)),
        DType::U8 => (0, i64::from(u8::MAX)),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Per row `(batch, i)`: index vectors `batch ++ [i, j]` for the broadcast operands.
fn matmul_geometry(graph: &Graph, step: &Step) -> (Dim, Dim, Dim, Vec<Dim>) {
    let out = &graph.ty(step.node).shape;
    let r = out.rank();
    let bty = graph.ty(step.inputs[1]);
    (
        out.dims()[r - 2].clone(),
        out.dims()[r - 1].clone(),
        bty.shape.dims()[bty.rank() - 2].clone(),
        out.dims()[..r - 2].to_vec(),
    )
}

fn matmul_scalar(c: &Ctx<'_, '_>, graph: &Graph, step: &Step) -> Result<Parallel> {
    let out = &graph.ty(step.node).shape;
    let r = out.rank();
    let dtype = graph.ty(step.node).dtype;
    let (m, n, k, batch) = matmul_geometry(graph, step);
    let a_s = c.dim_list(&bcast_strides(&graph.ty(step.inputs[0]).shape, r))?;
    let b_s = c.dim_list(&bcast_strides(&graph.ty(step.inputs[1]).shape, r))?;
    let (mv, nv, kv) = (c.dim(&m)?, c.dim(&n)?, c.dim(&k)?);
    let bd = c.dim_list(&batch)?;
    let zero = c.kb.i64_const(0);
    let acc_t = if dtype.is_float() { dtype } else { DType::I64 };
    c.for_range(c.r0, c.r1, "row", |c, row| {
        let bi = c.div(row, mv)?;
        let i = c.rem(row, mv)?;
        let idx = c.unflatten(bi, &bd)?;
        let a_base = c.offset(zero, &idx, &a_s[..r - 2])?;
        let a_base = c.add(a_base, c.mul(i, a_s[r - 2])?)?;
        let b_base = c.offset(zero, &idx, &b_s[..r - 2])?;
        c.for_range(zero, nv, "j", |c, j| {
            let acc = c.var(scalar::zero(&c.kb, acc_t))?;
            let b_col = c.add(b_base, c.mul(j, b_s[r - 1])?)?;
            c.for_range(zero, kv, "k", |c, kk| {
                let x = load(
                    &c.kb,
                    dtype,
                    c.inputs[0],
                    c.add(a_base, c.mul(kk, a_s[r - 1])?)?,
                )?;
                let y = load(
                    &c.kb,
                    dtype,
                    c.inputs[1],
                    c.add(b_col, c.mul(kk, b_s[r - 2])?)?,
                )?;
                let p = scalar::binary(c.m, &c.kb, tcc_ir::BinaryOp::Mul, acc_t, x, y)?;
                let a = c.get(acc, p)?;
                c.set(
                    acc,
                    scalar::binary(c.m, &c.kb, tcc_ir::BinaryOp::Add, acc_t, a, p)?,
                )
            })?;
            let v = c.get(acc, scalar::zero(&c.kb, acc_t))?;
            let v = scalar::cast(&c.kb, acc_t, dtype, v)?;
            store(&c.kb, dtype, c.dest, c.add(c.mul(row, nv)?, j)?, v)
        })
    })?;
    Ok(Parallel::rows(product(&batch).mul(&m), n.mul(&k)))
}

/// `MatMulInteger` of a `u8` `A` (rows contiguous) by a constant 2-D `i8` `B`, with one `A`
/// zero point and constant `B` zero points (one, or one per column), on a target with the
/// int8 dot-product instructions: the vector kernel of [`crate::kernels::int8`]. `None` if
/// the step is not of that form.
fn matmul_integer_const_b(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    target: &Target,
    saturate: bool,
) -> Result<Option<Parallel>> {
    use crate::kernels::int8;
    let Some(layout) = int8::Int8Layout::for_target(target) else {
        return Ok(None);
    };
    let ty = |i: usize| graph.ty(step.inputs[i]);
    let out = &graph.ty(step.node).shape;
    let r = out.rank();
    let Some(bt) = graph.const_value(step.inputs[1]) else {
        return Ok(None);
    };
    let (Some(b), Some(zb)) = (
        bt.as_slice::<i8>(),
        graph
            .const_value(step.inputs[3])
            .and_then(|z| z.as_slice::<i8>().map(|v| v.to_vec())),
    ) else {
        return Ok(None);
    };
    if bt.shape().len() != 2 || ty(0).dtype != DType::U8 || ty(2).dtype != DType::U8 {
        return Ok(None);
    }
    let (k, n) = (bt.shape()[0], bt.shape()[1]);
    let zb_shape = &ty(3).shape;
    let zb_ok = zb.len() == 1
        || (zb.len() == n && zb_shape.dims().last().and_then(|d| d.as_const()) == Some(n as i64));
    // A must be [batch.., m, k] exactly, so its rows are k bytes apart.
    let mut a_dims = out.dims().to_vec();
    a_dims[r - 1] = Dim::constant(k as i64);
    if !zb_ok || ty(2).shape.numel().as_const() != Some(1) || ty(0).shape.dims() != a_dims {
        return Ok(None);
    }
    let name = format!("{}.int8", c.kb.function().get_name().to_string_lossy());
    let f = int8::emit_matmul_u8i8_const_b(c.m, target, &name, &layout, b, k, n, &zb, saturate)?;
    let za = load(&c.kb, DType::U8, c.inputs[2], c.kb.i64_const(0))?.into_int_value();
    let za = c
        .b()
        .build_int_z_extend(za, c.kb.context().i64_type(), "za")
        .map_err(c.kb.err())?;
    c.b()
        .build_call(
            f,
            &[
                c.inputs[0].into(),
                c.kb.i64_const(k as i64).into(),
                za.into(),
                c.dest.into(),
                c.kb.i64_const(n as i64).into(),
                c.r0.into(),
                c.r1.into(),
            ],
            "",
        )
        .map_err(c.kb.err())?;
    Ok(Some(Parallel {
        rows: product(&out.dims()[..r - 1]),
        work: Dim::constant((k * n) as i64),
        align: i64::from(layout.mr),
        cols: 1,
        col_max_rows: 0,
    }))
}

fn matmul_integer<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    saturate: bool,
) -> Result<Parallel> {
    let out = &graph.ty(step.node).shape;
    let r = out.rank();
    let (m, n, k, batch) = matmul_geometry(graph, step);
    let ty = |i: usize| graph.ty(step.inputs[i]);
    let a_s = c.dim_list(&bcast_strides(&ty(0).shape, r))?;
    let b_s = c.dim_list(&bcast_strides(&ty(1).shape, r))?;
    let az_s = c.dim_list(&bcast_strides(&ty(2).shape, r))?;
    let bz_s = c.dim_list(&bcast_strides(&ty(3).shape, r))?;
    let (mv, nv, kv) = (c.dim(&m)?, c.dim(&n)?, c.dim(&k)?);
    let bd = c.dim_list(&batch)?;
    let zero = c.kb.i64_const(0);
    let one = c.kb.i64_const(1);
    let b = c.b();
    let i32w = |v: IntValue<'ctx>| scalar::wrap(&c.kb, DType::I32, v);
    let _ = b;
    c.for_range(c.r0, c.r1, "row", |c, row| {
        let bi = c.div(row, mv)?;
        let i = c.rem(row, mv)?;
        let idx = c.unflatten(bi, &bd)?;
        let a_base = c.add(c.offset(zero, &idx, &a_s[..r - 2])?, c.mul(i, a_s[r - 2])?)?;
        let b_base = c.offset(zero, &idx, &b_s[..r - 2])?;
        let az_off = c.add(
            c.offset(zero, &idx, &az_s[..r - 2])?,
            c.mul(i, az_s[r - 2])?,
        )?;
        let za = load(&c.kb, ty(2).dtype, c.inputs[2], az_off)?.into_int_value();
        let bz_base = c.offset(zero, &idx, &bz_s[..r - 2])?;
        c.for_range(zero, nv, "j", |c, j| {
            let zb_off = c.add(bz_base, c.mul(j, bz_s[r - 1])?)?;
            let zb = load(&c.kb, ty(3).dtype, c.inputs[3], zb_off)?.into_int_value();
            let b_col = c.add(b_base, c.mul(j, b_s[r - 1])?)?;
            let acc = c.var(zero.into())?;
            let asum = c.var(zero.into())?;
            let bsum = c.var(zero.into())?;
            let pair = c.var(zero.into())?;
            c.for_range(zero, kv, "k", |c, kk| {
                let x = load(
                    &c.kb,
                    ty(0).dtype,
                    c.inputs[0],
                    c.add(a_base, c.mul(kk, a_s[r - 1])?)?,
                )?
                .into_int_value();
                let y = load(
                    &c.kb,
                    ty(1).dtype,
                    c.inputs[1],
                    c.add(b_col, c.mul(kk, b_s[r - 2])?)?,
                )?
                .into_int_value();
                let bb = c.b();
                if saturate {
                    let p = bb.build_int_mul(x, y, "p").map_err(c.kb.err())?;
                    let pr = c.get(pair, zero.into())?.into_int_value();
                    let pr = bb.build_int_add(pr, p, "pr").map_err(c.kb.err())?;
                    let odd = bb.build_and(kk, one, "odd").map_err(c.kb.err())?;
                    let last = bb
                        .build_int_compare(IntPredicate::EQ, c.add(kk, one)?, kv, "last")
                        .map_err(c.kb.err())?;
                    let is_odd = bb
                        .build_int_compare(IntPredicate::EQ, odd, one, "o")
                        .map_err(c.kb.err())?;
                    let flush = bb.build_or(is_odd, last, "f").map_err(c.kb.err())?;
                    let lo = c.kb.i64_const(i64::from(i16::MIN));
                    let hi = c.kb.i64_const(i64::from(i16::MAX));
                    let t = bb
                        .build_int_compare(IntPredicate::SLT, pr, lo, "l")
                        .map_err(c.kb.err())?;
                    let s = bb
                        .build_select(t, lo, pr, "s")
                        .map_err(c.kb.err())?
                        .into_int_value();
                    let t = bb
                        .build_int_compare(IntPredicate::SGT, s, hi, "h")
                        .map_err(c.kb.err())?;
                    let s = bb
                        .build_select(t, hi, s, "s")
                        .map_err(c.kb.err())?
                        .into_int_value();
                    let a0 = c.get(acc, zero.into())?.into_int_value();
                    let a1 = i32w(bb.build_int_add(a0, s, "a1").map_err(c.kb.err())?)?;
                    let na = bb.build_select(flush, a1, a0, "na").map_err(c.kb.err())?;
                    c.set(acc, na)?;
                    let np = bb.build_select(flush, zero, pr, "np").map_err(c.kb.err())?;
                    c.set(pair, np)?;
                    let s0 = c.get(asum, zero.into())?.into_int_value();
                    c.set(asum, i32w(c.add(s0, x)?)?.into())?;
                    let s1 = c.get(bsum, zero.into())?.into_int_value();
                    c.set(bsum, i32w(c.add(s1, y)?)?.into())?;
                } else {
                    let dx = bb.build_int_sub(x, za, "dx").map_err(c.kb.err())?;
                    let dy = bb.build_int_sub(y, zb, "dy").map_err(c.kb.err())?;
                    let p = i32w(bb.build_int_mul(dx, dy, "p").map_err(c.kb.err())?)?;
                    let a0 = c.get(acc, zero.into())?.into_int_value();
                    c.set(acc, i32w(c.add(a0, p)?)?.into())?;
                }
                Ok(())
            })?;
            let mut v = c.get(acc, zero.into())?.into_int_value();
            if saturate {
                let bb = c.b();
                let asv = c.get(asum, zero.into())?.into_int_value();
                let bsv = c.get(bsum, zero.into())?.into_int_value();
                let t1 = i32w(bb.build_int_mul(za, bsv, "t1").map_err(c.kb.err())?)?;
                let t2 = i32w(bb.build_int_mul(zb, asv, "t2").map_err(c.kb.err())?)?;
                let t3 = i32w(
                    bb.build_int_mul(
                        i32w(bb.build_int_mul(i32w(kv)?, za, "k").map_err(c.kb.err())?)?,
                        zb,
                        "t3",
                    )
                    .map_err(c.kb.err())?,
                )?;
                v = i32w(bb.build_int_sub(v, t1, "v1").map_err(c.kb.err())?)?;
                v = i32w(bb.build_int_sub(v, t2, "v2").map_err(c.kb.err())?)?;
                v = i32w(bb.build_int_add(v, t3, "v3").map_err(c.kb.err())?)?;
            }
            store(
                &c.kb,
                DType::I32,
                c.dest,
                c.add(c.mul(row, nv)?, j)?,
                v.into(),
            )
        })
    })?;
    Ok(Parallel::rows(product(&batch).mul(&m), n.mul(&k)))
}

#[allow(clippy::too_many_arguments)]
fn conv(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    st: &[usize],
    pads_begin: &[Dim],
    dil: &[usize],
    group: usize,
) -> Result<Parallel> {
    let out = &graph.ty(step.node).shape;
    let dtype = graph.ty(step.node).dtype;
    let xs = &graph.ty(step.inputs[0]).shape;
    let ws = &graph.ty(step.inputs[1]).shape;
    let sp = out.rank() - 2;
    let xd = c.dim_list(xs.dims())?;
    let wd = c.dim_list(ws.dims())?;
    let od = c.dim_list(out.dims())?;
    let xst = c.dim_list(&strides(xs))?;
    let wst = c.dim_list(&strides(ws))?;
    let pb = c.dim_list(pads_begin)?;
    let out_sp = product(&out.dims()[2..]);
    let k_sp = product(&ws.dims()[2..]);
    let (osv, ksv) = (c.dim(&out_sp)?, c.dim(&k_sp)?);
    let m = c.dim(&out.dims()[1])?;
    let cg = wd[1];
    let mg = c.div(m, c.kb.i64_const(group as i64))?;
    let zero = c.kb.i64_const(0);
    c.for_range(c.r0, c.r1, "row", |c, row| {
        let ni = c.div(row, m)?;
        let o = c.rem(row, m)?;
        let g = c.div(o, mg)?;
        let cbase = c.mul(g, cg)?;
        c.for_range(zero, osv, "pos", |c, p| {
            let opos = c.unflatten(p, &od[2..])?;
            let acc = c.var(scalar::zero(&c.kb, dtype))?;
            c.for_range(zero, cg, "ci", |c, ci| {
                c.for_range(zero, ksv, "tap", |c, t| {
                    let kpos = c.unflatten(t, &wd[2..])?;
                    let mut ok = c.kb.context().bool_type().const_int(1, false);
                    let mut xoff = c.add(c.mul(ni, xst[0])?, c.mul(c.add(cbase, ci)?, xst[1])?)?;
                    for a in 0..sp {
                        let pos = c.add(
                            c.mul(opos[a], c.kb.i64_const(st[a] as i64))?,
                            c.mul(kpos[a], c.kb.i64_const(dil[a] as i64))?,
                        )?;
                        let pos = c.b().build_int_sub(pos, pb[a], "pos").map_err(c.kb.err())?;
                        let ge = c
                            .b()
                            .build_int_compare(IntPredicate::SGE, pos, zero, "ge")
                            .map_err(c.kb.err())?;
                        let lt = c
                            .b()
                            .build_int_compare(IntPredicate::SLT, pos, xd[2 + a], "lt")
                            .map_err(c.kb.err())?;
                        ok = c
                            .b()
                            .build_and(ok, c.b().build_and(ge, lt, "in").map_err(c.kb.err())?, "ok")
                            .map_err(c.kb.err())?;
                        xoff = c.add(xoff, c.mul(pos, xst[2 + a])?)?;
                    }
                    c.if_then(ok, |c| {
                        let woff = c.add(c.add(c.mul(o, wst[0])?, c.mul(ci, wst[1])?)?, t)?;
                        let x = load(&c.kb, dtype, c.inputs[0], xoff)?;
                        let w = load(&c.kb, dtype, c.inputs[1], woff)?;
                        let pr = scalar::binary(c.m, &c.kb, tcc_ir::BinaryOp::Mul, dtype, x, w)?;
                        let a = c.get(acc, pr)?;
                        c.set(
                            acc,
                            scalar::binary(c.m, &c.kb, tcc_ir::BinaryOp::Add, dtype, a, pr)?,
                        )
                    })
                })
            })?;
            let v = c.get(acc, scalar::zero(&c.kb, dtype))?;
            store(&c.kb, dtype, c.dest, c.add(c.mul(row, osv)?, p)?, v)
        })
    })?;
    let _ = wst;
    Ok(Parallel::rows(
        out.dims()[0].mul(&out.dims()[1]),
        out_sp.mul(&k_sp).mul(&ws.dims()[1]),
    ))
}
