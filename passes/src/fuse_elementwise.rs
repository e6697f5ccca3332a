//! `fuse-elementwise`: chains of elementwise ops become one `fused` op, one loop.
//!
//! An elementwise node (`Unary`, `Binary`, `Where`, `Cast`) is computed inside its user's
//! loop when that user is elementwise too, has the node's shape, is its only user (once or
//! more) and the node is not a graph output; one-element constants of at most the result's
//! rank become scalars of the body. Each maximal tree of two or more such ops becomes a
//! [`Op::Fused`] whose operands are the tree's leaves. The result's shape is the broadcast of
//! the leaves' shapes, which is the root's (every inner node has its user's shape), and the
//! body computes the same IEEE operations in the same order: the rewrite is exact.
//!
//! This is a pass after the e-graph, not a rule in it: which chains to fuse depends on each
//! node's users, which an e-graph does not track, and a rule that merged one operand at a
//! time would add a fused e-node for every connected subtree of every chain.
//! 16-bit float ops are left alone (code generation does not compile them yet).

use crate::error::Result;
use crate::pass::Pass;
use std::collections::HashMap;
use std::sync::Arc;
use tcc_ir::{Body, DType, Graph, NodeId, Op, Tensor};

/// Fuses elementwise chains into `fused` ops.
#[derive(Clone, Copy, Debug, Default)]
pub struct FuseElementwise;

fn is_elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast { .. }
    )
}

fn is_half(d: DType) -> bool {
    matches!(d, DType::F16 | DType::BF16)
}

/// The single user of `id` (once or more), if it is not a graph output.
fn sole_user(graph: &Graph, id: NodeId) -> Option<NodeId> {
    if graph.is_output(id) {
        return None;
    }
    let users = graph.users(id);
    let first = *users.first()?;
    users.iter().all(|&u| u == first).then_some(first)
}

impl Pass for FuseElementwise {
    fn name(&self) -> &'static str {
        "fuse-elementwise"
    }

    fn description(&self) -> &'static str {
        "chains of elementwise ops become one fused op"
    }

    fn run(&self, graph: &mut Graph) -> Result<bool> {
        let inlined = |g: &Graph, id: NodeId| -> bool {
            let node = g.node(id);
            if !is_elementwise(&node.op) || is_half(node.ty.dtype) {
                return false;
            }
            sole_user(g, id).is_some_and(|u| {
                is_elementwise(g.op(u)) && g.ty(u).shape == node.ty.shape && !is_half(g.ty(u).dtype)
            })
        };
        let order = graph.topo_order();
        let mut changed = false;
        for id in order {
            let node = graph.node(id);
            if !is_elementwise(&node.op) || is_half(node.ty.dtype) || inlined(graph, id) {
                continue;
            }
            let rank = node.ty.rank();
            let mut leaves = Vec::new();
            let mut index = HashMap::new();
            let body = build(graph, id, rank, &inlined, &mut leaves, &mut index, true);
            if body.op_count() < 2 {
                continue;
            }
            let origin = node.origin.clone();
            let fused = graph.add_with_origin(
                Op::Fused {
                    body: Arc::new(body),
                },
                &leaves,
                origin.as_deref(),
            )?;
            if graph.ty(fused) != graph.ty(id) {
                // Cannot happen (see the module docs); leave the chain unfused if it does.
                graph.remove_dead();
                continue;
            }
            graph.replace_all_uses(id, fused)?;
            changed = true;
        }
        if changed {
            graph.remove_dead();
        }
        Ok(changed)
    }
}

/// The body of `id`, inlining as `inlined` says and collecting the leaves.
fn build(
    graph: &Graph,
    id: NodeId,
    rank: usize,
    inlined: &dyn Fn(&Graph, NodeId) -> bool,
    leaves: &mut Vec<NodeId>,
    index: &mut HashMap<NodeId, usize>,
    root: bool,
) -> Body {
    if let Some(t) = graph.const_value(id) {
        if t.len() == 1 && !is_half(t.dtype()) && t.shape().len() <= rank {
            let s = Tensor::new(vec![], t.data().clone()).expect("one element");
            return Body::Scalar(s);
        }
    }
    if !root && !inlined(graph, id) {
        let k = *index.entry(id).or_insert_with(|| {
            leaves.push(id);
            leaves.len() - 1
        });
        return Body::Leaf(k);
    }
    let ops = graph.operands(id);
    let mut sub = |o: NodeId| Box::new(build(graph, o, rank, inlined, leaves, index, false));
    match graph.op(id) {
        Op::Unary(u) => Body::Unary(*u, sub(ops[0])),
        Op::Binary(b) => {
            let x = sub(ops[0]);
            let y = sub(ops[1]);
            Body::Binary(*b, x, y)
        }
        Op::Where => {
            let c = *sub(ops[0]);
            let a = *sub(ops[1]);
            let b = *sub(ops[2]);
            Body::Where(Box::new([c, a, b]))
        }
        Op::Cast { to } => Body::Cast(*to, sub(ops[0])),
        _ => unreachable!("only elementwise nodes are roots or inlined"),
    }
}
