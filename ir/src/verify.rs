//! The verifier: checks a graph's invariants, after import and after passes.
//!
//! A graph is well formed when all of the following hold; [`verify`] checks
//! each one and names the node at fault (index, op and origin):
//!
//! 1. **Inputs.** Every entry of [`Graph::inputs`] is a node of the graph, is
//!    an [`Op::Input`], and is listed once; every `Op::Input` node is listed;
//!    no two inputs share a name.
//! 2. **Outputs.** Every node named by [`Graph::outputs`] exists.
//! 3. **Acyclic.** [`Graph::topo_order`] lists every node exactly once, and
//!    every operand comes before its user in it (so there is no cycle, not
//!    even a node that uses itself).
//! 4. **Operands.** Every operand edge starts at a node of the graph, and the
//!    positions on a node's incoming edges are exactly `0..n`: no gap and no
//!    position used twice.
//! 5. **Arity.** The number of operands matches [`crate::op::Op::arity`].
//! 6. **Constants.** A constant's tensor holds as many elements as its shape
//!    says.
//! 7. **Types.** Running [`crate::infer::infer`] again on the operands' stored
//!    types and known values gives exactly the node's stored type and `known`
//!    value. Inputs, which are not inferred, have no known value.
//! 8. **Derived symbols.** A symbol that some node's type mentions but no
//!    input's dims do is *derived*: bound at run time by an op, not by the
//!    caller. Every derived symbol is the `tokens` of an [`Op::Pack`] (bound
//!    to its mask's count of nonzero entries); all packs that name one symbol
//!    take the same mask node as operand 1 (so they all count the same
//!    tokens); and no input's dims use a pack's symbol (a caller could bind
//!    it to another count). [`Graph::input_symbols`] lists no derived symbol.
//!
//! Every broken invariant is reported, up to [`MAX_ERRORS`] of them, in one
//! [`Error::Verify`], one per line.

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::infer::{infer, Known};
use crate::op::{Arity, Op};
use crate::shape::TensorType;
use petgraph::visit::{EdgeRef, IntoEdgeReferences};
use petgraph::Direction;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// At most this many broken invariants are listed in one error.
pub const MAX_ERRORS: usize = 20;

/// Checks every invariant of `graph` listed in the [module docs](self).
pub fn verify(graph: &Graph) -> Result<()> {
    let mut v = Verifier {
        graph,
        errors: Vec::new(),
    };
    v.check();
    if v.errors.is_empty() {
        return Ok(());
    }
    let n = v.errors.len();
    let mut msg = v.errors[..n.min(MAX_ERRORS)].join("\n");
    if n > MAX_ERRORS {
        msg.push_str(&format!("\n... and {} more", n - MAX_ERRORS));
    }
    Err(Error::Verify(msg))
}

struct Verifier<'g> {
    graph: &'g Graph,
    errors: Vec<String>,
}

impl Verifier<'_> {
    /// Names a node for messages: `node 5 (add, from "Add_3")`.
    fn node_name(&self, id: NodeId) -> String {
        match self.graph.petgraph().node_weight(id) {
            None => format!("node {} (missing)", id.index()),
            Some(n) => match &n.origin {
                Some(o) => format!("node {} ({}, from {o:?})", id.index(), n.op.name()),
                None => format!("node {} ({})", id.index(), n.op.name()),
            },
        }
    }

    fn fail(&mut self, id: NodeId, message: impl AsRef<str>) {
        let m = format!("{}: {}", self.node_name(id), message.as_ref());
        self.errors.push(m);
    }

    fn check(&mut self) {
        let pg = self.graph.petgraph();
        // Inputs and outputs first: the topological walk indexes by them.
        let mut listed: HashMap<NodeId, usize> = HashMap::new();
        let mut names: HashMap<&str, NodeId> = HashMap::new();
        let mut ends_ok = true;
        for (pos, &id) in self.graph.inputs().iter().enumerate() {
            let Some(node) = pg.node_weight(id) else {
                self.errors.push(format!(
                    "input {pos} is node {}, which does not exist",
                    id.index()
                ));
                ends_ok = false;
                continue;
            };
            if let Some(first) = listed.insert(id, pos) {
                self.fail(
                    id,
                    format!("is listed as input {first} and again as input {pos}"),
                );
            }
            match &node.op {
                Op::Input { name } => {
                    if let Some(&other) = names.get(name.as_str()) {
                        if other != id {
                            let o = self.node_name(other);
                            self.fail(id, format!("has the input name `{name}` of {o}"));
                        }
                    }
                    names.insert(name, id);
                }
                _ => self.fail(
                    id,
                    format!("is listed as input {pos} but is not an input op"),
                ),
            }
        }
        for id in pg.node_indices() {
            if matches!(pg[id].op, Op::Input { .. }) && !listed.contains_key(&id) {
                self.fail(id, "is an input op missing from the graph's input list");
            }
        }
        for (name, id) in self.graph.outputs() {
            if !pg.contains_node(*id) {
                self.errors.push(format!(
                    "output `{name}` is node {}, which does not exist",
                    id.index()
                ));
                ends_ok = false;
            }
        }
        if !ends_ok {
            return;
        }

        // Acyclic: the topological order is a permutation of the nodes in
        // which every edge points forward.
        let order = self.graph.topo_order();
        let mut pos: HashMap<NodeId, usize> = HashMap::new();
        for (i, &id) in order.iter().enumerate() {
            if pos.insert(id, i).is_some() {
                self.fail(id, "appears twice in the topological order");
            }
        }
        for id in pg.node_indices() {
            if !pos.contains_key(&id) {
                self.fail(id, "is missing from the topological order");
            }
        }
        for e in pg.edge_references() {
            let (s, t) = (e.source(), e.target());
            if let (Some(ps), Some(pt)) = (pos.get(&s), pos.get(&t)) {
                if ps >= pt {
                    let user = self.node_name(t);
                    self.fail(s, format!("is an operand of {user} but does not come before it: the graph has a cycle"));
                }
            }
        }

        for &id in &order {
            self.check_node(id);
        }
        self.check_symbols(&order);
    }

    /// Invariant 8: every derived symbol comes from packs over one mask, and no input's
    /// dims use a pack's symbol.
    fn check_symbols(&mut self, order: &[NodeId]) {
        let graph = self.graph;
        let inputs: HashSet<Arc<str>> = graph.input_symbols().into_iter().collect();
        // Per pack symbol, the first pack that names it and its mask.
        let mut packs: HashMap<Arc<str>, (NodeId, NodeId)> = HashMap::new();
        for &id in order {
            let Op::Pack { tokens } = graph.op(id) else {
                continue;
            };
            let Some(&mask) = graph.operands(id).get(1) else {
                continue; // An arity error, reported already.
            };
            if inputs.contains(tokens) {
                let input = graph
                    .inputs()
                    .iter()
                    .copied()
                    .find(|&i| {
                        graph
                            .ty(i)
                            .shape
                            .dims()
                            .iter()
                            .any(|d| d.symbols().contains(tokens))
                    })
                    .map(|i| self.node_name(i))
                    .unwrap_or_else(|| "an input".into());
                self.fail(
                    id,
                    format!(
                        "its token symbol `{tokens}` is also a dim of {input}: a pack's symbol \
                         is derived from its mask, never bound by an input"
                    ),
                );
                continue;
            }
            match packs.get(tokens) {
                None => {
                    packs.insert(tokens.clone(), (id, mask));
                }
                Some(&(first, first_mask)) if first_mask != mask => {
                    let (f, fm, m) = (
                        self.node_name(first),
                        self.node_name(first_mask),
                        self.node_name(mask),
                    );
                    self.fail(
                        id,
                        format!(
                            "packs the token symbol `{tokens}` over the mask {m}, but {f} \
                             packs it over {fm}: all packs of one symbol take the same mask node"
                        ),
                    );
                }
                Some(_) => {}
            }
        }
        let mut reported: HashSet<Arc<str>> = HashSet::new();
        for &id in order {
            let ty = graph.ty(id);
            for d in ty.shape.dims() {
                for s in d.symbols() {
                    if !inputs.contains(&s) && !packs.contains_key(&s) && reported.insert(s.clone())
                    {
                        self.fail(
                            id,
                            format!(
                                "its type {ty} uses the symbol `{s}`, which no input's dims \
                                 bind and no `pack` introduces"
                            ),
                        );
                    }
                }
            }
        }
    }

    fn check_node(&mut self, id: NodeId) {
        let pg = self.graph.petgraph();
        let node = &pg[id];

        // Operand edges: existing sources, positions 0..n.
        let mut edges: Vec<(u32, NodeId)> = pg
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        edges.sort();
        let mut edges_ok = true;
        for (i, &(w, src)) in edges.iter().enumerate() {
            if !pg.contains_node(src) {
                self.fail(
                    id,
                    format!("operand {w} is node {}, which does not exist", src.index()),
                );
                edges_ok = false;
            }
            if w as usize != i {
                let what = if i > 0 && edges[i - 1].0 == w {
                    format!("has two operands at position {w}")
                } else {
                    format!("has no operand at position {i} (the next is at {w})")
                };
                self.fail(id, what);
                edges_ok = false;
                break;
            }
        }
        let n = edges.len();
        let arity_ok = match node.op.arity() {
            Arity::Exact(k) => n == k,
            Arity::AtLeast(k) => n >= k,
        };
        if !arity_ok {
            self.fail(
                id,
                format!("takes {:?} operands but has {n}", node.op.arity()),
            );
        }
        if !edges_ok || !arity_ok {
            return;
        }

        match &node.op {
            Op::Input { .. } => {
                if let Some(k) = &node.known {
                    self.fail(id, format!("is an input with a known value {k:?}"));
                }
                return;
            }
            Op::Const(c) => {
                let numel: usize = c.value.shape().iter().product();
                if numel != c.value.len() {
                    self.fail(
                        id,
                        format!(
                            "holds {} elements but its shape {:?} has {numel}",
                            c.value.len(),
                            c.value.shape()
                        ),
                    );
                    return;
                }
            }
            _ => {}
        }

        let tys: Vec<&TensorType> = edges.iter().map(|&(_, s)| &pg[s].ty).collect();
        let known: Vec<Option<&Known>> = edges.iter().map(|&(_, s)| pg[s].known.as_ref()).collect();
        match infer(&node.op, &tys, &known) {
            Err(e) => self.fail(id, format!("does not type-check on its operands: {e}")),
            Ok((ty, k)) => {
                if ty != node.ty {
                    self.fail(
                        id,
                        format!("has type {} but its operands give {ty}", node.ty),
                    );
                }
                if k != node.known {
                    self.fail(
                        id,
                        format!(
                            "has known value {} but its operands give {}",
                            show_known(node.known.as_ref()),
                            show_known(k.as_ref())
                        ),
                    );
                }
            }
        }
    }
}

fn show_known(k: Option<&Known>) -> String {
    match k {
        None => "none".into(),
        Some(k) => format!("{:?} of shape {:?}", k.values, k.shape),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dim::Dim;
    use crate::dtype::DType;
    use crate::op::{BinaryOp, Constant, UnaryOp};
    use crate::shape::Shape;
    use crate::tensor::Tensor;
    use std::sync::Arc;

    /// `y = neg(x) + c`, `s = shape(x)` with `x: f32[batch, 4]`.
    fn good() -> (Graph, [NodeId; 5]) {
        let mut g = Graph::new();
        let x = g.add_input(
            "x",
            TensorType::new(DType::F32, vec![Dim::sym("batch"), Dim::constant(4)]),
        );
        let c = g.add_const(Tensor::scalar(1.5f32), Some("c".into()));
        let n = g.add(Op::Unary(UnaryOp::Neg), &[x]).unwrap();
        let y = g.add(Op::Binary(BinaryOp::Add), &[n, c]).unwrap();
        let s = g.add(Op::ShapeOf { start: 0, end: 2 }, &[x]).unwrap();
        g.add_output("y", y);
        g.add_output("s", s);
        (g, [x, c, n, y, s])
    }

    fn fails(g: &Graph, needle: &str) {
        match verify(g) {
            Err(Error::Verify(m)) => assert!(m.contains(needle), "`{needle}` not in:\n{m}"),
            other => panic!("expected a verifier error with `{needle}`, got {other:?}"),
        }
    }

    #[test]
    fn a_good_graph_passes() {
        let (g, _) = good();
        assert_eq!(verify(&g), Ok(()));
        assert_eq!(verify(&Graph::new()), Ok(()));
    }

    #[test]
    fn missing_operand_position() {
        let (mut g, [_, _, n, y, _]) = good();
        let pg = g.petgraph_mut();
        let e = pg.find_edge(n, y).unwrap();
        pg[e] = 2; // Positions 1 and 2: position 0 is missing.
        fails(&g, "node 3 (add): has no operand at position 0");
    }

    #[test]
    fn duplicate_operand_position() {
        let (mut g, [_, c, _, y, _]) = good();
        let e = g.petgraph_mut().find_edge(c, y).unwrap();
        g.petgraph_mut()[e] = 0;
        fails(&g, "node 3 (add): has two operands at position 0");
    }

    #[test]
    fn wrong_arity() {
        let (mut g, [x, _, n, _, _]) = good();
        g.petgraph_mut().add_edge(x, n, 1);
        fails(&g, "node 2 (neg): takes Exact(1) operands but has 2");
    }

    #[test]
    fn stale_type() {
        let (mut g, [_, _, n, _, _]) = good();
        g.petgraph_mut()[n].ty = TensorType::new(DType::F32, Shape::fixed(&[3, 4]));
        // Both the node and its user, whose operand changed, are reported.
        fails(
            &g,
            "node 2 (neg): has type f32[3, 4] but its operands give f32[batch, 4]",
        );
        fails(
            &g,
            "node 3 (add): has type f32[batch, 4] but its operands give f32[3, 4]",
        );
    }

    #[test]
    fn stale_known_value() {
        let (mut g, [_, _, _, _, s]) = good();
        g.petgraph_mut()[s].known = None;
        fails(
            &g,
            "node 4 (shape): has known value none but its operands give [batch, 4]",
        );
        let (mut g, [x, _, _, _, _]) = good();
        g.petgraph_mut()[x].known = g.known(g.outputs()[1].1).cloned();
        fails(&g, "node 0 (input): is an input with a known value");
    }

    #[test]
    fn op_that_no_longer_type_checks() {
        let (mut g, [_, _, n, _, _]) = good();
        let node = &mut g.petgraph_mut()[n];
        node.op = Op::Unary(UnaryOp::Not);
        node.origin = Some("Not_7".into());
        fails(&g, "node 2 (not, from \"Not_7\"): does not type-check on its operands: not: needs bool, got f32");
    }

    #[test]
    fn cycle() {
        let (mut g, [_, _, n, y, _]) = good();
        // `neg` now also reads `add`, which reads `neg`. Make `neg` binary so
        // the arity stays right and only the cycle is wrong.
        let pg = g.petgraph_mut();
        pg[n].op = Op::Binary(BinaryOp::Add);
        pg.add_edge(y, n, 1);
        fails(&g, "the graph has a cycle");
        let (mut g, [_, _, n, _, _]) = good();
        let pg = g.petgraph_mut();
        pg[n].op = Op::Binary(BinaryOp::Add);
        pg.add_edge(n, n, 1);
        fails(
            &g,
            "node 2 (add): is an operand of node 2 (add) but does not come before it",
        );
    }

    #[test]
    fn input_not_listed() {
        let (mut g, _) = good();
        let stray = g.petgraph_mut().add_node(crate::graph::Node {
            op: Op::Input { name: "z".into() },
            ty: TensorType::new(DType::F32, Shape::scalar()),
            known: None,
            origin: None,
        });
        g.add_output("z", stray);
        fails(
            &g,
            "node 5 (input): is an input op missing from the graph's input list",
        );
    }

    #[test]
    fn listed_input_that_is_not_an_input() {
        let (mut g, [_, c, _, _, _]) = good();
        let i = g.add_input("w", TensorType::new(DType::F32, Shape::scalar()));
        g.petgraph_mut()[i].op = g.op(c).clone();
        fails(
            &g,
            "node 5 (const): is listed as input 1 but is not an input op",
        );
    }

    #[test]
    fn duplicate_input_name() {
        let (mut g, _) = good();
        g.add_input("x", TensorType::new(DType::F32, Shape::scalar()));
        fails(
            &g,
            "node 5 (input): has the input name `x` of node 0 (input)",
        );
    }

    #[test]
    fn missing_output() {
        let (mut g, [_, _, _, y, _]) = good();
        g.petgraph_mut().remove_node(y);
        fails(&g, "output `y` is node 3, which does not exist");
    }

    #[test]
    fn constant_that_does_not_match_its_type() {
        // A tensor always matches its own shape (Tensor::new checks it), so a
        // constant can only disagree with the node's stored type.
        let (mut g, [_, c, _, _, _]) = good();
        g.petgraph_mut()[c].op = Op::Const(Constant {
            name: None,
            value: Arc::new(Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap()),
        });
        fails(
            &g,
            "node 1 (const): has type f32[] but its operands give f32[2]",
        );
    }

    #[test]
    fn many_errors_are_capped() {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::new(DType::F32, Shape::fixed(&[2])));
        for i in 0..30 {
            let n = g.add(Op::Unary(UnaryOp::Neg), &[x]).unwrap();
            g.add_output(&format!("y{i}"), n);
            g.petgraph_mut()[n].ty = TensorType::new(DType::F64, Shape::fixed(&[2]));
        }
        fails(&g, "... and 10 more");
        let Err(Error::Verify(m)) = verify(&g) else {
            unreachable!()
        };
        assert_eq!(m.lines().count(), MAX_ERRORS + 1);
    }
}
