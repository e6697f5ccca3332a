//! Attention: `softmax(mask(scale(Q · Kt))) · V` (an additive mask, or a boolean one as
//! `where(mask, s, -inf)`), with torch's NaN filter, as one
//! `attention` op whose scores never reach memory; and its output transpose written in place.

use super::{data, gemms, keeps_last, nodes, rule, var, Ctx, Exactness::*, Gemm, Rule};
use egg::Id;
use tcc_ir::{AttentionMask, BinaryOp, DType, Dim, Op, ScoreScale, TensorData, UnaryOp};

/// A runtime gemm without epilogue or output permutation in class `id`: its operands and
/// input permutations.
type Product = (Id, Id, Option<Vec<usize>>, Option<Vec<usize>>);

fn plain_products(c: &Ctx, id: Id) -> Vec<Product> {
    gemms(c, id)
        .into_iter()
        .filter(|g| g.is_runtime(c) && g.perm_out.is_none())
        .map(|g| (g.args[0], g.args[1], g.perm_a, g.perm_b))
        .collect()
}

/// The softmax over the last axis in class `p`, reached directly, through the NaN filter
/// `where(isnan(p), 0, p)`, through `where(c, 0, p)` for a bool `c` (the ONNX `Attention`
/// op's zeroing of rows whose keys are all masked), or both: (the scores' class, nan_filter,
/// the zeroing condition).
fn probabilities(c: &Ctx, p: Id) -> Vec<(Id, bool, Option<Id>)> {
    probabilities_within(c, p, 2)
}

fn probabilities_within(c: &Ctx, p: Id, depth: usize) -> Vec<(Id, bool, Option<Id>)> {
    let rank = data(c.eg, p).ty.rank();
    let mut out: Vec<(Id, bool, Option<Id>)> = nodes(c.eg, p)
        .filter_map(|n| match n.op() {
            Op::Softmax { axis } if *axis + 1 == rank => Some((n.args()[0], false, None)),
            _ => None,
        })
        .collect();
    if depth == 0 {
        return out;
    }
    for n in nodes(c.eg, p) {
        if n.op() != &Op::Where {
            continue;
        }
        let [cond, zero, inner] = n.args() else {
            continue;
        };
        if !data(c.eg, *zero).is_f32_exactly(0.0) {
            continue;
        }
        let is_nan_filter = nodes(c.eg, *cond).any(|m| {
            m.op() == &Op::Unary(UnaryOp::IsNaN) && c.eg.find(m.args()[0]) == c.eg.find(*inner)
        });
        for (s, nan, zw) in probabilities_within(c, *inner, depth - 1) {
            if is_nan_filter && !nan && zw.is_none() {
                out.push((s, true, None));
            } else if !is_nan_filter
                && zw.is_none()
                && data(c.eg, *cond).ty.dtype == tcc_ir::DType::Bool
            {
                out.push((s, nan, Some(*cond)));
            }
        }
    }
    out
}

/// The ways to read class `s` as `mask(scale(qk))`: (qk's class, scale, mask kind, mask).
fn scores(c: &Ctx, s: Id) -> Vec<(Id, ScoreScale, AttentionMask, Option<Id>)> {
    let mut masked: Vec<(Id, AttentionMask, Option<Id>)> = vec![(s, AttentionMask::None, None)];
    for n in nodes(c.eg, s) {
        match (n.op(), n.args()) {
            (Op::Binary(BinaryOp::Add), [x, y]) => {
                masked.push((*x, AttentionMask::Add, Some(*y)));
                masked.push((*y, AttentionMask::Add, Some(*x)));
            }
            (Op::Where, [m, x, k]) if data(c.eg, *k).is_f32_exactly(f32::NEG_INFINITY) => {
                masked.push((*x, AttentionMask::Bool, Some(*m)));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (scaled, kind, mask) in masked {
        out.push((scaled, ScoreScale::None, kind, mask));
        for n in nodes(c.eg, scaled) {
            let scale = match n.op() {
                Op::Binary(BinaryOp::Mul) => ScoreScale::Mul,
                Op::Binary(BinaryOp::Div) => ScoreScale::Div,
                _ => continue,
            };
            let [x, k] = n.args() else { continue };
            let kd = data(c.eg, *k);
            if kd.ty.dtype != tcc_ir::DType::F32 || kd.ty.rank() != 0 {
                continue;
            }
            if let Some(v) = kd.scalar() {
                out.push((*x, scale(v as f32), kind, mask));
            }
        }
    }
    out
}

/// The ways class `id` (integers) holds positions along one axis: `(from_end, offset)` where
/// its element at an index is that index's coordinate on axis `rank - 1 - from_end` plus
/// `offset`, whatever the other coordinates (a `range` of step 1, reshaped to put its one
/// axis elsewhere, broadcast by `expand`, cast to another integer type, plus or minus a known
/// one-element integer, which moves the offset: a cache's `range(0, seq) + past_seq`;
/// sliced with step 1, which adds the start on that axis; positions joined end to end by a
/// `concat` along their axis; and `gather_nd` of positions at indices that are positions:
/// the dynamo exporter's `positions[b, range]`).
fn positions(c: &Ctx, id: Id, depth: usize) -> Vec<(usize, Dim)> {
    let mut out = Vec::new();
    let ty = &data(c.eg, id).ty;
    if !ty.dtype.is_int() {
        return out;
    }
    for n in nodes(c.eg, id) {
        match n.op() {
            Op::Range {
                start, delta: 1, ..
            } => out.push((0, start.clone())),
            _ if depth == 0 => {}
            Op::Reshape { .. } => {
                // A reshape that only adds or drops axes of size 1 (the axes that are not 1
                // are the same, in order): the positioned axis moves with its neighbours.
                let x = n.args()[0];
                let long = |dims: &[Dim]| -> Vec<usize> {
                    (0..dims.len())
                        .filter(|&a| dims[a].as_const() != Some(1))
                        .collect()
                };
                let (xd, yd) = (data(c.eg, x).ty.shape.dims(), ty.shape.dims());
                let (xl, yl) = (long(xd), long(yd));
                if xl.len() != yl.len() || xl.iter().zip(&yl).any(|(&a, &b)| xd[a] != yd[b]) {
                    continue;
                }
                for (from_end, offset) in positions(c, x, depth - 1) {
                    let xa = xd.len() - 1 - from_end;
                    if let Some(k) = xl.iter().position(|&a| a == xa) {
                        out.push((yd.len() - 1 - yl[k], offset));
                    }
                }
            }
            Op::Binary(BinaryOp::Sub) => {
                // Positions minus a known one-element integer.
                let [x, k] = n.args() else { continue };
                let Some(v) = known_scalar(c, *k) else {
                    continue;
                };
                let (xd, yd) = (data(c.eg, *x).ty.shape.dims(), ty.shape.dims());
                if xd.len() != yd.len() {
                    continue;
                }
                for (from_end, offset) in positions(c, *x, depth - 1) {
                    let a = xd.len() - 1 - from_end;
                    if xd[a] == yd[a] {
                        out.push((from_end, offset.sub(&v)));
                    }
                }
            }
            Op::Slice {
                axes,
                starts,
                steps,
                ..
            } => {
                // A step-1 slice of the positioned axis starts later; slices of other axes
                // keep it.
                let x = n.args()[0];
                let rank = ty.rank();
                for (from_end, offset) in positions(c, x, depth - 1) {
                    let a = rank - 1 - from_end;
                    match axes.iter().position(|&s| s == a) {
                        Some(k) if steps[k] == 1 => out.push((from_end, offset.add(&starts[k]))),
                        Some(_) => {}
                        None => out.push((from_end, offset)),
                    }
                }
            }
            Op::Concat { axis } => {
                // Along the positioned axis: parts whose positions continue one another.
                let rank = ty.rank();
                let from_end = rank - 1 - axis;
                let parts = n.args();
                for (fe, first) in positions(c, parts[0], depth - 1) {
                    if fe != from_end {
                        continue;
                    }
                    let mut next = first.add(&data(c.eg, parts[0]).ty.shape.dims()[*axis]);
                    let joined = parts[1..].iter().all(|&p| {
                        let continues = positions(c, p, depth - 1)
                            .iter()
                            .any(|(f, o)| *f == from_end && *o == next);
                        next = next.add(&data(c.eg, p).ty.shape.dims()[*axis]);
                        continues
                    });
                    if joined {
                        out.push((from_end, first));
                    }
                }
            }
            Op::GatherNd { batch_dims: 0 } => {
                // `x[i_0, .., i_r-1]` with the index components given by a `concat` of
                // one-wide parts along the indices' last axis: where `x` holds positions
                // along its axis `a` and component `a` holds positions along one of the
                // index axes, so does the result, the offsets added.
                let [x, idx] = n.args() else { continue };
                let xr = data(c.eg, *x).ty.rank();
                let id_dims = data(c.eg, *idx).ty.shape.dims();
                let ir = id_dims.len();
                if ir == 0 || id_dims[ir - 1].as_const() != Some(xr as i64) {
                    continue;
                }
                let xs = positions(c, *x, depth - 1);
                for parts in nodes(c.eg, *idx).filter_map(|m| match m.op() {
                    Op::Concat { axis } if *axis == ir - 1 && m.args().len() == xr => {
                        Some(m.args().to_vec())
                    }
                    _ => None,
                }) {
                    for (xfe, xo) in &xs {
                        let part = parts[xr - 1 - xfe];
                        for (pfe, po) in positions(c, part, depth - 1) {
                            if pfe >= 1 {
                                out.push((pfe - 1, xo.add(&po)));
                            }
                        }
                    }
                }
            }
            Op::Binary(BinaryOp::Add) => {
                // Positions plus a known one-element integer (the cached exports' query
                // positions `range(0, seq) + past_seq`): the offset grows by it, and
                // broadcasting one element keeps every axis of the other operand.
                let yd = ty.shape.dims();
                for (x, k) in [(n.args()[0], n.args()[1]), (n.args()[1], n.args()[0])] {
                    let Some(v) = known_scalar(c, k) else {
                        continue;
                    };
                    let xd = data(c.eg, x).ty.shape.dims();
                    for (from_end, offset) in positions(c, x, depth - 1) {
                        let (Some(a), Some(b)) = (
                            xd.len().checked_sub(from_end + 1),
                            yd.len().checked_sub(from_end + 1),
                        ) else {
                            continue;
                        };
                        if xd[a] == yd[b] {
                            out.push((from_end, offset.add(&v)));
                        }
                    }
                }
            }
            Op::Expand { .. } | Op::Cast { .. } => {
                // Broadcasting copies along other axes; the positioned axis keeps its size.
                let x = n.args()[0];
                let xd = data(c.eg, x).ty.shape.dims();
                let yd = ty.shape.dims();
                for (from_end, offset) in positions(c, x, depth - 1) {
                    let (Some(a), Some(b)) = (
                        xd.len().checked_sub(from_end + 1),
                        yd.len().checked_sub(from_end + 1),
                    ) else {
                        continue;
                    };
                    if xd[a] == yd[b] {
                        out.push((from_end, offset));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// How many ops deep [`positions`] looks: enough for the dynamo exporter's positions (a range,
/// reshaped, broadcast, sliced, joined and gathered).
const POSITION_DEPTH: usize = 9;

/// The value of an integer class of one element that inference knows (a `dims` of a
/// symbol, a constant), as a dim.
fn known_scalar(c: &Ctx, id: Id) -> Option<Dim> {
    let d = data(c.eg, id);
    if !d.ty.dtype.is_int() {
        return None;
    }
    match d.known.as_ref()?.values.as_slice() {
        [v] => Some(v.clone()),
        _ => None,
    }
}

/// True for a bool constant all true.
fn all_true(c: &Ctx, id: Id) -> bool {
    matches!(
        data(c.eg, id).value.as_deref().map(tcc_ir::Tensor::data),
        Some(TensorData::Bool(v)) if v.iter().all(|&b| b)
    )
}

/// The one value every element of class `id` (integers or bools, as `i64`) holds, whatever
/// the inputs: a constant of equal elements; cast, `not`, `equal` and `sub` of such values;
/// the difference of two equally shaped positions along the same axis (their offsets'
/// difference, when it is a number); a running sum of zeros; elements gathered from such a
/// tensor; its reshapes, broadcasts and slices. It proves the dynamo exporter's packed-
/// sequence ids all 0 when the positions are a plain `range`: the ids are a running sum of
/// `positions[i] - positions[i - 1] != 1`.
fn uniform(c: &Ctx, id: Id, depth: usize) -> Option<i64> {
    let d = data(c.eg, id);
    if !(d.ty.dtype.is_int() || d.ty.dtype == DType::Bool) {
        return None;
    }
    if let Some(t) = d.value.as_deref() {
        let v = t.data().to_i64_vec();
        let first = *v.first()?;
        return v.iter().all(|&x| x == first).then_some(first);
    }
    if depth == 0 {
        return None;
    }
    nodes(c.eg, id).find_map(|n| {
        let arg = |k: usize| uniform(c, n.args()[k], depth - 1);
        match n.op() {
            Op::Cast { to } if *to == DType::Bool => arg(0).map(|v| i64::from(v != 0)),
            Op::Cast { to } if to.is_int() => arg(0),
            Op::Unary(UnaryOp::Not) => arg(0).map(|v| i64::from(v == 0)),
            Op::Binary(BinaryOp::Equal) => Some(i64::from(arg(0)? == arg(1)?)),
            Op::Binary(BinaryOp::Sub) => {
                if let (Some(a), Some(b)) = (arg(0), arg(1)) {
                    return a.checked_sub(b);
                }
                let [a, b] = n.args() else { return None };
                if data(c.eg, *a).ty.shape != data(c.eg, *b).ty.shape {
                    return None;
                }
                let bs = positions(c, *b, POSITION_DEPTH);
                positions(c, *a, POSITION_DEPTH)
                    .iter()
                    .find_map(|(fa, oa)| {
                        bs.iter().find_map(|(fb, ob)| {
                            (fa == fb).then(|| oa.sub(ob).as_const()).flatten()
                        })
                    })
            }
            Op::CumSum { .. } => (arg(0)? == 0).then_some(0),
            Op::GatherNd { .. } | Op::Gather { .. } => arg(0),
            Op::Reshape { .. } | Op::Expand { .. } | Op::Slice { .. } | Op::Transpose { .. } => {
                arg(0)
            }
            _ => None,
        }
    })
}

/// True for a bool class that is all true whatever the inputs (see [`uniform`]), or the
/// `and` of such classes.
fn always_true(c: &Ctx, id: Id, depth: usize) -> bool {
    if data(c.eg, id).ty.dtype != DType::Bool {
        return false;
    }
    all_true(c, id)
        || uniform(c, id, depth) == Some(1)
        || (depth > 0
            && nodes(c.eg, id).any(|n| {
                matches!((n.op(), n.args()), (Op::Binary(BinaryOp::And), [a, b])
                    if always_true(c, *a, depth - 1) && always_true(c, *b, depth - 1))
            }))
}

/// True if class `id` (bool, broadcast to scores `[.., m, n]`) is the causal condition,
/// key position `<=` query position with the query positions ending where the keys do:
/// `kpos <= qpos` or `qpos >= kpos` for positions (see [`positions`]) along the keys' axis
/// (last) and the queries' (second last) whose offsets differ by `n - m`; `and` with a
/// class that is all true whatever the inputs ([`always_true`]) is looked through.
fn is_causal(c: &Ctx, id: Id, m: &Dim, n: &Dim, depth: usize) -> bool {
    let ty = &data(c.eg, id).ty;
    let r = ty.rank();
    if ty.dtype != DType::Bool
        || r < 2
        || &ty.shape.dims()[r - 2] != m
        || &ty.shape.dims()[r - 1] != n
    {
        return false;
    }
    let shift = n.sub(m);
    nodes(c.eg, id).any(|node| {
        let (k, q) = match (node.op(), node.args()) {
            (Op::Binary(BinaryOp::LessEqual), [k, q]) => (*k, *q),
            (Op::Binary(BinaryOp::GreaterEqual), [q, k]) => (*k, *q),
            (Op::Binary(BinaryOp::And), [a, b]) if depth > 0 => {
                return (always_true(c, *a, 12) && is_causal(c, *b, m, n, depth - 1))
                    || (always_true(c, *b, 12) && is_causal(c, *a, m, n, depth - 1));
            }
            _ => return false,
        };
        let qs = positions(c, q, POSITION_DEPTH);
        positions(c, k, POSITION_DEPTH)
            .iter()
            .any(|(ka, ko)| *ka == 0 && qs.iter().any(|(qa, qo)| *qa == 1 && qo.sub(ko) == shift))
    })
}

/// The last axis of `id`'s shape permuted by `perm`, and the one before it.
fn last_two(c: &Ctx, id: Id, perm: &Option<Vec<usize>>) -> Option<(Dim, Dim)> {
    let dims = data(c.eg, id).ty.shape.dims().to_vec();
    let r = dims.len();
    if r < 2 {
        return None;
    }
    let at = |i: usize| match perm {
        Some(p) => dims[p[i]].clone(),
        None => dims[i].clone(),
    };
    Some((at(r - 2), at(r - 1)))
}

/// The causal forms of the attentions of class `root` whose mask is class `mask` (and whose
/// `zero_where` is `zero`): see the rule `attention-causal`. An additive mask is read as
/// `where(X, 0, -inf)`, also under an added all-zero tensor (the dynamo exporter's
/// `expand(0) + where(..)`, exact: `0 + 0 = 0` and `0 + -inf = -inf`).
fn causal_forms(c: &mut Ctx, root: Id, mask: Id, zero: bool, how: Fill) -> Vec<Id> {
    let neg = match how {
        Fill::NegInf => f32::NEG_INFINITY,
        Fill::Min => f32::MIN,
    };
    let atts: Vec<(Op, Vec<Id>)> = nodes(c.eg, root)
        .filter(|n| {
            matches!(
                n.op(),
                Op::Attention {
                    causal: false,
                    causal_min: false,
                    zero_where,
                    ..
                } if *zero_where == zero
            ) && n
                .args()
                .get(3)
                .is_some_and(|&m| c.eg.find(m) == c.eg.find(mask))
        })
        .map(|n| (n.op().clone(), n.args().to_vec()))
        .collect();
    let mut out = Vec::new();
    for (op, args) in atts {
        let Op::Attention {
            mask: kind,
            perm_q,
            perm_k,
            ..
        } = &op
        else {
            continue;
        };
        let (Some((m, _)), Some((_, n))) =
            (last_two(c, args[0], perm_q), last_two(c, args[1], perm_k))
        else {
            continue;
        };
        // The condition under the mask, and how the rest is masked again.
        let conds: Vec<(Id, Option<(Id, Id)>)> = match kind {
            AttentionMask::Add => {
                let mut wheres = vec![mask];
                for a in nodes(c.eg, mask) {
                    if let (Op::Binary(BinaryOp::Add), [x, y]) = (a.op(), a.args()) {
                        if all_zero(c, *x) {
                            wheres.push(*y);
                        } else if all_zero(c, *y) {
                            wheres.push(*x);
                        }
                    }
                }
                wheres
                    .into_iter()
                    .flat_map(|w| nodes(c.eg, w).collect::<Vec<_>>())
                    .filter_map(|w| match (w.op(), w.args()) {
                        (Op::Where, [x, z, ninf])
                            if data(c.eg, *z).is_f32_exactly(0.0)
                                && data(c.eg, *ninf).is_f32_exactly(neg) =>
                        {
                            Some((*x, Some((*z, *ninf))))
                        }
                        _ => None,
                    })
                    .collect()
            }
            AttentionMask::Bool if how == Fill::NegInf => vec![(mask, None)],
            AttentionMask::Bool => vec![],
            AttentionMask::None => vec![],
        };
        for (x, fill) in conds {
            // C alone, or C and P either way round: the rest to keep as the mask, and whether
            // the hidden keys must score finfo.min (`causal_min`) rather than -inf. With
            // finfo.min, a query whose seen scores are all finfo.min (its seen keys all
            // padding, or none) weighs every key, hidden ones too: `causal_min` keeps that.
            // Alone, with at least as many keys as queries, every query sees key 0 (a real
            // score), so -inf hides as well and the kernel needs no such rows.
            let mut rest: Vec<(Option<Id>, bool)> = Vec::new();
            if is_causal(c, x, &m, &n, 2) {
                rest.push((None, how == Fill::Min && !nonnegative(&n.sub(&m))));
            }
            // When C alone is causal, a form that keeps part of it as the mask costs more.
            let alone = !rest.is_empty();
            for a in nodes(c.eg, x).filter(|_| !alone) {
                if let (Op::Binary(BinaryOp::And), [p0, p1]) = (a.op(), a.args()) {
                    if is_causal(c, *p0, &m, &n, 2) {
                        rest.push((Some(*p1), how == Fill::Min));
                    } else if is_causal(c, *p1, &m, &n, 2) {
                        rest.push((Some(*p0), how == Fill::Min));
                    }
                }
            }
            for (p, hide_min) in rest {
                let mut new = op.clone();
                let mut new_args = args[..3].to_vec();
                let new_kind = match p {
                    None => AttentionMask::None,
                    Some(p) => {
                        let kept = match fill {
                            Some((z, ninf)) => c.add(Op::Where, vec![p, z, ninf]),
                            None => Some(p),
                        };
                        let Some(kept) = kept else { continue };
                        new_args.push(kept);
                        *kind
                    }
                };
                if zero {
                    new_args.push(args[4]);
                }
                if let Op::Attention {
                    mask,
                    causal,
                    causal_min,
                    ..
                } = &mut new
                {
                    *mask = new_kind;
                    *causal = true;
                    *causal_min = hide_min;
                }
                out.extend(c.add(new, new_args));
            }
        }
    }
    out
}

/// How the causal condition's mask fills what it hides: `-inf`, or torch's `finfo.min` (the
/// dynamo opset-18 exporter's; with a padding mask, or fewer keys than queries, the rewrite
/// keeps it with `causal_min`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fill {
    NegInf,
    Min,
}

/// True if `d` is at least 0 whatever its symbols' sizes: a polynomial of symbols (sizes,
/// never negative) with non-negative coefficients.
fn nonnegative(d: &Dim) -> bool {
    d.terms()
        .all(|(atoms, k)| k >= 0 && atoms.iter().all(|a| matches!(a, tcc_ir::dim::Atom::Sym(_))))
}

/// True for an f32 class every element of which is +0: a constant, or one expanded.
fn all_zero(c: &Ctx, id: Id) -> bool {
    let zeros = |id: Id| {
        matches!(
            data(c.eg, id).value.as_deref().map(tcc_ir::Tensor::data),
            Some(TensorData::F32(v)) if v.iter().all(|x| x.to_bits() == 0)
        )
    };
    zeros(id) || nodes(c.eg, id).any(|n| matches!(n.op(), Op::Expand { .. }) && zeros(n.args()[0]))
}

/// The attention rules.
pub fn rules() -> Vec<Rule> {
    vec![
        rule(
            "scores-scale-outward",
            Reassociating,
            "gemm(q * a, kt * b) = gemm(q, kt) * (a b) for scalars a, b (torch's SDPA scales both by d^-1/4)",
            "(gemm (mul ?q ?a) (mul ?k ?b))",
            |c, root, s| {
                let (q, a, k, b) = (var(s, "?q"), var(s, "?a"), var(s, "?k"), var(s, "?b"));
                let scalar = |id: Id| {
                    let d = data(c.eg, id);
                    (d.ty.dtype == tcc_ir::DType::F32 && d.ty.rank() == 0)
                        .then(|| d.scalar())
                        .flatten()
                };
                let (Some(av), Some(bv)) = (scalar(a), scalar(b)) else {
                    return vec![];
                };
                let plain = gemms(c, root)
                    .iter()
                    .any(|g| !g.bias && g.is_unpermuted_linear());
                if !plain || data(c.eg, k).value.is_some() {
                    return vec![];
                }
                let Some(g) = c.add(Gemm::plain(vec![q, k]).op(), vec![q, k]) else {
                    return vec![];
                };
                let ab = c.constant(tcc_ir::fused::scalar(tcc_ir::DType::F32, av * bv));
                c.add(Op::Binary(BinaryOp::Mul), vec![g, ab])
                    .into_iter()
                    .collect()
            },
        ),
        rule(
            "attention",
            Exact,
            "gemm(filter(softmax(scale(gemm(q, kt)) + mask)), v) = attention(q, kt, v, mask)",
            "(gemm ?p ?v)",
            |c, root, _| {
                let mut found = Vec::new();
                let pv: Vec<Product> = plain_products(c, root);
                for (p, v, perm_p, perm_v) in pv {
                    if perm_p.is_some() {
                        continue;
                    }
                    for (s, nan_filter, zero_cond) in probabilities(c, p) {
                        // The kernel's limits: the mask does not grow the scores, and `V`
                        // does not grow their batch dims.
                        let sty = data(c.eg, s).ty.clone();
                        let r = sty.rank();
                        let out = &data(c.eg, root).ty;
                        if out.rank() != r || out.shape.dims()[..r - 2] != sty.shape.dims()[..r - 2]
                        {
                            continue;
                        }
                        for (qk, scale, kind, mask) in scores(c, s) {
                            if data(c.eg, qk).ty != sty {
                                continue;
                            }
                            for (q, kt, perm_q, perm_k) in plain_products(c, qk) {
                                let mut args = vec![q, kt, v];
                                args.extend(mask);
                                args.extend(zero_cond);
                                let op = Op::Attention {
                                    scale,
                                    mask: kind,
                                    nan_filter,
                                    zero_where: zero_cond.is_some(),
                                    causal: false,
                                    causal_min: false,
                                    perm_q: perm_q.clone(),
                                    perm_k: perm_k.clone(),
                                    perm_v: perm_v.clone(),
                                    perm_out: None,
                                };
                                found.push((op, args));
                            }
                        }
                    }
                }
                found
                    .into_iter()
                    .filter_map(|(op, args)| c.add(op, args))
                    .collect()
            },
        ),
        rule(
            "attention-causal",
            Exact,
            "attention(.., mask(C and P)) = attention<causal>(.., mask(P)) for C = key position <= query position + keys - queries, the mask -inf where false (exact for finite scores)",
            "(attention ?q ?k ?v ?m)",
            |c, root, s| causal_forms(c, root, var(s, "?m"), false, Fill::NegInf),
        ),
        rule(
            "attention-causal-finfo-min",
            Exact,
            "attention(.., where(C and P, 0, finfo.min)) = attention<causal, causal_min>(.., where(P, 0, finfo.min)) for C as attention-causal, or attention<causal>(..) for C alone with at least as many keys as queries (exact for scores below 2^103 in magnitude)",
            "(attention ?q ?k ?v ?m)",
            |c, root, s| causal_forms(c, root, var(s, "?m"), false, Fill::Min),
        ),
        rule(
            "attention-causal-zero-where",
            Exact,
            "attention<zero_where>(.., mask(C and P), z) = attention<causal, zero_where>(.., mask(P), z), as attention-causal (the ONNX Attention op's form)",
            "(attention ?q ?k ?v ?m ?z)",
            |c, root, s| causal_forms(c, root, var(s, "?m"), true, Fill::NegInf),
        ),
        rule(
            "transpose-attention",
            Exact,
            "transpose(attention(..), p) = attention<perm_out=p>(..), p keeping the last axis",
            "(transpose ?a)",
            |c, root, s| {
                let a = var(s, "?a");
                let perms: Vec<Vec<usize>> = nodes(c.eg, root)
                    .filter_map(|n| match n.op() {
                        Op::Transpose { perm } if c.eg.find(n.args()[0]) == c.eg.find(a) => {
                            Some(perm.clone())
                        }
                        _ => None,
                    })
                    .filter(|p| keeps_last(p))
                    .collect();
                let atts: Vec<(Op, Vec<Id>)> = nodes(c.eg, a)
                    .filter(|n| matches!(n.op(), Op::Attention { perm_out: None, .. }))
                    .map(|n| (n.op().clone(), n.args().to_vec()))
                    .collect();
                let mut out = Vec::new();
                for perm in perms {
                    for (op, args) in &atts {
                        let mut op = op.clone();
                        if let Op::Attention { perm_out, .. } = &mut op {
                            *perm_out = Some(perm.clone());
                        }
                        out.extend(c.add(op, args.clone()));
                    }
                }
                out
            },
        ),
    ]
}
