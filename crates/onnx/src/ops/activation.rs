//! Activations that are not core IR ops, each lowered to elementwise core ops
//! by its ONNX definition: Gelu, Elu, LeakyRelu, PRelu, Selu, Celu,
//! HardSigmoid, HardSwish, Softplus, Softsign, ThresholdedRelu and Mish.
//!
//! Every lowering here but `PRelu`'s is built through [`Ctx::widened`]: in
//! f32 for f16 and bf16 inputs, rounded once at the end. Most expand into
//! several rounding ops; `LeakyRelu` and `ThresholdedRelu` would otherwise
//! round their `alpha` attribute to the input's type (`LeakyRelu` then
//! rounds twice, `ThresholdedRelu` compares against the wrong threshold).
//! `PRelu` rounds once (its one `Mul`; the comparison and `Where` are exact)
//! with a slope already of the input's type, so it needs nothing.

use super::{reg, Registry};
use crate::context::Ctx;
use crate::error::Result;
use tcc_ir::{BinaryOp, NodeId, Op, UnaryOp};

/// Registers the activations.
pub(crate) fn register(r: &mut Registry) {
    reg(r, "Gelu", 20, gelu);
    reg(r, "Elu", 6, elu);
    reg(r, "LeakyRelu", 6, leaky_relu);
    reg(r, "PRelu", 7, prelu);
    reg(r, "Selu", 6, selu);
    reg(r, "Celu", 12, celu);
    reg(r, "HardSigmoid", 6, |c| {
        let x = c.req(0)?;
        let alpha = c.attr_f("alpha", 0.2)?;
        let beta = c.attr_f("beta", 0.5)?;
        Ok(vec![c.widened(&[x], |c, w| {
            hard_sigmoid(c, w[0], alpha, beta)
        })?])
    });
    reg(r, "HardSwish", 14, |c| {
        let x = c.req(0)?;
        Ok(vec![c.widened(&[x], |c, w| {
            let hs = hard_sigmoid(c, w[0], 1.0 / 6.0, 0.5)?;
            c.binary(BinaryOp::Mul, w[0], hs)
        })?])
    });
    reg(r, "Softplus", 1, |c| {
        let x = c.req(0)?;
        Ok(vec![c.widened(&[x], |c, w| softplus(c, w[0]))?])
    });
    reg(r, "Softsign", 1, |c| {
        // x / (1 + |x|)
        let x = c.req(0)?;
        Ok(vec![c.widened(&[x], |c, w| {
            let a = c.unary(UnaryOp::Abs, w[0])?;
            let d = c.binary_scalar(BinaryOp::Add, a, 1.0)?;
            c.binary(BinaryOp::Div, w[0], d)
        })?])
    });
    reg(r, "ThresholdedRelu", 10, |c| {
        // x if x > alpha, else 0
        let x = c.req(0)?;
        let alpha = c.attr_f("alpha", 1.0)?;
        Ok(vec![c.widened(&[x], |c, w| {
            let gt = c.binary_scalar(BinaryOp::Greater, w[0], alpha as f64)?;
            let zero = c.scalar(0.0, c.dtype(w[0]))?;
            c.add(Op::Where, &[gt, w[0], zero])
        })?])
    });
    reg(r, "Mish", 18, |c| {
        // x * tanh(softplus(x))
        let x = c.req(0)?;
        Ok(vec![c.widened(&[x], |c, w| {
            let sp = softplus(c, w[0])?;
            let t = c.unary(UnaryOp::Tanh, sp)?;
            c.binary(BinaryOp::Mul, w[0], t)
        })?])
    });
}

/// `log(exp(x) + 1)`.
fn softplus(c: &mut Ctx, x: NodeId) -> Result<NodeId> {
    let e = c.unary(UnaryOp::Exp, x)?;
    let s = c.binary_scalar(BinaryOp::Add, e, 1.0)?;
    c.unary(UnaryOp::Log, s)
}

/// `max(0, min(1, alpha * x + beta))`.
fn hard_sigmoid(c: &mut Ctx, x: NodeId, alpha: f32, beta: f32) -> Result<NodeId> {
    let ax = c.binary_scalar(BinaryOp::Mul, x, alpha as f64)?;
    let y = c.binary_scalar(BinaryOp::Add, ax, beta as f64)?;
    let y = c.binary_scalar(BinaryOp::Min, y, 1.0)?;
    c.binary_scalar(BinaryOp::Max, y, 0.0)
}

/// `Gelu`: `0.5 x (1 + erf(x / sqrt 2))`, or with `approximate = "tanh"`
/// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`.
fn gelu(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let approx = c.attr_s("approximate", "none")?;
    let tanh = match approx.as_str() {
        "none" => false,
        "tanh" => true,
        other => {
            return Err(c.attr_err(
                "approximate",
                format!("must be `none` or `tanh`, got `{other}`"),
            ))
        }
    };
    Ok(vec![c.widened(&[x], |c, w| {
        let x = w[0];
        let inner = if tanh {
            let x2 = c.binary(BinaryOp::Mul, x, x)?;
            let x3 = c.binary(BinaryOp::Mul, x2, x)?;
            let k = c.binary_scalar(BinaryOp::Mul, x3, 0.044715)?;
            let s = c.binary(BinaryOp::Add, x, k)?;
            let a = c.binary_scalar(BinaryOp::Mul, s, (2.0 / std::f64::consts::PI).sqrt())?;
            c.unary(UnaryOp::Tanh, a)?
        } else {
            let d = c.binary_scalar(BinaryOp::Div, x, std::f64::consts::SQRT_2)?;
            c.unary(UnaryOp::Erf, d)?
        };
        let one_plus = c.binary_scalar(BinaryOp::Add, inner, 1.0)?;
        let m = c.binary(BinaryOp::Mul, x, one_plus)?;
        c.binary_scalar(BinaryOp::Mul, m, 0.5)
    })?])
}

/// `Elu`: `x` for `x >= 0`, `alpha (exp(x) - 1)` below.
fn elu(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let alpha = c.attr_f("alpha", 1.0)?;
    Ok(vec![c.widened(&[x], |c, w| {
        let x = w[0];
        let lt = c.binary_scalar(BinaryOp::Less, x, 0.0)?;
        let e = c.unary(UnaryOp::Exp, x)?;
        let em1 = c.binary_scalar(BinaryOp::Sub, e, 1.0)?;
        let neg = c.binary_scalar(BinaryOp::Mul, em1, alpha as f64)?;
        c.add(Op::Where, &[lt, neg, x])
    })?])
}

/// `LeakyRelu`: `x` for `x >= 0`, `alpha x` below.
fn leaky_relu(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let alpha = c.attr_f("alpha", 0.01)?;
    Ok(vec![c.widened(&[x], |c, w| {
        let x = w[0];
        let lt = c.binary_scalar(BinaryOp::Less, x, 0.0)?;
        let neg = c.binary_scalar(BinaryOp::Mul, x, alpha as f64)?;
        c.add(Op::Where, &[lt, neg, x])
    })?])
}

/// `PRelu`: `x` for `x >= 0`, `slope x` below; `slope` broadcasts to `x`.
fn prelu(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let (x, slope) = (c.req(0)?, c.req(1)?);
    let lt = c.binary_scalar(BinaryOp::Less, x, 0.0)?;
    let neg = c.binary(BinaryOp::Mul, x, slope)?;
    Ok(vec![c.add(Op::Where, &[lt, neg, x])?])
}

/// `Selu`: `gamma x` for `x > 0`, `gamma (alpha exp(x) - alpha)` otherwise.
fn selu(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let alpha = c.attr_f("alpha", 1.673_263_2)? as f64;
    let gamma = c.attr_f("gamma", 1.050_701)? as f64;
    Ok(vec![c.widened(&[x], |c, w| {
        let x = w[0];
        let gt = c.binary_scalar(BinaryOp::Greater, x, 0.0)?;
        let e = c.unary(UnaryOp::Exp, x)?;
        let ae = c.binary_scalar(BinaryOp::Mul, e, alpha)?;
        let neg = c.binary_scalar(BinaryOp::Sub, ae, alpha)?;
        let w = c.add(Op::Where, &[gt, x, neg])?;
        c.binary_scalar(BinaryOp::Mul, w, gamma)
    })?])
}

/// `Celu`: `max(0, x) + min(0, alpha (exp(x / alpha) - 1))`.
fn celu(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let alpha = c.attr_f("alpha", 1.0)? as f64;
    Ok(vec![c.widened(&[x], |c, w| {
        let x = w[0];
        let pos = c.binary_scalar(BinaryOp::Max, x, 0.0)?;
        let d = c.binary_scalar(BinaryOp::Div, x, alpha)?;
        let e = c.unary(UnaryOp::Exp, d)?;
        let em1 = c.binary_scalar(BinaryOp::Sub, e, 1.0)?;
        let s = c.binary_scalar(BinaryOp::Mul, em1, alpha)?;
        let neg = c.binary_scalar(BinaryOp::Min, s, 0.0)?;
        c.binary(BinaryOp::Add, pos, neg)
    })?])
}
