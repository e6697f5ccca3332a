//! Matrix-product reassociation: linear attention written as `(phi(Q) phi(K)^T) V`, normalised
//! by `phi(Q) phi(K)^T 1`, costs `O(n^2 d)` and holds an `n x n` matrix; associated the other
//! way, `phi(Q) (phi(K)^T V)` and `phi(Q) (phi(K)^T 1)`, it costs `O(n d^2)` and holds a
//! `d x d` one. These rules put both forms in the e-graph and the cost model picks one at the
//! shape hints (KV-first wins when the sequence is longer than the head dimension). Every
//! rule here changes the order of a sum, so rounding changes: they are `Reassociating`.
//!
//! Only products of two runtime operands are reassociated (a constant `B` is a packed weight,
//! which a reassociation would turn into a runtime operand).

use super::{data, gemms, is_const, nodes, rule, var, Ctx, Exactness::*, Gemm, Rule};
use egg::Id;
use tcc_ir::{BinaryOp, Op, ReduceKind};

/// The `(a, b)` of every product with no bias, activation or permutation in class `id`
/// whose operands are both computed (not constants).
fn plain_runtime_products(c: &Ctx, id: Id) -> Vec<(Id, Id)> {
    gemms(c, id)
        .into_iter()
        .filter(|g| !g.bias && g.is_unpermuted_linear() && g.args.len() == 2)
        .filter(|g| !is_const(c.eg, g.args[0]) && !is_const(c.eg, g.args[1]))
        .map(|g| (g.args[0], g.args[1]))
        .collect()
}

/// The plain product `a · b`, if it type-checks.
fn product(c: &mut Ctx, a: Id, b: Id) -> Option<Id> {
    c.add(Gemm::plain(vec![a, b]).op(), vec![a, b])
}

/// The reassociation rules.
pub fn rules() -> Vec<Rule> {
    vec![
        rule(
            "matmul-reassociate",
            Reassociating,
            "(A B) C = A (B C) for runtime A, B, C whose shapes allow it (KV-first attention)",
            "(gemm ?s ?c)",
            |c, root, s| {
                let (sc, cc) = (var(s, "?s"), var(s, "?c"));
                let outer = plain_runtime_products(c, root);
                if !outer
                    .iter()
                    .any(|&(x, y)| c.eg.find(x) == c.eg.find(sc) && c.eg.find(y) == c.eg.find(cc))
                {
                    return vec![];
                }
                let mut out = Vec::new();
                for (a, b) in plain_runtime_products(c, sc) {
                    if is_const(c.eg, cc) {
                        continue;
                    }
                    let Some(bc) = product(c, b, cc) else {
                        continue;
                    };
                    out.extend(product(c, a, bc));
                }
                out
            },
        ),
        rule(
            "row-sum-of-product",
            Reassociating,
            "reduce_sum(A B, last axis, keep) = A reduce_sum(B, last axis, keep) (the normaliser: (A B^T) 1 = A (B^T 1))",
            "(reduce_sum ?x)",
            |c, root, s| {
                let x = var(s, "?x");
                let rank = data(c.eg, x).ty.rank();
                let row_sum = nodes(c.eg, root).any(|n| {
                    n.args().first().is_some_and(|&a| c.eg.find(a) == c.eg.find(x))
                        && matches!(n.op(), Op::Reduce { kind: ReduceKind::Sum, axes, keep_dims: true }
                            if axes.len() == 1 && axes[0] + 1 == rank)
                });
                let mut out = Vec::new();
                if row_sum {
                    for (a, b) in plain_runtime_products(c, x) {
                        let rb = data(c.eg, b).ty.rank();
                        if rb < 2 {
                            continue;
                        }
                        let Some(ones) = c.add(
                            Op::Reduce {
                                kind: ReduceKind::Sum,
                                axes: vec![rb - 1],
                                keep_dims: true,
                            },
                            vec![b],
                        ) else {
                            continue;
                        };
                        out.extend(product(c, a, ones));
                    }
                }
                out
            },
        ),
        rule(
            "row-div-past-product",
            Reassociating,
            "(S / r) V = (S V) / r for r constant along the last axis ([.., n, 1])",
            "(gemm (div ?s ?r) ?v)",
            |c, root, s| {
                let (sv, r, v) = (var(s, "?s"), var(s, "?r"), var(s, "?v"));
                let rt = data(c.eg, r).ty.clone();
                let st = data(c.eg, sv).ty.clone();
                // r broadcasts along S's last axis only: its last dim is 1, and it adds no axes.
                if rt.rank() == 0
                    || rt.rank() > st.rank()
                    || rt.shape.dims()[rt.rank() - 1].as_const() != Some(1)
                {
                    return vec![];
                }
                let plain = gemms(c, root)
                    .iter()
                    .any(|g| !g.bias && g.is_unpermuted_linear() && c.eg.find(g.args[1]) == c.eg.find(v));
                if !plain || is_const(c.eg, v) {
                    return vec![];
                }
                let Some(p) = product(c, sv, v) else {
                    return vec![];
                };
                c.add(Op::Binary(BinaryOp::Div), vec![p, r])
                    .into_iter()
                    .collect()
            },
        ),
    ]
}
