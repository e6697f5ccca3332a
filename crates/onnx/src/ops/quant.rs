//! Quantisation ops, lowered to core ops by their ONNX definitions:
//! `DequantizeLinear`, `QuantizeLinear`, `DynamicQuantizeLinear` and
//! `MatMulInteger`.
//!
//! `DequantizeLinear` and `QuantizeLinear` are built through
//! [`Ctx::widened`]: with an f16 or bf16 scale they compute in f32 and round
//! once (a 16-bit quotient would be rounded before `Round`, and an i32 input
//! would be rounded on its cast to 16 bits). `DynamicQuantizeLinear` takes f32
//! only and `MatMulInteger` integers only, so they need nothing.

use super::{reg, Registry};
use crate::context::Ctx;
use crate::error::Result;
use crate::import::Int8MatMul;
use tcc_ir::{BinaryOp, DType, Dim, NodeId, Op, ReduceKind, UnaryOp};

/// Registers the quantisation ops.
pub(crate) fn register(r: &mut Registry) {
    reg(r, "DequantizeLinear", 10, dequantize_linear);
    reg(r, "QuantizeLinear", 10, quantize_linear);
    reg(r, "DynamicQuantizeLinear", 11, dynamic_quantize_linear);
    reg(r, "MatMulInteger", 10, matmul_integer);
}

/// True if `id` is a constant whose elements are all zero.
fn is_zero_const(c: &Ctx, id: NodeId) -> bool {
    c.graph()
        .const_value(id)
        .is_some_and(|t| t.data().to_f64_vec().iter().all(|&v| v == 0.0))
}

/// Rejects the blocked quantisation of opset 21.
fn no_blocks(c: &Ctx) -> Result<()> {
    match c.attr_i("block_size", 0)? {
        0 => Ok(()),
        b => Err(c.attr_err(
            "block_size",
            format!("blocked quantisation ({b}) is not supported"),
        )),
    }
}

/// Reshapes a scale or zero point so that it broadcasts against `x`: a
/// scalar (or one element) stays a scalar; a 1-D tensor is per axis `axis`
/// of `x` and gets trailing axes of 1.
fn per_axis(c: &mut Ctx, p: NodeId, x: NodeId, axis: i64, what: &str) -> Result<NodeId> {
    let ps = c.shape(p);
    if ps.iter().all(|d| d.is(1)) {
        return c.reshape(p, vec![]);
    }
    let rank = c.rank(x);
    if ps.len() != 1 {
        return Err(c.err(format!(
            "{what} must be a scalar or 1-D (per axis), got {}",
            c.ty(p)
        )));
    }
    let axis = c.axis(axis, rank)?;
    let xd = &c.shape(x)[axis];
    if let (Some(a), Some(b)) = (ps[0].as_const(), xd.as_const()) {
        if a != b {
            return Err(c.err(format!(
                "{what} has {a} elements but axis {axis} of the input has {b}"
            )));
        }
    }
    let mut dims = vec![ps[0].clone()];
    dims.extend(std::iter::repeat_n(Dim::constant(1), rank - axis - 1));
    c.reshape(p, dims)
}

/// `DequantizeLinear`: `(cast(x) - cast(zero_point)) * scale`, per tensor or
/// per axis; the result has the scale's dtype.
fn dequantize_linear(c: &mut Ctx) -> Result<Vec<NodeId>> {
    no_blocks(c)?;
    let (x, scale) = (c.req(0)?, c.req(1)?);
    let axis = c.attr_i("axis", 1)?;
    let f = c.dtype(scale);
    if !f.is_float() {
        return Err(c.err(format!("the scale must be a float, got {}", c.ty(scale))));
    }
    let s = per_axis(c, scale, x, axis, "the scale")?;
    Ok(vec![c.widened(&[s], |c, w| {
        let (s, f) = (w[0], c.dtype(w[0]));
        let mut y = c.cast(x, f)?;
        if let Some(zp) = c.input(2) {
            if !is_zero_const(c, zp) {
                let z = per_axis(c, zp, x, axis, "the zero point")?;
                let zf = c.cast(z, f)?;
                y = c.binary(BinaryOp::Sub, y, zf)?;
            }
        }
        c.binary(BinaryOp::Mul, y, s)
    })?])
}

/// The range of a quantised dtype.
fn q_range(c: &Ctx, dt: DType) -> Result<(f64, f64)> {
    match dt {
        DType::U8 => Ok((0.0, 255.0)),
        DType::I8 => Ok((-128.0, 127.0)),
        other => Err(c.err(format!(
            "quantising to {other} is not supported (only i8 and u8)"
        ))),
    }
}

/// `saturate(round(x / scale) + zero_point)` cast to `to`; `scale` and `zp`
/// already broadcast against `x`.
fn quantize(
    c: &mut Ctx,
    x: NodeId,
    scale: NodeId,
    zp: Option<NodeId>,
    to: DType,
) -> Result<NodeId> {
    let (lo, hi) = q_range(c, to)?;
    let f = c.dtype(scale);
    let xf = c.cast(x, f)?;
    let d = c.binary(BinaryOp::Div, xf, scale)?;
    let mut y = c.unary(UnaryOp::Round, d)?;
    if let Some(z) = zp {
        let zf = c.cast(z, f)?;
        y = c.binary(BinaryOp::Add, y, zf)?;
    }
    let y = c.binary_scalar(BinaryOp::Max, y, lo)?;
    let y = c.binary_scalar(BinaryOp::Min, y, hi)?;
    c.cast(y, to)
}

/// `QuantizeLinear`: round half to even, add the zero point, saturate to the
/// target range and cast. The target is the zero point's dtype, else the
/// `output_dtype` attribute (opset 21), else u8.
fn quantize_linear(c: &mut Ctx) -> Result<Vec<NodeId>> {
    no_blocks(c)?;
    let (x, scale) = (c.req(0)?, c.req(1)?);
    let axis = c.attr_i("axis", 1)?;
    if !c.dtype(scale).is_float() {
        return Err(c.err(format!("the scale must be a float, got {}", c.ty(scale))));
    }
    let zp = c.input(2);
    let to = match zp {
        Some(z) => c.dtype(z),
        None => c.attr_dtype("output_dtype")?.unwrap_or(DType::U8),
    };
    let s = per_axis(c, scale, x, axis, "the scale")?;
    let z = match zp {
        Some(z) if !is_zero_const(c, z) => Some(per_axis(c, z, x, axis, "the zero point")?),
        _ => None,
    };
    Ok(vec![
        c.widened(&[s, x], |c, w| quantize(c, w[1], w[0], z, to))?
    ])
}

/// `DynamicQuantizeLinear`, by its ONNX function definition: u8 results,
/// `scale = (max(0, max x) - min(0, min x)) / 255`,
/// `zero_point = cast(round(clip(0 - min(0, min x) / scale, 0, 255)))`.
fn dynamic_quantize_linear(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    if c.dtype(x) != DType::F32 {
        return Err(c.err(format!("the input must be f32, got {}", c.ty(x))));
    }
    let all: Vec<usize> = (0..c.rank(x)).collect();
    let reduce = |c: &mut Ctx, kind| -> Result<NodeId> {
        if all.is_empty() {
            return Ok(x);
        }
        c.add(
            Op::Reduce {
                kind,
                axes: all.clone(),
                keep_dims: false,
            },
            &[x],
        )
    };
    let mn = reduce(c, ReduceKind::Min)?;
    let mn = c.binary_scalar(BinaryOp::Min, mn, 0.0)?;
    let mx = reduce(c, ReduceKind::Max)?;
    let mx = c.binary_scalar(BinaryOp::Max, mx, 0.0)?;
    let range = c.binary(BinaryOp::Sub, mx, mn)?;
    let scale = c.binary_scalar(BinaryOp::Div, range, 255.0)?;
    let min_scaled = c.binary(BinaryOp::Div, mn, scale)?;
    let zero = c.scalar(0.0, DType::F32)?;
    let zp = c.binary(BinaryOp::Sub, zero, min_scaled)?;
    let zp = c.binary_scalar(BinaryOp::Max, zp, 0.0)?;
    let zp = c.binary_scalar(BinaryOp::Min, zp, 255.0)?;
    let zp = c.unary(UnaryOp::Round, zp)?;
    let zp = c.cast(zp, DType::U8)?;
    let y = quantize(c, x, scale, Some(zp), DType::U8)?;
    Ok(vec![y, scale, zp])
}

/// `MatMulInteger`: both operands cast to i32 less their zero points (a
/// scalar, or per row of A and per column of B), then an i32 `MatMul`.
fn matmul_integer(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let (a, b) = (c.req(0)?, c.req(1)?);
    let mut operands = vec![a, b];
    for (k, x) in [a, b].into_iter().enumerate() {
        if !matches!(c.dtype(x), DType::I8 | DType::U8) {
            return Err(c.err(format!("operand {k} must be i8 or u8, got {}", c.ty(x))));
        }
    }
    for (k, x) in [a, b].into_iter().enumerate() {
        let zp = match c.input(k + 2) {
            None => c.scalar(0.0, c.dtype(x))?,
            Some(zp) => {
                let zs = c.shape(zp);
                if zs.iter().all(|d| d.is(1)) {
                    c.reshape(zp, vec![])?
                } else if zs.len() == 1 && k == 0 {
                    // One zero point per row of A.
                    c.reshape(zp, vec![zs[0].clone(), Dim::constant(1)])?
                } else {
                    // Per column of B: `[N]` (or `[..., 1, N]`) broadcasts as is.
                    zp
                }
            }
        };
        operands.push(zp);
    }
    let (ra, rb) = (c.rank(a), c.rank(b));
    if ra == 0 || rb == 0 {
        return Err(c.err("operands must have rank 1 or more"));
    }
    // ONNX's MatMul rules for 1-D operands: a vector is a matrix of one row
    // (a) or one column (b), dropped from the result again.
    if ra == 1 {
        operands[0] = c.reshape(a, vec![Dim::constant(1), c.shape(a)[0].clone()])?;
    }
    if rb == 1 {
        operands[1] = c.reshape(b, vec![c.shape(b)[0].clone(), Dim::constant(1)])?;
    }
    let saturate_pairs = c.options().int8_matmul == Int8MatMul::OrtX86
        && (c.dtype(a), c.dtype(b)) == (DType::U8, DType::I8);
    let y = c.add(Op::MatMulInteger { saturate_pairs }, &operands)?;
    if ra == 1 || rb == 1 {
        let mut dims = c.shape(y);
        if rb == 1 {
            dims.pop();
        }
        if ra == 1 {
            let at = dims.len() - if rb == 1 { 1 } else { 2 };
            dims.remove(at);
        }
        return Ok(vec![c.reshape(y, dims)?]);
    }
    Ok(vec![y])
}
