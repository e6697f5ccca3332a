//! Elementwise ops: arithmetic, comparisons, logic, unary math, `Where`, the
//! variadic `Sum`/`Mean`/`Max`/`Min`, `Clip` and the casts.
//!
//! `Sum` of three or more inputs and `Mean` of two or more round after every
//! step, so they are built through [`Ctx::widened`] (in f32 for f16 and bf16,
//! rounded once). The other lowerings need nothing: `Max`, `Min` and `Clip`
//! never round (and rounding commutes with them, so a bound rounded to the
//! input's type clips alike); `IsInf` only compares; and float `Mod` rounds
//! once, in its final `Add` (`FMod` is exact).

use super::{reg, Registry};
use crate::context::Ctx;
use crate::error::Result;
use tcc_ir::{BinaryOp, DType, NodeId, Op, UnaryOp};

/// Registers the elementwise ops.
pub(crate) fn register(r: &mut Registry) {
    reg(r, "Add", 1, |c| binary(c, BinaryOp::Add));
    reg(r, "Sub", 1, |c| binary(c, BinaryOp::Sub));
    reg(r, "Mul", 1, |c| binary(c, BinaryOp::Mul));
    reg(r, "Div", 1, |c| binary(c, BinaryOp::Div));
    reg(r, "Pow", 1, |c| binary(c, BinaryOp::Pow));
    reg(r, "Equal", 1, |c| binary(c, BinaryOp::Equal));
    reg(r, "Less", 1, |c| binary(c, BinaryOp::Less));
    reg(r, "LessOrEqual", 12, |c| binary(c, BinaryOp::LessEqual));
    reg(r, "Greater", 1, |c| binary(c, BinaryOp::Greater));
    reg(r, "GreaterOrEqual", 12, |c| {
        binary(c, BinaryOp::GreaterEqual)
    });
    reg(r, "And", 1, |c| binary(c, BinaryOp::And));
    reg(r, "Or", 1, |c| binary(c, BinaryOp::Or));
    reg(r, "Xor", 1, |c| binary(c, BinaryOp::Xor));
    reg(r, "Mod", 10, modulo);

    reg(r, "Not", 1, |c| unary(c, UnaryOp::Not));
    reg(r, "Neg", 1, |c| unary(c, UnaryOp::Neg));
    reg(r, "Abs", 1, |c| unary(c, UnaryOp::Abs));
    reg(r, "Sqrt", 1, |c| unary(c, UnaryOp::Sqrt));
    reg(r, "Exp", 1, |c| unary(c, UnaryOp::Exp));
    reg(r, "Log", 1, |c| unary(c, UnaryOp::Log));
    reg(r, "Erf", 9, |c| unary(c, UnaryOp::Erf));
    reg(r, "Tanh", 1, |c| unary(c, UnaryOp::Tanh));
    reg(r, "Sigmoid", 1, |c| unary(c, UnaryOp::Sigmoid));
    reg(r, "Relu", 1, |c| unary(c, UnaryOp::Relu));
    reg(r, "Reciprocal", 1, |c| unary(c, UnaryOp::Reciprocal));
    reg(r, "Floor", 1, |c| unary(c, UnaryOp::Floor));
    reg(r, "Ceil", 1, |c| unary(c, UnaryOp::Ceil));
    reg(r, "Round", 11, |c| unary(c, UnaryOp::Round));
    reg(r, "Sign", 9, |c| unary(c, UnaryOp::Sign));
    reg(r, "Sin", 7, |c| unary(c, UnaryOp::Sin));
    reg(r, "Cos", 7, |c| unary(c, UnaryOp::Cos));
    reg(r, "Tan", 7, |c| unary(c, UnaryOp::Tan));
    reg(r, "Asin", 7, |c| unary(c, UnaryOp::Asin));
    reg(r, "Acos", 7, |c| unary(c, UnaryOp::Acos));
    reg(r, "Atan", 7, |c| unary(c, UnaryOp::Atan));
    reg(r, "Sinh", 9, |c| unary(c, UnaryOp::Sinh));
    reg(r, "Cosh", 9, |c| unary(c, UnaryOp::Cosh));
    reg(r, "Asinh", 9, |c| unary(c, UnaryOp::Asinh));
    reg(r, "Acosh", 9, |c| unary(c, UnaryOp::Acosh));
    reg(r, "Atanh", 9, |c| unary(c, UnaryOp::Atanh));
    reg(r, "IsNaN", 9, |c| unary(c, UnaryOp::IsNaN));
    reg(r, "IsInf", 10, is_inf);

    reg(r, "Where", 9, |c| {
        let (cond, a, b) = (c.req(0)?, c.req(1)?, c.req(2)?);
        Ok(vec![c.add(Op::Where, &[cond, a, b])?])
    });
    reg(r, "Sum", 1, |c| variadic(c, BinaryOp::Add));
    reg(r, "Max", 1, |c| variadic(c, BinaryOp::Max));
    reg(r, "Min", 1, |c| variadic(c, BinaryOp::Min));
    reg(r, "Mean", 1, mean);
    reg(r, "Clip", 1, clip);
    reg(r, "Cast", 1, cast);
    reg(r, "CastLike", 15, |c| {
        let (x, like) = (c.req(0)?, c.req(1)?);
        let to = c.dtype(like);
        Ok(vec![c.cast(x, to)?])
    });
}

fn unary(c: &mut Ctx, op: UnaryOp) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    Ok(vec![c.unary(op, x)?])
}

fn binary(c: &mut Ctx, op: BinaryOp) -> Result<Vec<NodeId>> {
    if c.has_attr("broadcast") && c.opset() < 7 {
        return Err(c.attr_err("broadcast", "legacy broadcasting is not supported"));
    }
    let (a, b) = (c.req(0)?, c.req(1)?);
    Ok(vec![c.binary(op, a, b)?])
}

/// `Mod`: Python's `%` (the sign of the divisor) with `fmod = 0`, C's `fmod`
/// (the sign of the dividend) with `fmod = 1`. For floats with `fmod = 0`
/// (allowed from opset 28) the remainder is `fmod` corrected by the divisor
/// where the signs differ.
fn modulo(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let fmod = c.attr_bool("fmod", false)?;
    let (a, b) = (c.req(0)?, c.req(1)?);
    if fmod {
        return Ok(vec![c.binary(BinaryOp::FMod, a, b)?]);
    }
    if !c.dtype(a).is_float() {
        return Ok(vec![c.binary(BinaryOp::Mod, a, b)?]);
    }
    let r = c.binary(BinaryOp::FMod, a, b)?;
    let r_neg = c.binary_scalar(BinaryOp::Less, r, 0.0)?;
    let b_neg = c.binary_scalar(BinaryOp::Less, b, 0.0)?;
    let differ = c.binary(BinaryOp::Xor, r_neg, b_neg)?;
    let zero = c.binary_scalar(BinaryOp::Equal, r, 0.0)?;
    let nonzero = c.unary(UnaryOp::Not, zero)?;
    let fix = c.binary(BinaryOp::And, differ, nonzero)?;
    let shifted = c.binary(BinaryOp::Add, r, b)?;
    Ok(vec![c.add(Op::Where, &[fix, shifted, r])?])
}

/// `IsInf`: `x == +inf` and/or `x == -inf`, as the attributes select.
fn is_inf(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let pos = c.attr_bool("detect_positive", true)?;
    let neg = c.attr_bool("detect_negative", true)?;
    let p = c.binary_scalar(BinaryOp::Equal, x, f64::INFINITY)?;
    let n = c.binary_scalar(BinaryOp::Equal, x, f64::NEG_INFINITY)?;
    Ok(vec![match (pos, neg) {
        (true, true) => c.binary(BinaryOp::Or, p, n)?,
        (true, false) => p,
        (false, true) => n,
        (false, false) => {
            let f = c.scalar(0.0, DType::Bool)?;
            c.binary(BinaryOp::And, p, f)?
        }
    }])
}

/// The present inputs; fails if there are none.
fn present_inputs(c: &Ctx) -> Result<Vec<NodeId>> {
    let ins: Vec<NodeId> = (0..c.n_inputs()).filter_map(|i| c.input(i)).collect();
    if ins.is_empty() {
        return Err(c.err("needs at least one input"));
    }
    Ok(ins)
}

/// Folds `ins` (not empty) with `op`, left to right.
fn fold(c: &mut Ctx, op: BinaryOp, ins: &[NodeId]) -> Result<NodeId> {
    let (&first, rest) = ins
        .split_first()
        .ok_or_else(|| c.err("needs at least one input"))?;
    let mut acc = first;
    for &x in rest {
        acc = c.binary(op, acc, x)?;
    }
    // A single input still broadcasts to nothing but itself: the result is it.
    Ok(acc)
}

/// `Max` and `Min` (exact); `Sum`, in f32 for f16 and bf16 when it adds more
/// than once.
fn variadic(c: &mut Ctx, op: BinaryOp) -> Result<Vec<NodeId>> {
    let ins = present_inputs(c)?;
    if op != BinaryOp::Add || ins.len() < 3 {
        return Ok(vec![fold(c, op, &ins)?]);
    }
    Ok(vec![c.widened(&ins, |c, w| fold(c, op, w))?])
}

/// `Mean`: the sum divided by the number of inputs.
fn mean(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let ins = present_inputs(c)?;
    if ins.len() == 1 {
        return Ok(ins);
    }
    Ok(vec![c.widened(&ins, |c, w| {
        let s = fold(c, BinaryOp::Add, w)?;
        c.binary_scalar(BinaryOp::Div, s, w.len() as f64)
    })?])
}

/// `Clip`: `min(max(x, lo), hi)`, with bounds from inputs (opset 11) or
/// attributes (before); an absent bound does not clip.
fn clip(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let mut y = c.req(0)?;
    if c.opset() >= 11 {
        if let Some(lo) = c.input(1) {
            y = c.binary(BinaryOp::Max, y, lo)?;
        }
        if let Some(hi) = c.input(2) {
            y = c.binary(BinaryOp::Min, y, hi)?;
        }
    } else {
        if let Some(lo) = c.attr_opt_f("min")? {
            y = c.binary_scalar(BinaryOp::Max, y, lo as f64)?;
        }
        if let Some(hi) = c.attr_opt_f("max")? {
            y = c.binary_scalar(BinaryOp::Min, y, hi as f64)?;
        }
    }
    Ok(vec![y])
}

fn cast(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let to = c
        .attr_dtype("to")?
        .ok_or_else(|| c.attr_err("to", "is required"))?;
    Ok(vec![c.cast(x, to)?])
}
