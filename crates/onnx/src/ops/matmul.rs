//! Matrix products: `MatMul` (1-D operands reshaped to 2-D and back) and
//! `Gemm` (transposes, `MatMul`, `alpha`/`beta` scaling and the bias add).
//!
//! A `Gemm` that scales or adds a bias rounds more than once, so it is built
//! through [`Ctx::widened`] (in f32 for f16 and bf16, rounded once); a plain
//! product is one `MatMul`, as is `MatMul` itself, and needs nothing.

use super::{reg, Registry};
use crate::context::Ctx;
use crate::error::Result;
use tcc_ir::{BinaryOp, Dim, NodeId, Op};

/// Registers the matrix products.
pub(crate) fn register(r: &mut Registry) {
    reg(r, "MatMul", 1, |c| {
        let (a, b) = (c.req(0)?, c.req(1)?);
        Ok(vec![matmul(c, a, b)?])
    });
    reg(r, "Gemm", 7, gemm);
}

/// `a @ b` with numpy's rules for 1-D operands: a vector on the left gains a
/// leading axis of 1, one on the right a trailing axis of 1, and both are
/// removed from the result.
pub(crate) fn matmul(c: &mut Ctx, a: NodeId, b: NodeId) -> Result<NodeId> {
    let (sa, sb) = (c.shape(a), c.shape(b));
    if sa.is_empty() || sb.is_empty() {
        return Err(c.err("MatMul operands must have rank 1 or more"));
    }
    let a2 = if sa.len() == 1 {
        c.reshape(a, vec![Dim::constant(1), sa[0].clone()])?
    } else {
        a
    };
    let b2 = if sb.len() == 1 {
        c.reshape(b, vec![sb[0].clone(), Dim::constant(1)])?
    } else {
        b
    };
    let y = c.add(Op::MatMul, &[a2, b2])?;
    if sa.len() > 1 && sb.len() > 1 {
        return Ok(y);
    }
    let mut dims = c.shape(y);
    let r = dims.len();
    if sb.len() == 1 {
        dims.remove(r - 1);
    }
    if sa.len() == 1 {
        dims.remove(r - 2);
    }
    c.reshape(y, dims)
}

/// `Gemm`: `alpha * A' @ B' + beta * C`, where `'` transposes when
/// `transA`/`transB` say so and `C` (optional from opset 11) broadcasts.
fn gemm(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let (mut a, mut b) = (c.req(0)?, c.req(1)?);
    let alpha = c.attr_f("alpha", 1.0)?;
    let beta = c.attr_f("beta", 1.0)?;
    for (x, attr) in [(&mut a, "transA"), (&mut b, "transB")] {
        if c.rank(*x) != 2 {
            return Err(c.err(format!("Gemm operands must be matrices, got {}", c.ty(*x))));
        }
        if c.attr_bool(attr, false)? {
            *x = c.add(Op::Transpose { perm: vec![1, 0] }, &[*x])?;
        }
    }
    let bias = c.input(2).filter(|_| beta != 0.0);
    if alpha == 1.0 && bias.is_none() {
        return Ok(vec![c.add(Op::MatMul, &[a, b])?]);
    }
    let mut operands = vec![a, b];
    operands.extend(bias);
    Ok(vec![c.widened(&operands, |c, w| {
        let mut y = c.add(Op::MatMul, &w[..2])?;
        if alpha != 1.0 {
            y = c.binary_scalar(BinaryOp::Mul, y, alpha as f64)?;
        }
        if let Some(&bias) = w.get(2) {
            let bias = if beta != 1.0 {
                c.binary_scalar(BinaryOp::Mul, bias, beta as f64)?
            } else {
                bias
            };
            y = c.binary(BinaryOp::Add, y, bias)?;
        }
        Ok(y)
    })?])
}
