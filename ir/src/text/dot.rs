//! Graphviz: a graph as a `dot` cluster, one box per node, fused ops filled.

use crate::fused::is_fused;
use crate::graph::Graph;
use crate::op::Op;
use std::fmt::Write;

/// The graph as a `subgraph cluster_<id>` labelled `label`, for one `digraph` that shows
/// several graphs side by side (node names are prefixed by `id`). Inputs are ellipses,
/// constants are left out (they would crowd the picture; their users say `const` in a
/// tooltip), fused ops are filled boxes whose label gives their attributes, and edges are
/// labelled with the operand position when an op has several operands.
pub fn dot_cluster(graph: &Graph, id: &str, label: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "  subgraph cluster_{id} {{");
    let _ = writeln!(s, "    label={};", quote(label));
    for n in graph.topo_order() {
        let node = graph.node(n);
        if matches!(node.op, Op::Const(_)) {
            continue;
        }
        let ty = &node.ty;
        let (shape, extra) = match &node.op {
            Op::Input { name } => ("ellipse", format!("{name}\n{ty}")),
            op if is_fused(op) => {
                let attrs: Vec<String> =
                    op.attrs().iter().map(|(k, v)| format!("{k}={v}")).collect();
                (
                    "box, style=filled, fillcolor=\"#ffd27f\"",
                    format!("{}\n{}\n{ty}", op.name(), attrs.join("\n")),
                )
            }
            op => ("box", format!("{}\n{ty}", op.name())),
        };
        let _ = writeln!(
            s,
            "    {id}_{} [shape={shape}, label={}];",
            n.index(),
            quote(&extra)
        );
    }
    for n in graph.topo_order() {
        let ops = graph.operands(n);
        for (i, &o) in ops.iter().enumerate() {
            if matches!(graph.op(o), Op::Const(_)) {
                continue;
            }
            let label = if ops.len() > 1 {
                format!(" [label=\"{i}\"]")
            } else {
                String::new()
            };
            let _ = writeln!(s, "    {id}_{} -> {id}_{}{label};", o.index(), n.index());
        }
    }
    for (j, (name, o)) in graph.outputs().iter().enumerate() {
        let _ = writeln!(s, "    {id}_out{j} [shape=ellipse, label={}];", quote(name));
        let _ = writeln!(s, "    {id}_{} -> {id}_out{j};", o.index());
    }
    s.push_str("  }\n");
    s
}

fn quote(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}
