//! The graph: ops as nodes of a petgraph, each with its inferred type.
//!
//! Nodes have one result each. An edge runs from an operand to its user and is
//! weighted with the operand's position, so `x * x` is two edges. Types are
//! inferred when a node is added, so a graph is well typed by construction;
//! the verifier re-checks that after passes.

use crate::dim::Dim;
use crate::error::{invalid, Error, Result};
use crate::infer::{infer, Known};
use crate::op::{Arity, Constant, Op};
use crate::shape::TensorType;
use crate::tensor::Tensor;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, NodeIndexable};
use petgraph::Direction;
use std::sync::Arc;

/// A node's handle.
pub type NodeId = NodeIndex<u32>;

/// A node: an op, its result type and, for small integer results, the value
/// shape inference could tell.
#[derive(Clone, Debug)]
pub struct Node {
    /// The operation.
    pub op: Op,
    /// The result type.
    pub ty: TensorType,
    /// The result's elements when known symbolically (small integer tensors
    /// computed from shapes and constants).
    pub known: Option<Known>,
    /// Where the node came from (an ONNX node name), for messages.
    pub origin: Option<String>,
}

/// A typed tensor graph with named inputs and outputs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    g: StableDiGraph<Node, u32>,
    inputs: Vec<NodeId>,
    outputs: Vec<(String, NodeId)>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Adds a graph input of type `ty`.
    pub fn add_input(&mut self, name: &str, ty: TensorType) -> NodeId {
        let id = self.g.add_node(Node {
            op: Op::Input {
                name: name.to_string(),
            },
            ty,
            known: None,
            origin: None,
        });
        self.inputs.push(id);
        id
    }

    /// Adds a constant, with the name it had in the source model if any.
    pub fn add_const(&mut self, value: Tensor, name: Option<String>) -> NodeId {
        let op = Op::Const(Constant {
            name,
            value: Arc::new(value),
        });
        self.add(op, &[]).expect("a constant always type-checks")
    }

    /// Adds a node: checks the operands and infers the result type.
    pub fn add(&mut self, op: Op, operands: &[NodeId]) -> Result<NodeId> {
        self.add_with_origin(op, operands, None)
    }

    /// Adds a node that came from `origin` (a source node name, for messages).
    pub fn add_with_origin(
        &mut self,
        op: Op,
        operands: &[NodeId],
        origin: Option<&str>,
    ) -> Result<NodeId> {
        if matches!(op, Op::Input { .. }) {
            return Err(invalid("input", "inputs are added with Graph::add_input"));
        }
        let (ty, known) = self.infer_node(&op, operands)?;
        let id = self.g.add_node(Node {
            op,
            ty,
            known,
            origin: origin.map(str::to_string),
        });
        for (i, &o) in operands.iter().enumerate() {
            self.g.add_edge(o, id, i as u32);
        }
        Ok(id)
    }

    /// Infers what `op` applied to `operands` would give, without adding it.
    pub fn infer_node(&self, op: &Op, operands: &[NodeId]) -> Result<(TensorType, Option<Known>)> {
        let ok = match op.arity() {
            Arity::Exact(n) => operands.len() == n,
            Arity::AtLeast(n) => operands.len() >= n,
        };
        if !ok {
            return Err(invalid(
                op.name(),
                format!("takes {:?} operands, got {}", op.arity(), operands.len()),
            ));
        }
        for &o in operands {
            if !self.g.contains_node(o) {
                return Err(invalid(
                    op.name(),
                    format!("operand {} is not in the graph", o.index()),
                ));
            }
        }
        let tys: Vec<&TensorType> = operands.iter().map(|&o| &self.g[o].ty).collect();
        let known: Vec<Option<&Known>> =
            operands.iter().map(|&o| self.g[o].known.as_ref()).collect();
        infer(op, &tys, &known)
    }

    /// Marks `id` as the graph output `name`.
    pub fn add_output(&mut self, name: &str, id: NodeId) {
        self.outputs.push((name.to_string(), id));
    }

    /// The input nodes, in order.
    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    /// The outputs, in order, with their names.
    pub fn outputs(&self) -> &[(String, NodeId)] {
        &self.outputs
    }

    /// Points output `index` at another node.
    pub fn set_output(&mut self, index: usize, id: NodeId) {
        self.outputs[index].1 = id;
    }

    /// The node `id`. Panics if it is not in the graph: ids come from this graph.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    /// The op of node `id`.
    pub fn op(&self, id: NodeId) -> &Op {
        &self.g[id].op
    }

    /// The result type of node `id`.
    pub fn ty(&self, id: NodeId) -> &TensorType {
        &self.g[id].ty
    }

    /// The symbolically known elements of node `id`, if any.
    pub fn known(&self, id: NodeId) -> Option<&Known> {
        self.g[id].known.as_ref()
    }

    /// The known elements of `id` if they are all constants.
    pub fn known_ints(&self, id: NodeId) -> Option<Vec<i64>> {
        self.known(id)?.values.iter().map(Dim::as_const).collect()
    }

    /// The constant tensor of `id` if it is a `Const` node.
    pub fn const_value(&self, id: NodeId) -> Option<&Arc<Tensor>> {
        match &self.g[id].op {
            Op::Const(c) => Some(&c.value),
            _ => None,
        }
    }

    /// The operands of `id`, in order.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        let mut e: Vec<(u32, NodeId)> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        e.sort();
        e.into_iter().map(|(_, n)| n).collect()
    }

    /// The nodes that use `id` (a user using it twice appears twice).
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        self.g
            .edges_directed(id, Direction::Outgoing)
            .map(|e| e.target())
            .collect()
    }

    /// True if `id` is a graph output.
    pub fn is_output(&self, id: NodeId) -> bool {
        self.outputs.iter().any(|(_, o)| *o == id)
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// Every node id, in index order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.g.node_indices().collect()
    }

    /// The nodes in an order where operands come before users; inputs first,
    /// in declaration order, then by a stable depth-first walk from the outputs.
    pub fn topo_order(&self) -> Vec<NodeId> {
        let mut order = Vec::with_capacity(self.g.node_count());
        let mut state = vec![0u8; self.g.node_bound()];
        for &i in &self.inputs {
            state[i.index()] = 2;
            order.push(i);
        }
        let mut roots: Vec<NodeId> = self.outputs.iter().map(|(_, o)| *o).collect();
        roots.extend(self.g.node_indices());
        for root in roots {
            if state[root.index()] != 0 {
                continue;
            }
            // Iterative post-order walk over operands.
            let mut stack = vec![(root, false)];
            while let Some((n, done)) = stack.pop() {
                if done {
                    if state[n.index()] != 2 {
                        state[n.index()] = 2;
                        order.push(n);
                    }
                    continue;
                }
                if state[n.index()] != 0 {
                    continue;
                }
                state[n.index()] = 1;
                stack.push((n, true));
                for o in self.operands(n).into_iter().rev() {
                    if state[o.index()] == 0 {
                        stack.push((o, false));
                    }
                }
            }
        }
        order
    }

    /// Makes every user of `old` (and every output naming it) use `new`.
    /// The types must agree; `old` is left without users.
    pub fn replace_all_uses(&mut self, old: NodeId, new: NodeId) -> Result<()> {
        if old == new {
            return Ok(());
        }
        if self.g[old].ty != self.g[new].ty {
            return Err(Error::Verify(format!(
                "cannot replace node {} of type {} by node {} of type {}",
                old.index(),
                self.g[old].ty,
                new.index(),
                self.g[new].ty
            )));
        }
        let edges: Vec<_> = self
            .g
            .edges_directed(old, Direction::Outgoing)
            .map(|e| (e.id(), e.target(), *e.weight()))
            .collect();
        for (e, target, w) in edges {
            self.g.remove_edge(e);
            self.g.add_edge(new, target, w);
        }
        for (_, o) in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
        Ok(())
    }

    /// Replaces the op of `id` by one with the same result type and no
    /// operands (a constant or `dims`), dropping its operand edges.
    pub fn replace_with_leaf(&mut self, id: NodeId, op: Op) -> Result<()> {
        let (ty, known) = infer(&op, &[], &[])?;
        if ty != self.g[id].ty {
            return Err(Error::Verify(format!(
                "leaf of type {ty} cannot replace node {} of type {}",
                id.index(),
                self.g[id].ty
            )));
        }
        let edges: Vec<_> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in edges {
            self.g.remove_edge(e);
        }
        let n = &mut self.g[id];
        n.op = op;
        n.known = known;
        Ok(())
    }

    /// Removes every node that no output depends on (inputs stay).
    /// Returns how many were removed.
    pub fn remove_dead(&mut self) -> usize {
        let mut live = vec![false; self.g.node_bound()];
        let mut stack: Vec<NodeId> = self.outputs.iter().map(|(_, o)| *o).collect();
        stack.extend(self.inputs.iter().copied());
        while let Some(n) = stack.pop() {
            if live[n.index()] {
                continue;
            }
            live[n.index()] = true;
            stack.extend(self.g.neighbors_directed(n, Direction::Incoming));
        }
        let dead: Vec<NodeId> = self.g.node_indices().filter(|n| !live[n.index()]).collect();
        for &n in &dead {
            self.g.remove_node(n);
        }
        dead.len()
    }

    /// Every symbol that the inputs' shapes mention, in first-seen order: the symbols a
    /// caller binds. Derived symbols (a `pack`'s `tokens`, bound at run time by a count of
    /// mask entries) are not among them: the verifier keeps them out of the inputs' dims.
    pub fn input_symbols(&self) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::new();
        for &i in &self.inputs {
            for d in self.g[i].ty.shape.dims() {
                for s in d.symbols() {
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
        }
        out
    }

    /// The underlying petgraph, for read-only algorithms.
    pub fn petgraph(&self) -> &StableDiGraph<Node, u32> {
        &self.g
    }

    /// The underlying petgraph, mutably: bypasses every check, so it is for
    /// tests that break invariants on purpose (the verifier's tests).
    #[doc(hidden)]
    pub fn petgraph_mut(&mut self) -> &mut StableDiGraph<Node, u32> {
        &mut self.g
    }
}
