//! The printer of the text form.

use super::{const_labels, name_token, quote, INLINE_LIMIT};
use crate::graph::{Graph, NodeId};
use crate::op::{fmt_f32, Op};
use crate::tensor::{Tensor, TensorData};
use half::{bf16, f16};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// Prints `graph` in the text form described in the [module docs](super).
pub fn print(graph: &Graph) -> String {
    let order = graph.topo_order();
    let labels = const_labels(graph, &order);
    let input_names: HashSet<&str> = graph
        .inputs()
        .iter()
        .filter_map(|&i| match graph.op(i) {
            Op::Input { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();

    // Name every value: inputs by their names, the rest by number.
    let mut names: HashMap<NodeId, String> = HashMap::new();
    let mut next = 0usize;
    for &id in &order {
        if let Op::Input { name } = graph.op(id) {
            if graph.inputs().contains(&id) {
                names.insert(id, format!("%{}", name_token(name)));
                continue;
            }
        }
        while input_names.contains(next.to_string().as_str()) {
            next += 1;
        }
        names.insert(id, format!("%{next}"));
        next += 1;
    }
    let name = |id: NodeId| -> String {
        names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("%<missing node {}>", id.index()))
    };

    let mut out = String::from("graph(");
    for (i, &id) in graph.inputs().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}: {}", name(id), graph.ty(id));
    }
    out.push_str(") {\n");

    for &id in &order {
        let node = graph.node(id);
        if matches!(node.op, Op::Input { .. }) && graph.inputs().contains(&id) {
            continue;
        }
        let _ = write!(out, "  {} = {}", name(id), node.op.name());
        match &node.op {
            Op::Const(c) => match labels.get(&id) {
                Some(label) => {
                    let _ = write!(out, " @{}", quote(label));
                }
                None => {
                    out.push(' ');
                    out.push_str(&inline_values(&c.value));
                }
            },
            // An input missing from the input list: printed for debugging only.
            Op::Input { name } => {
                let _ = write!(out, "<name={}>", quote(name));
            }
            op => {
                let attrs = op.attrs();
                if !attrs.is_empty() {
                    out.push('<');
                    for (i, (k, v)) in attrs.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        let _ = write!(out, "{k}={v}");
                    }
                    out.push('>');
                }
                let operands = graph.operands(id);
                if !operands.is_empty() {
                    out.push('(');
                    for (i, &o) in operands.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        out.push_str(&name(o));
                    }
                    out.push(')');
                }
            }
        }
        let _ = writeln!(out, " : {}", node.ty);
    }

    for (label, id) in graph.outputs() {
        let _ = writeln!(out, "  return %{} = {}", name_token(label), name(*id));
    }
    out.push_str("}\n");
    out
}

/// The elements of a small constant, flat: `[0.5, 2.0]`.
fn inline_values(t: &Tensor) -> String {
    let items: Vec<String> = match t.data() {
        TensorData::F32(v) => v.iter().map(|&x| fmt_f32_exact(x)).collect(),
        TensorData::F64(v) => v.iter().map(|&x| fmt_f64_exact(x)).collect(),
        TensorData::F16(v) => v
            .iter()
            .map(|&x| {
                if x.is_nan() && x.to_bits() != f16::NAN.to_bits() {
                    format!("NaN:0x{:04x}", x.to_bits())
                } else {
                    fmt_f32_exact(x.to_f32())
                }
            })
            .collect(),
        TensorData::BF16(v) => v
            .iter()
            .map(|&x| {
                if x.is_nan() && x.to_bits() != bf16::NAN.to_bits() {
                    format!("NaN:0x{:04x}", x.to_bits())
                } else {
                    fmt_f32_exact(x.to_f32())
                }
            })
            .collect(),
        TensorData::I64(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::I32(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::I8(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::U8(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::Bool(v) => v.iter().map(|x| x.to_string()).collect(),
    };
    debug_assert!(items.len() <= INLINE_LIMIT);
    format!("[{}]", items.join(", "))
}

/// An f32 that parses back to the same bits, NaN payloads included.
fn fmt_f32_exact(x: f32) -> String {
    if x.is_nan() {
        if x.to_bits() == f32::NAN.to_bits() {
            "NaN".into()
        } else {
            format!("NaN:0x{:08x}", x.to_bits())
        }
    } else {
        fmt_f32(x)
    }
}

/// An f64 that parses back to the same bits, NaN payloads included.
fn fmt_f64_exact(x: f64) -> String {
    if x.is_nan() {
        if x.to_bits() == f64::NAN.to_bits() {
            "NaN".into()
        } else {
            format!("NaN:0x{:016x}", x.to_bits())
        }
    } else if x.is_finite() && x == x.trunc() && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("{x:?}")
    }
}
