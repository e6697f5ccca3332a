//! Quantised GEMMs: the core ops of dynamic int8 quantisation around a `matmul_integer` by
//! constant weights become one `qgemm`, which then absorbs its bias and activation.
//!
//! The chain is what ONNX Runtime's `quantize_dynamic` writes (`DynamicQuantizeLinear`,
//! `MatMulInteger`, `Cast`, `Mul` by the product of the two scales, `Add` of the bias), as
//! tcc imports it, and what `tcc compile --quantize int8` writes ([`crate::quantize`]) with
//! one scale per row: `qgemm` is defined by that chain ([`tcc_ir::fused::expand`]), so the
//! rewrite is exact.

use super::{data, is_const, nodes, rule, var, Ctx, Exactness::*, Rule};
use egg::Id;
use tcc_ir::{Activation, BinaryOp, DType, Op, UnaryOp};

/// A qgemm e-node's parts.
#[derive(Clone, Debug)]
pub struct QGemm {
    /// The epilogue's activation.
    pub activation: Activation,
    /// Whether operand 5 is a bias.
    pub bias: bool,
    /// Whether pair sums saturate.
    pub saturate_pairs: bool,
    /// The operand classes.
    pub args: Vec<Id>,
}

impl QGemm {
    /// The op.
    pub fn op(&self) -> Op {
        Op::QGemm {
            activation: self.activation,
            bias: self.bias,
            saturate_pairs: self.saturate_pairs,
        }
    }
}

/// The qgemm e-nodes of class `id`.
pub fn qgemms(c: &Ctx, id: Id) -> Vec<QGemm> {
    nodes(c.eg, id)
        .filter_map(|n| match n.op() {
            Op::QGemm {
                activation,
                bias,
                saturate_pairs,
            } => Some(QGemm {
                activation: *activation,
                bias: *bias,
                saturate_pairs: *saturate_pairs,
                args: n.args().to_vec(),
            }),
            _ => None,
        })
        .collect()
}

/// The operand classes of the e-nodes of class `id` whose op is `op` (attributes compared).
fn operands_of(c: &Ctx, id: Id, op: &Op) -> Vec<Vec<Id>> {
    nodes(c.eg, id)
        .filter(|n| n.op() == op)
        .map(|n| n.args().to_vec())
        .collect()
}

/// `(x, k)` for each `bin(x, k)` or `bin(k, x)` of class `id` with `k` the f32 scalar
/// constant `value` (`max` and `min` are commutative bit for bit).
fn with_scalar(c: &Ctx, id: Id, bin: BinaryOp, value: f32) -> Vec<Id> {
    let mut out = Vec::new();
    for args in operands_of(c, id, &Op::Binary(bin)) {
        for (x, k) in [(args[0], args[1]), (args[1], args[0])] {
            if data(c.eg, k).is_f32_exactly(value) {
                out.push(x);
            }
        }
    }
    out
}

/// For class `q`, the `(a, sa, za)` it quantises: `q = cast<u8>(min(max(round(a / sa) +
/// cast<f32>(za), 0), 255))`, as ONNX's QuantizeLinear to u8 is imported.
fn quantised(c: &Ctx, q: Id) -> Vec<(Id, Id, Id)> {
    let mut out = Vec::new();
    for [clamped] in operands_of(c, q, &Op::Cast { to: DType::U8 })
        .into_iter()
        .filter_map(|a| <[Id; 1]>::try_from(a).ok())
    {
        for low in with_scalar(c, clamped, BinaryOp::Min, 255.0) {
            for sum in with_scalar(c, low, BinaryOp::Max, 0.0) {
                for args in operands_of(c, sum, &Op::Binary(BinaryOp::Add)) {
                    for (rounded, zf) in [(args[0], args[1]), (args[1], args[0])] {
                        let zps: Vec<Id> = operands_of(c, zf, &Op::Cast { to: DType::F32 })
                            .into_iter()
                            .map(|a| a[0])
                            .filter(|&z| data(c.eg, z).ty.dtype == DType::U8)
                            .collect();
                        for div in operands_of(c, rounded, &Op::Unary(UnaryOp::Round)) {
                            for [a, sa] in operands_of(c, div[0], &Op::Binary(BinaryOp::Div))
                                .into_iter()
                                .filter_map(|a| <[Id; 2]>::try_from(a).ok())
                            {
                                for &za in &zps {
                                    out.push((a, sa, za));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// True if class `id` is a constant whose elements are all zero.
fn is_zero_const(c: &Ctx, id: Id) -> bool {
    data(c.eg, id)
        .value
        .as_deref()
        .is_some_and(|t| t.data().to_f64_vec().iter().all(|&v| v == 0.0))
}

/// The value of class `id` if it is an f32 constant of one element.
fn f32_scalar(c: &Ctx, id: Id) -> Option<f32> {
    let t = data(c.eg, id).value.as_deref()?;
    match t.as_slice::<f32>()? {
        [v] => Some(*v),
        _ => None,
    }
}

/// A zero point as the f32 constant of QuantizeLinear's and DequantizeLinear's imports: an
/// integer in `0..=255`.
fn u8_point(v: f32) -> Option<u8> {
    (v.fract() == 0.0 && (0.0..=255.0).contains(&v)).then_some(v as u8)
}

/// For class `q`, the `(a, scale class, zero point)` of a static u8 quantisation,
/// `q = cast<u8>(min(max(round(a / s) [+ z], 0), 255))` with `z` an f32 constant (absent for
/// a zero point of 0), as QuantizeLinear with constant scale and zero point is imported.
fn statically_quantised(c: &Ctx, q: Id) -> Vec<(Id, Id, u8)> {
    let mut out = Vec::new();
    for [clamped] in operands_of(c, q, &Op::Cast { to: DType::U8 })
        .into_iter()
        .filter_map(|a| <[Id; 1]>::try_from(a).ok())
    {
        for low in with_scalar(c, clamped, BinaryOp::Min, 255.0) {
            for sum in with_scalar(c, low, BinaryOp::Max, 0.0) {
                let mut rounded: Vec<(Id, u8)> = vec![(sum, 0)];
                for args in operands_of(c, sum, &Op::Binary(BinaryOp::Add)) {
                    for (r, z) in [(args[0], args[1]), (args[1], args[0])] {
                        if let Some(z) = f32_scalar(c, z).and_then(u8_point) {
                            rounded.push((r, z));
                        }
                    }
                }
                for (r, z) in rounded {
                    for div in operands_of(c, r, &Op::Unary(UnaryOp::Round)) {
                        for [a, s] in operands_of(c, div[0], &Op::Binary(BinaryOp::Div))
                            .into_iter()
                            .filter_map(|a| <[Id; 2]>::try_from(a).ok())
                        {
                            if f32_scalar(c, s).is_some() {
                                out.push((a, s, z));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// For class `x`, the `(a, scale class, zero point)` it dequantises from a static
/// quantisation: `x = (f32(q) [- z]) * s` with `q` [`statically_quantised`] by the same scale
/// and zero point (QuantizeLinear then DequantizeLinear, a QDQ model's activation).
fn fake_quantised(c: &Ctx, x: Id) -> Vec<(Id, Id, u8)> {
    let mut out = Vec::new();
    for m in operands_of(c, x, &Op::Binary(BinaryOp::Mul)) {
        for (d, s) in [(m[0], m[1]), (m[1], m[0])] {
            let Some(sv) = f32_scalar(c, s) else { continue };
            let mut shifted: Vec<(Id, u8)> = vec![(d, 0)];
            for args in operands_of(c, d, &Op::Binary(BinaryOp::Sub)) {
                if let Some(z) = f32_scalar(c, args[1]).and_then(u8_point) {
                    shifted.push((args[0], z));
                }
            }
            for (cf, z) in shifted {
                for q in operands_of(c, cf, &Op::Cast { to: DType::F32 }) {
                    for (a, sq, zq) in statically_quantised(c, q[0]) {
                        if zq == z && f32_scalar(c, sq) == Some(sv) {
                            out.push((a, s, z));
                        }
                    }
                }
            }
        }
    }
    out
}

/// The int8 weights and per-column scales that the f32 matrix `w` (`[k, n]`) was dequantised
/// from, if it was: `w[i, j] = f32(q[i, j] * s[j])` exactly for every element, with `q` in
/// `[-127, 127]` and `s[j] = max_i |w[i, j]| / 127` (or an ulp or two off it: the division
/// need not give back the quantiser's scale exactly), as a symmetric per-channel quantiser
/// writes its weights and DequantizeLinear, folded at compile time, restores them.
pub fn dequantised_weights(w: &tcc_ir::Tensor) -> Option<(Vec<i8>, Vec<f32>)> {
    let v = w.as_slice::<f32>()?;
    let [k, n] = <[usize; 2]>::try_from(w.shape()).ok()?;
    let mut q = vec![0i8; k * n];
    let mut scales = vec![1.0f32; n];
    for j in 0..n {
        let max = (0..k).map(|i| v[i * n + j].abs()).fold(0.0f32, f32::max);
        if max == 0.0 {
            continue;
        }
        let guess = max / 127.0;
        let fits = |s: f32| {
            (0..k).all(|i| {
                let t = (v[i * n + j] / s).round();
                t.abs() <= 127.0 && t * s == v[i * n + j]
            })
        };
        let found = [0i32, 1, -1, 2, -2].into_iter().find_map(|d| {
            let s = f32::from_bits((guess.to_bits() as i32 + d) as u32);
            (s.is_normal() && fits(s)).then_some(s)
        })?;
        scales[j] = found;
        for i in 0..k {
            q[i * n + j] = (v[i * n + j] / found).round() as i8;
        }
    }
    Some((q, scales))
}

/// The quantised-GEMM rules.
pub fn rules() -> Vec<Rule> {
    vec![
        rule(
            "qgemm-dynamic",
            Exact,
            "f32(matmul_integer(quant(a, sa, za), W, za, 0)) * (sa * sw) = qgemm(a, sa, za, W, sw) \
             for constant i8 W [k, n] and sw, quant(a, s, z) = u8(min(max(round(a / s) + f32(z), \
             0), 255))",
            "(mul ?x ?y)",
            |c, _, s| {
                let (x, y) = (var(s, "?x"), var(s, "?y"));
                let mut out = Vec::new();
                for (acc_f, scale) in [(x, y), (y, x)] {
                    for acc in operands_of(c, acc_f, &Op::Cast { to: DType::F32 }) {
                        for node in nodes(c.eg, acc[0]).cloned().collect::<Vec<_>>() {
                            let Op::MatMulInteger { saturate_pairs } = *node.op() else {
                                continue;
                            };
                            let [q, w, za, zw] = <[Id; 4]>::try_from(node.args().to_vec())
                                .expect("matmul_integer has four operands");
                            let wt = &data(c.eg, w).ty;
                            if !is_const(c.eg, w)
                                || wt.dtype != DType::I8
                                || wt.rank() != 2
                                || !is_zero_const(c, zw)
                            {
                                continue;
                            }
                            for (a, sa, za_q) in quantised(c, q) {
                                if za_q != za || data(c.eg, a).ty.dtype != DType::F32 {
                                    continue;
                                }
                                for m in operands_of(c, scale, &Op::Binary(BinaryOp::Mul)) {
                                    for (sa_m, sw) in [(m[0], m[1]), (m[1], m[0])] {
                                        if sa_m != sa || !is_const(c.eg, sw) {
                                            continue;
                                        }
                                        let op = Op::QGemm {
                                            activation: Activation::None,
                                            bias: false,
                                            saturate_pairs,
                                        };
                                        out.extend(c.add(op, vec![a, sa, za, w, sw]));
                                    }
                                }
                            }
                        }
                    }
                }
                out
            },
        ),
        rule(
            "qdq-matmul",
            Reassociating,
            "matmul(dq(q(a, s, z)), W) = qgemm(a, s, z, Wq, sw) for a QDQ model's statically \
             quantised activation (dq(q(a)) = (f32(u8(clamp(round(a / s) + z))) - z) * s) and \
             constant f32 weights that are exactly f32(Wq * sw) for int8 Wq and per-column sw \
             (dequantised int8 weights): the exact integer sum, scaled once, instead of an f32 \
             sum of dequantised products",
            "(matmul ?x ?w)",
            |c, _, s| {
                let (x, w) = (var(s, "?x"), var(s, "?w"));
                let Some(wt) = data(c.eg, w).value.clone() else {
                    return vec![];
                };
                if wt.dtype() != DType::F32 || wt.shape().len() != 2 {
                    return vec![];
                }
                let found = fake_quantised(c, x);
                if found.is_empty() {
                    return vec![];
                }
                let Some((q, scales)) = dequantised_weights(&wt) else {
                    return vec![];
                };
                let (k, n) = (wt.shape()[0], wt.shape()[1]);
                let wid = c.eg.find(w);
                let (Ok(qt), Ok(st)) = (
                    tcc_ir::Tensor::from_vec(vec![k, n], q),
                    tcc_ir::Tensor::from_vec(vec![n], scales),
                ) else {
                    return vec![];
                };
                let wq = c.derived_constant(format!("qdq-weights({wid})"), qt);
                let sw = c.derived_constant(format!("qdq-scales({wid})"), st);
                let mut out = Vec::new();
                for (a, sa, z) in found {
                    let za = c.derived_constant(format!("u8({z})"), tcc_ir::Tensor::scalar(z));
                    let op = Op::QGemm {
                        activation: Activation::None,
                        bias: false,
                        saturate_pairs: false,
                    };
                    out.extend(c.add(op, vec![a, sa, za, wq, sw]));
                }
                out
            },
        ),
        rule(
            "qgemm-bias",
            Exact,
            "qgemm(a, sa, za, W, sw) + c = qgemm<bias>(a, sa, za, W, sw, c) for a constant f32 \
             bias c of [n]",
            "(add ?x ?y)",
            |c, _, s| {
                let (x, y) = (var(s, "?x"), var(s, "?y"));
                let mut out = Vec::new();
                for (g, bias) in [(x, y), (y, x)] {
                    let (bt, gt) = (&data(c.eg, bias).ty, &data(c.eg, g).ty);
                    let is_bias = is_const(c.eg, bias)
                        && bt.dtype == DType::F32
                        && bt.rank() >= 1
                        && bt.shape.dims().last() == gt.shape.dims().last()
                        && bt.shape.dims()[..bt.rank() - 1]
                            .iter()
                            .all(|d| d.as_const() == Some(1));
                    if !is_bias {
                        continue;
                    }
                    for q in qgemms(c, g) {
                        if !q.bias && q.activation == Activation::None {
                            let mut args = q.args.clone();
                            args.push(bias);
                            let q2 = QGemm { bias: true, ..q };
                            out.extend(c.add(q2.op(), args));
                        }
                    }
                }
                out
            },
        ),
    ]
}
