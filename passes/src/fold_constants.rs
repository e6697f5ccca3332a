//! `fold-constants`: nodes whose operands are all constants are evaluated into constants.

use crate::error::{Error, Result};
use crate::pass::Pass;
use std::sync::Arc;
use tcc_ir::interp::{eval, Bindings};
use tcc_ir::{Constant, Graph, Op, Tensor};

/// A folded result may have up to this many elements even when it is larger
/// than its operands together.
pub const FOLD_LIMIT: usize = 4096;

/// Evaluates, with the reference interpreter, every node whose operands are
/// all `const` and whose attributes and type mention no symbol, and replaces
/// it by a `const` of the result. Nodes are visited operands first, so chains
/// fold in one run.
///
/// A node is left alone when its result would be larger than both its
/// operands together and [`FOLD_LIMIT`] elements: folding `expand` of a scalar
/// to a large shape would only grow the model.
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
            if mentions_symbol(&node.op) {
                continue;
            }
            let out_len: usize = out_shape.iter().product();
            let in_len: usize = values.iter().map(|v| v.len()).sum();
            if out_len > in_len.max(FOLD_LIMIT) {
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
