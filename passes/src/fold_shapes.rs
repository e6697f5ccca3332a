//! `fold-shapes`: integer nodes whose value is known become `const` or `dims` leaves.

use crate::error::Result;
use crate::pass::Pass;
use std::sync::Arc;
use tcc_ir::{Constant, DType, Graph, Op, Shape, Tensor, TensorData};

/// Replaces every integer (or bool) node whose elements shape inference knows
/// ([`tcc_ir::Known`]) and that still has operands by a leaf: a `const` when
/// every element is a number, a `dims` of symbolic elements otherwise. This is
/// what turns `shape`, `gather`, `concat` chains on shapes into `[batch, seq]`.
///
/// A bool node is folded only when all its elements are numbers (there is no
/// symbolic bool leaf), and a node whose known values do not fit its dtype
/// (an `i32` holding a value beyond `i32`) is left alone, so that the leaf
/// carries exactly the value the users were typed against.
///
/// The leaves it makes are small by construction: shape inference carries
/// known values only for tensors of at most [`tcc_ir::infer::KNOWN_LIMIT`]
/// elements (counted with overflow checks), so this pass allocates nothing a
/// model file can make large; the size budget of folding is
/// [`crate::FOLD_MAX_ELEMENTS`], in `fold-constants`.
#[derive(Clone, Copy, Debug, Default)]
pub struct FoldShapes;

impl Pass for FoldShapes {
    fn name(&self) -> &'static str {
        "fold-shapes"
    }

    fn description(&self) -> &'static str {
        "turns integer nodes of known value into const or dims leaves"
    }

    fn run(&self, graph: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for id in graph.topo_order() {
            if graph.operands(id).is_empty() {
                continue;
            }
            let ty = graph.ty(id);
            let dtype = ty.dtype;
            if !(dtype.is_int() || dtype == DType::Bool) {
                continue;
            }
            let Some(known) = graph.known(id) else {
                continue;
            };
            if ty.shape != Shape::fixed(&known.shape) {
                continue;
            }
            let leaf = match known.ints() {
                Some(values) => {
                    let data = TensorData::from_i64(dtype, values.iter().copied());
                    if data.to_i64_vec() != values {
                        continue;
                    }
                    let Ok(value) = Tensor::new(known.shape.clone(), data) else {
                        continue;
                    };
                    Op::Const(Constant {
                        name: None,
                        value: Arc::new(value),
                    })
                }
                None if dtype.is_int() => Op::Dims {
                    dtype,
                    shape: known.shape.clone(),
                    values: known.values.clone(),
                },
                None => continue,
            };
            graph.replace_with_leaf(id, leaf)?;
            changed = true;
        }
        Ok(changed)
    }
}
