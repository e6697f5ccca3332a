//! The reference interpreter: runs a graph on concrete tensors.
//!
//! Plainly correct over fast: it is the oracle that every rewrite and every
//! kernel is checked against.

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::op::Op;
use crate::shape::TensorType;
use crate::tensor::Tensor;
use std::collections::HashMap;

/// Values of the shape symbols for one run, bound from the inputs' sizes.
#[derive(Clone, Debug, Default)]
pub struct Bindings {
    /// Symbol name to size.
    pub values: HashMap<String, i64>,
}

impl Bindings {
    /// Looks a symbol up.
    pub fn get(&self, name: &str) -> Option<i64> {
        self.values.get(name).copied()
    }
}

/// Runs `graph` on `inputs` (keyed by input name) and returns the outputs in
/// graph order with their names.
pub fn run(graph: &Graph, inputs: &HashMap<String, Tensor>) -> Result<Vec<(String, Tensor)>> {
    let _ = (graph, inputs);
    Err(Error::Verify("the interpreter is not written yet".into()))
}

/// Evaluates one op on concrete operands. `ty` is the node's inferred type and
/// `env` binds the symbols its attributes and type may mention.
pub fn eval(op: &Op, operands: &[&Tensor], ty: &TensorType, env: &Bindings) -> Result<Tensor> {
    let _ = (op, operands, ty, env);
    Err(Error::Verify("the interpreter is not written yet".into()))
}
