//! `simplify`: removes no-op reshapes, transposes, casts, expands and slices, and merges chains.

use crate::error::Result;
use crate::pass::Pass;
use std::cmp::Ordering;
use tcc_ir::{Graph, NodeId, Op};

/// Removes ops that do nothing and merges chains of one op:
///
/// - `reshape` to the operand's shape, `transpose` by the identity, `cast` to
///   the operand's dtype, `expand` to the operand's shape (by a target whose
///   dims are 1 or the operand's), and `slice` that
///   takes every element (start 0, step 1, end at or past the dim) are
///   replaced by their operand;
/// - `reshape(reshape(x))` becomes one `reshape(x)` when the middle element count is `x`'s
///   polynomial (otherwise the middle one's run-time count check would go);
/// - `transpose(transpose(x))` becomes one `transpose(x)` by the composed
///   permutation, or `x` itself when the two cancel.
///
/// A node is only replaced by one of the same type and the same known value,
/// so its users type-check unchanged. The replaced nodes are left without
/// users for `dead-code` to remove.
#[derive(Clone, Copy, Debug, Default)]
pub struct Simplify;

/// Sweeps over the graph stop after this many, even if the last one changed
/// something (each sweep finishes every chain it starts, so two suffice in
/// practice).
const MAX_SWEEPS: usize = 16;

/// What to do with one node.
enum Action {
    /// Make its users use this node instead.
    Forward(NodeId),
    /// Make its users use a new node: this op on this operand.
    Replace(Op, NodeId),
}

impl Pass for Simplify {
    fn name(&self) -> &'static str {
        "simplify"
    }

    fn description(&self) -> &'static str {
        "removes no-op reshapes, transposes, casts, expands and slices; merges chains"
    }

    fn run(&self, graph: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for _ in 0..MAX_SWEEPS {
            let mut sweep_changed = false;
            for id in graph.topo_order() {
                if graph.users(id).is_empty() && !graph.is_output(id) {
                    continue;
                }
                let new = match plan(graph, id) {
                    None => continue,
                    Some(Action::Forward(to)) => to,
                    Some(Action::Replace(op, x)) => {
                        let (ty, known) = graph.infer_node(&op, &[x])?;
                        if ty != *graph.ty(id) || known.as_ref() != graph.known(id) {
                            continue;
                        }
                        let origin = graph.node(id).origin.clone();
                        graph.add_with_origin(op, &[x], origin.as_deref())?
                    }
                };
                if graph.ty(new) != graph.ty(id) || graph.known(new) != graph.known(id) {
                    continue;
                }
                graph.replace_all_uses(id, new)?;
                sweep_changed = true;
            }
            if !sweep_changed {
                break;
            }
            changed = true;
        }
        Ok(changed)
    }
}

/// The rewrite that applies to `id`, if any.
fn plan(graph: &Graph, id: NodeId) -> Option<Action> {
    let operands = graph.operands(id);
    let &[x] = operands.as_slice() else {
        return None;
    };
    let xty = graph.ty(x);
    match graph.op(id) {
        Op::Reshape { shape } => {
            // Merging drops the middle reshape, and the run-time check that its element count
            // is the base's (`[4096, 4096]` between two `[batch, seq, 8]`): only when the
            // counts are the same polynomial.
            let base = match graph.op(x) {
                Op::Reshape { .. } => graph
                    .operands(x)
                    .first()
                    .copied()
                    .filter(|&b| graph.ty(b).shape.numel() == xty.shape.numel())
                    .unwrap_or(x),
                _ => x,
            };
            if graph.ty(base).shape == *shape {
                Some(Action::Forward(base))
            } else if base != x {
                Some(Action::Replace(
                    Op::Reshape {
                        shape: shape.clone(),
                    },
                    base,
                ))
            } else {
                None
            }
        }
        Op::Transpose { perm } => {
            if is_identity(perm) {
                return Some(Action::Forward(x));
            }
            let Op::Transpose { perm: inner } = graph.op(x) else {
                return None;
            };
            // Result axis i is x's axis perm[i], which is the base's inner[perm[i]].
            let composed: Vec<usize> = perm.iter().map(|&p| inner[p]).collect();
            let base = graph.operands(x).first().copied()?;
            if is_identity(&composed) {
                Some(Action::Forward(base))
            } else {
                Some(Action::Replace(Op::Transpose { perm: composed }, base))
            }
        }
        Op::Cast { to } if xty.dtype == *to => Some(Action::Forward(x)),
        // Only when the target shape's dims need no run-time check against the operand's
        // (they are 1 or the same): an expand of `[5]` to `[s]` has the type `[5]` but needs
        // `s` to be 1 or 5.
        Op::Expand { shape }
            if xty == graph.ty(id)
                && shape.rank() <= xty.rank()
                && shape
                    .dims()
                    .iter()
                    .rev()
                    .zip(xty.shape.dims().iter().rev())
                    .all(|(t, d)| t.is(1) || t == d) =>
        {
            Some(Action::Forward(x))
        }
        Op::Slice {
            axes,
            starts,
            ends,
            steps,
        } => {
            let whole = axes.iter().enumerate().all(|(i, &ax)| {
                let Some(dim) = xty.shape.dims().get(ax) else {
                    return false;
                };
                steps[i] == 1
                    && starts[i].is(0)
                    && matches!(
                        ends[i].compare(dim),
                        Some(Ordering::Equal | Ordering::Greater)
                    )
            });
            (whole && xty == graph.ty(id)).then_some(Action::Forward(x))
        }
        _ => None,
    }
}

fn is_identity(perm: &[usize]) -> bool {
    perm.iter().enumerate().all(|(i, &p)| i == p)
}
