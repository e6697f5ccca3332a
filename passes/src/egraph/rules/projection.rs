//! Projections of one input: the Q, K and V GEMMs of a layer merged into one (and slices
//! of a merged GEMM, as GPT-2 writes its `c_attn`, split into GEMMs of their own). Both
//! forms stay in the e-graph and the cost model chooses: a merged GEMM reads its input once
//! and is one kernel, but each slice of its result is a copy. Both rules take only the
//! graph's own weights, never ones a rule derived: merging merged GEMMs, or splitting a merged
//! GEMM back, would only grow the e-graph.

use super::{data, gemms, nodes, rule, var, Ctx, Exactness::*, Gemm, Rule};
use egg::Id;
use tcc_ir::{DType, Dim, Op, Shape, Tensor};

/// A constant-B gemm with a bias and no activation or permutation in class `id`, of the
/// graph's own f32 weights: (input, weight class, bias class).
fn plain_biased(c: &Ctx, id: Id) -> Vec<(Id, Id, Id)> {
    gemms(c, id)
        .into_iter()
        .filter(|g| g.bias && g.is_unpermuted_linear())
        .map(|g| (g.args[0], g.args[1], g.args[2]))
        .filter(|&(_, w, b)| {
            let (wd, bd) = (data(c.eg, w), data(c.eg, b));
            wd.graph_constant
                && bd.graph_constant
                && wd.ty.rank() == 2
                && wd.ty.dtype == DType::F32
                && bd.ty.rank() == 1
        })
        .collect()
}

/// The f32 values of a constant class.
fn values(c: &Ctx, id: Id) -> Vec<f32> {
    data(c.eg, id)
        .value
        .as_ref()
        .and_then(|t| t.as_slice::<f32>().map(<[f32]>::to_vec))
        .unwrap_or_default()
}

/// The projection rules.
pub fn rules() -> Vec<Rule> {
    vec![
        rule(
            "qkv-merge",
            Exact,
            "gemm(x, W_i, b_i) = slice_i(gemm(x, [W_1 .. W_m], [b_1 .. b_m])) for the gemms of one input",
            "(gemm ?x ?w ?b)",
            |c, root, s| {
                let x = c.eg.find(var(s, "?x"));
                let Some(&(_, w0, _)) = plain_biased(c, root).first() else {
                    return vec![];
                };
                let k = data(c.eg, w0).ty.shape.dims()[0].clone();
                // Every class that is such a gemm of x, one gemm each (the one with the
                // earliest weight class: stable as the e-graph grows), in class order.
                let mut parents: Vec<Id> = c.eg[x].parents().map(|p| c.eg.find(p)).collect();
                parents.sort();
                parents.dedup();
                let mut members: Vec<(Id, Id, Id)> = Vec::new();
                for p in parents {
                    let mut found: Vec<(Id, Id, Id)> = plain_biased(c, p)
                        .into_iter()
                        .filter(|&(a, w, _)| {
                            c.eg.find(a) == x && data(c.eg, w).ty.shape.dims()[0] == k
                        })
                        .collect();
                    found.sort_by_key(|&(_, w, b)| (c.eg.find(w), c.eg.find(b)));
                    if let Some(&(_, w, b)) = found.first() {
                        members.push((p, c.eg.find(w), c.eg.find(b)));
                    }
                }
                if members.len() < 2 || members.len() > 8 {
                    return vec![];
                }
                let widths: Vec<usize> = members
                    .iter()
                    .map(|&(_, w, _)| data(c.eg, w).ty.shape.as_fixed().map_or(0, |s| s[1]))
                    .collect();
                let kk = data(c.eg, w0).ty.shape.as_fixed().map_or(0, |s| s[0]);
                if widths.contains(&0) || kk == 0 {
                    return vec![];
                }
                let total: usize = widths.iter().sum();
                let ws: Vec<Vec<f32>> = members.iter().map(|&(_, w, _)| values(c, w)).collect();
                let mut wc = Vec::with_capacity(kk * total);
                for r in 0..kk {
                    for (w, &n) in ws.iter().zip(&widths) {
                        wc.extend_from_slice(&w[r * n..(r + 1) * n]);
                    }
                }
                let bc: Vec<f32> = members.iter().flat_map(|&(_, _, b)| values(c, b)).collect();
                if wc.len() != kk * total || bc.len() != total {
                    return vec![];
                }
                let ids = |f: &dyn Fn(&(Id, Id, Id)) -> Id| {
                    members.iter().map(|m| f(m).to_string()).collect::<Vec<_>>().join(",")
                };
                let wkey = format!("concat1({})", ids(&|m| m.1));
                let bkey = format!("concat0({})", ids(&|m| m.2));
                let (Ok(wt), Ok(bt)) = (
                    Tensor::from_vec(vec![kk, total], wc),
                    Tensor::from_vec(vec![total], bc),
                ) else {
                    return vec![];
                };
                let wm = c.derived_constant(wkey, wt);
                let bm = c.derived_constant(bkey, bt);
                let merged = Gemm {
                    bias: true,
                    ..Gemm::plain(vec![x, wm, bm])
                };
                let Some(m) = c.add(merged.op(), merged.args) else {
                    return vec![];
                };
                let rank = data(c.eg, root).ty.rank();
                let mut off = 0;
                let mut out = Vec::new();
                for (&(class, _, _), &n) in members.iter().zip(&widths) {
                    let slice = Op::Slice {
                        axes: vec![rank - 1],
                        starts: vec![Dim::constant(off as i64)],
                        ends: vec![Dim::constant((off + n) as i64)],
                        steps: vec![1],
                    };
                    off += n;
                    if let Some(sl) = c.add(slice, vec![m]) {
                        if class == c.eg.find(root) {
                            out.push(sl);
                        } else if data(c.eg, sl).ty == data(c.eg, class).ty {
                            c.eg.union(class, sl);
                        }
                    }
                }
                out
            },
        ),
        rule(
            "gemm-slice-split",
            Exact,
            "slice(act(x W + b), last axis, s..e) = act(x W[:, s..e] + b[s..e])",
            "(slice ?g)",
            |c, root, s| {
                let g = var(s, "?g");
                let slices: Vec<(usize, usize)> = nodes(c.eg, root)
                    .filter_map(|n| match n.op() {
                        Op::Slice {
                            axes,
                            starts,
                            ends,
                            steps,
                        } if c.eg.find(n.args()[0]) == c.eg.find(g)
                            && axes.len() == 1
                            && axes[0] + 1 == data(c.eg, g).ty.rank()
                            && steps == &[1] =>
                        {
                            Some((starts[0].as_const()? as usize, ends[0].as_const()? as usize))
                        }
                        _ => None,
                    })
                    .collect();
                let splittable: Vec<(Op, Vec<Id>)> = gemms(c, g)
                    .into_iter()
                    .filter(|m| {
                        m.perm_a.is_none()
                            && m.perm_b.is_none()
                            && m.perm_out.is_none()
                            && data(c.eg, m.args[1]).graph_constant
                            && m.args.get(2).is_none_or(|&b| data(c.eg, b).graph_constant)
                            && data(c.eg, m.args[1]).ty.rank() == 2
                            && data(c.eg, m.args[1]).ty.dtype == DType::F32
                    })
                    .map(|m| (m.op(), m.args))
                    .collect();
                let mut out = Vec::new();
                for (st, en) in slices {
                    for (op, args) in &splittable {
                        let Some([kk, n]) = data(c.eg, args[1]).ty.shape.as_fixed().map(|s| [s[0], s[1]])
                        else {
                            continue;
                        };
                        if en > n || st >= en {
                            continue;
                        }
                        let w = values(c, args[1]);
                        let cols = en - st;
                        let ws: Vec<f32> = (0..kk).flat_map(|r| w[r * n + st..r * n + en].to_vec()).collect();
                        let Ok(wt) = Tensor::from_vec(vec![kk, cols], ws) else {
                            continue;
                        };
                        let wid = c.eg.find(args[1]);
                        let mut new_args = vec![args[0], c.derived_constant(format!("cols({wid},{st},{en})"), wt)];
                        if args.len() == 3 {
                            let b = values(c, args[2]);
                            if b.len() != n || data(c.eg, args[2]).ty.rank() != 1 {
                                continue;
                            }
                            let Ok(bt) = Tensor::from_vec(vec![cols], b[st..en].to_vec()) else {
                                continue;
                            };
                            let bid = c.eg.find(args[2]);
                            new_args.push(c.derived_constant(format!("cols({bid},{st},{en})"), bt));
                        }
                        out.extend(c.add(op.clone(), new_args));
                    }
                }
                out
            },
        ),
        rule(
            "slice-through-reshape",
            Exact,
            "slice(reshape(y), last axis) = reshape(slice(y, last axis)) when the reshape keeps the last axis",
            "(slice ?r)",
            |c, root, s| {
                let r = var(s, "?r");
                let slices: Vec<Op> = nodes(c.eg, root)
                    .filter(|n| c.eg.find(n.args()[0]) == c.eg.find(r))
                    .map(|n| n.op().clone())
                    .collect();
                let reshapes: Vec<(Shape, Id)> = nodes(c.eg, r)
                    .filter_map(|n| match n.op() {
                        Op::Reshape { shape } => Some((shape.clone(), n.args()[0])),
                        _ => None,
                    })
                    .collect();
                let mut out = Vec::new();
                for op in slices {
                    let Op::Slice { axes, steps, starts, ends } = &op else { continue };
                    let rank = data(c.eg, r).ty.rank();
                    if axes.len() != 1 || axes[0] + 1 != rank || steps != &[1] {
                        continue;
                    }
                    for (shape, y) in &reshapes {
                        let yt = data(c.eg, *y).ty.clone();
                        if yt.rank() == 0 || yt.shape.dims().last() != shape.dims().last() {
                            continue;
                        }
                        let inner = Op::Slice {
                            axes: vec![yt.rank() - 1],
                            starts: starts.clone(),
                            ends: ends.clone(),
                            steps: vec![1],
                        };
                        let Some(sy) = c.add(inner, vec![*y]) else { continue };
                        let mut dims = shape.dims().to_vec();
                        let last = dims.len() - 1;
                        dims[last] = data(c.eg, sy).ty.shape.dims()[yt.rank() - 1].clone();
                        out.extend(c.add(Op::Reshape { shape: Shape(dims) }, vec![sy]));
                    }
                }
                out
            },
        ),
    ]
}
