//! Vector math on `f32` vectors of the target's width: `exp`, `erf`, the two GELUs and the
//! GEMM activations, one implementation each, shared by the GEMM epilogue
//! ([`crate::kernels::gemm`]), the softmax rows of the lowered kernels (`exp`) and the fused
//! attention.
//!
//! Every function takes a [`KernelBuilder`] positioned where the value is needed and emits
//! straight-line vector code (no calls, no branches), so it can sit inside a micro-kernel's
//! epilogue or a row loop. The accuracy of each is stated on it and checked against glibc's
//! `f64` functions by `tests/gemm.rs` (`activations_are_accurate_over_their_whole_range`).
//!
//! The scalar `f64` `erf` that fused elementwise loops compute inline
//! ([`crate::lower::scalar::erf_f64`], fdlibm's algorithm, so that the loop's results are the
//! interpreter's) is another function with other numerics, and stays with the scalar element
//! arithmetic.

use inkwell::values::VectorValue;
use inkwell::FloatPredicate;
use tcc_ir::Activation;

use crate::error::Result;
use crate::kernels::KernelBuilder;

/// Applies `activation` to a vector, as the epilogue does:
/// - [`Activation::None`]: the identity;
/// - [`Activation::Relu`]: `max(x, 0)`; NaN stays NaN;
/// - [`Activation::GeluErf`]: `0.5 * x * (1 + erf(x / sqrt 2))`, with `erf` accurate to about
///   2e-7 relative (see [`gelu_erf`]);
/// - [`Activation::GeluTanh`]: `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))`,
///   computed as `x / (1 + exp(-2u))` so that neither tail cancels (see [`gelu_tanh`]).
pub fn apply_activation<'ctx>(
    activation: Activation,
    kb: &KernelBuilder<'_, 'ctx>,
    x: VectorValue<'ctx>,
) -> Result<VectorValue<'ctx>> {
    match activation {
        Activation::None => Ok(x),
        Activation::Relu => {
            let m = Math(kb);
            let negative = m.lt(x, m.c(0.0))?;
            m.select(negative, m.c(0.0), x)
        }
        Activation::GeluErf => gelu_erf(kb, x),
        Activation::GeluTanh => gelu_tanh(kb, x),
    }
}

/// Vector arithmetic shorthands over a [`KernelBuilder`], for the functions of this module.
struct Math<'k, 'a, 'ctx>(&'k KernelBuilder<'a, 'ctx>);

type V<'ctx> = VectorValue<'ctx>;

impl<'ctx> Math<'_, '_, 'ctx> {
    fn c(&self, value: f32) -> V<'ctx> {
        self.0.f32_splat_const(value)
    }
    fn add(&self, a: V<'ctx>, b: V<'ctx>) -> Result<V<'ctx>> {
        self.0
            .builder()
            .build_float_add(a, b, "add")
            .map_err(self.0.err())
    }
    fn sub(&self, a: V<'ctx>, b: V<'ctx>) -> Result<V<'ctx>> {
        self.0
            .builder()
            .build_float_sub(a, b, "sub")
            .map_err(self.0.err())
    }
    fn mul(&self, a: V<'ctx>, b: V<'ctx>) -> Result<V<'ctx>> {
        self.0
            .builder()
            .build_float_mul(a, b, "mul")
            .map_err(self.0.err())
    }
    fn div(&self, a: V<'ctx>, b: V<'ctx>) -> Result<V<'ctx>> {
        self.0
            .builder()
            .build_float_div(a, b, "div")
            .map_err(self.0.err())
    }
    /// `a * b + c`, fused where the target has FMA.
    fn fma(&self, a: V<'ctx>, b: V<'ctx>, c: V<'ctx>) -> Result<V<'ctx>> {
        self.0.mul_add(a, b, c)
    }
    fn lt(&self, a: V<'ctx>, b: V<'ctx>) -> Result<V<'ctx>> {
        self.0
            .builder()
            .build_float_compare(FloatPredicate::OLT, a, b, "lt")
            .map_err(self.0.err())
    }
    fn gt(&self, a: V<'ctx>, b: V<'ctx>) -> Result<V<'ctx>> {
        self.0
            .builder()
            .build_float_compare(FloatPredicate::OGT, a, b, "gt")
            .map_err(self.0.err())
    }
    fn select(&self, mask: V<'ctx>, a: V<'ctx>, b: V<'ctx>) -> Result<V<'ctx>> {
        Ok(self
            .0
            .builder()
            .build_select(mask, a, b, "sel")
            .map_err(self.0.err())?
            .into_vector_value())
    }
    /// `min(a, b)` as `minps` computes it (`b` when either is NaN).
    fn min(&self, a: V<'ctx>, b: V<'ctx>) -> Result<V<'ctx>> {
        self.select(self.lt(a, b)?, a, b)
    }
    /// `max(a, b)` as `maxps` computes it (`b` when either is NaN).
    fn max(&self, a: V<'ctx>, b: V<'ctx>) -> Result<V<'ctx>> {
        self.select(self.gt(a, b)?, a, b)
    }
    fn abs(&self, a: V<'ctx>) -> Result<V<'ctx>> {
        let fabs = self.0.intrinsic("llvm.fabs", &[a.get_type().into()])?;
        Ok(self.0.call(fabs, &[a.into()], "abs")?.into_vector_value())
    }
    /// Horner's scheme: `coefficients[0] + x * (coefficients[1] + x * (...))`.
    fn poly(&self, x: V<'ctx>, coefficients: &[f32]) -> Result<V<'ctx>> {
        let (&highest, rest) = coefficients
            .split_last()
            .ok_or_else(|| self.0.internal("a polynomial needs a coefficient"))?;
        let mut acc = self.c(highest);
        for &c in rest.iter().rev() {
            acc = self.fma(acc, x, self.c(c))?;
        }
        Ok(acc)
    }
}

/// `exp(r)` on `|r| <= ln2 / 2` as a degree-6 polynomial (Horner's scheme, six FMAs): fitted
/// to the relative error with the first two coefficients held at 1 (a Lawson iteration of
/// weighted least squares, then rounded to f32): within 2.1e-9 of `exp` in exact arithmetic,
/// 7.4e-8 (`1.23 * 2^-24`) evaluated in f32 with FMAs, where Cephes' degree-7 polynomial in
/// the form `1 + r + r^2 P(r)`, two operations more, is within 1.2e-7.
const EXP_COEFFICIENTS: [f32; 7] = [
    1.0,
    1.0,
    0.499_999_94,
    0.166_664_29,
    0.041_668_016,
    0.008_374_388,
    0.001_384_338_2,
];

/// `ln` of the smallest normal f32, rounded up: `exp` of anything below is subnormal.
pub const LN_MIN_NORMAL: f32 = -87.336_54;

/// `exp(hi + lo)` for `|lo|` at most a few units, accurate to about 2 ulp where the result is
/// a normal number; `hi` is clamped to `[LN_MIN_NORMAL, 88.3]`, so results saturate at the
/// smallest normal f32 (about `1.2e-38`) and about `2e38` instead of reaching 0 or infinity.
///
/// Cody-Waite reduction `r = hi - n*ln2 + lo` (the split of `ln 2` keeps `n*ln2_hi` exact),
/// then a degree-6 polynomial for `exp(r)` on `|r| <= ln2 / 2` ([`EXP_COEFFICIENTS`]), scaled
/// by `2^n` (`vscalefps` with AVX-512, else built in the exponent bits). Passing a large
/// argument as `hi + lo` keeps its low bits, which a single `f32` would lose (the absolute
/// error of the argument is the relative error of exp).
pub fn exp_split<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    hi: VectorValue<'ctx>,
    lo: Option<VectorValue<'ctx>>,
) -> Result<VectorValue<'ctx>> {
    let m = Math(kb);
    let hi = m.min(m.max(hi, m.c(LN_MIN_NORMAL))?, m.c(88.3))?;
    exp_reduced(kb, hi, lo, true)
}

/// [`exp_split`] for arguments known to be in range: `hi + lo` (or `hi` alone) in
/// `[EXP_IN_RANGE_MIN, 88]` with `|lo|` at most a few units (or NaN, which gives NaN), without
/// the clamps of `hi` and of the exponent (four operations a vector); the result is then a
/// normal number (at least `2^-126 * e^0.33`). Softmax's `exp(x - max)` and erfc's
/// `exp(-z^2 + P(t))` are such.
pub fn exp_split_in_range<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    hi: VectorValue<'ctx>,
    lo: Option<VectorValue<'ctx>>,
) -> Result<VectorValue<'ctx>> {
    exp_reduced(kb, hi, lo, false)
}

/// The least argument [`exp_split_in_range`] takes: `n = round(x log2 e)` is then at least
/// -126, and the reduced argument `x - n ln 2` positive there, so `2^n exp(r)` is normal.
pub const EXP_IN_RANGE_MIN: f32 = -87.0;

/// The reduction and polynomial of [`exp_split`], its exponent clamped to `[-126, 127]` when
/// `clamp_n` (which an argument `hi + lo` out of range needs).
fn exp_reduced<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    hi: VectorValue<'ctx>,
    lo: Option<VectorValue<'ctx>>,
    clamp_n: bool,
) -> Result<VectorValue<'ctx>> {
    let m = Math(kb);
    let bld = kb.builder();
    let x = match lo {
        Some(lo) => m.add(hi, lo)?,
        None => hi,
    };
    // Round x * log2(e) to the nearest integer with the 1.5 * 2^23 trick (no SSE4.1 needed).
    let magic = m.c(12_582_912.0);
    let n = m.sub(m.fma(x, m.c(std::f32::consts::LOG2_E), magic)?, magic)?;
    let n = if clamp_n {
        m.min(m.max(n, m.c(-126.0))?, m.c(127.0))?
    } else {
        n
    };
    let mut r = m.fma(n, m.c(-0.693_359_4), hi)?;
    r = m.fma(n, m.c(2.121_944_4e-4), r)?;
    if let Some(lo) = lo {
        r = m.add(r, lo)?;
    }
    let y = m.poly(r, &EXP_COEFFICIENTS)?;
    if kb.lanes().is_multiple_of(16) && kb.target().has_avx512f() {
        // y * 2^n in one vscalefps a register instead of the four operations below: n is an
        // integer in [-126, 127], so both round the same exact product y * 2^n.
        let scalef = kb.intrinsic("llvm.x86.avx512.mask.scalef.ps.512", &[])?;
        let all = kb.context().i16_type().const_all_ones();
        let current_rounding = kb.context().i32_type().const_int(4, false);
        return by_registers(kb, &[y, n], 16, |parts| {
            Ok(kb
                .call(
                    scalef,
                    &[
                        parts[0].into(),
                        parts[1].into(),
                        parts[0].into(),
                        all.into(),
                        current_rounding.into(),
                    ],
                    "scaled",
                )?
                .into_vector_value())
        });
    }
    let i32_vector = kb.context().i32_type().vec_type(kb.lanes());
    let n = bld
        .build_float_to_signed_int(n, i32_vector, "n")
        .map_err(kb.err())?;
    let biased = bld
        .build_int_add(n, splat_i32(kb, 127), "biased")
        .map_err(kb.err())?;
    let bits = bld
        .build_left_shift(biased, splat_i32(kb, 23), "bits")
        .map_err(kb.err())?;
    let scale = bld
        .build_bit_cast(bits, kb.f32_vector(), "scale")
        .map_err(kb.err())?
        .into_vector_value();
    m.mul(y, scale)
}

/// `2^f` on `0 <= f < 1` as a degree-6 polynomial with its constant held at 1 (so `2^0` is
/// exactly 1), fitted to the relative error as [`EXP_COEFFICIENTS`] are
/// (`scripts/fit_exp2.py`): within 2.0e-9 of `2^f` in exact arithmetic, 6.6e-8
/// (`1.11 * 2^-24`) evaluated in f32 with FMAs.
const EXP2_COEFFICIENTS: [f32; 7] = [
    1.0,
    0.693_147_06,
    0.240_229_31,
    0.055_485_282,
    0.009_675_452_5,
    0.001_246_784,
    0.000_216_129_4,
];

/// Whether [`exp_by_scalef`] can be emitted for `kb`'s vectors: AVX-512F's `vscalefps` and
/// AVX-512DQ's `vreduceps`, on whole 16-lane registers.
pub fn has_exp_by_scalef(kb: &KernelBuilder<'_, '_>) -> bool {
    kb.lanes().is_multiple_of(16) && kb.target().has_avx512f() && kb.target().has_avx512dq()
}

/// `exp(d)` where `keep` is set and 0 elsewhere, on AVX-512 ([`has_exp_by_scalef`]), for kept
/// `d` in `[-87, 88]` (the result is then normal) or NaN (which gives NaN).
///
/// `t = d log2(e)` rounded once, `f = t - floor(t)` in `[0, 1)` exactly (`vreduceps`), `2^f`
/// by [`EXP2_COEFFICIENTS`], scaled by `2^floor(t)` (`vscalefps` takes the floor of `t`
/// itself): two operations a vector besides the polynomial and the scaling, where
/// [`exp_split`]'s reduction takes four, and a dependency chain two operations shorter. The
/// rounding of `t` (and of `log2 e` to f32) moves the argument by up to `1.35 |d| 2^-24`, so
/// the result by as much relative: at most `1.35 * 2^-24 / e_` (`e_` Euler's number) of 1 for
/// `d <= 0`, about the bound of a softmax's shift rounded once; add the polynomial's 1.1 ulp
/// (`tests/gemm.rs` checks `(1.5 |d| + 2) 2^-24` over `[-87, 0]`).
///
/// Where `keep` is clear both instructions are zero-masked: they compute nothing, so a huge
/// or infinite `d` there costs nothing either (an Intel Xeon takes no microcode assist for
/// masked lanes whose results would be subnormal, and a large one per register for kept
/// ones: measured, 54 times slower).
pub fn exp_by_scalef<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    d: VectorValue<'ctx>,
    keep: VectorValue<'ctx>,
) -> Result<VectorValue<'ctx>> {
    let m = Math(kb);
    let t = m.mul(d, m.c(std::f32::consts::LOG2_E))?;
    let zeros = kb.context().f32_type().vec_type(16).const_zero();
    let i16t = kb.context().i16_type();
    let current_rounding = kb.context().i32_type().const_int(4, false);
    let mask_of =
        |keep: VectorValue<'ctx>| -> Result<inkwell::values::BasicMetadataValueEnum<'ctx>> {
            Ok(kb
                .builder()
                .build_bit_cast(keep, i16t, "keep")
                .map_err(kb.err())?
                .into())
        };
    // imm8 9: no fraction bits kept (7:4), rounding down (1:0) from the immediate (2 clear),
    // precision exception suppressed (3).
    let reduce = kb.intrinsic("llvm.x86.avx512.mask.reduce.ps.512", &[])?;
    let floor_fraction = kb.context().i32_type().const_int(9, false);
    let f = by_registers(kb, &[t, keep], 16, |parts| {
        Ok(kb
            .call(
                reduce,
                &[
                    parts[0].into(),
                    floor_fraction.into(),
                    zeros.into(),
                    mask_of(parts[1])?,
                    current_rounding.into(),
                ],
                "fraction",
            )?
            .into_vector_value())
    })?;
    let p = m.poly(f, &EXP2_COEFFICIENTS)?;
    let scalef = kb.intrinsic("llvm.x86.avx512.mask.scalef.ps.512", &[])?;
    by_registers(kb, &[p, t, keep], 16, |parts| {
        Ok(kb
            .call(
                scalef,
                &[
                    parts[0].into(),
                    parts[1].into(),
                    zeros.into(),
                    mask_of(parts[2])?,
                    current_rounding.into(),
                ],
                "scaled",
            )?
            .into_vector_value())
    })
}

/// `f` on each `width`-lane part of the equally long vectors `xs` (whose length is a multiple
/// of `width`), the results joined back into one vector: for an intrinsic of one register's
/// width on a vector of several ([`KernelBuilder::with_lanes`]). The splitting and joining
/// shuffles are register renamings once the wide vector is legalised.
fn by_registers<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    xs: &[VectorValue<'ctx>],
    width: u32,
    f: impl Fn(&[VectorValue<'ctx>]) -> Result<VectorValue<'ctx>>,
) -> Result<VectorValue<'ctx>> {
    let total = xs[0].get_type().get_size();
    if total == width {
        return f(xs);
    }
    let bld = kb.builder();
    let mut joined: Option<VectorValue<'ctx>> = None;
    for start in (0..total).step_by(width as usize) {
        let parts = xs
            .iter()
            .map(|x| kb.lanes_of(*x, start, width))
            .collect::<Result<Vec<_>>>()?;
        let part = f(&parts)?;
        joined = Some(match joined {
            None => part,
            Some(acc) => {
                let w = acc.get_type().get_size();
                // The part widened to the joined vector's width, then both side by side.
                let widened = if w == width {
                    part
                } else {
                    let lanes = (0..w).map(|i| (i < width).then_some(i));
                    bld.build_shuffle_vector(
                        part,
                        part.get_type().get_poison(),
                        kb.shuffle_mask(lanes),
                        "wide",
                    )
                    .map_err(kb.err())?
                };
                let lanes = kb.shuffle_mask((0..w + width).map(Some));
                bld.build_shuffle_vector(acc, widened, lanes, "join")
                    .map_err(kb.err())?
            }
        });
    }
    joined.ok_or_else(|| kb.internal("an empty vector"))
}

fn splat_i32<'ctx>(kb: &KernelBuilder<'_, 'ctx>, value: i32) -> VectorValue<'ctx> {
    let lane = kb.context().i32_type().const_int(value as u64, true);
    inkwell::types::VectorType::const_vector(&vec![lane; kb.lanes() as usize])
}

/// The coefficients of `erf(z) / z` as a polynomial in `z^2` for `|z| < 1`: the Taylor series
/// `2/sqrt(pi) * sum (-1)^j z^(2j) / (j! (2j + 1))`, whose first omitted term is below 1.2e-9.
fn erf_small_coefficients() -> Vec<f32> {
    let mut factorial = 1.0f64;
    (0..12)
        .map(|j| {
            if j > 0 {
                factorial *= f64::from(j);
            }
            let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
            (std::f64::consts::FRAC_2_SQRT_PI * sign / (factorial * f64::from(2 * j + 1))) as f32
        })
        .collect()
}

/// `erfc(az)` for `az >= 0` by Numerical Recipes' `erfcc` (Chebyshev fit, fractional error
/// below 1.2e-7 for every argument): `t * exp(-az^2 + P(t))` with `t = 1 / (1 + az / 2)`.
///
/// `az` is clamped to 9 (erfc(9) = 4e-37). The caller passes `az^2 = scale * (s + e)` (`scale`
/// a power of two), `s` a rounded square and `e` the rest (exact with an FMA, see
/// [`split_square`]), so that the large exponent loses no bits: its absolute error is the
/// result's relative error. Past the clamp `s` is clamped alike and `e` kept, a change of
/// the exponent below 1e-5 where the result stands for erfc(9) anyway.
fn erfc_nonnegative<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    az: VectorValue<'ctx>,
    (s, e): (VectorValue<'ctx>, VectorValue<'ctx>),
    scale: f32,
) -> Result<VectorValue<'ctx>> {
    let m = Math(kb);
    // min(9, v) as `9 < v ? 9 : v`, which keeps a NaN.
    let az = m.min(m.c(9.0), az)?;
    let s = m.min(m.c(81.0 / scale), s)?;
    let t = m.div(m.c(1.0), m.fma(az, m.c(0.5), m.c(1.0))?)?;
    let p = m.poly(
        t,
        &[
            -1.265_512_2,
            1.000_023_7,
            0.374_091_96,
            0.096_784_18,
            -0.186_288_06,
            0.278_868_07,
            -1.135_204,
            1.488_515_9,
            -0.822_152_23,
            0.170_872_77,
        ],
    )?;
    // -az^2 as hi + lo: -scale * s exactly, and P(t) - scale * e rounded once.
    // -z^2 >= -81 and -1.08 < P(t) < 1e-7 for t in [2/11, 1] (P(1) is about 0: erfc(0) = 1),
    // so the sum is in range.
    let hi = m.mul(s, m.c(-scale))?;
    let lo = m.fma(e, m.c(-scale), p)?;
    let exp = exp_split_in_range(kb, hi, Some(lo))?;
    m.mul(t, exp)
}

/// `erf(x)`, vectorised, accurate to about 2e-7 relative: the Taylor polynomial below 1 in
/// magnitude, `1 - erfc(|x|)` with the sign of `x` above.
pub fn erf<'ctx>(kb: &KernelBuilder<'_, 'ctx>, x: VectorValue<'ctx>) -> Result<VectorValue<'ctx>> {
    let m = Math(kb);
    let az = m.abs(x)?;
    let small = m.mul(x, m.poly(m.mul(x, x)?, &erf_small_coefficients())?)?;
    let large = m.sub(
        m.c(1.0),
        erfc_nonnegative(kb, az, split_square(kb, x)?, 1.0)?,
    )?;
    let negative = m.lt(x, m.c(0.0))?;
    let large = m.select(negative, m.sub(m.c(0.0), large)?, large)?;
    m.select(m.lt(az, m.c(1.0))?, small, large)
}

/// `0.5 * x * (1 + erf(x / sqrt 2))`, vectorised. `1 + erf(z)` is computed as `2 - erfc(z)`
/// for `z > 0` and `erfc(-z)` otherwise, one branch-free formula for every `z`: the negative
/// tail keeps its relative accuracy (about 3e-7) instead of cancelling, and near 0 `erfc`'s
/// fractional error (1.2e-7) is that of `1 + erf(z)` too, so no series beside it is needed
/// (its 12-term polynomial and the selection between the two were about 17 operations a
/// vector of a GEMM epilogue).
pub fn gelu_erf<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    x: VectorValue<'ctx>,
) -> Result<VectorValue<'ctx>> {
    let m = Math(kb);
    let z = m.mul(x, m.c(std::f32::consts::FRAC_1_SQRT_2))?;
    let az = m.abs(z)?;
    // z^2 = x^2 / 2 from x itself: the rounding of z = x / sqrt 2 would cost 1.2e-7 * z^2.
    let erfc = erfc_nonnegative(kb, az, split_square(kb, x)?, 0.5)?;
    let one_plus_erf = m.select(m.gt(z, m.c(0.0))?, m.sub(m.c(2.0), erfc)?, erfc)?;
    m.mul(m.mul(x, m.c(0.5))?, one_plus_erf)
}

/// `x * x` as the rounded `s` and the rest `e` (`x * x - s` in one FMA), exact where the
/// target has FMA (`e` is zero otherwise).
fn split_square<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    x: VectorValue<'ctx>,
) -> Result<(VectorValue<'ctx>, VectorValue<'ctx>)> {
    let m = Math(kb);
    let s = m.mul(x, x)?;
    let neg_s = kb.builder().build_float_neg(s, "neg.s").map_err(kb.err())?;
    Ok((s, m.fma(x, x, neg_s)?))
}

/// `0.5 * x * (1 + tanh(u))` with `u = sqrt(2/pi) * (x + 0.044715 x^3)`, vectorised, as the
/// equal `x / (1 + exp(-2u))`.
pub fn gelu_tanh<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    x: VectorValue<'ctx>,
) -> Result<VectorValue<'ctx>> {
    let m = Math(kb);
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let minus_two_u_over_x = m.fma(
        m.mul(x, x)?,
        m.c((-2.0 * c * 0.044715) as f32),
        m.c((-2.0 * c) as f32),
    )?;
    let exp = exp_split(kb, m.mul(x, minus_two_u_over_x)?, None)?;
    m.div(x, m.add(m.c(1.0), exp)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_series_matches_known_values() {
        let c = erf_small_coefficients();
        let erf = |z: f64| {
            z * c
                .iter()
                .rev()
                .fold(0.0, |acc, &c| acc * z * z + f64::from(c))
        };
        // erf(0.5) and erf(1) to 10 digits (Abramowitz and Stegun, table 7.1). Rounding each
        // coefficient to f32 moves the sum by at most 2^-24 * sum |c_j| z^(2j+1) < 1e-7.
        assert!((erf(0.5) - 0.520_499_877_8).abs() < 1e-7);
        assert!((erf(1.0) - 0.842_700_792_9).abs() < 1e-7);
    }
}
