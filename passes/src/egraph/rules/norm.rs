//! Normalisations: the residual add folded into layer norm, and the decomposed layer norm of
//! opset-14 exports and T5's RMS norm recognised as the fused ops.

use super::super::lang::ENode;
use super::{data, nodes, rule, var, Ctx, Exactness::*, Rule};
use egg::Id;
use tcc_ir::{BinaryOp, Op, ReduceKind};

/// The axis of a mean over the trailing axes `axis..rank` with kept dims, in class `m`,
/// taken of class `x`.
fn trailing_mean_of(c: &Ctx, m: Id, x: Id) -> Option<usize> {
    let rank = data(c.eg, x).ty.rank();
    nodes(c.eg, m).find_map(|n| match n.op() {
        Op::Reduce {
            kind: ReduceKind::Mean,
            axes,
            keep_dims: true,
        } if c.eg.find(n.args()[0]) == c.eg.find(x)
            && !axes.is_empty()
            && axes.iter().copied().eq(axes[0]..rank) =>
        {
            Some(axes[0])
        }
        _ => None,
    })
}

fn eps_of(c: &Ctx, e: Id) -> Option<f32> {
    let d = data(c.eg, e);
    (d.ty.dtype == tcc_ir::DType::F32 && d.ty.rank() <= 1)
        .then(|| d.scalar())
        .flatten()
        .map(|v| v as f32)
}

/// The normalisation rules.
pub fn rules() -> Vec<Rule> {
    vec![
        rule(
            "add-layer-norm",
            Exact,
            "layer_norm(x + r, s, b) = add_layer_norm(x, r, s, b) for x, r of one shape",
            "(layer_norm (add ?x ?r) ?s ?b)",
            |c, root, s| {
                let (x, r, sc, b) = (var(s, "?x"), var(s, "?r"), var(s, "?s"), var(s, "?b"));
                let ty = data(c.eg, root).ty.clone();
                if data(c.eg, x).ty != ty || data(c.eg, r).ty != ty {
                    return vec![];
                }
                let lns: Vec<(usize, f32)> = nodes(c.eg, root)
                    .filter_map(|n| match n.op() {
                        Op::LayerNorm { axis, epsilon } => Some((*axis, *epsilon)),
                        _ => None,
                    })
                    .collect();
                lns.into_iter()
                    .filter_map(|(axis, epsilon)| {
                        c.add(Op::AddLayerNorm { axis, epsilon }, vec![x, r, sc, b])
                    })
                    .collect()
            },
        ),
        rule(
            "layer-norm-decomposed",
            Reassociating,
            "(x - mean(x)) / sqrt(mean((x - mean(x))²) + eps) * s + b = layer_norm(x, s, b)",
            "(add (mul (div ?d (sqrt (add ?v ?eps))) ?s) ?b)",
            |c, _, sub| {
                let (d, v, eps, sc, b) = (
                    var(sub, "?d"),
                    var(sub, "?v"),
                    var(sub, "?eps"),
                    var(sub, "?s"),
                    var(sub, "?b"),
                );
                let Some(epsilon) = eps_of(c, eps) else {
                    return vec![];
                };
                // `v` must be the mean of d * d over the same trailing axes.
                let d = c.eg.find(d);
                let square = ENode::new(Op::Binary(BinaryOp::Mul), vec![d, d], 0);
                let Some(sq) = c.eg.lookup(square) else {
                    return vec![];
                };
                let Some(v_axis) = trailing_mean_of(c, v, sq) else {
                    return vec![];
                };
                let centred: Vec<(Id, Id)> = nodes(c.eg, d)
                    .filter(|n| n.op() == &Op::Binary(BinaryOp::Sub))
                    .map(|n| (n.args()[0], n.args()[1]))
                    .collect();
                let mut out = Vec::new();
                for (x, m) in centred {
                    if data(c.eg, x).ty != data(c.eg, d).ty {
                        continue;
                    }
                    if let Some(axis) = trailing_mean_of(c, m, x).filter(|&a| a == v_axis) {
                        out.extend(c.add(Op::LayerNorm { axis, epsilon }, vec![x, sc, b]));
                    }
                }
                out
            },
        ),
        rule(
            "rms-norm",
            Reassociating,
            "w * (x / sqrt(mean(x²) + eps)) = rms_norm(x, w) (T5's LayerNorm)",
            "(mul ?w (div ?x (sqrt (add ?ms ?eps))))",
            rms,
        ),
        rule(
            "rms-norm-right",
            Reassociating,
            "(x / sqrt(mean(x²) + eps)) * w = rms_norm(x, w)",
            "(mul (div ?x (sqrt (add ?ms ?eps))) ?w)",
            rms,
        ),
    ]
}

fn rms(c: &mut Ctx, _root: Id, s: &egg::Subst) -> Vec<Id> {
    let (w, x, ms, eps) = (var(s, "?w"), var(s, "?x"), var(s, "?ms"), var(s, "?eps"));
    let Some(epsilon) = eps_of(c, eps) else {
        return vec![];
    };
    if data(c.eg, w).value.is_none() || data(c.eg, x).ty.dtype != tcc_ir::DType::F32 {
        return vec![];
    }
    // `ms` must be the mean of x * x over x's trailing axes.
    let x = c.eg.find(x);
    let square = ENode::new(Op::Binary(BinaryOp::Mul), vec![x, x], 0);
    let Some(sq) = c.eg.lookup(square) else {
        return vec![];
    };
    match trailing_mean_of(c, ms, sq) {
        Some(axis) => c
            .add(Op::RmsNorm { axis, epsilon }, vec![x, w])
            .into_iter()
            .collect(),
        None => vec![],
    }
}
