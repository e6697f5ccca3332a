//! Softmax and log-softmax along an axis: contiguous `f32` rows in the target's vectors (tcc's
//! vector `exp` on an exact `x - max`, an f64 sum), any other layout or dtype in a scalar loop
//! in `f64` with the C library's `exp`, as the interpreter computes it.

use inkwell::values::{IntValue, PointerValue};
use inkwell::FloatPredicate;
use tcc_ir::{DType, Graph};

use super::reduce::{row_max_f32_unordered_zeros, sum_f32_terms_in_f64};
use super::{f64_of, split_axis, unsupported, Ctx, Parallel};
use crate::error::Result;
use crate::kernels::{vmath, KernelBuilder};
use crate::lower::scalar::{self, load, store};
use crate::lower::schedule::Step;

/// `Op::Softmax` or, with `log`, `Op::LogSoftmax` over `axis`: a row per position of the
/// other axes.
pub(super) fn softmax(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    axis: usize,
    log: bool,
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let dtype = out_ty.dtype;
    let zero = c.kb.i64_const(0);
    if !dtype.is_float() {
        return Err(unsupported(graph, step, "softmax of integers"));
    }
    let (outer, len, inner) = split_axis(out_shape, axis);
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

/// The softmax of one contiguous f32 row of `len` elements from `src` into `dst` (which may
/// be `src`), as [`softmax_rows_f32`] describes.
pub(super) fn softmax_row_f32<'ctx>(
    c: &Ctx<'_, 'ctx>,
    src: PointerValue<'ctx>,
    dst: PointerValue<'ctx>,
    lenv: IntValue<'ctx>,
) -> Result<()> {
    softmax_row_mapped_f32(c, src, dst, lenv, None, None, SOFTMAX_EXP).map(|_| ())
}

/// The floor of `x - max` below which the softmax's exponentials are 0: `exp(-87)` is about
/// `1.6e-38`, a little above the smallest normal f32, so the exponential and its scaling stay
/// normal whatever the low part of the argument.
pub(super) const SOFTMAX_FLOOR: f32 = vmath::EXP_IN_RANGE_MIN;

/// The floor of `x - max` below which attention's exponentials are 0: `ln(2^-60)`. What
/// reaches `P · V` is then 0 or at least `2^-60 / keys`, so its products with `V` are normal
/// unless an element of `V` is below about `2^-66 * keys`; dropping the smaller terms changes
/// an output by at most `2^-60` times the sum of `|V|` over its keys.
pub(super) const ATTENTION_FLOOR: f32 = -41.588_83;

/// How a row's exponentials `e = exp(x - max)` are made and summed.
#[derive(Clone, Copy, Debug)]
pub(super) struct RowExp {
    /// `x - max` below which `e` is 0 (at least [`SOFTMAX_FLOOR`]).
    pub floor: f32,
    /// `x - max` as an exact f32 pair (TwoSum, five operations a vector), so that each `e` is
    /// within about 2 ulp of its exact value; otherwise rounded once, which moves `exp`'s
    /// argument by at most `|x - max| 2^-24` and so `e` by at most `e |x - max| 2^-24 <= 2^-24
    /// / e_` (`e_` Euler's number): a fifth of an ulp of the row's sum (at least 1, the
    /// maximum's own term), though more than an ulp of a small `e` itself. With AVX-512 the
    /// rounded shift goes to [`vmath::exp_by_scalef`], whose own rounding of `(x - max) log2 e`
    /// moves `e` as much again: two fifths of an ulp of the sum.
    pub exact_shift: bool,
    /// Vectors of `e` added in f32 before joining the f64 sum (see
    /// [`sum_f32_terms_in_f64`]): the sum moves by at most `log2(group) 2^-24` relative.
    pub group: u32,
    /// Whether the row's maximum the softmax returns is NaN for a row holding a NaN (two
    /// operations a vector in the maximum's pass). The softmax is NaN there either way: the
    /// NaN's own exponential makes the sum NaN, and so every `e / sum`.
    pub nan_max: bool,
}

/// A softmax whose every element is a result: each within about 3 ulp.
pub(super) const SOFTMAX_EXP: RowExp = RowExp {
    floor: SOFTMAX_FLOOR,
    exact_shift: true,
    group: 1,
    nan_max: false,
};

/// Attention's softmax, whose probabilities reach the output only through `P · V`, where
/// each one's error counts against the row's sum (1 after normalisation): the shift rounded
/// once (`2^-24 / e_` of the sum at most, twice that with AVX-512's exponential) and the sum
/// in groups of four (`2^-23` relative), a third of the exponential pass's operations fewer
/// (half with AVX-512's exponential), and each output still within about 4 ulp of the sum
/// `Σ|p v|` it is made of.
pub(super) const ATTENTION_EXP: RowExp = RowExp {
    floor: ATTENTION_FLOOR,
    exact_shift: false,
    group: 4,
    nan_max: false,
};

/// A map of a row's vector at column `j` (masked to the row's tail, or whole): `f(kb, j, x,
/// mask)`.
pub(super) type RowMap<'a, 'ctx> = dyn Fn(
        &KernelBuilder<'_, 'ctx>,
        IntValue<'ctx>,
        inkwell::values::VectorValue<'ctx>,
        Option<inkwell::values::VectorValue<'ctx>>,
    ) -> Result<inkwell::values::VectorValue<'ctx>>
    + 'a;

/// [`softmax_row_f32`] of `pre(x)`, stored as `post(softmax)`: `pre` is applied to `src` in
/// place during the pass that finds the maximum, `post` to each result before its store. The
/// values are those of the three steps apart, in one pass fewer each. Returns the row's
/// maximum (of `pre(x)`).
pub(super) fn softmax_row_mapped_f32<'ctx>(
    c: &Ctx<'_, 'ctx>,
    src: PointerValue<'ctx>,
    dst: PointerValue<'ctx>,
    lenv: IntValue<'ctx>,
    pre: Option<&RowMap<'_, 'ctx>>,
    post: Option<&RowMap<'_, 'ctx>>,
    how: RowExp,
) -> Result<inkwell::values::FloatValue<'ctx>> {
    let kb = &c.kb;
    let b = kb.builder();
    let vt = kb.f32_vector();
    let vd = kb.context().f64_type().vec_type(kb.lanes());
    // e = exp(x - max) into dst (pre applied to src in place on the way), and 1 / sum.
    let (inv, max) = softmax_row_unnormalised_f32(c, src, dst, lenv, pre, how)?;
    let inv_v = kb.splat(inv.into(), "inv")?;
    kb.vector_loop_in(lenv, |kb, i, mask| {
        let e = kb.load_f32(dst, i, mask)?;
        let ed = b.build_float_ext(e, vd, "ed").map_err(kb.err())?;
        let y = b.build_float_mul(ed, inv_v, "y").map_err(kb.err())?;
        let mut y = b.build_float_trunc(y, vt, "y").map_err(kb.err())?;
        if let Some(post) = post {
            y = post(kb, i, y, mask)?;
        }
        kb.store_f32(dst, i, y, mask)
    })?;
    Ok(max)
}

/// `exp(x - max)` for a vector `x`, given `neg_max = -max`: with `exact_shift`, the
/// difference as an exact f32 pair `hi + lo` (TwoSum), so that the vector exp (about 2 ulp)
/// sees no rounded argument, otherwise `hi` rounded (see [`RowExp`]); exactly 0 where `x -
/// max < floor` (at least [`SOFTMAX_FLOOR`]: never a subnormal, on the
/// way or in the result, whose arithmetic costs a microcode assist per operation on Intel
/// cores), so `-inf` elements (masked positions) and finite masks such as torch's
/// `finfo.min` give 0.
fn exp_minus_max<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    x: inkwell::values::VectorValue<'ctx>,
    neg_max: inkwell::values::VectorValue<'ctx>,
    how: RowExp,
) -> Result<inkwell::values::VectorValue<'ctx>> {
    let b = kb.builder();
    let zeros = kb.f32_vector().const_zero();
    let hi = b.build_float_add(x, neg_max, "hi").map_err(kb.err())?;
    let floor = kb.f32_splat_const(how.floor.max(SOFTMAX_FLOOR));
    if !how.exact_shift && vmath::has_exp_by_scalef(kb) {
        // The rounded shift straight into the AVX-512 exp, 0 below the floor (and for -inf)
        // by its masks; NaN (a row whose maximum is not finite) stays NaN.
        let keep = b
            .build_float_compare(FloatPredicate::UGE, hi, floor, "keep")
            .map_err(kb.err())?;
        return vmath::exp_by_scalef(kb, hi, keep);
    }
    // TwoSum: hi + lo == x + (-max) exactly.
    let lo = if how.exact_shift {
        let bb = b.build_float_sub(hi, x, "bb").map_err(kb.err())?;
        let ab = b.build_float_sub(hi, bb, "ab").map_err(kb.err())?;
        let ea = b.build_float_sub(x, ab, "ea").map_err(kb.err())?;
        let eb = b.build_float_sub(neg_max, bb, "eb").map_err(kb.err())?;
        Some(b.build_float_add(ea, eb, "lo").map_err(kb.err())?)
    } else {
        None
    };
    // Below the floor (x = -inf too) the result is 0, and exp is computed on 0 instead, so
    // that no lane computes a subnormal on the way (with AVX2 every lane computes); the
    // floor keeps `hi + lo` in exp's range for the same reason. Elsewhere `hi` is finite, or
    // NaN in a row whose maximum is not finite (and whose softmax is NaN anyway).
    let tiny = b
        .build_float_compare(FloatPredicate::OLT, hi, floor, "tiny")
        .map_err(kb.err())?;
    let hi_safe = b
        .build_select(tiny, zeros, hi, "hi")
        .map_err(kb.err())?
        .into_vector_value();
    // Where hi is tiny, TwoSum's lo may be NaN (hi = -inf) or huge: 0 there too.
    let lo = lo
        .map(|lo| {
            b.build_select(tiny, zeros, lo, "lo")
                .map(|v| v.into_vector_value())
                .map_err(kb.err())
        })
        .transpose()?;
    let e = vmath::exp_split_in_range(kb, hi_safe, lo)?;
    Ok(b.build_select(tiny, zeros, e, "e")
        .map_err(kb.err())?
        .into_vector_value())
}

/// The unnormalised softmax of one contiguous f32 row of `len` elements from `src` into `dst`
/// (which may be `src`), for attention, whose product with `V` divides by the sum afterwards
/// (a pass over the row fewer), and as the first two passes of [`softmax_row_mapped_f32`]:
/// `pre` is applied to `src` in place while the pass finds its maximum, then each element
/// becomes `e = exp(x - max)` as [`exp_minus_max`] gives it for `how` (exactly 0 where `x -
/// max < how.floor`). Returns `1 / sum(e)` in f64 (the sum in f64 lanes, `how.group` vectors
/// at a time in f32 first), NaN for a row holding a NaN (through its sum) and when the
/// maximum is not finite (a row holding an infinity, or a row whose elements are all `-inf`
/// or that has none: NaN everywhere, as the softmax is), and the row's maximum (of `pre(x)`;
/// see [`RowExp::nan_max`]). With [`SOFTMAX_EXP`], `e * (1 / sum)` is then within about 4
/// ulp of the exact softmax, as [`softmax_row_f32`]'s; with [`ATTENTION_EXP`], within about
/// 4 ulp of 1, the row's sum (see [`RowExp`]).
pub(super) fn softmax_row_unnormalised_f32<'ctx>(
    c: &Ctx<'_, 'ctx>,
    src: PointerValue<'ctx>,
    dst: PointerValue<'ctx>,
    lenv: IntValue<'ctx>,
    pre: Option<&RowMap<'_, 'ctx>>,
    how: RowExp,
) -> Result<(
    inkwell::values::FloatValue<'ctx>,
    inkwell::values::FloatValue<'ctx>,
)> {
    let kb = &c.kb;
    let b = kb.builder();
    let f32t = kb.context().f32_type();
    let f64t = kb.context().f64_type();
    let max = row_max_f32_unordered_zeros(c, src, lenv, pre, how.nan_max)?;
    let neg_max = b.build_float_neg(max, "nm").map_err(kb.err())?;
    let total = sum_f32_terms_in_f64(c, lenv, how.group, |kb, i, mask| {
        let x = kb.load_f32(src, i, mask)?;
        let neg_max = kb.splat(neg_max.into(), "nm")?;
        let mut e = exp_minus_max(kb, x, neg_max, how)?;
        if let Some(mask) = mask {
            e = kb
                .builder()
                .build_select(mask, e, kb.f32_vector().const_zero(), "e")
                .map_err(kb.err())?
                .into_vector_value();
        }
        kb.store_f32(dst, i, e, mask)?;
        Ok(e)
    })?;
    let inv = b
        .build_float_div(f64t.const_float(1.0), total, "inv")
        .map_err(kb.err())?;
    let dm = b.build_float_sub(max, max, "dm").map_err(kb.err())?;
    let finite = b
        .build_float_compare(FloatPredicate::OEQ, dm, f32t.const_zero(), "finite")
        .map_err(kb.err())?;
    let inv = b
        .build_select(finite, inv, f64t.const_float(f64::NAN), "inv")
        .map_err(kb.err())?
        .into_float_value();
    Ok((inv, max))
}
