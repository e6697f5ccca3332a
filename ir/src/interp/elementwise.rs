//! Elementwise ops: unary, binary (numpy broadcasting) and `Where`.
//!
//! Floats compute in f64 and round back to the element type once, which for
//! `+ - * /` and `sqrt` on f32 gives the correctly rounded f32 result. Integers
//! compute in i64 and wrap to the element type, which is the same as wrapping
//! arithmetic in that type. Integer division truncates toward zero, `Mod` takes
//! the divisor's sign and `FMod` the dividend's; a zero divisor is an error.

use super::{broadcast_rows, broadcast_shapes, same, tensor, OpResult};
use crate::dtype::DType;
use crate::op::{BinaryOp, UnaryOp};
use crate::tensor::{Element, Tensor, TensorData};
use crate::with_data;

/// Applies `f` to the broadcast pairs of `a` (shape `ash`) and `b` (shape
/// `bsh`), in row-major order of `out`.
fn zip2<A: Copy, B: Copy, O>(
    a: &[A],
    ash: &[usize],
    b: &[B],
    bsh: &[usize],
    out: &[usize],
    mut f: impl FnMut(A, B) -> O,
) -> Vec<O> {
    if ash == out && bsh == out {
        return a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect();
    }
    let mut v = Vec::with_capacity(out.iter().product());
    broadcast_rows(out, [ash, bsh], |[oa, ob], [sa, sb], n| {
        for j in 0..n {
            v.push(f(a[oa + j * sa], b[ob + j * sb]));
        }
    });
    v
}

fn map<T: Element>(v: &[T], f: fn(f64) -> f64) -> TensorData {
    T::wrap(v.iter().map(|&x| T::from_f64(f(x.to_f64()))).collect())
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn relu(x: f64) -> f64 {
    // NaN stays NaN, as `x < 0` is false for it.
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

fn sign(x: f64) -> f64 {
    // Zero (of either sign) and NaN are their own sign.
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

fn float_fn(u: UnaryOp) -> Option<fn(f64) -> f64> {
    Some(match u {
        UnaryOp::Neg => |x: f64| -x,
        UnaryOp::Abs => f64::abs,
        UnaryOp::Sqrt => f64::sqrt,
        UnaryOp::Exp => f64::exp,
        UnaryOp::Log => f64::ln,
        UnaryOp::Erf => libm::erf,
        UnaryOp::Tanh => f64::tanh,
        UnaryOp::Sigmoid => sigmoid,
        UnaryOp::Relu => relu,
        UnaryOp::Reciprocal => |x: f64| 1.0 / x,
        UnaryOp::Floor => f64::floor,
        UnaryOp::Ceil => f64::ceil,
        UnaryOp::Round => f64::round_ties_even,
        UnaryOp::Sign => sign,
        UnaryOp::Sin => f64::sin,
        UnaryOp::Cos => f64::cos,
        UnaryOp::Tan => f64::tan,
        UnaryOp::Asin => f64::asin,
        UnaryOp::Acos => f64::acos,
        UnaryOp::Atan => f64::atan,
        UnaryOp::Sinh => f64::sinh,
        UnaryOp::Cosh => f64::cosh,
        UnaryOp::Asinh => f64::asinh,
        UnaryOp::Acosh => f64::acosh,
        UnaryOp::Atanh => f64::atanh,
        UnaryOp::Not | UnaryOp::IsNaN => return None,
    })
}

fn int_unary<T: Element>(u: UnaryOp, v: &[T]) -> OpResult<TensorData> {
    let f: fn(i64) -> i64 = match u {
        UnaryOp::Neg => i64::wrapping_neg,
        UnaryOp::Abs => i64::wrapping_abs,
        UnaryOp::Sign => i64::signum,
        UnaryOp::Relu => |x: i64| x.max(0),
        _ => return Err(format!("is not defined on {}", T::DTYPE)),
    };
    Ok(T::wrap(
        v.iter().map(|&x| T::from_i64(f(x.to_i64()))).collect(),
    ))
}

/// Evaluates a unary op.
pub(super) fn unary(u: UnaryOp, x: &Tensor) -> OpResult<Tensor> {
    let d = x.data();
    let data = match (u, d) {
        (UnaryOp::Not, TensorData::Bool(v)) => TensorData::Bool(v.iter().map(|b| !b).collect()),
        (UnaryOp::Not, _) => return Err(format!("needs bool, got {}", d.dtype())),
        (UnaryOp::IsNaN, TensorData::F32(v)) => {
            TensorData::Bool(v.iter().map(|x| x.is_nan()).collect())
        }
        (UnaryOp::IsNaN, TensorData::F64(v)) => {
            TensorData::Bool(v.iter().map(|x| x.is_nan()).collect())
        }
        (UnaryOp::IsNaN, TensorData::F16(v)) => {
            TensorData::Bool(v.iter().map(|x| x.is_nan()).collect())
        }
        (UnaryOp::IsNaN, TensorData::BF16(v)) => {
            TensorData::Bool(v.iter().map(|x| x.is_nan()).collect())
        }
        (UnaryOp::IsNaN, _) => return Err(format!("is defined on floats, got {}", d.dtype())),
        (_, TensorData::F32(v)) => map(v, float_fn(u).ok_or("no float function")?),
        (_, TensorData::F64(v)) => map(v, float_fn(u).ok_or("no float function")?),
        (_, TensorData::F16(v)) => map(v, float_fn(u).ok_or("no float function")?),
        (_, TensorData::BF16(v)) => map(v, float_fn(u).ok_or("no float function")?),
        (_, TensorData::I64(v)) => int_unary(u, v)?,
        (_, TensorData::I32(v)) => int_unary(u, v)?,
        (_, TensorData::I8(v)) => int_unary(u, v)?,
        (_, TensorData::U8(v)) => int_unary(u, v)?,
        (_, TensorData::Bool(_)) => return Err("is not defined on bool".into()),
    };
    tensor(x.shape().to_vec(), data)
}

/// `min`/`max` that propagate NaN.
fn fmin(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn fmax(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Python's `%` on floats: the remainder takes the divisor's sign.
fn float_mod(a: f64, b: f64) -> f64 {
    let r = a % b;
    if r != 0.0 && (r < 0.0) != (b < 0.0) {
        r + b
    } else {
        r
    }
}

fn cmp(b: BinaryOp, o: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    match b {
        BinaryOp::Equal => o == Some(Equal),
        BinaryOp::Less => o == Some(Less),
        BinaryOp::LessEqual => matches!(o, Some(Less | Equal)),
        BinaryOp::Greater => o == Some(Greater),
        _ => matches!(o, Some(Greater | Equal)),
    }
}

struct Operands<'a, T> {
    a: &'a [T],
    ash: &'a [usize],
    b: &'a [T],
    bsh: &'a [usize],
    out: &'a [usize],
}

impl<T: Copy> Operands<'_, T> {
    fn zip<O>(&self, f: impl FnMut(T, T) -> O) -> Vec<O> {
        zip2(self.a, self.ash, self.b, self.bsh, self.out, f)
    }
}

fn float_binary<T: Element>(op: BinaryOp, x: &Operands<'_, T>) -> OpResult<TensorData> {
    if op.is_comparison() {
        return Ok(TensorData::Bool(
            x.zip(|p, q| cmp(op, p.to_f64().partial_cmp(&q.to_f64()))),
        ));
    }
    let f: fn(f64, f64) -> f64 = match op {
        BinaryOp::Add => |p, q| p + q,
        BinaryOp::Sub => |p, q| p - q,
        BinaryOp::Mul => |p, q| p * q,
        BinaryOp::Div => |p, q| p / q,
        BinaryOp::Min => fmin,
        BinaryOp::Max => fmax,
        BinaryOp::Mod => float_mod,
        BinaryOp::FMod => |p, q| p % q,
        _ => return Err(format!("is not defined on {}", T::DTYPE)),
    };
    Ok(T::wrap(
        x.zip(|p, q| T::from_f64(f(p.to_f64(), q.to_f64()))),
    ))
}

fn int_binary<T: Element>(op: BinaryOp, x: &Operands<'_, T>) -> OpResult<TensorData> {
    if op.is_comparison() {
        return Ok(TensorData::Bool(
            x.zip(|p, q| cmp(op, Some(p.to_i64().cmp(&q.to_i64())))),
        ));
    }
    let f: fn(i64, i64) -> Option<i64> = match op {
        BinaryOp::Add => |p, q| Some(p.wrapping_add(q)),
        BinaryOp::Sub => |p, q| Some(p.wrapping_sub(q)),
        BinaryOp::Mul => |p, q| Some(p.wrapping_mul(q)),
        BinaryOp::Div => |p, q| (q != 0).then(|| p.wrapping_div(q)),
        BinaryOp::Min => |p, q| Some(p.min(q)),
        BinaryOp::Max => |p, q| Some(p.max(q)),
        BinaryOp::Mod => |p, q| {
            (q != 0).then(|| {
                let r = p.wrapping_rem(q);
                if r != 0 && (r < 0) != (q < 0) {
                    r + q
                } else {
                    r
                }
            })
        },
        BinaryOp::FMod => |p, q| (q != 0).then(|| p.wrapping_rem(q)),
        _ => return Err(format!("is not defined on {}", T::DTYPE)),
    };
    let mut zero = false;
    let v = x.zip(|p, q| match f(p.to_i64(), q.to_i64()) {
        Some(r) => T::from_i64(r),
        None => {
            zero = true;
            T::from_i64(0)
        }
    });
    if zero {
        return Err("integer division by zero".into());
    }
    Ok(T::wrap(v))
}

fn bool_binary(op: BinaryOp, x: &Operands<'_, bool>) -> OpResult<TensorData> {
    let f: fn(bool, bool) -> bool = match op {
        BinaryOp::And => |p, q| p && q,
        BinaryOp::Or => |p, q| p || q,
        BinaryOp::Xor => |p, q| p != q,
        BinaryOp::Equal => |p, q| p == q,
        _ => return Err("is not defined on bool".into()),
    };
    Ok(TensorData::Bool(x.zip(f)))
}

/// `a ^ b`: the base's dtype is the result's; the exponent may be of any
/// numeric dtype. Integer powers with a non-negative integer exponent are
/// exact (wrapping); everything else goes through f64.
fn pow(a: &Tensor, b: &Tensor, out: &[usize]) -> OpResult<TensorData> {
    if !a.dtype().is_numeric() || !b.dtype().is_numeric() {
        return Err(format!(
            "needs numeric operands, got {} and {}",
            a.dtype(),
            b.dtype()
        ));
    }
    let (ash, bsh) = (a.shape(), b.shape());
    if a.dtype().is_int() && b.dtype().is_int() {
        let e = b.data().to_i64_vec();
        return Ok(with_data!(a.data(), av => Element::wrap(int_pow(av, ash, &e, bsh, out))));
    }
    let e = b.data().to_f64_vec();
    Ok(with_data!(a.data(), av => Element::wrap(float_pow(av, ash, &e, bsh, out))))
}

fn int_pow<T: Element>(a: &[T], ash: &[usize], e: &[i64], esh: &[usize], out: &[usize]) -> Vec<T> {
    zip2(a, ash, e, esh, out, |p, q| {
        let p = p.to_i64();
        if q >= 0 {
            T::from_i64(p.wrapping_pow(q.min(u32::MAX as i64) as u32))
        } else {
            T::from_f64((p as f64).powf(q as f64))
        }
    })
}

fn float_pow<T: Element>(
    a: &[T],
    ash: &[usize],
    e: &[f64],
    esh: &[usize],
    out: &[usize],
) -> Vec<T> {
    zip2(a, ash, e, esh, out, |p, q| T::from_f64(p.to_f64().powf(q)))
}

/// Evaluates a binary op with numpy broadcasting.
pub(super) fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    let out = broadcast_shapes(&[a.shape(), b.shape()])?;
    if op == BinaryOp::Pow {
        let data = pow(a, b, &out)?;
        return tensor(out, data);
    }
    if a.dtype() != b.dtype() {
        return Err(format!(
            "operand dtypes differ: {} and {}",
            a.dtype(),
            b.dtype()
        ));
    }
    if op.is_logical() && a.dtype() != DType::Bool {
        return Err(format!("needs bool operands, got {}", a.dtype()));
    }
    let (ash, bsh) = (a.shape(), b.shape());
    let data = with_data!(a.data(), av => {
        let bv = same(av, b.data()).ok_or("operand dtypes differ")?;
        let x = Operands { a: av, ash, b: bv, bsh, out: &out };
        dispatch_binary(op, &x)?
    });
    tensor(out, data)
}

/// Picks the float, integer or bool implementation by the element type.
fn dispatch_binary<T: Element>(op: BinaryOp, x: &Operands<'_, T>) -> OpResult<TensorData> {
    match T::DTYPE {
        d if d.is_float() => float_binary(op, x),
        d if d.is_int() => int_binary(op, x),
        _ => {
            // The element type is bool: convert through i64 to reach it.
            let a: Vec<bool> = x.a.iter().map(|v| v.to_i64() != 0).collect();
            let b: Vec<bool> = x.b.iter().map(|v| v.to_i64() != 0).collect();
            let y = Operands {
                a: &a,
                ash: x.ash,
                b: &b,
                bsh: x.bsh,
                out: x.out,
            };
            bool_binary(op, &y)
        }
    }
}

/// `where(cond, a, b)`, broadcast over all three.
pub(super) fn select(c: &Tensor, a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    let cv = c
        .as_slice::<bool>()
        .ok_or_else(|| format!("condition must be bool, got {}", c.dtype()))?;
    if a.dtype() != b.dtype() {
        return Err(format!(
            "branch dtypes differ: {} and {}",
            a.dtype(),
            b.dtype()
        ));
    }
    let out = broadcast_shapes(&[c.shape(), a.shape(), b.shape()])?;
    let data = with_data!(a.data(), av => {
        let bv = same(av, b.data()).ok_or("branch dtypes differ")?;
        let mut v = Vec::with_capacity(out.iter().product());
        broadcast_rows(&out, [c.shape(), a.shape(), b.shape()], |[oc, oa, ob], [sc, sa, sb], n| {
            for j in 0..n {
                v.push(if cv[oc + j * sc] { av[oa + j * sa] } else { bv[ob + j * sb] });
            }
        });
        Element::wrap(v)
    });
    tensor(out, data)
}
