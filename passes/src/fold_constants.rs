//! `fold-constants`: nodes whose operands are all constants are evaluated into constants.

use crate::error::{Error, Result};
use crate::pass::Pass;
use std::sync::Arc;
use tcc_ir::interp::{eval, Bindings};
use tcc_ir::shape::checked_numel;
use tcc_ir::{Constant, Graph, Op, Tensor};

/// A folded result may have up to this many elements even when it is larger
/// than its operands together.
pub const FOLD_LIMIT: usize = 4096;

/// No folded result, and no intermediate of a fused op's expansion, has more
/// elements than this: 2^24, 64 MiB of `f32`. A larger node stays in the graph
/// and is computed at run time, so that a few bytes of a model file cannot
/// make the compiler allocate without bound.
pub const FOLD_MAX_ELEMENTS: usize = 1 << 24;

/// No node is folded whose evaluation takes more than this many
/// multiply-adds (2^30, about a second of the reference interpreter): a
/// product of two constant 4096 x 4096 matrices is left for run time rather
/// than computed at compile time.
pub const FOLD_MAX_WORK: u64 = 1 << 30;

/// Evaluates, with the reference interpreter, every node whose operands are
/// all `const` and whose attributes and type mention no symbol, and replaces
/// it by a `const` of the result. Padding elimination's `pack`, `unpack` and
/// `packed_attention` are never folded. Nodes are visited operands first, so chains
/// fold in one run.
///
/// A node is left alone when its result would be larger than both its
/// operands together and [`FOLD_LIMIT`] elements (folding `expand` of a scalar
/// to a large shape would only grow the model), and whatever its operands,
/// when its result or an intermediate of its evaluation would have more than
/// [`FOLD_MAX_ELEMENTS`] elements or its evaluation more than
/// [`FOLD_MAX_WORK`] multiply-adds. Sizes are computed with checked
/// arithmetic before anything is evaluated.
#[derive(Clone, Copy, Debug, Default)]
pub struct FoldConstants;

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold-constants"
    }

    fn description(&self) -> &'static str {
        "evaluates nodes whose operands are all constants"
    }

    fn run(&self, graph: &mut Graph) -> Result<bool> {
        let mut changed = false;
        let env = Bindings::default();
        for id in graph.topo_order() {
            let operands = graph.operands(id);
            if operands.is_empty() {
                continue;
            }
            let Some(values) = operands
                .iter()
                .map(|&o| graph.const_value(o).cloned())
                .collect::<Option<Vec<Arc<Tensor>>>>()
            else {
                continue;
            };
            let node = graph.node(id);
            let Some(out_shape) = node.ty.shape.as_fixed() else {
                continue;
            };
            if mentions_symbol(&node.op) || is_padding_op(&node.op) {
                continue;
            }
            let Some(out_len) = checked_numel(&out_shape) else {
                continue;
            };
            let in_len = values.iter().fold(0usize, |n, v| n.saturating_add(v.len()));
            if out_len > in_len.max(FOLD_LIMIT) || !within_budget(&node.op, &values, out_len) {
                continue;
            }
            let refs: Vec<&Tensor> = values.iter().map(|v| &**v).collect();
            let value = eval(&node.op, &refs, &node.ty, &env).map_err(|error| Error::Fold {
                node: id.index(),
                op: node.op.name(),
                error,
            })?;
            let leaf = Op::Const(Constant {
                name: None,
                value: Arc::new(value),
            });
            graph.replace_with_leaf(id, leaf)?;
            changed = true;
        }
        Ok(changed)
    }
}

/// True for padding elimination's ops, which are never folded: their results are sized by
/// a count of mask entries that a run binds to a derived symbol, and the rewrites that move
/// `pack` and `unpack` through a model must see them where they are.
fn is_padding_op(op: &Op) -> bool {
    matches!(
        op,
        Op::Pack { .. } | Op::Unpack | Op::PackedAttention { .. }
    )
}

/// True if an attribute of `op` holds a dim that is not a number.
fn mentions_symbol(op: &Op) -> bool {
    let sym = |d: &tcc_ir::Dim| d.as_const().is_none();
    match op {
        Op::Dims { values, .. } => values.iter().any(sym),
        Op::Reshape { shape } | Op::Expand { shape } => shape.dims().iter().any(sym),
        Op::Slice { starts, ends, .. } => starts.iter().chain(ends).any(sym),
        Op::Tile { repeats } => repeats.iter().any(sym),
        Op::Conv {
            pads_begin,
            pads_end,
            ..
        }
        | Op::Pad {
            pads_begin,
            pads_end,
            ..
        } => pads_begin.iter().chain(pads_end).any(sym),
        Op::Range { start, limit, .. } => sym(start) || sym(limit),
        _ => false,
    }
}

/// True if evaluating `op` on `values` into a result of `out_len` elements
/// stays within [`FOLD_MAX_ELEMENTS`] and [`FOLD_MAX_WORK`]. The estimates are
/// upper bounds, in saturating arithmetic.
fn within_budget(op: &Op, values: &[Arc<Tensor>], out_len: usize) -> bool {
    let len = |i: usize| values.get(i).map_or(0, |v| v.len()) as u64;
    // The largest size of operand `i`, a bound on any one of its axes.
    let widest = |i: usize| {
        values
            .get(i)
            .and_then(|v| v.shape().iter().copied().max())
            .unwrap_or(1) as u64
    };
    let out = out_len as u64;
    // The largest intermediate and the multiply-adds.
    let (largest, work) = match op {
        // `k` is the last axis of `a` (or, permuted, one of its axes).
        Op::MatMul | Op::MatMulInteger { .. } | Op::Gemm { .. } => {
            (out, out.saturating_mul(widest(0)))
        }
        // Every output element reads one filter: `weights / output channels` taps.
        Op::Conv { .. } => {
            let filters = values
                .get(1)
                .and_then(|w| w.shape().first().copied())
                .unwrap_or(1)
                .max(1) as u64;
            (out, out.saturating_mul(len(1) / filters))
        }
        // The scores: a row of keys for every element of `q` at most, each a
        // dot product over an axis of `q`.
        Op::Attention { .. } => {
            let scores = len(0).saturating_mul(widest(1));
            (
                scores.max(out),
                scores.saturating_mul(widest(0)).saturating_mul(2),
            )
        }
        _ => (out, out.saturating_add((0..values.len()).map(len).sum())),
    };
    largest <= FOLD_MAX_ELEMENTS as u64 && work <= FOLD_MAX_WORK
}
