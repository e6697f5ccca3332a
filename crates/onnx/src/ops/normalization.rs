//! Normalisations: `Softmax` and `LogSoftmax` (with the 2-D coercion of
//! opsets before 13), `LayerNormalization` and `RMSNormalization`.
//!
//! `RMSNormalization` expands into several rounding ops and is built through
//! [`Ctx::widened`] (in f32 for f16 and bf16, rounded once: its `stash_type`
//! is f32 too). The others are one core op each (with reshapes around it, or
//! a zero bias), which rounds once, and need nothing.

use super::{reg, Registry};
use crate::context::Ctx;
use crate::error::Result;
use tcc_ir::{BinaryOp, Dim, NodeId, Op, ReduceKind, Tensor, UnaryOp};

/// Registers the normalisations.
pub(crate) fn register(r: &mut Registry) {
    reg(r, "Softmax", 1, |c| softmax(c, false));
    reg(r, "LogSoftmax", 1, |c| softmax(c, true));
    reg(r, "LayerNormalization", 17, layer_norm);
    reg(r, "RMSNormalization", 23, rms_norm);
}

/// `Softmax`/`LogSoftmax`. From opset 13 the op normalises along `axis`
/// (default -1); before, the input is coerced to 2-D at `axis` (default 1)
/// and the op normalises over everything from `axis` on.
fn softmax(c: &mut Ctx, log: bool) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let rank = c.rank(x);
    let make = |axis: usize| {
        if log {
            Op::LogSoftmax { axis }
        } else {
            Op::Softmax { axis }
        }
    };
    if c.opset() >= 13 {
        let axis = c.axis(c.attr_i("axis", -1)?, rank)?;
        return Ok(vec![c.add(make(axis), &[x])?]);
    }
    let axis = c.attr_i("axis", 1)?;
    // The coercion allows axis == rank (an empty inner part).
    let axis = if axis < 0 { axis + rank as i64 } else { axis };
    if axis < 0 || axis > rank as i64 {
        return Err(c.attr_err("axis", format!("{axis} is out of range for rank {rank}")));
    }
    let axis = axis as usize;
    if rank > 0 && axis == rank - 1 {
        // Normalising over the last axis only: no coercion needed.
        return Ok(vec![c.add(make(axis), &[x])?]);
    }
    let dims = c.shape(x);
    let outer = dims[..axis].iter().fold(Dim::constant(1), |a, d| a.mul(d));
    let inner = dims[axis..].iter().fold(Dim::constant(1), |a, d| a.mul(d));
    let flat = c.reshape(x, vec![outer, inner])?;
    let y = c.add(make(1), &[flat])?;
    Ok(vec![c.reshape(y, dims)?])
}

/// `LayerNormalization`: only the first output; a missing bias is zeros.
/// The `Mean` and `InvStdDev` outputs are not computed, and using them is an
/// error.
fn layer_norm(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let (x, scale) = (c.req(0)?, c.req(1)?);
    let axis = c.axis(c.attr_i("axis", -1)?, c.rank(x))?;
    let epsilon = c.attr_f("epsilon", 1e-5)?;
    let bias = match c.input(2) {
        Some(b) => b,
        None => {
            let dt = c.dtype(x);
            let shape = c.ty(scale).shape.as_fixed().unwrap_or_default();
            let n = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
            c.claim_constant("the zero bias", n.unwrap_or(u64::MAX), dt)?;
            c.constant(Tensor::zeros(dt, shape))?
        }
    };
    Ok(vec![
        c.add(Op::LayerNorm { axis, epsilon }, &[x, scale, bias])?
    ])
}

/// `RMSNormalization`: `x / sqrt(mean(x^2 over axis..) + epsilon) * scale`.
fn rms_norm(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let (x, scale) = (c.req(0)?, c.req(1)?);
    let rank = c.rank(x);
    let axis = c.axis(c.attr_i("axis", -1)?, rank)?;
    let epsilon = c.attr_f("epsilon", 1e-5)?;
    Ok(vec![c.widened(&[x, scale], |c, w| {
        let (x, scale) = (w[0], w[1]);
        let sq = c.binary(BinaryOp::Mul, x, x)?;
        let ms = c.add(
            Op::Reduce {
                kind: ReduceKind::Mean,
                axes: (axis..rank).collect(),
                keep_dims: true,
            },
            &[sq],
        )?;
        let v = c.binary_scalar(BinaryOp::Add, ms, epsilon as f64)?;
        let rms = c.unary(UnaryOp::Sqrt, v)?;
        let n = c.binary(BinaryOp::Div, x, rms)?;
        c.binary(BinaryOp::Mul, n, scale)
    })?])
}
