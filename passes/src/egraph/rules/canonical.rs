//! Canonical forms: targeted one-way rules that bring the exporters' variants of one
//! computation to the form the fusion rules match. None of them is a general commutativity
//! or associativity: each fires only on the operands named (a scalar constant, the constant
//! 0.5, 1 / sqrt 2), so the e-graph grows by at most a node or two per match.

use super::fusion::transposes;
use super::{data, nodes, rule, var, Ctx, Exactness::*, Rule};
use egg::Id;
use std::ops::Range;
use tcc_ir::{fused::scalar, BinaryOp, DType, Dim, Op};

/// True for a one-element constant.
fn is_scalar_const(c: &Ctx, id: Id) -> bool {
    data(c.eg, id).value.as_ref().is_some_and(|v| v.len() == 1)
}

fn mul(c: &mut Ctx, x: Id, y: Id) -> Option<Id> {
    c.add(Op::Binary(BinaryOp::Mul), vec![x, y])
}

/// The runs of `y`'s axes that `a`'s axes are the products of, in order (a run may be
/// empty for an axis of size 1), if `a` only merges adjacent axes of `y`.
fn merged_runs(y: &[Dim], a: &[Dim]) -> Option<Vec<Range<usize>>> {
    let mut runs = Vec::with_capacity(a.len());
    let mut i = 0;
    for d in a {
        let start = i;
        let mut acc = Dim::constant(1);
        while acc != *d {
            let next = y.get(i)?;
            acc = acc.mul(next);
            i += 1;
        }
        runs.push(start..i);
    }
    (i == y.len()).then_some(runs)
}

/// `reshape(transpose(reshape(y, merged), p), split)` as one transpose of `y`, when the first
/// reshape only merges runs of adjacent axes, and the second splits the transposed result
/// back into the same runs (as the dynamo exporter writes `K^T` per head:
/// `[b, h, s, d] -> [b h, s, d] -> [b h, d, s] -> [b, h, d, s]`).
fn transpose_through_reshapes(c: &mut Ctx, root: Id, t: Id) -> Vec<Id> {
    let out: Vec<Dim> = data(c.eg, root).ty.shape.dims().to_vec();
    let mut found = Vec::new();
    for (p, a) in transposes(c, t) {
        let a_dims: Vec<Dim> = data(c.eg, a).ty.shape.dims().to_vec();
        let sources: Vec<Id> = nodes(c.eg, a)
            .filter(|n| matches!(n.op(), Op::Reshape { .. }))
            .map(|n| n.args()[0])
            .collect();
        for y in sources {
            let y_dims: Vec<Dim> = data(c.eg, y).ty.shape.dims().to_vec();
            let Some(runs) = merged_runs(&y_dims, &a_dims) else {
                continue;
            };
            let split: Vec<Dim> = p
                .iter()
                .flat_map(|&k| y_dims[runs[k].clone()].to_vec())
                .collect();
            if split != out {
                continue;
            }
            let perm: Vec<usize> = p.iter().flat_map(|&k| runs[k].clone()).collect();
            if perm.iter().enumerate().all(|(i, &q)| i == q) {
                found.push(y);
            } else {
                found.extend(c.add(Op::Transpose { perm }, vec![y]));
            }
        }
    }
    found
}

/// The canonical rules.
pub fn rules() -> Vec<Rule> {
    vec![
        rule(
            "transpose-through-reshapes",
            Exact,
            "reshape(transpose(reshape(y, merged), p), split) = transpose(y, p') when the first reshape only merges runs of adjacent axes and the second splits the transposed runs back (p' moves y's runs as p moves the merged axes)",
            "(reshape ?t)",
            |c, root, s| {
                let t = var(s, "?t");
                transpose_through_reshapes(c, root, t)
            },
        ),
        rule(
            "transpose-transpose",
            Exact,
            "transpose(transpose(x, p), q) = transpose(x, p o q) (x itself when p o q is the identity)",
            "(transpose ?t)",
            |c, root, s| {
                let t = var(s, "?t");
                let outer: Vec<Vec<usize>> = transposes(c, root)
                    .into_iter()
                    .filter(|(_, a)| c.eg.find(*a) == c.eg.find(t))
                    .map(|(q, _)| q)
                    .collect();
                let mut found = Vec::new();
                for (p, x) in transposes(c, t) {
                    for q in &outer {
                        let perm: Vec<usize> = q.iter().map(|&i| p[i]).collect();
                        if perm.iter().enumerate().all(|(i, &k)| i == k) {
                            found.push(x);
                        } else {
                            found.extend(c.add(Op::Transpose { perm }, vec![x]));
                        }
                    }
                }
                found
            },
        ),
        scalar_right(
            "add-scalar-right",
            "c + x = x + c for a scalar constant c (IEEE addition commutes)",
            "(add ?c ?x)",
            BinaryOp::Add,
        ),
        scalar_right(
            "mul-scalar-right",
            "c * x = x * c for a scalar constant c (IEEE multiplication commutes)",
            "(mul ?c ?x)",
            BinaryOp::Mul,
        ),
        half_outward(
            "mul-half-outward",
            "(x * 0.5) * y = (x * y) * 0.5 (equal unless x * y overflows or is subnormal)",
            "(mul (mul ?x ?h) ?y)",
        ),
        half_outward(
            "mul-half-outward-right",
            "x * (y * 0.5) = (x * y) * 0.5 (equal unless x * y overflows or is subnormal)",
            "(mul ?x (mul ?y ?h))",
        ),
        rule(
            "mul-rsqrt2-as-div",
            Reassociating,
            "x * (1 / sqrt 2) = x / sqrt 2 (within an ulp)",
            "(mul ?x ?c)",
            |c, _, s| {
                let (x, k) = (var(s, "?x"), var(s, "?c"));
                if data(c.eg, k).is_f32_exactly(std::f32::consts::FRAC_1_SQRT_2)
                    && data(c.eg, k).ty.rank() == 0
                {
                    let r2 = c.constant(scalar(DType::F32, f64::from(std::f32::consts::SQRT_2)));
                    c.add(Op::Binary(BinaryOp::Div), vec![x, r2])
                        .into_iter()
                        .collect()
                } else {
                    vec![]
                }
            },
        ),
        rule(
            "pow-two-square",
            Exact,
            "pow(x, 2) = x * x for f32 x (x² is exact in f64, so both round once to one f32)",
            "(pow ?x ?two)",
            |c, _, s| {
                let (x, two) = (var(s, "?x"), var(s, "?two"));
                if data(c.eg, x).ty.dtype == DType::F32 && data(c.eg, two).is_f32_exactly(2.0) {
                    mul(c, x, x).into_iter().collect()
                } else {
                    vec![]
                }
            },
        ),
        rule(
            "mul-reciprocal-as-div",
            Reassociating,
            "x * (1 / y) = x / y (one rounding instead of two: within an ulp)",
            "(mul ?x (div ?one ?y))",
            |c, _, s| {
                let (x, one, y) = (var(s, "?x"), var(s, "?one"), var(s, "?y"));
                if data(c.eg, one).is_f32_exactly(1.0) {
                    c.add(Op::Binary(BinaryOp::Div), vec![x, y])
                        .into_iter()
                        .collect()
                } else {
                    vec![]
                }
            },
        ),
    ]
}

/// `op(?c, ?x) = op(?x, ?c)` for a commutative `op` and a scalar constant `?c`.
fn scalar_right(name: &'static str, math: &'static str, pattern: &str, op: BinaryOp) -> Rule {
    rule(name, Exact, math, pattern, move |c, _, s| {
        let (k, x) = (var(s, "?c"), var(s, "?x"));
        if is_scalar_const(c, k) && !is_scalar_const(c, x) {
            c.add(Op::Binary(op), vec![x, k]).into_iter().collect()
        } else {
            vec![]
        }
    })
}

/// `(?x * ?y) * 0.5` for a pattern binding `?x`, `?y` and the constant `?h` (exactly 0.5)
/// in another association; `?y` (or `?x`) must not itself be a scalar constant.
fn half_outward(name: &'static str, math: &'static str, pattern: &str) -> Rule {
    rule(name, Reassociating, math, pattern, |c, _, s| {
        let (x, h, y) = (var(s, "?x"), var(s, "?h"), var(s, "?y"));
        if data(c.eg, h).is_f32_exactly(0.5) && !is_scalar_const(c, x) && !is_scalar_const(c, y) {
            mul(c, x, y)
                .and_then(|xy| mul(c, xy, h))
                .into_iter()
                .collect()
        } else {
            vec![]
        }
    })
}
