//! Which input symbols may be 0 at run time.
//!
//! Types are inferred assuming every symbol is at least 1 (see [`crate::dim`]): the simplifier
//! reads `min(seq, 1)` as `1` and `floordiv(8*seq, seq)` as `8`. A size of 0 is still common
//! and meaningful: a decoder's KV cache is empty before the prompt (`past_seq = 0`), and the
//! ops on it (a `concat` of the empty cache and the new keys, a `slice` of the causal mask) are
//! well defined. [`zero_sizes`] tells, symbol by symbol, whether the graph's types stay right
//! when that symbol is 0: it substitutes 0 into every live node's type, known value and
//! attributes (a reshape's target shape), infers each node again from its operands'
//! substituted types, and compares. Where they agree for
//! every node, a run may bind the symbol to 0 and every type, evaluated there, is what the ops
//! compute; otherwise the first node whose inference fails or disagrees is the one that needs
//! the symbol to be at least 1, and compiled code says so when a run binds it to 0.
//!
//! Each symbol is checked alone, the others left symbolic (so at least 1): a run that binds
//! two zero-able symbols to 0 at once is allowed, and the types of the two substitutions are
//! not checked jointly; every size relation the types leave to run time is still checked then.

use std::collections::HashSet;
use std::sync::Arc;

use crate::{infer, Dim, Graph, Known, NodeId, Op, Shape, TensorType};

/// Why a symbol must be at least 1: the first node (in topological order) whose type does not
/// hold when the symbol is 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeedsOne {
    /// The node.
    pub node: NodeId,
    /// What goes wrong there.
    pub why: String,
}

/// Each input symbol of `graph` (in [`Graph::input_symbols`]'s order) with `Ok(())` if it may
/// be 0 at run time, or the node that needs it to be at least 1. Only nodes that an output
/// needs are looked at.
pub fn zero_sizes(graph: &Graph) -> Vec<(Arc<str>, Result<(), NeedsOne>)> {
    let mut live = HashSet::new();
    let mut stack: Vec<NodeId> = graph.outputs().iter().map(|(_, id)| *id).collect();
    while let Some(id) = stack.pop() {
        if live.insert(id) {
            stack.extend(graph.operands(id));
        }
    }
    let order: Vec<NodeId> = graph
        .topo_order()
        .into_iter()
        .filter(|id| live.contains(id))
        .collect();
    graph
        .input_symbols()
        .into_iter()
        .map(|symbol| {
            let verdict = check_symbol(graph, &order, &symbol);
            (symbol, verdict)
        })
        .collect()
}

/// Whether the types of the nodes in `order` hold with `symbol` = 0.
fn check_symbol(graph: &Graph, order: &[NodeId], symbol: &str) -> Result<(), NeedsOne> {
    let zero = |s: &str| (s == symbol).then(|| Dim::constant(0));
    let dim = |d: &Dim| d.substitute(&zero);
    let ty =
        |t: &TensorType| TensorType::new(t.dtype, Shape(t.shape.dims().iter().map(dim).collect()));
    let known = |k: &Known| Known {
        shape: k.shape.clone(),
        values: k.values.iter().map(dim).collect(),
    };
    // The substituted types and known values, as the nodes' (checked) types.
    let mut types: std::collections::HashMap<NodeId, (TensorType, Option<Known>)> =
        std::collections::HashMap::new();
    for &id in order {
        let node = graph.node(id);
        let expected = (ty(&node.ty), node.known.as_ref().map(known));
        let operands = graph.operands(id);
        let op = node.op.substitute(&zero);
        // Nothing to check where no operand's type and no attribute mentions the symbol: the
        // node infers what it did.
        let unchanged = op == node.op
            && operands
                .iter()
                .all(|o| types[o].0 == *graph.ty(*o) && types[o].1.as_ref() == graph.known(*o));
        if !unchanged && !matches!(node.op, Op::Input { .. } | Op::Const(_) | Op::Dims { .. }) {
            let tys: Vec<&TensorType> = operands.iter().map(|o| &types[o].0).collect();
            let knowns: Vec<Option<&Known>> =
                operands.iter().map(|o| types[o].1.as_ref()).collect();
            let fail = |why: String| NeedsOne { node: id, why };
            let (got, got_known) = infer::infer(&op, &tys, &knowns)
                .map_err(|e| fail(format!("with `{symbol}` = 0 its operands do not fit: {e}")))?;
            if got != expected.0 {
                return Err(fail(format!(
                    "its type {} assumes `{symbol}` is at least 1: with `{symbol}` = 0 it is \
                     {got}, not {}",
                    node.ty, expected.0
                )));
            }
            // A value known at compile time (sizes as data) is built into the code: it must be
            // what the op computes at 0 too. A value that only the run computes is fine.
            if let Some(k) = &expected.1 {
                if got_known.as_ref() != Some(k) {
                    return Err(fail(format!(
                        "its value, known at compile time, assumes `{symbol}` is at least 1"
                    )));
                }
            }
        }
        types.insert(id, expected);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::parse;

    fn verdicts(ir: &str) -> Vec<(String, Option<String>)> {
        let g = parse(ir, &|_| None).unwrap();
        zero_sizes(&g)
            .into_iter()
            .map(|(s, v)| {
                let at = v.err().map(|n| g.node(n.node).op.name().to_string());
                (s.to_string(), at)
            })
            .collect()
    }

    #[test]
    fn an_empty_cache_concatenated_with_new_keys_may_be_zero() {
        let v = verdicts(
            r#"
graph(%past: f32[b, 2, past, 8], %new: f32[b, 2, seq, 8]) {
  %k = concat<axis=2>(%past, %new) : f32[b, 2, past + seq, 8]
  %e = exp(%k) : f32[b, 2, past + seq, 8]
  return %e = %e
}"#,
        );
        assert_eq!(
            v,
            vec![
                ("b".to_string(), None),
                ("past".to_string(), None),
                ("seq".to_string(), None)
            ]
        );
    }

    #[test]
    fn a_type_that_assumes_at_least_one_names_its_node() {
        // `max(0, n - 1)` simplifies to `n - 1` for n >= 1; at n = 0 it is 0, not -1. The
        // exp after it is fine once its operand's type is.
        let v = verdicts(
            r#"
graph(%x: f32[n, 4]) {
  %e = exp(%x) : f32[n, 4]
  %s = slice<axes=[0], starts=[1], ends=[n], steps=[1]>(%e) : f32[n - 1, 4]
  %t = exp(%s) : f32[n - 1, 4]
  return %t = %t
}"#,
        );
        assert_eq!(v, vec![("n".to_string(), Some("slice".to_string()))]);
    }
}
