//! `Einsum`, lowered at import to core ops: `Transpose`, `Reshape`, `MatMul`,
//! `Reduce` (sum), `Mul` and, for diagonals, `Slice`.
//!
//! The equation is parsed into one list of labels per operand: letters, and
//! for `...` one label per broadcast axis, right-aligned as numpy aligns
//! them. Without `->` the output is the ellipsis axes, then the letters that
//! appear once, in alphabetical order. Then:
//!
//! - a label repeated within one operand (`ii`) takes the diagonal: the two
//!   axes are moved last, flattened to `n * n` and sliced with step `n + 1`
//!   (the size must be a constant);
//! - operands are contracted pairwise from the left; a pair first sums the
//!   labels that neither the other operand nor anything later needs, then
//!   arranges both as `[batch.., m, k]` and `[batch.., k, n]` for one
//!   `MatMul` (or, with nothing to contract, multiplies them elementwise with
//!   broadcasting), and reshapes the result to `[batch.., a_only.., b_only..]`;
//! - a shared label of size 1 on one side broadcasts: that side drops it;
//! - the last operand sums what the output does not keep and is transposed
//!   into the output's order.

use super::{reg, Registry};
use crate::context::Ctx;
use crate::error::Result;
use std::collections::BTreeSet;
use tcc_ir::{BinaryOp, Dim, NodeId, Op, ReduceKind};

/// Registers `Einsum`.
pub(crate) fn register(r: &mut Registry) {
    reg(r, "Einsum", 12, einsum);
}

/// An axis label. Ellipsis labels sort first, in axis order, so that the
/// implicit output puts them first as numpy does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Label {
    /// Axis `i` of the broadcast ellipsis, counted from its left.
    Ellipsis(usize),
    /// A letter.
    Letter(char),
}

/// One term of the equation as written: letters and at most one ellipsis.
struct Term {
    letters_before: Vec<char>,
    /// The letters after the ellipsis, if there is one.
    after: Option<Vec<char>>,
}

impl Term {
    fn letter_count(&self) -> usize {
        self.letters_before.len() + self.after.as_ref().map_or(0, Vec::len)
    }

    fn letters(&self) -> impl Iterator<Item = char> + '_ {
        self.letters_before
            .iter()
            .chain(self.after.iter().flatten())
            .copied()
    }

    /// The labels of an operand (or the output) whose ellipsis covers
    /// `ell` axes out of the `total` of the broadcast ellipsis.
    fn labels(&self, ell: usize, total: usize) -> Vec<Label> {
        let mut v: Vec<Label> = self
            .letters_before
            .iter()
            .map(|&l| Label::Letter(l))
            .collect();
        if let Some(after) = &self.after {
            v.extend((total - ell..total).map(Label::Ellipsis));
            v.extend(after.iter().map(|&l| Label::Letter(l)));
        }
        v
    }
}

/// Parses one term, or says what is wrong with it (the caller names the
/// equation).
fn parse_term(s: &str) -> std::result::Result<Term, String> {
    let (before, after) = match s.find("...") {
        Some(i) => (&s[..i], Some(&s[i + 3..])),
        None => (s, None),
    };
    let letters = |part: &str| -> std::result::Result<Vec<char>, String> {
        part.chars()
            .map(|ch| {
                if ch.is_ascii_alphabetic() {
                    Ok(ch)
                } else {
                    Err(format!("`{ch}` is not a letter"))
                }
            })
            .collect()
    };
    Ok(Term {
        letters_before: letters(before)?,
        after: after.map(letters).transpose()?,
    })
}

/// An operand being lowered: a node and the label of each of its axes.
#[derive(Clone)]
struct Operand {
    id: NodeId,
    labels: Vec<Label>,
}

/// The lowering of one `Einsum` node, with the equation for messages.
struct Lowering<'c, 'a> {
    c: &'c mut Ctx<'a>,
    equation: String,
}

impl Lowering<'_, '_> {
    fn err(&self, message: impl std::fmt::Display) -> crate::error::Error {
        self.c
            .err(format!("equation `{}`: {message}", self.equation))
    }

    fn dims(&self, x: &Operand) -> Vec<Dim> {
        self.c.shape(x.id)
    }

    /// Takes the diagonal of every label that `x` repeats.
    fn diagonals(&mut self, mut x: Operand) -> Result<Operand> {
        loop {
            let repeat = (0..x.labels.len()).find_map(|p| {
                (p + 1..x.labels.len())
                    .find(|&q| x.labels[q] == x.labels[p])
                    .map(|q| (p, q))
            });
            let Some((p, q)) = repeat else {
                return Ok(x);
            };
            let dims = self.dims(&x);
            let n = match (dims[p].as_const(), dims[q].as_const()) {
                (Some(a), Some(b)) if a == b => a,
                _ => {
                    return Err(self.err(format!(
                        "a diagonal needs equal constant sizes, got {} and {}",
                        dims[p], dims[q]
                    )))
                }
            };
            // Move the two axes last, flatten them, and step along the diagonal.
            let mut perm: Vec<usize> = (0..x.labels.len()).filter(|&i| i != p && i != q).collect();
            perm.extend([p, q]);
            let moved = self.permute_axes(x.id, &perm)?;
            let mut flat: Vec<Dim> = perm[..perm.len() - 2]
                .iter()
                .map(|&i| dims[i].clone())
                .collect();
            flat.push(Dim::constant(n * n));
            let r = flat.len();
            let f = self.c.reshape(moved, flat)?;
            let id = self.c.add(
                Op::Slice {
                    axes: vec![r - 1],
                    starts: vec![Dim::constant(0)],
                    ends: vec![Dim::constant(n * n)],
                    steps: vec![n + 1],
                },
                &[f],
            )?;
            let mut labels: Vec<Label> = perm[..perm.len() - 2]
                .iter()
                .map(|&i| x.labels[i])
                .collect();
            labels.push(x.labels[p]);
            x = Operand { id, labels };
        }
    }

    /// `x` transposed by `perm`, or `x` itself for the identity.
    fn permute_axes(&mut self, x: NodeId, perm: &[usize]) -> Result<NodeId> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(x);
        }
        self.c.add(
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }

    /// `x` with its axes in the order of `order`, which lists each label once.
    fn permute(&mut self, x: &Operand, order: &[Label]) -> Result<NodeId> {
        let perm: Vec<usize> = order
            .iter()
            .map(|l| x.labels.iter().position(|m| m == l))
            .collect::<Option<_>>()
            .ok_or_else(|| self.err("internal error: a label went missing"))?;
        self.permute_axes(x.id, &perm)
    }

    /// Sums the axes of `x` whose label `keep` rejects.
    fn sum_out(&mut self, x: Operand, keep: impl Fn(&Label) -> bool) -> Result<Operand> {
        let axes: Vec<usize> = (0..x.labels.len())
            .filter(|&i| !keep(&x.labels[i]))
            .collect();
        if axes.is_empty() {
            return Ok(x);
        }
        let id = self.c.add(
            Op::Reduce {
                kind: ReduceKind::Sum,
                axes: axes.clone(),
                keep_dims: false,
            },
            &[x.id],
        )?;
        let labels = (0..x.labels.len())
            .filter(|i| !axes.contains(i))
            .map(|i| x.labels[i])
            .collect();
        Ok(Operand { id, labels })
    }

    /// Drops the size-1 axis `axis` of `x` (a broadcast label).
    fn squeeze(&mut self, x: Operand, axis: usize) -> Result<Operand> {
        let mut dims = self.dims(&x);
        dims.remove(axis);
        let id = self.c.reshape(x.id, dims)?;
        let mut labels = x.labels;
        labels.remove(axis);
        Ok(Operand { id, labels })
    }

    /// Broadcasts the labels `a` and `b` share: where one side has size 1
    /// and the other does not, the size-1 side drops the label.
    fn broadcast(&mut self, mut a: Operand, mut b: Operand) -> Result<(Operand, Operand)> {
        let mut i = 0;
        while i < a.labels.len() {
            let Some(j) = b.labels.iter().position(|l| *l == a.labels[i]) else {
                i += 1;
                continue;
            };
            let (da, db) = (self.dims(&a)[i].clone(), self.dims(&b)[j].clone());
            if da == db {
                i += 1;
            } else if da.is(1) {
                a = self.squeeze(a, i)?;
            } else if db.is(1) {
                b = self.squeeze(b, j)?;
                i += 1;
            } else if da.as_const().is_some() && db.as_const().is_some() {
                return Err(self.err(format!(
                    "label {} has sizes {da} and {db}",
                    label_name(&a.labels[i])
                )));
            } else {
                i += 1;
            }
        }
        Ok((a, b))
    }

    /// The product of `a` and `b`, summed over the labels that `needed`
    /// (what the output and later operands use) does not hold.
    fn contract(&mut self, a: Operand, b: Operand, needed: &BTreeSet<Label>) -> Result<Operand> {
        let (a, b) = self.broadcast(a, b)?;
        let (la, lb) = (a.labels.clone(), b.labels.clone());
        let a = self.sum_out(a, |l| needed.contains(l) || lb.contains(l))?;
        let b = self.sum_out(b, |l| needed.contains(l) || la.contains(l))?;
        let shared = |l: &Label| b.labels.contains(l);
        let batch: Vec<Label> = a
            .labels
            .iter()
            .filter(|l| shared(l) && needed.contains(l))
            .copied()
            .collect();
        let summed: Vec<Label> = a
            .labels
            .iter()
            .filter(|l| shared(l) && !needed.contains(l))
            .copied()
            .collect();
        let a_only: Vec<Label> = a.labels.iter().filter(|l| !shared(l)).copied().collect();
        let b_only: Vec<Label> = b
            .labels
            .iter()
            .filter(|l| !a.labels.contains(l))
            .copied()
            .collect();
        let (da, db) = (self.dims(&a), self.dims(&b));
        let size = |x: &Operand, d: &[Dim], l: &Label| {
            let i = x.labels.iter().position(|m| m == l).unwrap_or(0);
            d[i].clone()
        };
        let batch_dims: Vec<Dim> = batch.iter().map(|l| size(&a, &da, l)).collect();
        let a_dims: Vec<Dim> = a_only.iter().map(|l| size(&a, &da, l)).collect();
        let b_dims: Vec<Dim> = b_only.iter().map(|l| size(&b, &db, l)).collect();
        let product = |d: &[Dim]| d.iter().fold(Dim::constant(1), |p, x| p.mul(x));
        let mut labels = batch.clone();
        labels.extend(&a_only);
        labels.extend(&b_only);
        let mut out_dims = batch_dims.clone();
        out_dims.extend(a_dims.iter().cloned());
        out_dims.extend(b_dims.iter().cloned());

        let mut order_a = batch.clone();
        order_a.extend(&a_only);
        let mut order_b = batch.clone();
        if summed.is_empty() {
            // Nothing to sum: an elementwise product with broadcasting,
            // `[batch, a_only, 1..]` times `[batch, 1.., b_only]`.
            let ta = self.permute(&a, &order_a)?;
            order_b.extend(&b_only);
            let tb = self.permute(&b, &order_b)?;
            let mut sa = batch_dims.clone();
            sa.extend(a_dims.iter().cloned());
            sa.extend(b_dims.iter().map(|_| Dim::constant(1)));
            let mut sb = batch_dims.clone();
            sb.extend(a_dims.iter().map(|_| Dim::constant(1)));
            sb.extend(b_dims.iter().cloned());
            let ra = self.c.reshape(ta, sa)?;
            let rb = self.c.reshape(tb, sb)?;
            let id = self.c.binary(BinaryOp::Mul, ra, rb)?;
            return Ok(Operand { id, labels });
        }
        let k_dims: Vec<Dim> = summed.iter().map(|l| size(&a, &da, l)).collect();
        order_a.extend(&summed);
        order_b.extend(&summed);
        order_b.extend(&b_only);
        let ta = self.permute(&a, &order_a)?;
        let tb = self.permute(&b, &order_b)?;
        let mut sa = batch_dims.clone();
        sa.extend([product(&a_dims), product(&k_dims)]);
        let mut sb = batch_dims;
        sb.extend([product(&k_dims), product(&b_dims)]);
        let ra = self.c.reshape(ta, sa)?;
        let rb = self.c.reshape(tb, sb)?;
        let y = self.c.add(Op::MatMul, &[ra, rb])?;
        let id = self.c.reshape(y, out_dims)?;
        Ok(Operand { id, labels })
    }
}

fn label_name(l: &Label) -> String {
    match l {
        Label::Letter(c) => format!("`{c}`"),
        Label::Ellipsis(i) => format!("`...` axis {i}"),
    }
}

fn einsum(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let equation: String = c
        .attr_s("equation", "")?
        .chars()
        .filter(|ch| !ch.is_whitespace())
        .collect();
    let mut l = Lowering { c, equation };
    let (lhs, rhs) = match l.equation.split_once("->") {
        Some((a, b)) => (a.to_string(), Some(b.to_string())),
        None => (l.equation.clone(), None),
    };
    let terms = lhs
        .split(',')
        .map(parse_term)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|m| l.err(m))?;
    let n = l.c.n_inputs();
    if terms.len() != n || n == 0 {
        return Err(l.err(format!("has {} input terms for {n} inputs", terms.len())));
    }
    // The ellipsis of each operand covers the axes its letters leave.
    let mut ells = Vec::with_capacity(n);
    for (i, t) in terms.iter().enumerate() {
        let x = l.c.req(i)?;
        let rank = l.c.rank(x);
        let ell = match &t.after {
            Some(_) if rank >= t.letter_count() => rank - t.letter_count(),
            None if rank == t.letter_count() => 0,
            _ => {
                return Err(l.err(format!(
                    "input {i} has rank {rank}, which its term does not fit"
                )))
            }
        };
        ells.push(ell);
    }
    let total = ells.iter().copied().max().unwrap_or(0);
    let mut operands = Vec::with_capacity(n);
    for (i, t) in terms.iter().enumerate() {
        let id = l.c.req(i)?;
        operands.push(Operand {
            id,
            labels: t.labels(ells[i], total),
        });
    }
    let output: Vec<Label> = match &rhs {
        Some(r) => {
            let t = parse_term(r).map_err(|m| l.err(m))?;
            let out = t.labels(total, total);
            let inputs: BTreeSet<Label> = operands.iter().flat_map(|o| o.labels.clone()).collect();
            for (i, x) in out.iter().enumerate() {
                if out[..i].contains(x) {
                    return Err(l.err(format!("the output repeats {}", label_name(x))));
                }
                if !inputs.contains(x) {
                    return Err(l.err(format!("the output's {} is in no input", label_name(x))));
                }
            }
            out
        }
        None => {
            let mut out: Vec<Label> = (0..total).map(Label::Ellipsis).collect();
            let mut letters: Vec<char> = terms.iter().flat_map(|t| t.letters()).collect();
            letters.sort_unstable();
            for (i, &ch) in letters.iter().enumerate() {
                let before = i > 0 && letters[i - 1] == ch;
                let after = letters.get(i + 1) == Some(&ch);
                if !before && !after {
                    out.push(Label::Letter(ch));
                }
            }
            out
        }
    };
    let mut operands = operands
        .into_iter()
        .map(|o| l.diagonals(o))
        .collect::<Result<Vec<_>>>()?;
    let rest = operands.split_off(1);
    let mut acc = operands.remove(0);
    for (i, b) in rest.iter().enumerate() {
        let mut needed: BTreeSet<Label> = output.iter().copied().collect();
        needed.extend(rest[i + 1..].iter().flat_map(|o| o.labels.iter().copied()));
        acc = l.contract(acc, b.clone(), &needed)?;
    }
    let acc = l.sum_out(acc, |x| output.contains(x))?;
    Ok(vec![l.permute(&acc, &output)?])
}
