//! Between the IR graph and the e-graph: a whole model in (several outputs, nodes used many
//! times), and the extracted choice of one e-node per needed class back out.

use super::analysis::{TensorAnalysis, TensorGraph};
use super::lang::ENode;
use egg::Id;
use std::collections::HashMap;
use tcc_ir::{Graph, NodeId, Op};

/// A graph in an e-graph: the class of each output, in order, and the origin (source node
/// name) of each class, for the rebuilt graph's messages.
pub struct Loaded {
    /// The e-graph.
    pub egraph: TensorGraph,
    /// The class of each output of the graph, in order.
    pub outputs: Vec<Id>,
    /// Where each class came from, when the graph said.
    pub origins: HashMap<Id, String>,
    /// The class each node of the graph went into.
    pub classes: HashMap<NodeId, Id>,
}

impl Loaded {
    /// The class of the graph's node `id` (canonical now).
    pub fn class_of(&self, id: NodeId) -> Id {
        self.egraph.find(self.classes[&id])
    }
}

/// Adds every node of `graph` to a new e-graph. Identical nodes (same op, same operands)
/// fall into one class as they are added: common subexpressions merge.
pub fn to_egraph(graph: &Graph) -> Loaded {
    let analysis = TensorAnalysis {
        inputs: graph
            .inputs()
            .iter()
            .map(|&i| match graph.op(i) {
                Op::Input { name } => (name.clone(), graph.ty(i).clone()),
                _ => unreachable!("graph inputs are input nodes"),
            })
            .collect(),
        mask_inputs: crate::key_mask::mask_candidates(graph)
            .into_iter()
            .filter_map(|i| match graph.op(i) {
                Op::Input { name } => Some(name.clone()),
                _ => None,
            })
            .collect(),
    };
    let mut egraph = TensorGraph::new(analysis);
    let mut class: HashMap<NodeId, Id> = HashMap::new();
    let mut origins = HashMap::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        let children = graph.operands(id).iter().map(|o| class[o]).collect();
        let c = egraph.add(ENode::new(node.op.clone(), children, id.index()));
        if let Some(o) = &node.origin {
            origins.entry(c).or_insert_with(|| o.clone());
        }
        class.insert(id, c);
    }
    let outputs = graph.outputs().iter().map(|(_, id)| class[id]).collect();
    Loaded {
        egraph,
        outputs,
        origins,
        classes: class,
    }
}

/// Builds the graph that `choice` (one e-node per class that the outputs need) describes,
/// with `original`'s inputs in their order (used or not) and its outputs' names.
pub fn from_egraph(
    loaded: &Loaded,
    choice: &HashMap<Id, ENode>,
    original: &Graph,
) -> tcc_ir::Result<Graph> {
    let eg = &loaded.egraph;
    let mut g = Graph::new();
    let mut built: HashMap<Id, NodeId> = HashMap::new();
    for &i in original.inputs() {
        let Op::Input { name } = original.op(i) else {
            unreachable!("graph inputs are input nodes")
        };
        let nid = g.add_input(name, original.ty(i).clone());
        let c = eg.find(
            eg.lookup(ENode::new(original.op(i).clone(), vec![], 0))
                .expect("every input is in the e-graph"),
        );
        built.insert(c, nid);
    }
    // Iterative post-order over the chosen e-nodes; a class met again while its operands are
    // still being built would be a cycle in the choice (extraction never makes one).
    let mut open: std::collections::HashSet<Id> = Default::default();
    for &root in &loaded.outputs {
        let mut stack = vec![(eg.find(root), false)];
        while let Some((c, expanded)) = stack.pop() {
            if built.contains_key(&c) {
                continue;
            }
            let node = &choice[&c];
            if !expanded {
                if !open.insert(c) {
                    return Err(tcc_ir::Error::Invalid {
                        op: node.name().to_string(),
                        message: "the optimiser extracted a cycle (internal error)".to_string(),
                    });
                }
                stack.push((c, true));
                for &a in node.args().iter().rev() {
                    let a = eg.find(a);
                    if !built.contains_key(&a) {
                        stack.push((a, false));
                    }
                }
                continue;
            }
            let operands: Vec<NodeId> = node.args().iter().map(|&a| built[&eg.find(a)]).collect();
            let origin = loaded.origins.get(&c).map(String::as_str);
            let nid = g.add_with_origin(node.op().clone(), &operands, origin)?;
            built.insert(c, nid);
        }
    }
    for ((name, _), &root) in original.outputs().iter().zip(&loaded.outputs) {
        g.add_output(name, built[&eg.find(root)]);
    }
    Ok(g)
}
