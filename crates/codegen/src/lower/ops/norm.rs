//! Normalisations over the trailing axes: layer normalisation (also of a residual sum,
//! `add_layer_norm`) and RMS normalisation, contiguous `f32` rows in the target's vectors with
//! f64 sums, anything else in a scalar loop in `f64`.

use inkwell::values::{BasicValueEnum, FloatValue, IntValue};
use tcc_ir::{DType, Dim, Graph, Shape};

use super::reduce::sum_f64_lanes;
use super::{bcast_strides, bcast_strides_to, f64_of, product, unsupported, Ctx, Parallel};
use crate::error::Result;
use crate::lower::scalar::{self, load, store};
use crate::lower::schedule::Step;

/// Layer normalisation over the axes `axis..rank` of the result, then `* scale + bias`:
/// `Op::LayerNorm` (inputs `x`, `scale`, `bias`) or, with `residual`, `Op::AddLayerNorm`
/// (inputs `x`, `r`, `scale`, `bias`) of `x + r`, that sum rounded to the dtype first, exactly
/// `layer_norm(add(x, r))` as the interpreter computes it. `f32` rows whose inputs have the
/// result's shape and whose parameters have the normalised size (or one element) run in
/// vectors ([`layer_norm_rows_f32`]); anything else (other float dtypes, `x` or `r` broadcast
/// to the result, parameters broadcast over some normalised axes) in a scalar loop that sums
/// in f64 in the interpreter's order.
/// `Σ_{j < len} term(j)` in f64, summed in order (the scalar rows' sums, as the interpreter
/// adds them).
fn sum_f64<'ctx>(
    c: &Ctx<'_, 'ctx>,
    len: IntValue<'ctx>,
    name: &str,
    term: impl Fn(&Ctx<'_, 'ctx>, IntValue<'ctx>) -> Result<FloatValue<'ctx>>,
) -> Result<FloatValue<'ctx>> {
    let zero_f = c.kb.context().f64_type().const_zero();
    let acc = c.var(zero_f.into())?;
    c.for_range(c.kb.i64_const(0), len, name, |c, j| {
        let x = term(c, j)?;
        let s = c.get(acc, x.into())?.into_float_value();
        c.set(
            acc,
            c.b().build_float_add(s, x, "s").map_err(c.kb.err())?.into(),
        )
    })?;
    Ok(c.get(acc, zero_f.into())?.into_float_value())
}

pub(super) fn layer_norm<'ctx>(
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
        let s = sum_f64(c, lenv, "sum", |c, j| value(c, base, j))?;
        let mean = c.b().build_float_div(s, lenf, "mean").map_err(c.kb.err())?;
        let v = sum_f64(c, lenv, "var", |c, j| {
            let x = value(c, base, j)?;
            let d = c.b().build_float_sub(x, mean, "d").map_err(c.kb.err())?;
            c.b().build_float_mul(d, d, "d2").map_err(c.kb.err())
        })?;
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
pub(super) fn rms_norm<'ctx>(
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
        let s = sum_f64(c, lenv, "sum", |c, j| {
            let x = f64_of(c, dtype, load(&c.kb, dtype, c.inputs[0], c.add(base, j)?)?)?;
            c.b().build_float_mul(x, x, "x2").map_err(c.kb.err())
        })?;
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

/// A per-column f32 parameter of a row kernel (a scale, a bias) at columns `i..` in f64
/// lanes: loaded (masked-off lanes 0), or its one element splat if `one`.
fn param_f64<'ctx>(
    c: &Ctx<'_, 'ctx>,
    input: inkwell::values::PointerValue<'ctx>,
    one: bool,
    i: IntValue<'ctx>,
    mask: Option<inkwell::values::VectorValue<'ctx>>,
) -> Result<inkwell::values::VectorValue<'ctx>> {
    let kb = &c.kb;
    let b = kb.builder();
    let f64t = kb.context().f64_type();
    if one {
        let x = load(kb, DType::F32, input, kb.i64_const(0))?;
        let x = b
            .build_float_ext(x.into_float_value(), f64t, "p")
            .map_err(kb.err())?;
        kb.splat(x.into(), "p")
    } else {
        b.build_float_ext(
            kb.load_f32(input, i, mask)?,
            f64t.vec_type(kb.lanes()),
            "xd",
        )
        .map_err(kb.err())
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
    let lenf = b
        .build_signed_int_to_float(lenv, f64t, "n")
        .map_err(kb.err())?;
    let ext = |v| b.build_float_ext(v, vd, "xd").map_err(kb.err());
    // The parameters' first input: 1 (2 after a residual).
    let p0 = if residual { 2 } else { 1 };
    // Parameter k's (1: the scale, 2: the bias) vector at column i: loaded, or its one element
    // splat.
    let param = |k: usize, i: IntValue<'ctx>, mask| {
        param_f64(c, c.inputs[p0 + k - 1], scalar[k - 1], i, mask)
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
    let lenf = b
        .build_signed_int_to_float(lenv, f64t, "n")
        .map_err(kb.err())?;
    let ext = |v| b.build_float_ext(v, vd, "xd").map_err(kb.err());
    // The scale's vector at column i: loaded, or its one element splat.
    let scale = |i: IntValue<'ctx>, mask| param_f64(c, c.inputs[1], scale_scalar, i, mask);
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
