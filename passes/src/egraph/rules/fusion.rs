//! GEMM fusion: every f32 matrix product becomes a `gemm`, which then absorbs its bias, its
//! activation (Relu, both GELUs, also through a reshape that keeps the rows) and the
//! transposes around it, as far as code generation can run them in one kernel:
//!
//! - a *constant-B* gemm (`B` a constant matrix, no permutation) takes a bias (`[n]` or
//!   `[1, .., n]`, constant) and an activation;
//! - a *runtime* gemm (both operands computed) takes permutations of its operands (`A`'s must
//!   keep its last axis last) and of its result (keeping the last axis last), read and
//!   written in place.

use super::{data, gemms, is_const, keeps_last, nodes, rule, var, Ctx, Exactness::*, Gemm, Rule};
use egg::Id;
use tcc_ir::{fused::SQRT_2, Activation, DType, Op};

/// Adds `g` with the activation `act` for every plain constant-B gemm and every qgemm (with
/// or without its bias) in class `x`, and through a reshape that keeps the last axis (the
/// same rows).
fn with_activation(c: &mut Ctx, x: Id, act: Activation) -> Vec<Id> {
    let mut out = Vec::new();
    let absorbs = |c: &Ctx, g: &Gemm| {
        g.activation == Activation::None
            && g.perm_a.is_none()
            && g.perm_b.is_none()
            && g.perm_out.is_none()
            && is_const(c.eg, g.args[1])
            && data(c.eg, g.args[1]).ty.rank() == 2
    };
    for g in gemms(c, x) {
        if absorbs(c, &g) {
            let g2 = Gemm {
                activation: act,
                ..g
            };
            out.extend(c.add(g2.op(), g2.args.clone()));
        }
    }
    for q in super::quant::qgemms(c, x) {
        if q.activation == Activation::None {
            let q2 = super::quant::QGemm {
                activation: act,
                ..q
            };
            out.extend(c.add(q2.op(), q2.args.clone()));
        }
    }
    let views: Vec<(Op, Id)> = nodes(c.eg, x)
        .filter(|n| matches!(n.op(), Op::Reshape { .. }))
        .map(|n| (n.op().clone(), n.args()[0]))
        .collect();
    for (reshape, src) in views {
        if data(c.eg, src).ty.shape.dims().last() != data(c.eg, x).ty.shape.dims().last() {
            continue;
        }
        for g in gemms(c, src) {
            if absorbs(c, &g) {
                let g2 = Gemm {
                    activation: act,
                    ..g
                };
                if let Some(inner) = c.add(g2.op(), g2.args.clone()) {
                    out.extend(c.add(reshape.clone(), vec![inner]));
                }
            }
        }
        for q in super::quant::qgemms(c, src) {
            if q.activation == Activation::None {
                let q2 = super::quant::QGemm {
                    activation: act,
                    ..q
                };
                if let Some(inner) = c.add(q2.op(), q2.args.clone()) {
                    out.extend(c.add(reshape.clone(), vec![inner]));
                }
            }
        }
    }
    out
}

/// The fusion rules.
pub fn rules() -> Vec<Rule> {
    vec![
        rule(
            "matmul-gemm",
            Exact,
            "matmul(a, b) = gemm(a, b) for f32 operands of rank 2 or more",
            "(matmul ?a ?b)",
            |c, _, s| {
                let (a, b) = (var(s, "?a"), var(s, "?b"));
                let ok = [a, b].iter().all(|&o| {
                    let t = &data(c.eg, o).ty;
                    t.dtype == DType::F32 && t.rank() >= 2
                });
                if !ok {
                    return vec![];
                }
                let g = Gemm::plain(vec![a, b]);
                c.add(g.op(), g.args).into_iter().collect()
            },
        ),
        rule(
            "gemm-bias",
            Exact,
            "gemm(a, B) + c = gemm<bias>(a, B, c) for constant B and a constant bias c of [n]",
            "(add ?x ?y)",
            |c, _, s| {
                let (x, y) = (var(s, "?x"), var(s, "?y"));
                let mut out = Vec::new();
                for (g, bias) in [(x, y), (y, x)] {
                    let bt = &data(c.eg, bias).ty;
                    let gt = &data(c.eg, g).ty;
                    let is_bias = is_const(c.eg, bias)
                        && bt.dtype == DType::F32
                        && bt.shape.dims().last() == gt.shape.dims().last()
                        && bt.shape.dims()[..bt.rank().saturating_sub(1)]
                            .iter()
                            .all(|d| d.as_const() == Some(1))
                        && bt.rank() >= 1;
                    if !is_bias {
                        continue;
                    }
                    for gm in gemms(c, g) {
                        if gm.is_plain_const_b(c) {
                            let mut args = gm.args.clone();
                            args.push(bias);
                            let g2 = Gemm { bias: true, ..gm };
                            out.extend(c.add(g2.op(), args));
                        }
                    }
                }
                out
            },
        ),
        rule(
            "gemm-relu",
            Exact,
            "relu(gemm(a, B[, c])) = gemm<relu>(a, B[, c]) for constant B",
            "(relu ?x)",
            |c, _, s| with_activation(c, var(s, "?x"), Activation::Relu),
        ),
        rule(
            "gemm-gelu-erf",
            Exact,
            "(y * (erf(y / sqrt 2) + 1)) * 0.5 = gemm<gelu_erf> for y = gemm(a, B[, c])",
            "(mul (mul ?x (add (erf (div ?x ?r2)) ?one)) ?half)",
            |c, _, s| {
                let (x, r2, one, half) = (var(s, "?x"), var(s, "?r2"), var(s, "?one"), var(s, "?half"));
                if data(c.eg, r2).is_f32_exactly(SQRT_2)
                    && data(c.eg, one).is_f32_exactly(1.0)
                    && data(c.eg, half).is_f32_exactly(0.5)
                {
                    with_activation(c, x, Activation::GeluErf)
                } else {
                    vec![]
                }
            },
        ),
        rule(
            "gemm-gelu-tanh",
            Exact,
            "(y * 0.5) * (tanh((y + y^3 * 0.044715) * sqrt(2/pi)) + 1) = gemm<gelu_tanh>",
            "(mul (mul ?x ?half) (add (tanh (mul (add ?x (mul (pow ?x ?three) ?k)) ?r)) ?one))",
            |c, _, s| {
                let d = |n: &str| data(c.eg, var(s, n)).clone();
                if d("?half").is_f32_exactly(0.5)
                    && d("?three").is_f32_exactly(3.0)
                    && d("?k").is_f32_exactly(tcc_ir::fused::GELU_TANH_CUBIC)
                    && d("?r").is_f32_exactly(tcc_ir::fused::SQRT_2_OVER_PI)
                    && d("?one").is_f32_exactly(1.0)
                {
                    with_activation(c, var(s, "?x"), Activation::GeluTanh)
                } else {
                    vec![]
                }
            },
        ),
        rule(
            "gemm-transpose-a",
            Exact,
            "gemm(transpose(x, p), b) = gemm<perm_a=p>(x, b) for runtime b, p keeping the last axis",
            "(gemm (transpose ?x) ?b)",
            |c, root, _| {
                let mut out = Vec::new();
                for g in gemms(c, root) {
                    if !g.is_runtime(c) || g.perm_a.is_some() {
                        continue;
                    }
                    for (perm, src) in transposes(c, g.args[0]) {
                        if keeps_last(&perm) {
                            let mut args = g.args.clone();
                            args[0] = src;
                            let g2 = Gemm {
                                perm_a: Some(perm),
                                ..g.clone()
                            };
                            out.extend(c.add(g2.op(), args));
                        }
                    }
                }
                out
            },
        ),
        rule(
            "gemm-transpose-b",
            Exact,
            "gemm(a, transpose(x, p)) = gemm<perm_b=p>(a, x) for a runtime operand",
            "(gemm ?a (transpose ?x))",
            |c, root, _| {
                let mut out = Vec::new();
                for g in gemms(c, root) {
                    if !g.is_runtime(c) || g.perm_b.is_some() {
                        continue;
                    }
                    for (perm, src) in transposes(c, g.args[1]) {
                        if !is_const(c.eg, src) {
                            let mut args = g.args.clone();
                            args[1] = src;
                            let g2 = Gemm {
                                perm_b: Some(perm),
                                ..g.clone()
                            };
                            out.extend(c.add(g2.op(), args));
                        }
                    }
                }
                out
            },
        ),
        rule(
            "transpose-gemm",
            Exact,
            "transpose(gemm(a, b), p) = gemm<perm_out=p>(a, b) for a runtime gemm, p keeping the last axis",
            "(transpose ?g)",
            |c, root, s| {
                let g = var(s, "?g");
                let mut out = Vec::new();
                let perms: Vec<Vec<usize>> = nodes(c.eg, root)
                    .filter_map(|n| match n.op() {
                        Op::Transpose { perm } if c.eg.find(n.args()[0]) == c.eg.find(g) => {
                            Some(perm.clone())
                        }
                        _ => None,
                    })
                    .collect();
                for perm in perms {
                    if !keeps_last(&perm) {
                        continue;
                    }
                    for gm in gemms(c, g) {
                        if gm.is_runtime(c) && gm.perm_out.is_none() {
                            let g2 = Gemm {
                                perm_out: Some(perm.clone()),
                                ..gm
                            };
                            out.extend(c.add(g2.op(), g2.args.clone()));
                        }
                    }
                }
                out
            },
        ),
    ]
}

/// The transposes in class `t`: their permutations and sources.
pub(super) fn transposes(c: &Ctx, t: Id) -> Vec<(Vec<usize>, Id)> {
    nodes(c.eg, t)
        .filter_map(|n| match n.op() {
            Op::Transpose { perm } => Some((perm.clone(), n.args()[0])),
            _ => None,
        })
        .collect()
}
