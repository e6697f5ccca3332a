//! Scalar element arithmetic for the lowered kernels, matching the interpreter's numerics.
//!
//! Elements are loaded into a compute representation: `f32` and `f64` as themselves, every
//! integer type as `i64` (sign-extended, `u8` zero-extended) and `bool` as `i1`; results are
//! wrapped back to their dtype after each integer op, so a fused chain wraps exactly where the
//! interpreter does. `+ - * /`, `sqrt`, comparisons and rounding are computed in the element
//! type (which for `f32` gives the same correctly rounded result as the interpreter's `f64`
//! arithmetic rounded once); transcendental functions are computed in `f64` with the C library
//! and rounded once, as the interpreter does.

use inkwell::module::{Linkage, Module};
use inkwell::types::BasicTypeEnum;
use inkwell::values::{BasicValueEnum, FloatValue, IntValue, PointerValue};
use inkwell::{FloatPredicate, IntPredicate};
use tcc_ir::{BinaryOp, DType, Tensor, TensorData, UnaryOp};

use crate::error::Result;
use crate::kernels::KernelBuilder;

type KB<'a, 'ctx> = KernelBuilder<'a, 'ctx>;

/// The LLVM type elements of `dtype` are stored as.
pub fn storage_type<'ctx>(kb: &KB<'_, 'ctx>, dtype: DType) -> BasicTypeEnum<'ctx> {
    let c = kb.context();
    match dtype {
        DType::F32 => c.f32_type().into(),
        DType::F64 => c.f64_type().into(),
        DType::I64 => c.i64_type().into(),
        DType::I32 => c.i32_type().into(),
        DType::F16 | DType::BF16 => c.i16_type().into(),
        DType::I8 | DType::U8 | DType::Bool => c.i8_type().into(),
    }
}

/// `&base[offset]` for elements of `dtype`.
pub fn element_ptr<'ctx>(
    kb: &KB<'_, 'ctx>,
    dtype: DType,
    base: PointerValue<'ctx>,
    offset: IntValue<'ctx>,
) -> Result<PointerValue<'ctx>> {
    // SAFETY: kernels index within the buffers the plan sized for these shapes.
    unsafe {
        kb.builder()
            .build_in_bounds_gep(storage_type(kb, dtype), base, &[offset], "ep")
            .map_err(kb.err())
    }
}

/// Loads element `offset` of a `dtype` buffer into the compute representation.
pub fn load<'ctx>(
    kb: &KB<'_, 'ctx>,
    dtype: DType,
    base: PointerValue<'ctx>,
    offset: IntValue<'ctx>,
) -> Result<BasicValueEnum<'ctx>> {
    let ptr = element_ptr(kb, dtype, base, offset)?;
    let b = kb.builder();
    let raw = b
        .build_load(storage_type(kb, dtype), ptr, "ld")
        .map_err(kb.err())?;
    let i64t = kb.context().i64_type();
    Ok(match dtype {
        DType::F32 | DType::F64 | DType::I64 | DType::F16 | DType::BF16 => raw,
        DType::I32 | DType::I8 => b
            .build_int_s_extend(raw.into_int_value(), i64t, "sx")
            .map_err(kb.err())?
            .into(),
        DType::U8 => b
            .build_int_z_extend(raw.into_int_value(), i64t, "zx")
            .map_err(kb.err())?
            .into(),
        DType::Bool => b
            .build_int_compare(
                IntPredicate::NE,
                raw.into_int_value(),
                kb.context().i8_type().const_zero(),
                "b",
            )
            .map_err(kb.err())?
            .into(),
    })
}

/// Stores a compute-representation value as element `offset` of a `dtype` buffer.
pub fn store<'ctx>(
    kb: &KB<'_, 'ctx>,
    dtype: DType,
    base: PointerValue<'ctx>,
    offset: IntValue<'ctx>,
    value: BasicValueEnum<'ctx>,
) -> Result<()> {
    let ptr = element_ptr(kb, dtype, base, offset)?;
    let b = kb.builder();
    let value: BasicValueEnum<'ctx> = match dtype {
        DType::F32 | DType::F64 | DType::I64 | DType::F16 | DType::BF16 => value,
        DType::I32 | DType::I8 | DType::U8 => b
            .build_int_truncate(
                value.into_int_value(),
                storage_type(kb, dtype).into_int_type(),
                "tr",
            )
            .map_err(kb.err())?
            .into(),
        DType::Bool => b
            .build_int_z_extend(value.into_int_value(), kb.context().i8_type(), "bz")
            .map_err(kb.err())?
            .into(),
    };
    b.build_store(ptr, value).map_err(kb.err())?;
    Ok(())
}

/// The compute representation of element 0 of a constant.
pub fn constant<'ctx>(kb: &KB<'_, 'ctx>, t: &Tensor) -> BasicValueEnum<'ctx> {
    let c = kb.context();
    match t.data() {
        TensorData::F32(v) => c.f32_type().const_float(f64::from(v[0])).into(),
        TensorData::F64(v) => c.f64_type().const_float(v[0]).into(),
        TensorData::Bool(v) => c.bool_type().const_int(u64::from(v[0]), false).into(),
        d => kb.i64_const(d.to_i64_vec()[0]).into(),
    }
}

/// Zero in the compute representation of `dtype`.
pub fn zero<'ctx>(kb: &KB<'_, 'ctx>, dtype: DType) -> BasicValueEnum<'ctx> {
    let c = kb.context();
    match dtype {
        DType::F32 => c.f32_type().const_zero().into(),
        DType::F64 => c.f64_type().const_zero().into(),
        DType::Bool => c.bool_type().const_zero().into(),
        _ => kb.i64_const(0).into(),
    }
}

/// Declares (once) the C library function `name` of `double` arguments.
fn libm<'ctx>(
    module: &Module<'ctx>,
    kb: &KB<'_, 'ctx>,
    name: &str,
    arity: usize,
) -> inkwell::values::FunctionValue<'ctx> {
    module.get_function(name).unwrap_or_else(|| {
        let f64t = kb.context().f64_type();
        let params = vec![f64t.into(); arity];
        module.add_function(name, f64t.fn_type(&params, false), Some(Linkage::External))
    })
}

/// `f(x)` for a libm function of one `double`, on a float value of any width.
pub fn call_f64<'ctx>(
    m: &Module<'ctx>,
    kb: &KB<'_, 'ctx>,
    name: &str,
    args: &[FloatValue<'ctx>],
) -> Result<FloatValue<'ctx>> {
    let b = kb.builder();
    let f64t = kb.context().f64_type();
    let ty = args[0].get_type();
    let mut wide = Vec::new();
    for a in args {
        wide.push(b.build_float_ext(*a, f64t, "w").map_err(kb.err())?.into());
    }
    let f = libm(m, kb, name, args.len());
    let r = kb.call(f, &wide, name)?.into_float_value();
    if ty == f64t {
        Ok(r)
    } else {
        b.build_float_trunc(r, ty, "n").map_err(kb.err())
    }
}

/// `erf` of an f64, inline and branch-free (every piece computed, the right one selected), so
/// a loop around it vectorises: the algorithm of fdlibm's `s_erf.c` (the one the interpreter's
/// `libm::erf` ports), with its coefficients and its `exp` (fdlibm's `e_exp.c` reduction and
/// polynomial) on the bounded arguments it needs. Within 1 ulp of the true `erf` in f64
/// (checked against a reference over 400k points), so the f32 result is the interpreter's
/// except when the true value lies within about 2^-52 of an f32 rounding boundary.
#[allow(clippy::excessive_precision)] // fdlibm's published digits, checkable against its source
pub fn erf_f64<'ctx>(kb: &KB<'_, 'ctx>, x: FloatValue<'ctx>) -> Result<FloatValue<'ctx>> {
    const ERX: f64 = 8.450_629_115_104_675_292_97e-1;
    const PP: [f64; 5] = [
        1.283_791_670_955_125_585_61e-1,
        -3.250_421_072_470_014_993_70e-1,
        -2.848_174_957_559_851_047_66e-2,
        -5.770_270_296_489_441_591_57e-3,
        -2.376_301_665_665_016_260_84e-5,
    ];
    const QQ: [f64; 6] = [
        1.0,
        3.979_172_239_591_553_528_19e-1,
        6.502_224_998_876_729_444_85e-2,
        5.081_306_281_875_765_627_76e-3,
        1.324_947_380_043_216_445_26e-4,
        -3.960_228_278_775_368_123_20e-6,
    ];
    const PA: [f64; 7] = [
        -2.362_118_560_752_659_440_77e-3,
        4.148_561_186_837_483_316_66e-1,
        -3.722_078_760_357_013_238_47e-1,
        3.183_466_199_011_617_536_74e-1,
        -1.108_946_942_823_966_774_76e-1,
        3.547_830_432_561_823_593_71e-2,
        -2.166_375_594_868_790_843_00e-3,
    ];
    const QA: [f64; 7] = [
        1.0,
        1.064_208_804_008_442_282_86e-1,
        5.403_979_177_021_710_489_37e-1,
        7.182_865_441_419_626_628_68e-2,
        1.261_712_198_087_616_421_12e-1,
        1.363_708_391_202_905_073_62e-2,
        1.198_449_984_679_910_741_70e-2,
    ];
    const RA: [f64; 8] = [
        -9.864_944_034_847_148_227_05e-3,
        -6.938_585_727_071_817_643_72e-1,
        -1.055_862_622_532_329_098_14e1,
        -6.237_533_245_032_600_603_96e1,
        -1.623_966_694_625_734_703_55e2,
        -1.846_050_929_067_110_359_94e2,
        -8.128_743_550_630_659_342_46e1,
        -9.814_329_344_169_145_485_92,
    ];
    const SA: [f64; 9] = [
        1.0,
        1.965_127_166_743_925_712_92e1,
        1.376_577_541_435_190_426_00e2,
        4.345_658_774_752_292_288_21e2,
        6.453_872_717_332_678_803_36e2,
        4.290_081_400_275_678_333_86e2,
        1.086_350_055_417_794_351_34e2,
        6.570_249_770_319_281_701_35,
        -6.042_441_521_485_809_874_38e-2,
    ];
    const RB: [f64; 7] = [
        -9.864_942_924_700_099_285_97e-3,
        -7.992_832_376_805_230_065_74e-1,
        -1.775_795_491_775_475_198_89e1,
        -1.606_363_848_558_219_160_62e2,
        -6.375_664_433_683_896_277_22e2,
        -1.025_095_131_611_077_249_54e3,
        -4.835_191_916_086_513_970_19e2,
    ];
    const SB: [f64; 8] = [
        1.0,
        3.033_806_074_348_245_829_24e1,
        3.257_925_129_965_739_188_26e2,
        1.536_729_586_084_436_959_94e3,
        3.199_858_219_508_595_539_08e3,
        2.553_050_406_433_164_425_83e3,
        4.745_285_412_069_553_672_15e2,
        -2.244_095_244_658_581_833_62e1,
    ];
    let b = kb.builder();
    let e = || kb.err();
    let t = x.get_type();
    let c = |v: f64| t.const_float(v);
    let add = |p: FloatValue<'ctx>, q: FloatValue<'ctx>| b.build_float_add(p, q, "a").map_err(e());
    let sub = |p: FloatValue<'ctx>, q: FloatValue<'ctx>| b.build_float_sub(p, q, "s").map_err(e());
    let mul = |p: FloatValue<'ctx>, q: FloatValue<'ctx>| b.build_float_mul(p, q, "m").map_err(e());
    let div = |p: FloatValue<'ctx>, q: FloatValue<'ctx>| b.build_float_div(p, q, "d").map_err(e());
    // Horner's rule from the highest coefficient, a multiply then an add per step (no FMA),
    // as the reference computes it.
    let horner = |coef: &[f64], v: FloatValue<'ctx>| -> Result<FloatValue<'ctx>> {
        let mut r = c(0.0);
        for &k in coef.iter().rev() {
            r = add(mul(r, v)?, c(k))?;
        }
        Ok(r)
    };
    // Horner's rule with, per lane, the coefficients of `a` where `pick_a` holds, else of
    // `bb` (the shorter padded with leading zeros, which leave the result bit for bit as is:
    // the lanes that use them have a finite argument).
    let horner2 = |pick_a: IntValue<'ctx>,
                   a: &[f64],
                   bb: &[f64],
                   v: FloatValue<'ctx>|
     -> Result<FloatValue<'ctx>> {
        let len = a.len().max(bb.len());
        let mut r = c(0.0);
        for i in (0..len).rev() {
            let ka = c(a.get(i).copied().unwrap_or(0.0));
            let kb_ = c(bb.get(i).copied().unwrap_or(0.0));
            r = add(mul(r, v)?, fsel(kb, pick_a, ka, kb_)?)?;
        }
        Ok(r)
    };
    let lt = |p: FloatValue<'ctx>, v: f64| {
        b.build_float_compare(FloatPredicate::OLT, p, c(v), "lt")
            .map_err(e())
    };
    let i64t = kb.context().i64_type();
    // exp(v) for v in [-40, 2]: v = k ln2 + r, fdlibm's polynomial, times 2^k built from bits.
    let exp = |v: FloatValue<'ctx>| -> Result<FloatValue<'ctx>> {
        let k = intrinsic1(kb, "llvm.roundeven", mul(v, c(std::f64::consts::LOG2_E))?)?;
        let hi = sub(v, mul(k, c(6.931_471_803_691_238_164_90e-1))?)?;
        let lo = mul(k, c(1.908_214_929_270_587_700_02e-10))?;
        let r = sub(hi, lo)?;
        let tt = mul(r, r)?;
        let p = horner(
            &[
                1.666_666_666_666_660_190_37e-1,
                -2.777_777_777_701_559_338_42e-3,
                6.613_756_321_437_934_361_17e-5,
                -1.653_390_220_546_525_153_90e-6,
                4.138_136_797_057_238_460_39e-8,
            ],
            tt,
        )?;
        let cc = sub(r, mul(tt, p)?)?;
        let q = div(mul(r, cc)?, sub(c(2.0), cc)?)?;
        let y = sub(c(1.0), sub(sub(lo, q)?, hi)?)?;
        let ki = b.build_float_to_signed_int(k, i64t, "k").map_err(e())?;
        let bits = b
            .build_int_add(ki, i64t.const_int(1023, false), "kb")
            .map_err(e())?;
        let bits = b
            .build_left_shift(bits, i64t.const_int(52, false), "kb")
            .map_err(e())?;
        let scale = b
            .build_bit_cast(bits, t, "scale")
            .map_err(e())?
            .into_float_value();
        mul(y, scale)
    };
    let ax = intrinsic1(kb, "llvm.fabs", x)?;
    let copysign = kb.intrinsic("llvm.copysign", &[t.into()])?;
    let signed = |v: FloatValue<'ctx>| -> Result<FloatValue<'ctx>> {
        Ok(kb
            .call(copysign, &[v.into(), x.into()], "sgn")?
            .into_float_value())
    };
    // |x| < 0.84375: x + x R(x^2); 0.84375 <= |x| < 1.25: erx + P(s)/Q(s), s = |x| - 1. One
    // rational function, its argument and coefficients chosen per lane.
    let z = mul(x, x)?;
    let s = sub(ax, c(1.0))?;
    let is_small = lt(ax, 0.84375)?;
    let v = fsel(kb, is_small, z, s)?;
    let y = div(
        horner2(is_small, &PP, &PA, v)?,
        horner2(is_small, &QQ, &QA, v)?,
    )?;
    let small = add(x, mul(x, y)?)?;
    let middle = signed(add(c(ERX), y)?)?;
    // 1.25 <= |x| < 6 (computed on |x| clamped to that range, so every lane stays finite):
    // 1 - exp(-z^2 - 0.5625) exp((z - |x|)(z + |x|) + R/S) / |x|, z = |x| with its low 32 bits
    // cleared.
    let maxnum = kb.intrinsic("llvm.maxnum", &[t.into()])?;
    let minnum = kb.intrinsic("llvm.minnum", &[t.into()])?;
    let tx = kb.call(minnum, &[ax.into(), c(6.0).into()], "t")?;
    let tx = kb
        .call(maxnum, &[tx.into(), c(1.25).into()], "t")?
        .into_float_value();
    let s = div(c(1.0), mul(tx, tx)?)?;
    let near = lt(tx, 1.0 / 0.35)?;
    let rs = div(horner2(near, &RA, &RB, s)?, horner2(near, &SA, &SB, s)?)?;
    let bits = b
        .build_bit_cast(tx, i64t, "tb")
        .map_err(e())?
        .into_int_value();
    let bits = b
        .build_and(bits, i64t.const_int(0xffff_ffff_0000_0000, false), "zb")
        .map_err(e())?;
    let zz = b
        .build_bit_cast(bits, t, "z")
        .map_err(e())?
        .into_float_value();
    let e1 = exp(sub(
        b.build_float_neg(mul(zz, zz)?, "nz").map_err(e())?,
        c(0.5625),
    )?)?;
    let e2 = exp(add(mul(sub(zz, tx)?, add(zz, tx)?)?, rs)?)?;
    let tail = signed(sub(c(1.0), div(mul(e1, e2)?, tx)?)?)?;
    let big = signed(c(1.0))?;
    let mut r = fsel(kb, lt(ax, 6.0)?, tail, big)?;
    r = fsel(kb, lt(ax, 1.25)?, middle, r)?;
    r = fsel(kb, is_small, small, r)?;
    let nan = b
        .build_float_compare(FloatPredicate::UNO, x, x, "nan")
        .map_err(e())?;
    fsel(kb, nan, x, r)
}

fn intrinsic1<'ctx>(
    kb: &KB<'_, 'ctx>,
    name: &'static str,
    x: FloatValue<'ctx>,
) -> Result<FloatValue<'ctx>> {
    let f = kb.intrinsic(name, &[x.get_type().into()])?;
    Ok(kb.call(f, &[x.into()], "i")?.into_float_value())
}

fn fsel<'ctx>(
    kb: &KB<'_, 'ctx>,
    c: IntValue<'ctx>,
    a: FloatValue<'ctx>,
    b: FloatValue<'ctx>,
) -> Result<FloatValue<'ctx>> {
    Ok(kb
        .builder()
        .build_select(c, a, b, "s")
        .map_err(kb.err())?
        .into_float_value())
}

fn isel<'ctx>(
    kb: &KB<'_, 'ctx>,
    c: IntValue<'ctx>,
    a: IntValue<'ctx>,
    b: IntValue<'ctx>,
) -> Result<IntValue<'ctx>> {
    Ok(kb
        .builder()
        .build_select(c, a, b, "s")
        .map_err(kb.err())?
        .into_int_value())
}

/// Wraps an `i64` to the range of `dtype`, as storing and reloading would.
pub fn wrap<'ctx>(kb: &KB<'_, 'ctx>, dtype: DType, v: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
    let b = kb.builder();
    let i64t = kb.context().i64_type();
    let narrow = match dtype {
        DType::I32 => kb.context().i32_type(),
        DType::I8 | DType::U8 => kb.context().i8_type(),
        _ => return Ok(v),
    };
    let t = b.build_int_truncate(v, narrow, "w").map_err(kb.err())?;
    if dtype == DType::U8 {
        b.build_int_z_extend(t, i64t, "wz").map_err(kb.err())
    } else {
        b.build_int_s_extend(t, i64t, "ws").map_err(kb.err())
    }
}

/// A unary op on a value of `dtype` (the operand's, which is also the result's except for
/// `isnan`).
pub fn unary<'ctx>(
    m: &Module<'ctx>,
    kb: &KB<'_, 'ctx>,
    op: UnaryOp,
    dtype: DType,
    x: BasicValueEnum<'ctx>,
) -> Result<BasicValueEnum<'ctx>> {
    let b = kb.builder();
    if dtype == DType::Bool {
        let x = x.into_int_value();
        return match op {
            UnaryOp::Not => Ok(b.build_not(x, "not").map_err(kb.err())?.into()),
            UnaryOp::Neg
            | UnaryOp::Abs
            | UnaryOp::Sqrt
            | UnaryOp::Exp
            | UnaryOp::Log
            | UnaryOp::Erf
            | UnaryOp::Tanh
            | UnaryOp::Sigmoid
            | UnaryOp::Relu
            | UnaryOp::Reciprocal
            | UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Round
            | UnaryOp::Sign
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Tan
            | UnaryOp::Asin
            | UnaryOp::Acos
            | UnaryOp::Atan
            | UnaryOp::Sinh
            | UnaryOp::Cosh
            | UnaryOp::Asinh
            | UnaryOp::Acosh
            | UnaryOp::Atanh
            | UnaryOp::IsNaN => Err(kb.internal("a numeric op on bool")),
        };
    }
    if dtype.is_int() {
        let x = x.into_int_value();
        let zero = kb.i64_const(0);
        let r = match op {
            UnaryOp::Neg => b.build_int_neg(x, "neg").map_err(kb.err())?,
            UnaryOp::Abs => {
                let neg = b.build_int_neg(x, "neg").map_err(kb.err())?;
                let lt = b
                    .build_int_compare(IntPredicate::SLT, x, zero, "lt")
                    .map_err(kb.err())?;
                isel(kb, lt, neg, x)?
            }
            UnaryOp::Sign => {
                let gt = b
                    .build_int_compare(IntPredicate::SGT, x, zero, "gt")
                    .map_err(kb.err())?;
                let lt = b
                    .build_int_compare(IntPredicate::SLT, x, zero, "lt")
                    .map_err(kb.err())?;
                let p = isel(kb, gt, kb.i64_const(1), zero)?;
                isel(kb, lt, kb.i64_const(-1), p)?
            }
            UnaryOp::Relu => {
                let lt = b
                    .build_int_compare(IntPredicate::SLT, x, zero, "lt")
                    .map_err(kb.err())?;
                isel(kb, lt, zero, x)?
            }
            UnaryOp::Sqrt
            | UnaryOp::Exp
            | UnaryOp::Log
            | UnaryOp::Erf
            | UnaryOp::Tanh
            | UnaryOp::Sigmoid
            | UnaryOp::Reciprocal
            | UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Round
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Tan
            | UnaryOp::Asin
            | UnaryOp::Acos
            | UnaryOp::Atan
            | UnaryOp::Sinh
            | UnaryOp::Cosh
            | UnaryOp::Asinh
            | UnaryOp::Acosh
            | UnaryOp::Atanh
            | UnaryOp::IsNaN
            | UnaryOp::Not => return Err(kb.internal("a float or bool op on integers")),
        };
        return Ok(wrap(kb, dtype, r)?.into());
    }
    let x = x.into_float_value();
    let ty = x.get_type();
    let zero = ty.const_zero();
    let one = ty.const_float(1.0);
    let r = match op {
        UnaryOp::IsNaN => {
            return Ok(b
                .build_float_compare(FloatPredicate::UNO, x, x, "nan")
                .map_err(kb.err())?
                .into())
        }
        UnaryOp::Neg => b.build_float_neg(x, "neg").map_err(kb.err())?,
        UnaryOp::Abs => intrinsic1(kb, "llvm.fabs", x)?,
        UnaryOp::Sqrt => intrinsic1(kb, "llvm.sqrt", x)?,
        UnaryOp::Floor => intrinsic1(kb, "llvm.floor", x)?,
        UnaryOp::Ceil => intrinsic1(kb, "llvm.ceil", x)?,
        UnaryOp::Round => intrinsic1(kb, "llvm.roundeven", x)?,
        UnaryOp::Relu => {
            let lt = b
                .build_float_compare(FloatPredicate::OLT, x, zero, "lt")
                .map_err(kb.err())?;
            fsel(kb, lt, zero, x)?
        }
        UnaryOp::Sign => {
            let gt = b
                .build_float_compare(FloatPredicate::OGT, x, zero, "gt")
                .map_err(kb.err())?;
            let lt = b
                .build_float_compare(FloatPredicate::OLT, x, zero, "lt")
                .map_err(kb.err())?;
            let p = fsel(kb, gt, one, x)?;
            fsel(kb, lt, ty.const_float(-1.0), p)?
        }
        UnaryOp::Reciprocal => b.build_float_div(one, x, "rcp").map_err(kb.err())?,
        UnaryOp::Sigmoid => {
            let f64t = kb.context().f64_type();
            let w = b.build_float_ext(x, f64t, "w").map_err(kb.err())?;
            let n = b.build_float_neg(w, "n").map_err(kb.err())?;
            let e = call_f64(m, kb, "exp", &[n])?;
            let d = b
                .build_float_add(f64t.const_float(1.0), e, "d")
                .map_err(kb.err())?;
            let r = b
                .build_float_div(f64t.const_float(1.0), d, "sig")
                .map_err(kb.err())?;
            if ty == f64t {
                r
            } else {
                b.build_float_trunc(r, ty, "n").map_err(kb.err())?
            }
        }
        UnaryOp::Not => return Err(kb.internal("`not` on a float")),
        // f32 (and narrower) erf inline, so fused loops around it vectorise; f64 keeps libm's.
        UnaryOp::Erf if ty != kb.context().f64_type() => {
            let f64t = kb.context().f64_type();
            let w = b.build_float_ext(x, f64t, "w").map_err(kb.err())?;
            let e = erf_f64(kb, w)?;
            b.build_float_trunc(e, ty, "erf").map_err(kb.err())?
        }
        // The rest from the C library, in f64.
        UnaryOp::Exp => call_f64(m, kb, "exp", &[x])?,
        UnaryOp::Log => call_f64(m, kb, "log", &[x])?,
        UnaryOp::Erf => call_f64(m, kb, "erf", &[x])?,
        UnaryOp::Tanh => call_f64(m, kb, "tanh", &[x])?,
        UnaryOp::Sin => call_f64(m, kb, "sin", &[x])?,
        UnaryOp::Cos => call_f64(m, kb, "cos", &[x])?,
        UnaryOp::Tan => call_f64(m, kb, "tan", &[x])?,
        UnaryOp::Asin => call_f64(m, kb, "asin", &[x])?,
        UnaryOp::Acos => call_f64(m, kb, "acos", &[x])?,
        UnaryOp::Atan => call_f64(m, kb, "atan", &[x])?,
        UnaryOp::Sinh => call_f64(m, kb, "sinh", &[x])?,
        UnaryOp::Cosh => call_f64(m, kb, "cosh", &[x])?,
        UnaryOp::Asinh => call_f64(m, kb, "asinh", &[x])?,
        UnaryOp::Acosh => call_f64(m, kb, "acosh", &[x])?,
        UnaryOp::Atanh => call_f64(m, kb, "atanh", &[x])?,
    };
    Ok(r.into())
}

/// A binary op on two values of `dtype` (the operands').
pub fn binary<'ctx>(
    m: &Module<'ctx>,
    kb: &KB<'_, 'ctx>,
    op: BinaryOp,
    dtype: DType,
    x: BasicValueEnum<'ctx>,
    y: BasicValueEnum<'ctx>,
) -> Result<BasicValueEnum<'ctx>> {
    let b = kb.builder();
    if dtype == DType::Bool {
        let (x, y) = (x.into_int_value(), y.into_int_value());
        let r = match op {
            BinaryOp::And | BinaryOp::Mul | BinaryOp::Min => b.build_and(x, y, "and"),
            BinaryOp::Or | BinaryOp::Add | BinaryOp::Max => b.build_or(x, y, "or"),
            BinaryOp::Xor => b.build_xor(x, y, "xor"),
            BinaryOp::Equal => b.build_int_compare(IntPredicate::EQ, x, y, "eq"),
            BinaryOp::Less => b.build_int_compare(IntPredicate::ULT, x, y, "lt"),
            BinaryOp::LessEqual => b.build_int_compare(IntPredicate::ULE, x, y, "le"),
            BinaryOp::Greater => b.build_int_compare(IntPredicate::UGT, x, y, "gt"),
            BinaryOp::GreaterEqual => b.build_int_compare(IntPredicate::UGE, x, y, "ge"),
            BinaryOp::Sub | BinaryOp::Div | BinaryOp::Pow | BinaryOp::Mod | BinaryOp::FMod => {
                return Err(kb.internal("an arithmetic op on bool"))
            }
        };
        return Ok(r.map_err(kb.err())?.into());
    }
    if dtype.is_int() {
        let (x, y) = (x.into_int_value(), y.into_int_value());
        let cmp = |p, n| -> Result<BasicValueEnum<'ctx>> {
            Ok(b.build_int_compare(p, x, y, n).map_err(kb.err())?.into())
        };
        let zero = kb.i64_const(0);
        // A zero divisor is replaced by one (the interpreter reports an error; generated code
        // must not trap).
        let safe_y = || -> Result<IntValue<'ctx>> {
            let z = b
                .build_int_compare(IntPredicate::EQ, y, zero, "z")
                .map_err(kb.err())?;
            isel(kb, z, kb.i64_const(1), y)
        };
        let r = match op {
            BinaryOp::Add => b.build_int_add(x, y, "add").map_err(kb.err())?,
            BinaryOp::Sub => b.build_int_sub(x, y, "sub").map_err(kb.err())?,
            BinaryOp::Mul => b.build_int_mul(x, y, "mul").map_err(kb.err())?,
            BinaryOp::Div => b
                .build_int_signed_div(x, safe_y()?, "div")
                .map_err(kb.err())?,
            BinaryOp::FMod => b
                .build_int_signed_rem(x, safe_y()?, "rem")
                .map_err(kb.err())?,
            BinaryOp::Mod => {
                let d = super::dims::DimEmitter::new(
                    b,
                    kb.context()
                        .ptr_type(inkwell::AddressSpace::default())
                        .const_null(),
                    &[],
                    "mod",
                );
                d.floor_mod(x, y)?
            }
            BinaryOp::Min => {
                let lt = b
                    .build_int_compare(IntPredicate::SLT, x, y, "lt")
                    .map_err(kb.err())?;
                isel(kb, lt, x, y)?
            }
            BinaryOp::Max => {
                let gt = b
                    .build_int_compare(IntPredicate::SGT, x, y, "gt")
                    .map_err(kb.err())?;
                isel(kb, gt, x, y)?
            }
            BinaryOp::Pow => return pow(m, kb, dtype, dtype, x.into(), y.into()),
            BinaryOp::Equal => return cmp(IntPredicate::EQ, "eq"),
            BinaryOp::Less => return cmp(IntPredicate::SLT, "lt"),
            BinaryOp::LessEqual => return cmp(IntPredicate::SLE, "le"),
            BinaryOp::Greater => return cmp(IntPredicate::SGT, "gt"),
            BinaryOp::GreaterEqual => return cmp(IntPredicate::SGE, "ge"),
            BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => {
                return Err(kb.internal("a logical op on integers"))
            }
        };
        return Ok(wrap(kb, dtype, r)?.into());
    }
    let (x, y) = (x.into_float_value(), y.into_float_value());
    let cmp = |p, n| -> Result<BasicValueEnum<'ctx>> {
        Ok(b.build_float_compare(p, x, y, n).map_err(kb.err())?.into())
    };
    let r = match op {
        BinaryOp::Add => b.build_float_add(x, y, "add").map_err(kb.err())?,
        BinaryOp::Sub => b.build_float_sub(x, y, "sub").map_err(kb.err())?,
        BinaryOp::Mul => b.build_float_mul(x, y, "mul").map_err(kb.err())?,
        BinaryOp::Div => b.build_float_div(x, y, "div").map_err(kb.err())?,
        BinaryOp::Pow => return pow(m, kb, dtype, dtype, x.into(), y.into()),
        BinaryOp::Min | BinaryOp::Max => {
            let name = if op == BinaryOp::Min {
                "llvm.minimum"
            } else {
                "llvm.maximum"
            };
            let f = kb.intrinsic(name, &[x.get_type().into()])?;
            kb.call(f, &[x.into(), y.into()], "mm")?.into_float_value()
        }
        BinaryOp::FMod => b.build_float_rem(x, y, "frem").map_err(kb.err())?,
        BinaryOp::Mod => {
            let r = b.build_float_rem(x, y, "frem").map_err(kb.err())?;
            let zero = x.get_type().const_zero();
            let nz = b
                .build_float_compare(FloatPredicate::ONE, r, zero, "nz")
                .map_err(kb.err())?;
            let rn = b
                .build_float_compare(FloatPredicate::OLT, r, zero, "rn")
                .map_err(kb.err())?;
            let yn = b
                .build_float_compare(FloatPredicate::OLT, y, zero, "yn")
                .map_err(kb.err())?;
            let differ = b.build_xor(rn, yn, "d").map_err(kb.err())?;
            let adjust = b.build_and(nz, differ, "a").map_err(kb.err())?;
            let plus = b.build_float_add(r, y, "ry").map_err(kb.err())?;
            fsel(kb, adjust, plus, r)?
        }
        BinaryOp::Equal => return cmp(FloatPredicate::OEQ, "eq"),
        BinaryOp::Less => return cmp(FloatPredicate::OLT, "lt"),
        BinaryOp::LessEqual => return cmp(FloatPredicate::OLE, "le"),
        BinaryOp::Greater => return cmp(FloatPredicate::OGT, "gt"),
        BinaryOp::GreaterEqual => return cmp(FloatPredicate::OGE, "ge"),
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => {
            return Err(kb.internal("a logical op on floats"))
        }
    };
    Ok(r.into())
}

/// `x ^ y` for a base of dtype `base` and an exponent of dtype `exp` (any numeric dtype), as
/// the interpreter computes it: integers to a non-negative integer power exactly (wrapping,
/// by square and multiply over the exponent's 32 low bits, the exponent clamped to
/// `u32::MAX`), everything else as `pow` in `f64` rounded once to the base's dtype.
pub fn pow<'ctx>(
    m: &Module<'ctx>,
    kb: &KB<'_, 'ctx>,
    base: DType,
    exp: DType,
    x: BasicValueEnum<'ctx>,
    y: BasicValueEnum<'ctx>,
) -> Result<BasicValueEnum<'ctx>> {
    let b = kb.builder();
    let f64t = kb.context().f64_type();
    let to_f64 = |d: DType, v: BasicValueEnum<'ctx>| -> Result<FloatValue<'ctx>> {
        if d.is_float() {
            let v = v.into_float_value();
            if v.get_type() == f64t {
                Ok(v)
            } else {
                b.build_float_ext(v, f64t, "w").map_err(kb.err())
            }
        } else {
            b.build_signed_int_to_float(v.into_int_value(), f64t, "if")
                .map_err(kb.err())
        }
    };
    let fx = to_f64(base, x)?;
    let fy = to_f64(exp, y)?;
    let p = call_f64(m, kb, "pow", &[fx, fy])?;
    if base.is_float() {
        let ty = x.into_float_value().get_type();
        return Ok(if ty == f64t {
            p.into()
        } else {
            b.build_float_trunc(p, ty, "p").map_err(kb.err())?.into()
        });
    }
    let via_float = wrap(kb, base, float_to_int(kb, p)?)?;
    if exp.is_float() {
        return Ok(via_float.into());
    }
    // Square and multiply: r = x^e for 0 <= e <= u32::MAX, wrapping in i64.
    let (x, y) = (x.into_int_value(), y.into_int_value());
    let limit = kb.i64_const(i64::from(u32::MAX));
    let big = b
        .build_int_compare(IntPredicate::SGT, y, limit, "big")
        .map_err(kb.err())?;
    let e = isel(kb, big, limit, y)?;
    let one = kb.i64_const(1);
    let mut r = one;
    let mut sq = x;
    for bit in 0..32 {
        let shifted = b
            .build_right_shift(e, kb.i64_const(bit), false, "e")
            .map_err(kb.err())?;
        let set = b.build_and(shifted, one, "bit").map_err(kb.err())?;
        let set = b
            .build_int_compare(IntPredicate::NE, set, kb.i64_const(0), "set")
            .map_err(kb.err())?;
        let times = b.build_int_mul(r, sq, "rm").map_err(kb.err())?;
        r = isel(kb, set, times, r)?;
        sq = b.build_int_mul(sq, sq, "sq").map_err(kb.err())?;
    }
    let exact = wrap(kb, base, r)?;
    let negative = b
        .build_int_compare(IntPredicate::SLT, y, kb.i64_const(0), "neg")
        .map_err(kb.err())?;
    Ok(isel(kb, negative, via_float, exact)?.into())
}

/// A float truncated toward zero to `i64`, saturating, NaN to 0 (Rust's `as i64`).
fn float_to_int<'ctx>(kb: &KB<'_, 'ctx>, x: FloatValue<'ctx>) -> Result<IntValue<'ctx>> {
    let b = kb.builder();
    let f64t = kb.context().f64_type();
    let w = if x.get_type() == f64t {
        x
    } else {
        b.build_float_ext(x, f64t, "w").map_err(kb.err())?
    };
    let i64t = kb.context().i64_type();
    let f = kb.intrinsic("llvm.fptosi.sat", &[i64t.into(), f64t.into()])?;
    Ok(kb.call(f, &[w.into()], "fi")?.into_int_value())
}

/// Converts a value of dtype `from` to dtype `to`, as ONNX `Cast` (and the interpreter) does.
pub fn cast<'ctx>(
    kb: &KB<'_, 'ctx>,
    from: DType,
    to: DType,
    x: BasicValueEnum<'ctx>,
) -> Result<BasicValueEnum<'ctx>> {
    let b = kb.builder();
    let c = kb.context();
    let float_type = |d: DType| {
        if d == DType::F64 {
            c.f64_type()
        } else {
            c.f32_type()
        }
    };
    if from == to {
        return Ok(x);
    }
    Ok(match (from, to) {
        (f, t) if f.is_float() && t.is_float() => {
            let x = x.into_float_value();
            let w = b.build_float_ext(x, c.f64_type(), "w").map_err(kb.err())?;
            b.build_float_trunc(w, float_type(t), "t")
                .map_err(kb.err())?
                .into()
        }
        (f, DType::Bool) if f.is_float() => b
            .build_float_compare(
                FloatPredicate::UNE,
                x.into_float_value(),
                x.into_float_value().get_type().const_zero(),
                "nz",
            )
            .map_err(kb.err())?
            .into(),
        (f, t) if f.is_float() => wrap(kb, t, float_to_int(kb, x.into_float_value())?)?.into(),
        (DType::Bool, t) if t.is_float() => b
            .build_unsigned_int_to_float(x.into_int_value(), float_type(t), "bf")
            .map_err(kb.err())?
            .into(),
        (DType::Bool, _) => b
            .build_int_z_extend(x.into_int_value(), c.i64_type(), "bi")
            .map_err(kb.err())?
            .into(),
        (_, t) if t.is_float() => {
            let w = b
                .build_signed_int_to_float(x.into_int_value(), c.f64_type(), "if")
                .map_err(kb.err())?;
            if t == DType::F64 {
                w.into()
            } else {
                b.build_float_trunc(w, float_type(t), "t")
                    .map_err(kb.err())?
                    .into()
            }
        }
        (_, DType::Bool) => b
            .build_int_compare(IntPredicate::NE, x.into_int_value(), kb.i64_const(0), "nz")
            .map_err(kb.err())?
            .into(),
        (_, t) => wrap(kb, t, x.into_int_value())?.into(),
    })
}
