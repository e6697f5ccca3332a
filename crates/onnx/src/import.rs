//! Importing an ONNX graph: opsets, inputs, initializers, nodes through the
//! op registry, outputs, and the clean-up of folded shape arithmetic.
//!
//! Before anything is read, the initializers' declared sizes are checked
//! against the budget of constant bytes ([`crate::load::MAX_TENSOR_BYTES`]
//! per tensor, [`crate::load::MAX_TOTAL_BYTES`] in all); before a node's
//! importer runs, the node is checked against its op's signature
//! ([`crate::ops::schema`]: input and output counts, attribute names and
//! types).

use crate::context::{check_dims, Ctx};
use crate::error::{Error, Result};
use crate::load::{declared, dtype_from_onnx, load_model, tensor_from_proto, Budget};
use crate::ops::{registry, schema, Importer};
use crate::proto;
use crate::proto::tensor_shape_proto::dimension::Value as DimValue;
use crate::proto::type_proto::Value as TypeValue;
use std::collections::HashMap;
use std::path::Path;
use tcc_ir::{Dim, Graph, NodeId, Op, Shape, Tensor, TensorType};

/// The lowest opset of the default domain that tcc imports.
pub const MIN_OPSET: i64 = 7;
/// The highest opset of the default domain that tcc imports: the newest in
/// ONNX 1.23. Ops revised after opset 21 are imported with their opset-21
/// semantics (the revisions tcc knows of only add element types); the ONNX
/// node tests, generated at the newest opsets, are the check that this holds.
pub const MAX_OPSET: i64 = 28;

/// How `MatMulInteger` of `u8` activations by `i8` weights is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Int8MatMul {
    /// As ONNX Runtime computes it on x86 CPUs without VNNI (and so as the
    /// models that `quantize_dynamic` made on such machines were validated):
    /// adjacent products summed in pairs with i16 saturation (`vpmaddubsw`).
    #[default]
    OrtX86,
    /// Exactly, as the ONNX specification defines it.
    Exact,
}

/// Choices that change what an imported graph computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// The arithmetic of u8 x i8 `MatMulInteger`.
    pub int8_matmul: Int8MatMul,
}

/// Reads the model at `path` and imports it with the default options;
/// external data is read relative to the model's directory.
pub fn import_file(path: &Path) -> Result<Graph> {
    import_file_with(path, &ImportOptions::default())
}

/// Reads the model at `path` and imports it with `options`.
pub fn import_file_with(path: &Path, options: &ImportOptions) -> Result<Graph> {
    let model = load_model(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    import_model_with(&model, dir, options)
}

/// What a value name of the ONNX graph stands for while importing.
enum Value {
    /// An IR node.
    Node(NodeId),
    /// An output that tcc does not compute; using it is an error with this message.
    Unavailable(String),
}

/// The display name of the default domain.
fn domain_name(domain: &str) -> &str {
    if domain.is_empty() {
        "ai.onnx"
    } else {
        domain
    }
}

/// Imports `model` into an IR graph with the default options. `base_dir` is
/// the model's directory, the root of relative external data locations.
pub fn import_model(model: &proto::ModelProto, base_dir: &Path) -> Result<Graph> {
    import_model_with(model, base_dir, &ImportOptions::default())
}

/// Imports `model` into an IR graph with `options`.
pub fn import_model_with(
    model: &proto::ModelProto,
    base_dir: &Path,
    options: &ImportOptions,
) -> Result<Graph> {
    let mut opsets: HashMap<&str, i64> = HashMap::new();
    for o in &model.opset_import {
        let d = domain_name(o.domain());
        opsets.insert(d, o.version());
    }
    let opset = *opsets.get("ai.onnx").ok_or_else(|| {
        Error::Opset("the model imports no opset of the default domain (`ai.onnx`)".into())
    })?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(Error::Opset(format!(
            "the model uses opset {opset} of `ai.onnx`; tcc imports opsets {MIN_OPSET} to {MAX_OPSET}"
        )));
    }
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::Graph("the model has no graph".into()))?;
    if !g.sparse_initializer.is_empty() {
        return Err(Error::Graph(format!(
            "sparse initializers (`{}`) are not supported",
            g.sparse_initializer
                .first()
                .and_then(|s| s.values.as_ref())
                .map(|v| v.name())
                .unwrap_or("?")
        )));
    }

    let mut graph = Graph::new();
    let mut values: HashMap<String, Value> = HashMap::new();

    // Every initializer's declared size is within the budget before the
    // first one is read.
    let budget = Budget::default();
    for init in &g.initializer {
        let (.., bytes) = declared(init, init.name())?;
        budget.claim(init.name(), bytes)?;
    }
    for init in &g.initializer {
        let t = tensor_from_proto(init, Some(base_dir))?;
        let id = graph.add_const(t, Some(init.name().to_string()));
        values.insert(init.name().to_string(), Value::Node(id));
    }
    for vi in &g.input {
        if values.contains_key(vi.name()) {
            // Before IR version 4 initializers were listed as inputs too; the
            // initializer is the value.
            continue;
        }
        let ty = input_type(vi)?;
        let id = graph.add_input(vi.name(), ty);
        values.insert(vi.name().to_string(), Value::Node(id));
    }

    let reg = registry();
    for (index, node) in g.node.iter().enumerate() {
        import_node(
            &mut graph,
            &reg,
            &opsets,
            opset,
            node,
            index,
            &mut values,
            base_dir,
            options,
            &budget,
        )?;
    }

    for vi in &g.output {
        let id = match values.get(vi.name()) {
            Some(Value::Node(id)) => *id,
            Some(Value::Unavailable(m)) => return Err(Error::Graph(m.clone())),
            None => {
                return Err(Error::Graph(format!(
                    "graph output `{}` is not produced by any node",
                    vi.name()
                )))
            }
        };
        check_output(&graph, vi, id)?;
        graph.add_output(vi.name(), id);
    }
    graph.remove_dead();
    Ok(graph)
}

/// Turns a graph input's declared type into a tensor type.
fn input_type(vi: &proto::ValueInfoProto) -> Result<TensorType> {
    let name = vi.name();
    let err = |message: String| Error::Input {
        name: name.to_string(),
        message,
    };
    let tp = vi
        .r#type
        .as_ref()
        .and_then(|t| t.value.as_ref())
        .ok_or_else(|| err("has no type".into()))?;
    let tt = match tp {
        TypeValue::TensorType(t) => t,
        TypeValue::SequenceType(_) => {
            return Err(err("is a sequence; tcc takes tensors only".into()))
        }
        TypeValue::MapType(_) => return Err(err("is a map; tcc takes tensors only".into())),
        TypeValue::OptionalType(_) => {
            return Err(err("is an optional; tcc takes tensors only".into()))
        }
        TypeValue::SparseTensorType(_) => {
            return Err(err(
                "is a sparse tensor; tcc takes dense tensors only".into()
            ))
        }
        TypeValue::OpaqueType(_) => return Err(err("is opaque; tcc takes tensors only".into())),
    };
    let dtype = dtype_from_onnx(tt.elem_type()).map_err(err)?;
    let shape = tt
        .shape
        .as_ref()
        .ok_or_else(|| err("has no shape (its rank is unknown)".into()))?;
    let dims = shape
        .dim
        .iter()
        .enumerate()
        .map(|(axis, d)| match &d.value {
            Some(DimValue::DimValue(v)) if *v >= 0 => Ok(Dim::constant(*v)),
            Some(DimValue::DimValue(v)) => Err(err(format!("dim {axis} is negative ({v})"))),
            Some(DimValue::DimParam(p)) if !p.is_empty() => Ok(Dim::sym(&sanitize(p))),
            _ => Ok(Dim::sym(&sanitize(&format!("{name}_d{axis}")))),
        })
        .collect::<Result<Vec<_>>>()?;
    check_dims(&dims, dtype.size_bytes() as u64, || "its shape".into()).map_err(err)?;
    Ok(TensorType::new(dtype, dims))
}

/// Turns a `dim_param` into an identifier: characters outside `[A-Za-z0-9_]`
/// become `_`, and a leading digit gets an `s` in front.
pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 's');
    }
    s
}

/// Checks an output's inferred type against what the model declares: same
/// dtype, same rank, and equal dims where both are constants.
fn check_output(graph: &Graph, vi: &proto::ValueInfoProto, id: NodeId) -> Result<()> {
    let Some(TypeValue::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Ok(());
    };
    let ty = graph.ty(id);
    let mismatch = |declared: String| {
        Error::Graph(format!(
            "output `{}` is declared {declared} but imports as {ty}",
            vi.name()
        ))
    };
    if tt.elem_type.is_some() {
        if let Ok(dt) = dtype_from_onnx(tt.elem_type()) {
            if dt != ty.dtype {
                return Err(mismatch(format!("of dtype {dt}")));
            }
        }
    }
    if let Some(s) = &tt.shape {
        if s.dim.len() != ty.rank() {
            return Err(mismatch(format!("of rank {}", s.dim.len())));
        }
        for (d, have) in s.dim.iter().zip(ty.shape.dims()) {
            if let (Some(DimValue::DimValue(v)), Some(h)) = (&d.value, have.as_const()) {
                if *v != h {
                    return Err(mismatch(format!("with dim {v} where the import has {h}")));
                }
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn import_node(
    graph: &mut Graph,
    reg: &HashMap<&'static str, Importer>,
    opsets: &HashMap<&str, i64>,
    default_opset: i64,
    node: &proto::NodeProto,
    index: usize,
    values: &mut HashMap<String, Value>,
    base_dir: &Path,
    options: &ImportOptions,
    budget: &Budget,
) -> Result<()> {
    let name = if !node.name().is_empty() {
        node.name().to_string()
    } else if let Some(o) = node.output.iter().find(|o| !o.is_empty()) {
        o.clone()
    } else {
        format!("#{index}")
    };
    let domain = domain_name(node.domain());
    let opset = if domain == "ai.onnx" {
        default_opset
    } else {
        opsets.get(domain).copied().unwrap_or(1)
    };
    let unsupported = || Error::UnsupportedOp {
        op: node.op_type().to_string(),
        domain: domain.to_string(),
        opset,
        node: name.clone(),
    };
    if domain != "ai.onnx" {
        return Err(unsupported());
    }
    let imp = match reg.get(node.op_type()) {
        Some(imp) if opset >= imp.since => imp,
        _ => return Err(unsupported()),
    };
    schema::check_node(node, &name, opset)?;
    let mut inputs = Vec::with_capacity(node.input.len());
    for inp in &node.input {
        if inp.is_empty() {
            inputs.push(None);
            continue;
        }
        match values.get(inp) {
            Some(Value::Node(id)) => inputs.push(Some(*id)),
            Some(Value::Unavailable(m)) => {
                return Err(Error::Node {
                    node: name,
                    op: node.op_type().to_string(),
                    message: m.clone(),
                })
            }
            None => {
                return Err(Error::Node {
                    node: name,
                    op: node.op_type().to_string(),
                    message: format!(
                        "input `{inp}` is not a graph input, an initializer or the output of an earlier node"
                    ),
                })
            }
        }
    }
    let mut ctx = Ctx::new(
        graph,
        node,
        name.clone(),
        opset,
        inputs,
        base_dir,
        options,
        budget,
    );
    let outs = (imp.import)(&mut ctx)?;
    if outs.len() > node.output.len() {
        return Err(Error::Node {
            node: name,
            op: node.op_type().to_string(),
            message: format!(
                "the importer made {} results for {} outputs",
                outs.len(),
                node.output.len()
            ),
        });
    }
    for (k, out) in node.output.iter().enumerate() {
        if out.is_empty() {
            continue;
        }
        let v = match outs.get(k) {
            Some(&id) => Value::Node(fold_known(graph, id)),
            None => Value::Unavailable(format!(
                "output `{out}` (output {k}) of node `{name}` ({}) is used, but tcc computes only \
                 the first {} output(s) of {}",
                node.op_type(),
                outs.len(),
                node.op_type()
            )),
        };
        values.insert(out.clone(), v);
    }
    Ok(())
}

/// Replaces a node whose value shape inference knows by a leaf (a constant, or
/// `dims` when the value is symbolic), so that the shape arithmetic it was
/// computed from loses its last user and [`Graph::remove_dead`] drops it.
fn fold_known(graph: &mut Graph, id: NodeId) -> NodeId {
    if matches!(
        graph.op(id),
        Op::Input { .. } | Op::Const(_) | Op::Dims { .. }
    ) || graph.operands(id).is_empty()
    {
        return id;
    }
    let Some(k) = graph.known(id).cloned() else {
        return id;
    };
    let ty = graph.ty(id).clone();
    if ty.shape != Shape::fixed(&k.shape) {
        return id;
    }
    let leaf = match k.ints() {
        Some(ints) => match Tensor::new(
            k.shape.clone(),
            tcc_ir::TensorData::from_i64(ty.dtype, ints),
        ) {
            Ok(t) => Op::Const(tcc_ir::Constant {
                name: None,
                value: std::sync::Arc::new(t),
            }),
            Err(_) => return id,
        },
        None if ty.dtype.is_int() => Op::Dims {
            dtype: ty.dtype,
            shape: k.shape.clone(),
            values: k.values.clone(),
        },
        None => return id,
    };
    // A failure only means the node stays as it is, which is still correct.
    let _ = graph.replace_with_leaf(id, leaf);
    id
}
