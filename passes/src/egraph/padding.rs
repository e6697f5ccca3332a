//! Padding elimination on the e-graph: `pack` moved toward the inputs, so that token-wise
//! work runs on the real tokens only.
//!
//! The remove-padding pass ([`crate::RemovePadding`]) writes each output `o` of shape
//! `[batch, seq, ..]` as `unpack(pack(o, m), m)` (the only step that changes a value: the
//! padded positions become 0). After saturation, [`sink`] adds, for every class `x` that a
//! `pack(x, m)` reads, the packed form of each of `x`'s e-nodes that treats token rows
//! independently, recursively, and merges it with `pack(x, m)`: every merge is one of the
//! equalities below, exact by the IR's semantics (RULES.md, "Padding elimination"), so the
//! e-graph keeps both forms and extraction takes the cheaper. `P(x)` is `pack(x, m)`, `b, s`
//! the mask's dims and `T` the token symbol:
//!
//! - elementwise ops (`unary`, `binary`, `where`, `cast`, `fused`):
//!   `P(f(x, y)) = f(P(x), P(y'))`, each operand of rank at most `rank - 2` kept as it is (it
//!   broadcasts over the tokens alike), others expanded to `[b, s, ..]` first if they
//!   broadcast along the batch or the sequence;
//! - `P(gemm(x, W, bias)) = gemm(P(x), W, bias)` and `P(matmul(x, W)) = matmul(P(x), W)` for
//!   a rank-2 `W` and no permutation of `x` or the result;
//! - `P(layer_norm<axis=a>(x, g, b)) = layer_norm<axis=a-1>(P(x), g, b)` for `a >= 2`, and
//!   so `add_layer_norm` (with `P` of the residual) and `rms_norm`;
//! - `P(reshape<[b, s, r']>(x)) = reshape<[T, r']>(P(x))` and a transpose that keeps the
//!   first two axes;
//! - `P(gather<axis=0>(E, ids)) = gather(E, P(ids))` for `ids` of shape `[b, s]`;
//! - `P(attention(q, kt, v, M)) = packed_attention(P(q), P(k), P(v), m)` when `M`'s
//!   [`crate::key_mask`] fact is a key-padding mask of `m` (additive, or boolean) and the
//!   permutations are the `[b, s, h, d]` heads' (`perm_q = perm_v = perm_out = [0, 2, 1, 3]`,
//!   `perm_k = [0, 2, 3, 1]`), not causal: a real query's scores at padded keys are masked
//!   to an exponential of exactly 0, so it reads only its own sequence's real keys; a
//!   `zero_where` condition is dropped when it is false for every sequence with a real token
//!   (the rows whose keys are all masked, which no real query is);
//! - `P(unpack(y, m)) = y`.
//!
//! Ops that mix tokens (a matrix product over the sequence, a reduction or softmax over it,
//! a convolution, a slice or gather along it) stop the sinking: what they compute is kept
//! whole and packed after.

use std::collections::HashMap;
use std::sync::Arc;

use egg::Id;
use tcc_ir::{AttentionMask, Dim, Op, Shape};

use super::analysis::TensorGraph;
use super::lang::ENode;
use super::rules::Ctx;
use crate::key_mask;

/// The permutations of attention over `[b, s, h, d]` heads.
const HEADS: [usize; 4] = [0, 2, 1, 3];
const HEADS_KT: [usize; 4] = [0, 2, 3, 1];

/// Adds the packed forms of everything the `pack` classes `packs` read, merged with them.
/// Returns how many e-nodes it added a packed form for.
pub fn sink(eg: &mut TensorGraph, packs: &[Id]) -> usize {
    let mut s = Sinker {
        memo: HashMap::new(),
        count: 0,
    };
    for &p in packs {
        let p = eg.find(p);
        let found: Vec<(Arc<str>, Id, Id)> = eg[p]
            .nodes
            .iter()
            .filter_map(|n| match n.op() {
                Op::Pack { tokens } => Some((tokens.clone(), n.args()[0], n.args()[1])),
                _ => None,
            })
            .collect();
        for (tokens, x, m) in found {
            let mut c = Ctx { eg };
            s.pack_of(&mut c, &tokens, x, m);
        }
    }
    eg.rebuild();
    s.count
}

struct Sinker {
    /// The packed class of each class already visited (by canonical id).
    memo: HashMap<Id, Id>,
    count: usize,
}

impl Sinker {
    /// The class `pack(x, m)`, with the packed forms of `x`'s e-nodes merged into it.
    fn pack_of(&mut self, c: &mut Ctx, tokens: &Arc<str>, x: Id, m: Id) -> Option<Id> {
        let x = c.eg.find(x);
        if let Some(&p) = self.memo.get(&x) {
            return Some(p);
        }
        let p = c.add(
            Op::Pack {
                tokens: tokens.clone(),
            },
            vec![x, m],
        )?;
        self.memo.insert(x, p);
        let nodes: Vec<ENode> = c.eg[x].nodes.clone();
        for n in nodes {
            if let Some(alt) = self.packed_form(c, tokens, &n, x, m) {
                if c.eg[alt].data.ty == c.eg[p].data.ty {
                    c.eg.union(p, alt);
                    self.count += 1;
                }
            }
        }
        Some(c.eg.find(p))
    }

    /// The packed form of the e-node `n` of class `x` (`[b, s, ..]`), if it treats token
    /// rows independently.
    fn packed_form(
        &mut self,
        c: &mut Ctx,
        tokens: &Arc<str>,
        n: &ENode,
        x: Id,
        m: Id,
    ) -> Option<Id> {
        let ty = c.eg[x].data.ty.clone();
        let rank = ty.rank();
        let lead: Vec<Dim> = ty.shape.dims()[..2].to_vec();
        let t = Dim::sym(tokens);
        let args = n.args().to_vec();
        let arg_dims = |c: &Ctx, a: Id| c.eg[a].data.ty.shape.dims().to_vec();
        match n.op() {
            Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast { .. } | Op::Fused { .. } => {
                let mut packed = Vec::new();
                for a in args {
                    let d = arg_dims(c, a);
                    if d.len() + 2 <= rank {
                        packed.push(a);
                        continue;
                    }
                    // Right-aligned: the operand's own dims for the result's axes 2.. .
                    let own = &d[d.len() - (rank - 2)..];
                    let mut target = lead.clone();
                    target.extend(own.iter().cloned());
                    let a = if d == target {
                        a
                    } else {
                        c.add(
                            Op::Expand {
                                shape: Shape(target),
                            },
                            vec![a],
                        )?
                    };
                    packed.push(self.pack_of(c, tokens, a, m)?);
                }
                c.add(n.op().clone(), packed)
            }
            Op::Gemm {
                perm_a: None,
                perm_out: None,
                perm_b,
                ..
            } => {
                let b_rank = c.eg[args[1]].data.ty.rank();
                let bias_ok = args.get(2).is_none_or(|&b| c.eg[b].data.ty.rank() <= 1);
                if b_rank != 2 || perm_b.as_ref().is_some_and(|p| p.len() != 2) || !bias_ok {
                    return None;
                }
                let mut packed = args.clone();
                packed[0] = self.pack_of(c, tokens, args[0], m)?;
                c.add(n.op().clone(), packed)
            }
            Op::MatMul
                if c.eg[args[1]].data.ty.rank() == 2 && arg_dims(c, args[0]).len() == rank =>
            {
                let a = self.pack_of(c, tokens, args[0], m)?;
                c.add(Op::MatMul, vec![a, args[1]])
            }
            Op::QGemm { .. } if arg_dims(c, args[0]).len() == rank => {
                // The activation, and its scale and zero point if they are per row
                // ([b, s, .., 1]): then every row is quantised on its own. A per-tensor scale
                // stays as it is (it reads the padded rows: what computes it keeps the batch
                // padded, which the optimiser's check then refuses).
                let mut packed = args.clone();
                packed[0] = self.pack_of(c, tokens, args[0], m)?;
                for k in [1, 2] {
                    let d = arg_dims(c, args[k]);
                    if d.len() == rank && d[..2] == lead[..] {
                        packed[k] = self.pack_of(c, tokens, args[k], m)?;
                    } else if d.len() + 2 > rank {
                        return None;
                    }
                }
                c.add(n.op().clone(), packed)
            }
            Op::Reduce {
                kind,
                axes,
                keep_dims,
            } if axes.iter().all(|&a| a >= 2)
                && arg_dims(c, args[0]).len()
                    == rank + {
                        if *keep_dims {
                            0
                        } else {
                            axes.len()
                        }
                    } =>
            {
                let a = self.pack_of(c, tokens, args[0], m)?;
                c.add(
                    Op::Reduce {
                        kind: *kind,
                        axes: axes.iter().map(|a| a - 1).collect(),
                        keep_dims: *keep_dims,
                    },
                    vec![a],
                )
            }
            Op::LayerNorm { axis, epsilon } if *axis >= 2 => {
                let a = self.pack_of(c, tokens, args[0], m)?;
                c.add(
                    Op::LayerNorm {
                        axis: axis - 1,
                        epsilon: *epsilon,
                    },
                    vec![a, args[1], args[2]],
                )
            }
            Op::RmsNorm { axis, epsilon } if *axis >= 2 => {
                let a = self.pack_of(c, tokens, args[0], m)?;
                c.add(
                    Op::RmsNorm {
                        axis: axis - 1,
                        epsilon: *epsilon,
                    },
                    vec![a, args[1]],
                )
            }
            Op::AddLayerNorm { axis, epsilon }
                if *axis >= 2 && arg_dims(c, args[1]) == ty.shape.dims() =>
            {
                let a = self.pack_of(c, tokens, args[0], m)?;
                let r = self.pack_of(c, tokens, args[1], m)?;
                c.add(
                    Op::AddLayerNorm {
                        axis: axis - 1,
                        epsilon: *epsilon,
                    },
                    vec![a, r, args[2], args[3]],
                )
            }
            Op::Reshape { shape } if arg_dims(c, args[0]).get(..2) == Some(&lead[..]) => {
                let mut to = vec![t];
                to.extend(shape.dims()[2..].iter().cloned());
                let a = self.pack_of(c, tokens, args[0], m)?;
                c.add(Op::Reshape { shape: Shape(to) }, vec![a])
            }
            Op::Transpose { perm } if perm[0] == 0 && perm[1] == 1 => {
                let a = self.pack_of(c, tokens, args[0], m)?;
                let p = std::iter::once(0)
                    .chain(perm[2..].iter().map(|&q| q - 1))
                    .collect();
                c.add(Op::Transpose { perm: p }, vec![a])
            }
            Op::Gather { axis: 0 } if arg_dims(c, args[1]) == lead => {
                let ids = self.pack_of(c, tokens, args[1], m)?;
                c.add(Op::Gather { axis: 0 }, vec![args[0], ids])
            }
            Op::Attention {
                scale,
                mask,
                causal: false,
                causal_min: false,
                zero_where,
                perm_q,
                perm_k,
                perm_v,
                perm_out,
                ..
            } if perm_q.as_deref() == Some(&HEADS[..])
                && perm_k.as_deref() == Some(&HEADS_KT[..])
                && perm_v.as_deref() == Some(&HEADS[..])
                && perm_out.as_deref() == Some(&HEADS[..])
                && args.len() == 4 + usize::from(*zero_where)
                && (!*zero_where
                    || key_mask::false_for_real_sequences(&c.eg[args[4]].data.mask)) =>
            {
                let fact = &c.eg[args[3]].data.mask;
                let rank = c.eg[args[3]].data.ty.rank();
                let of = match mask {
                    AttentionMask::Add => key_mask::additive_key_mask(fact, rank),
                    AttentionMask::Bool => key_mask::bool_key_mask(fact, rank),
                    AttentionMask::None => None,
                };
                // The key mask must be of this pack's mask input.
                let is_m = |name: &str| {
                    c.eg[m]
                        .nodes
                        .iter()
                        .any(|e| matches!(e.op(), Op::Input { name: n } if n == name))
                };
                if rank != 4 || !of.is_some_and(is_m) {
                    return None;
                }
                let q = self.pack_of(c, tokens, args[0], m)?;
                let k = self.pack_of(c, tokens, args[1], m)?;
                let v = self.pack_of(c, tokens, args[2], m)?;
                c.add(Op::PackedAttention { scale: *scale }, vec![q, k, v, m])
            }
            Op::Unpack if c.eg.find(args[1]) == c.eg.find(m) => Some(args[0]),
            _ => None,
        }
    }
}
