//! Reductions along axes (sum, mean, product, max, min), arg max and min, and cumulative sums;
//! and the vector row reductions (an f64-lane sum, a NaN-propagating max or min) that the
//! softmax and the normalisations share.

use inkwell::values::{BasicValueEnum, IntValue, PointerValue};
use tcc_ir::{DType, Dim, Graph, ReduceKind};

use super::softmax::RowMap;
use super::{product, split_axis, strides, Ctx, Parallel};
use crate::error::Result;
use crate::kernels::KernelBuilder;
use crate::lower::scalar::{self, load, store};
use crate::lower::schedule::Step;

/// `Op::Reduce`: a row per position of the kept axes, accumulated in `f64` (`i64` for integers).
pub(super) fn reduce(
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

/// The smallest and largest values of the integer dtype `d` (`i64`'s for the others): the
/// identities of max and min.
fn int_bounds(d: DType) -> (i64, i64) {
    match d {
        DType::I32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        DType::I8 => (i64::from(i8::MIN), i64::from(i8::MAX)),
        DType::U8 => (0, i64::from(u8::MAX)),
        _ => (i64::MIN, i64::MAX),
    }
}

/// `Op::ArgReduce`: the index of the first (or, with `select_last`, the last) largest or
/// smallest element along `axis`, a row per position of the other axes.
pub(super) fn arg_reduce(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    max: bool,
    axis: usize,
    select_last: bool,
) -> Result<Parallel> {
    let zero = c.kb.i64_const(0);
    let one = c.kb.i64_const(1);
    let in_ty = |k: usize| graph.ty(step.inputs[k]);
    let ity = in_ty(0);
    let (outer, len, inner) = split_axis(&ity.shape, axis);
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

/// `Op::CumSum` along `axis` (from the end with `reverse`, each sum without its own element
/// with `exclusive`), accumulated in `f64` (`i64` for integers), a row per position of the
/// other axes.
pub(super) fn cum_sum(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    axis: usize,
    exclusive: bool,
    reverse: bool,
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let dtype = out_ty.dtype;
    let zero = c.kb.i64_const(0);
    let one = c.kb.i64_const(1);
    let (outer, len, inner) = split_axis(out_shape, axis);
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
            let kk = if reverse {
                let t = c.b().build_int_sub(lenv, k, "t").map_err(c.kb.err())?;
                c.b().build_int_sub(t, one, "kk").map_err(c.kb.err())?
            } else {
                k
            };
            let off = c.add(base, c.mul(kk, innerv)?)?;
            let x = scalar::cast(&c.kb, dtype, acc_t, load(&c.kb, dtype, c.inputs[0], off)?)?;
            let a = c.get(acc, x)?;
            let next = scalar::binary(c.m, &c.kb, tcc_ir::BinaryOp::Add, acc_t, a, x)?;
            let y = if exclusive { a } else { next };
            c.set(acc, next)?;
            let y = scalar::cast(&c.kb, acc_t, dtype, y)?;
            store(&c.kb, dtype, c.dest, off, y)
        })
    })?;
    Ok(Parallel::rows(outer.mul(&inner), len))
}

/// The maximum (`max`) or minimum of a contiguous f32 row of `len` elements, NaN-propagating
/// (`llvm.maximum` / `llvm.minimum`, which order -0 below +0), exact in any order: four
/// independent vector accumulators over blocks of four vectors (one would wait on its own
/// latency), then the rest of the row into the first. `-inf` (`+inf`) for an empty row.
pub(super) fn row_extreme_f32<'ctx>(
    c: &Ctx<'_, 'ctx>,
    src: PointerValue<'ctx>,
    lenv: IntValue<'ctx>,
    max: bool,
    pre: Option<&RowMap<'_, 'ctx>>,
) -> Result<inkwell::values::FloatValue<'ctx>> {
    row_extreme_f32_with(c, src, lenv, max, pre, Accumulate::Ordered)
}

/// [`row_extreme_f32`]'s maximum for a softmax, where -0 and +0 need no order (`x - max` is
/// the same either way): x86's `maxps` (one operation a vector against the six that
/// `llvm.maximum` costs on x86), which keeps the accumulator where the row's element is NaN.
/// With `nan`, a second accumulator takes the row's NaNs (two operations a vector more) and
/// the result is NaN if the row holds one; without, the result is the maximum of the row's
/// other elements (or `-inf`), for a softmax whose sum takes the NaN instead.
pub(super) fn row_max_f32_unordered_zeros<'ctx>(
    c: &Ctx<'_, 'ctx>,
    src: PointerValue<'ctx>,
    lenv: IntValue<'ctx>,
    pre: Option<&RowMap<'_, 'ctx>>,
    nan: bool,
) -> Result<inkwell::values::FloatValue<'ctx>> {
    row_extreme_f32_with(c, src, lenv, true, pre, Accumulate::Maxps { nan })
}

/// How [`row_extreme_f32_with`] accumulates a row.
#[derive(Clone, Copy)]
enum Accumulate {
    /// `llvm.maximum` / `llvm.minimum`: -0 below +0, NaN-propagating.
    Ordered,
    /// `maxps` (a maximum), NaN-propagating by a second accumulator if `nan`.
    Maxps { nan: bool },
}

fn row_extreme_f32_with<'ctx>(
    c: &Ctx<'_, 'ctx>,
    src: PointerValue<'ctx>,
    lenv: IntValue<'ctx>,
    max: bool,
    pre: Option<&RowMap<'_, 'ctx>>,
    how: Accumulate,
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
    // The accumulation of x into m: `llvm.maximum`, or (unordered zeros, a maximum) `x > m ?
    // x : m`, which keeps m where either is NaN, beside `nan`, which takes x where x is NaN.
    let nan = match how {
        Accumulate::Maxps { nan: true } => Some(c.var(identity.into())?),
        _ => None,
    };
    let combine = |kb: &KernelBuilder<'_, 'ctx>,
                   m: inkwell::values::VectorValue<'ctx>,
                   x: inkwell::values::VectorValue<'ctx>|
     -> Result<inkwell::values::VectorValue<'ctx>> {
        if let Accumulate::Ordered = how {
            return Ok(kb
                .call(extreme, &[m.into(), x.into()], "m")?
                .into_vector_value());
        }
        if let Some(nan) = nan {
            let unordered = b
                .build_float_compare(inkwell::FloatPredicate::UNO, x, x, "uno")
                .map_err(kb.err())?;
            let n = b.build_load(vt, nan, "nan").map_err(kb.err())?;
            let n = b
                .build_select(unordered, x, n.into_vector_value(), "nan")
                .map_err(kb.err())?;
            b.build_store(nan, n).map_err(kb.err())?;
        }
        maxps(kb, x, m)
    };
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
                let m = combine(kb, m.into_vector_value(), x)?;
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
        let m = combine(kb, m.into_vector_value(), x)?;
        b.build_store(accs[0], m).map_err(kb.err())?;
        Ok(())
    })?;
    if let Accumulate::Maxps { .. } = how {
        return max_unordered_zeros_of(c, &accs, nan);
    }
    // The accumulators together: with llvm.maximum, which propagates NaN.
    let mut m = b.build_load(vt, accs[0], "m").map_err(kb.err())?;
    for &acc in &accs[1..] {
        let other = b.build_load(vt, acc, "m").map_err(kb.err())?;
        m = kb.call(extreme, &[m.into(), other.into()], "m")?;
    }
    Ok(kb.call(reduce, &[m.into()], "ext")?.into_float_value())
}

/// The maximum of the vector accumulators `accs` of [`row_max_f32_unordered_zeros`] and
/// NaN if their NaN accumulator `nan` (if any) holds one: `maxps` steps (`x > m ? x : m`)
/// over the accumulators, then over halves of the lanes, and the NaN test beside them, off
/// the critical path. A row's softmax waits on this result, so its latency counts: a tree of
/// `llvm.maximum` (NaN-propagating, -0 below +0) takes about three times as long on x86.
fn max_unordered_zeros_of<'ctx>(
    c: &Ctx<'_, 'ctx>,
    accs: &[PointerValue<'ctx>],
    nan: Option<PointerValue<'ctx>>,
) -> Result<inkwell::values::FloatValue<'ctx>> {
    let kb = &c.kb;
    let b = kb.builder();
    let vt = kb.f32_vector();
    let max = |x, m| maxps(kb, x, m);
    let mut level: Vec<inkwell::values::VectorValue<'ctx>> = accs
        .iter()
        .map(|&acc| {
            b.build_load(vt, acc, "m")
                .map_err(kb.err())
                .map(|v| v.into_vector_value())
        })
        .collect::<Result<_>>()?;
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| {
                if p.len() == 2 {
                    max(p[1], p[0])
                } else {
                    Ok(p[0])
                }
            })
            .collect::<Result<_>>()?;
    }
    let m = kb.fold_halves(level[0], 1, |lo, hi| max(hi, lo))?;
    let zero = kb.context().i64_type().const_zero();
    let m = b
        .build_extract_element(m, zero, "max")
        .map_err(kb.err())?
        .into_float_value();
    let Some(nan) = nan else {
        return Ok(m);
    };
    // Any NaN seen: a lane of `nan` unordered.
    let n = b
        .build_load(vt, nan, "nan")
        .map_err(kb.err())?
        .into_vector_value();
    let lanes_nan = b
        .build_float_compare(inkwell::FloatPredicate::UNO, n, n, "uno")
        .map_err(kb.err())?;
    let or = kb.intrinsic("llvm.vector.reduce.or", &[lanes_nan.get_type().into()])?;
    let any = kb
        .call(or, &[lanes_nan.into()], "any.nan")?
        .into_int_value();
    Ok(
        b.build_select(any, kb.context().f32_type().const_float(f64::NAN), m, "max")
            .map_err(kb.err())?
            .into_float_value(),
    )
}

/// `x > m ? x : m`, x86's `maxps`: `m` where either is NaN, either where they are equal.
fn maxps<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    x: inkwell::values::VectorValue<'ctx>,
    m: inkwell::values::VectorValue<'ctx>,
) -> Result<inkwell::values::VectorValue<'ctx>> {
    let b = kb.builder();
    let greater = b
        .build_float_compare(inkwell::FloatPredicate::OGT, x, m, "gt")
        .map_err(kb.err())?;
    Ok(b.build_select(greater, x, m, "m")
        .map_err(kb.err())?
        .into_vector_value())
}

/// The sum of an f64 vector's lanes by halves (a tree of `log2(lanes)` additions, whose
/// latency a row's softmax waits on; `llvm.vector.reduce.fadd` without reassociation adds the
/// lanes one after another).
fn tree_sum_f64<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    v: inkwell::values::VectorValue<'ctx>,
) -> Result<inkwell::values::FloatValue<'ctx>> {
    let b = kb.builder();
    let v = kb.fold_halves(v, 1, |lo, hi| {
        b.build_float_add(lo, hi, "sum").map_err(kb.err())
    })?;
    Ok(
        b.build_extract_element(v, kb.context().i64_type().const_zero(), "sum")
            .map_err(kb.err())?
            .into_float_value(),
    )
}

/// `Σ term(i)` over a row of `len` elements in the target's vectors, summed in f64 lanes
/// (reassociated: within `len 2^-53 Σ|term|` of a sequential f64 sum): `term(kb, i, mask)`
/// gives the f64 vector of the terms at column `i`, zero in masked-off lanes (it may also
/// store results of its own).
pub(super) fn sum_f64_lanes<'ctx>(
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
    tree_sum_f64(kb, s.into_vector_value())
}

/// `Σ term(i)` over a row of `len` elements whose terms are f32 vectors, as
/// [`sum_f64_lanes`] sums them, but `group` full vectors at a time (a power of two; `term`
/// then gives them as one vector of `group` registers) added in f32 first by a balanced
/// tree of halves, then widened: each term goes through `log2(group)` f32
/// roundings before the f64 sum, so the sum of non-negative terms is within `log2(group)
/// 2^-24` (relative) of [`sum_f64_lanes`]'s, for a widening (two conversions, an
/// extraction and two f64 additions a vector with AVX-512) per group instead of per vector.
/// The last, partial group is one whose lanes past `len` hold zeros (`term` gets its mask).
pub(super) fn sum_f32_terms_in_f64<'ctx>(
    c: &Ctx<'_, 'ctx>,
    lenv: IntValue<'ctx>,
    group: u32,
    mut term: impl FnMut(
        &KernelBuilder<'_, 'ctx>,
        IntValue<'ctx>,
        Option<inkwell::values::VectorValue<'ctx>>,
    ) -> Result<inkwell::values::VectorValue<'ctx>>,
) -> Result<inkwell::values::FloatValue<'ctx>> {
    debug_assert!(group.is_power_of_two());
    let kb = &c.kb;
    let b = kb.builder();
    let vd = kb.context().f64_type().vec_type(kb.lanes());
    if group == 1 {
        return sum_f64_lanes(c, lenv, |kb, i, mask| {
            let t = term(kb, i, mask)?;
            kb.builder().build_float_ext(t, vd, "t").map_err(kb.err())
        });
    }
    let acc = c.var(vd.const_zero().into())?;
    let add_to_acc = |kb: &KernelBuilder<'_, 'ctx>, t: inkwell::values::VectorValue<'ctx>| {
        let t = b.build_float_ext(t, vd, "t").map_err(kb.err())?;
        let s = b
            .build_load(vd, acc, "s")
            .map_err(kb.err())?
            .into_vector_value();
        let s = b.build_float_add(s, t, "s").map_err(kb.err())?;
        b.build_store(acc, s).map_err(kb.err())?;
        Ok(())
    };
    // A group's terms as one vector (see `KernelBuilder::with_lanes`), the lanes past
    // the row masked off (its terms are zeros there), then its halves added down to one
    // register. A partial group is added as a whole one whose last terms are zeros, so
    // the sum of a row does not depend on how many zeros follow it (a padded batch's
    // rows and a packed one's give the same sums).
    let span = kb.i64_const(i64::from(group * kb.lanes()));
    let mut group_sum = |kb: &KernelBuilder<'_, 'ctx>, i: IntValue<'ctx>, partial: bool| {
        let t = kb.with_lanes(group * kb.lanes(), |w| {
            let mask = match partial {
                true => Some(w.tail_mask(i, lenv)?),
                false => None,
            };
            term(w, i, mask)
        })?;
        let t = kb.fold_halves(t, kb.lanes(), |lo, hi| {
            b.build_float_add(lo, hi, "pair").map_err(kb.err())
        })?;
        add_to_acc(kb, t)
    };
    let whole = c.mul(c.div(lenv, span)?, span)?;
    kb.for_loop(kb.i64_const(0), whole, span, "group", |kb, i| {
        group_sum(kb, i, false)
    })?;
    let partial = b
        .build_int_compare(inkwell::IntPredicate::SLT, whole, lenv, "partial")
        .map_err(kb.err())?;
    c.if_then(partial, |c| group_sum(&c.kb, whole, true))?;
    let s = b.build_load(vd, acc, "s").map_err(kb.err())?;
    tree_sum_f64(kb, s.into_vector_value())
}
