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
        return Ok(b.build_not(x, "not").map_err(kb.err())?.into());
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
            _ => {
                // Relu is the only other op defined on integers.
                let lt = b
                    .build_int_compare(IntPredicate::SLT, x, zero, "lt")
                    .map_err(kb.err())?;
                isel(kb, lt, zero, x)?
            }
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
        other => {
            let name = match other {
                UnaryOp::Exp => "exp",
                UnaryOp::Log => "log",
                UnaryOp::Erf => "erf",
                UnaryOp::Tanh => "tanh",
                UnaryOp::Sin => "sin",
                UnaryOp::Cos => "cos",
                UnaryOp::Tan => "tan",
                UnaryOp::Asin => "asin",
                UnaryOp::Acos => "acos",
                UnaryOp::Atan => "atan",
                UnaryOp::Sinh => "sinh",
                UnaryOp::Cosh => "cosh",
                UnaryOp::Asinh => "asinh",
                UnaryOp::Acosh => "acosh",
                _ => "atanh",
            };
            call_f64(m, kb, name, &[x])?
        }
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
            _ => return Err(kb.internal("an arithmetic op on bool")),
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
            _ => return Err(kb.internal("a logical op on integers")),
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
        _ => return Err(kb.internal("a logical op on floats")),
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
