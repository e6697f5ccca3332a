//! The signatures of the ONNX ops tcc imports: how many inputs and outputs a
//! node may list and which attributes, of which types, it may carry, at each
//! opset where that changed.
//!
//! [`check_node`] runs on every node before its importer does, so an importer
//! may rely on the node's shape: `Add(x, x, x)`, `Relu(x, x)`, a
//! `LayerNormalization` with a fourth input, a second output of `Relu`, an
//! attribute the op does not have, or one of another type (or of no type),
//! are refused here with an error naming the node, the op and the attribute.
//!
//! The table follows the ONNX operator schemas (onnx 1.23, `onnx.defs`): one
//! row per op version whose counts or attributes differ from the version
//! before, from the version in force at [`MIN_OPSET`](crate::import::MIN_OPSET) on. A node at opset `n`
//! is checked against the newest row of its op with `since <= n`. The test at
//! the end of this file checks that every registered op has a row for every
//! opset it can be imported at.

use crate::error::{Error, Result};
use crate::proto;
use crate::proto::attribute_proto::AttributeType;

/// An input or output count with no upper bound (a variadic parameter).
const MANY: usize = usize::MAX;

use AttributeType::{Float as F, Floats as FS, Int as I, Ints as IS, String as S, Tensor as T};
/// `SPARSE_TENSOR` (only `Constant` declares it; its importer refuses it).
const SP: AttributeType = AttributeType::SparseTensor;
/// `STRINGS` (only `Constant` declares it; its importer refuses it).
const SS: AttributeType = AttributeType::Strings;

/// One version of one op's signature.
#[derive(Debug)]
pub struct Schema {
    /// The ONNX op type (default domain).
    pub op: &'static str,
    /// The opset that introduced this version.
    pub since: i64,
    /// The fewest and the most inputs a node may list (absent optional inputs,
    /// named `""`, included). For ops with a fixed list of inputs the first
    /// `inputs.0` are required and must not be empty.
    pub inputs: (usize, usize),
    /// The fewest and the most outputs a node may declare; the first
    /// `outputs.0` are required and must not be empty.
    pub outputs: (usize, usize),
    /// Every attribute this version defines, with its type.
    pub attrs: &'static [(&'static str, AttributeType)],
}

const fn s(
    op: &'static str,
    since: i64,
    inputs: (usize, usize),
    outputs: (usize, usize),
    attrs: &'static [(&'static str, AttributeType)],
) -> Schema {
    Schema {
        op,
        since,
        inputs,
        outputs,
        attrs,
    }
}

/// The op versions, grouped by the family files that import them.
#[rustfmt::skip]
pub const SCHEMAS: &[Schema] = &[
    // activation.rs
    s("Gelu", 20, (1, 1), (1, 1), &[("approximate", S)]),
    s("Elu", 6, (1, 1), (1, 1), &[("alpha", F)]),
    s("LeakyRelu", 6, (1, 1), (1, 1), &[("alpha", F)]),
    s("PRelu", 7, (2, 2), (1, 1), &[]),
    s("Selu", 6, (1, 1), (1, 1), &[("alpha", F), ("gamma", F)]),
    s("Celu", 12, (1, 1), (1, 1), &[("alpha", F)]),
    s("HardSigmoid", 6, (1, 1), (1, 1), &[("alpha", F), ("beta", F)]),
    s("HardSwish", 14, (1, 1), (1, 1), &[]),
    s("Softplus", 1, (1, 1), (1, 1), &[]),
    s("Softsign", 1, (1, 1), (1, 1), &[]),
    s("ThresholdedRelu", 10, (1, 1), (1, 1), &[("alpha", F)]),
    s("Mish", 18, (1, 1), (1, 1), &[]),
    // attention.rs
    s("Attention", 23, (3, 6), (1, 4), &[("is_causal", I), ("kv_num_heads", I), ("q_num_heads", I), ("qk_matmul_output_mode", I), ("scale", F), ("softcap", F), ("softmax_precision", I)]),
    s("Attention", 24, (3, 7), (1, 4), &[("is_causal", I), ("kv_num_heads", I), ("q_num_heads", I), ("qk_matmul_output_mode", I), ("scale", F), ("softcap", F), ("softmax_precision", I)]),
    s("Attention", 25, (3, 7), (1, 4), &[("is_causal", I), ("kv_num_heads", I), ("left_window_size", I), ("q_num_heads", I), ("qk_matmul_output_mode", I), ("right_window_size", I), ("scale", F), ("softcap", F), ("softmax_precision", I)]),
    // conv.rs, conv_integer.rs
    s("Conv", 1, (2, 3), (1, 1), &[("auto_pad", S), ("dilations", IS), ("group", I), ("kernel_shape", IS), ("pads", IS), ("strides", IS)]),
    s("ConvInteger", 10, (2, 4), (1, 1), &[("auto_pad", S), ("dilations", IS), ("group", I), ("kernel_shape", IS), ("pads", IS), ("strides", IS)]),
    // einsum.rs
    s("Einsum", 12, (1, MANY), (1, 1), &[("equation", S)]),
    // elementwise.rs
    s("Add", 7, (2, 2), (1, 1), &[]),
    s("Sub", 7, (2, 2), (1, 1), &[]),
    s("Mul", 7, (2, 2), (1, 1), &[]),
    s("Div", 7, (2, 2), (1, 1), &[]),
    s("Pow", 7, (2, 2), (1, 1), &[]),
    s("Equal", 7, (2, 2), (1, 1), &[]),
    s("Less", 7, (2, 2), (1, 1), &[]),
    s("LessOrEqual", 12, (2, 2), (1, 1), &[]),
    s("Greater", 7, (2, 2), (1, 1), &[]),
    s("GreaterOrEqual", 12, (2, 2), (1, 1), &[]),
    s("And", 7, (2, 2), (1, 1), &[]),
    s("Or", 7, (2, 2), (1, 1), &[]),
    s("Xor", 7, (2, 2), (1, 1), &[]),
    s("Mod", 10, (2, 2), (1, 1), &[("fmod", I)]),
    s("Not", 1, (1, 1), (1, 1), &[]),
    s("Neg", 6, (1, 1), (1, 1), &[]),
    s("Abs", 6, (1, 1), (1, 1), &[]),
    s("Sqrt", 6, (1, 1), (1, 1), &[]),
    s("Exp", 6, (1, 1), (1, 1), &[]),
    s("Log", 6, (1, 1), (1, 1), &[]),
    s("Erf", 9, (1, 1), (1, 1), &[]),
    s("Tanh", 6, (1, 1), (1, 1), &[]),
    s("Sigmoid", 6, (1, 1), (1, 1), &[]),
    s("Relu", 6, (1, 1), (1, 1), &[]),
    s("Reciprocal", 6, (1, 1), (1, 1), &[]),
    s("Floor", 6, (1, 1), (1, 1), &[]),
    s("Ceil", 6, (1, 1), (1, 1), &[]),
    s("Round", 11, (1, 1), (1, 1), &[]),
    s("Sign", 9, (1, 1), (1, 1), &[]),
    s("Sin", 7, (1, 1), (1, 1), &[]),
    s("Cos", 7, (1, 1), (1, 1), &[]),
    s("Tan", 7, (1, 1), (1, 1), &[]),
    s("Asin", 7, (1, 1), (1, 1), &[]),
    s("Acos", 7, (1, 1), (1, 1), &[]),
    s("Atan", 7, (1, 1), (1, 1), &[]),
    s("Sinh", 9, (1, 1), (1, 1), &[]),
    s("Cosh", 9, (1, 1), (1, 1), &[]),
    s("Asinh", 9, (1, 1), (1, 1), &[]),
    s("Acosh", 9, (1, 1), (1, 1), &[]),
    s("Atanh", 9, (1, 1), (1, 1), &[]),
    s("IsNaN", 9, (1, 1), (1, 1), &[]),
    s("IsInf", 10, (1, 1), (1, 1), &[("detect_negative", I), ("detect_positive", I)]),
    s("Where", 9, (3, 3), (1, 1), &[]),
    s("Sum", 6, (1, MANY), (1, 1), &[]),
    s("Max", 6, (1, MANY), (1, 1), &[]),
    s("Min", 6, (1, MANY), (1, 1), &[]),
    s("Mean", 6, (1, MANY), (1, 1), &[]),
    s("Clip", 6, (1, 1), (1, 1), &[("max", F), ("min", F)]),
    s("Clip", 11, (1, 3), (1, 1), &[]),
    s("Cast", 6, (1, 1), (1, 1), &[("to", I)]),
    s("Cast", 19, (1, 1), (1, 1), &[("saturate", I), ("to", I)]),
    s("Cast", 24, (1, 1), (1, 1), &[("round_mode", S), ("saturate", I), ("to", I)]),
    s("CastLike", 15, (2, 2), (1, 1), &[]),
    s("CastLike", 19, (2, 2), (1, 1), &[("saturate", I)]),
    s("CastLike", 24, (2, 2), (1, 1), &[("round_mode", S), ("saturate", I)]),
    // matmul.rs
    s("MatMul", 1, (2, 2), (1, 1), &[]),
    s("Gemm", 7, (3, 3), (1, 1), &[("alpha", F), ("beta", F), ("transA", I), ("transB", I)]),
    s("Gemm", 11, (2, 3), (1, 1), &[("alpha", F), ("beta", F), ("transA", I), ("transB", I)]),
    // misc.rs
    s("Constant", 1, (0, 0), (1, 1), &[("value", T)]),
    s("Constant", 11, (0, 0), (1, 1), &[("sparse_value", SP), ("value", T)]),
    s("Constant", 12, (0, 0), (1, 1), &[("sparse_value", SP), ("value", T), ("value_float", F), ("value_floats", FS), ("value_int", I), ("value_ints", IS), ("value_string", S), ("value_strings", SS)]),
    s("Identity", 1, (1, 1), (1, 1), &[]),
    s("Dropout", 7, (1, 1), (1, 2), &[("ratio", F)]),
    s("Dropout", 12, (1, 3), (1, 2), &[("seed", I)]),
    s("Trilu", 14, (1, 2), (1, 1), &[("upper", I)]),
    s("CumSum", 11, (2, 2), (1, 1), &[("exclusive", I), ("reverse", I)]),
    // normalization.rs
    s("Softmax", 1, (1, 1), (1, 1), &[("axis", I)]),
    s("LogSoftmax", 1, (1, 1), (1, 1), &[("axis", I)]),
    s("LayerNormalization", 17, (2, 3), (1, 3), &[("axis", I), ("epsilon", F), ("stash_type", I)]),
    s("RMSNormalization", 23, (2, 2), (1, 1), &[("axis", I), ("epsilon", F), ("stash_type", I)]),
    // pad.rs
    s("Pad", 2, (1, 1), (1, 1), &[("mode", S), ("pads", IS), ("value", F)]),
    s("Pad", 11, (2, 3), (1, 1), &[("mode", S)]),
    s("Pad", 18, (2, 4), (1, 1), &[("mode", S)]),
    // quant.rs
    s("DequantizeLinear", 10, (2, 3), (1, 1), &[]),
    s("DequantizeLinear", 13, (2, 3), (1, 1), &[("axis", I)]),
    s("DequantizeLinear", 21, (2, 3), (1, 1), &[("axis", I), ("block_size", I)]),
    s("DequantizeLinear", 23, (2, 3), (1, 1), &[("axis", I), ("block_size", I), ("output_dtype", I)]),
    s("QuantizeLinear", 10, (2, 3), (1, 1), &[]),
    s("QuantizeLinear", 13, (2, 3), (1, 1), &[("axis", I)]),
    s("QuantizeLinear", 19, (2, 3), (1, 1), &[("axis", I), ("saturate", I)]),
    s("QuantizeLinear", 21, (2, 3), (1, 1), &[("axis", I), ("block_size", I), ("output_dtype", I), ("saturate", I)]),
    s("QuantizeLinear", 23, (2, 3), (1, 1), &[("axis", I), ("block_size", I), ("output_dtype", I), ("precision", I), ("saturate", I)]),
    s("DynamicQuantizeLinear", 11, (1, 1), (3, 3), &[]),
    s("MatMulInteger", 10, (2, 4), (1, 1), &[]),
    // reduce.rs
    s("ReduceSum", 1, (1, 1), (1, 1), &[("axes", IS), ("keepdims", I)]),
    s("ReduceSum", 13, (1, 2), (1, 1), &[("keepdims", I), ("noop_with_empty_axes", I)]),
    s("ReduceMean", 1, (1, 1), (1, 1), &[("axes", IS), ("keepdims", I)]),
    s("ReduceMean", 18, (1, 2), (1, 1), &[("keepdims", I), ("noop_with_empty_axes", I)]),
    s("ReduceMax", 1, (1, 1), (1, 1), &[("axes", IS), ("keepdims", I)]),
    s("ReduceMax", 18, (1, 2), (1, 1), &[("keepdims", I), ("noop_with_empty_axes", I)]),
    s("ReduceMin", 1, (1, 1), (1, 1), &[("axes", IS), ("keepdims", I)]),
    s("ReduceMin", 18, (1, 2), (1, 1), &[("keepdims", I), ("noop_with_empty_axes", I)]),
    s("ReduceProd", 1, (1, 1), (1, 1), &[("axes", IS), ("keepdims", I)]),
    s("ReduceProd", 18, (1, 2), (1, 1), &[("keepdims", I), ("noop_with_empty_axes", I)]),
    s("ReduceL1", 1, (1, 1), (1, 1), &[("axes", IS), ("keepdims", I)]),
    s("ReduceL1", 18, (1, 2), (1, 1), &[("keepdims", I), ("noop_with_empty_axes", I)]),
    s("ReduceL2", 1, (1, 1), (1, 1), &[("axes", IS), ("keepdims", I)]),
    s("ReduceL2", 18, (1, 2), (1, 1), &[("keepdims", I), ("noop_with_empty_axes", I)]),
    s("ReduceSumSquare", 1, (1, 1), (1, 1), &[("axes", IS), ("keepdims", I)]),
    s("ReduceSumSquare", 18, (1, 2), (1, 1), &[("keepdims", I), ("noop_with_empty_axes", I)]),
    s("ReduceLogSum", 1, (1, 1), (1, 1), &[("axes", IS), ("keepdims", I)]),
    s("ReduceLogSum", 18, (1, 2), (1, 1), &[("keepdims", I), ("noop_with_empty_axes", I)]),
    s("ReduceLogSumExp", 1, (1, 1), (1, 1), &[("axes", IS), ("keepdims", I)]),
    s("ReduceLogSumExp", 18, (1, 2), (1, 1), &[("keepdims", I), ("noop_with_empty_axes", I)]),
    s("ArgMax", 1, (1, 1), (1, 1), &[("axis", I), ("keepdims", I)]),
    s("ArgMax", 12, (1, 1), (1, 1), &[("axis", I), ("keepdims", I), ("select_last_index", I)]),
    s("ArgMin", 1, (1, 1), (1, 1), &[("axis", I), ("keepdims", I)]),
    s("ArgMin", 12, (1, 1), (1, 1), &[("axis", I), ("keepdims", I), ("select_last_index", I)]),
    // shape.rs
    s("Reshape", 5, (2, 2), (1, 1), &[]),
    s("Reshape", 14, (2, 2), (1, 1), &[("allowzero", I)]),
    s("Flatten", 1, (1, 1), (1, 1), &[("axis", I)]),
    s("Squeeze", 1, (1, 1), (1, 1), &[("axes", IS)]),
    s("Squeeze", 13, (1, 2), (1, 1), &[]),
    s("Unsqueeze", 1, (1, 1), (1, 1), &[("axes", IS)]),
    s("Unsqueeze", 13, (2, 2), (1, 1), &[]),
    s("Transpose", 1, (1, 1), (1, 1), &[("perm", IS)]),
    s("Concat", 4, (1, MANY), (1, 1), &[("axis", I)]),
    s("Split", 2, (1, 1), (1, MANY), &[("axis", I), ("split", IS)]),
    s("Split", 13, (1, 2), (1, MANY), &[("axis", I)]),
    s("Split", 18, (1, 2), (1, MANY), &[("axis", I), ("num_outputs", I)]),
    s("Slice", 1, (1, 1), (1, 1), &[("axes", IS), ("ends", IS), ("starts", IS)]),
    s("Slice", 10, (3, 5), (1, 1), &[]),
    s("Gather", 1, (2, 2), (1, 1), &[("axis", I)]),
    s("GatherElements", 11, (2, 2), (1, 1), &[("axis", I)]),
    s("GatherND", 11, (2, 2), (1, 1), &[]),
    s("GatherND", 12, (2, 2), (1, 1), &[("batch_dims", I)]),
    s("Expand", 8, (2, 2), (1, 1), &[]),
    s("Tile", 6, (2, 2), (1, 1), &[]),
    s("Shape", 1, (1, 1), (1, 1), &[]),
    s("Shape", 15, (1, 1), (1, 1), &[("end", I), ("start", I)]),
    s("Size", 1, (1, 1), (1, 1), &[]),
    s("Range", 11, (3, 3), (1, 1), &[]),
    s("Range", 27, (3, 3), (1, 1), &[("stash_type", I)]),
    s("ConstantOfShape", 9, (1, 1), (1, 1), &[("value", T)]),
];

/// The version of `op` in force at `opset`: its newest row with `since <= opset`.
pub fn schema(op: &str, opset: i64) -> Option<&'static Schema> {
    SCHEMAS
        .iter()
        .filter(|s| s.op == op && s.since <= opset)
        .max_by_key(|s| s.since)
}

/// The attribute's type: its `type` field or, where a producer left that
/// out, the type of the one field that holds a value (`UNDEFINED` if none
/// does). Fails on a `type` number that ONNX does not define.
pub(crate) fn attr_type(a: &proto::AttributeProto) -> std::result::Result<AttributeType, String> {
    if let Some(code) = a.r#type {
        let t = AttributeType::try_from(code)
            .map_err(|_| format!("has type {code}, which ONNX does not define"))?;
        if t != AttributeType::Undefined {
            return Ok(t);
        }
    }
    Ok(value_types(a)
        .first()
        .copied()
        .unwrap_or(AttributeType::Undefined))
}

/// The types of the value fields that `a` fills.
fn value_types(a: &proto::AttributeProto) -> Vec<AttributeType> {
    use AttributeType as A;
    [
        (a.f.is_some(), A::Float),
        (a.i.is_some(), A::Int),
        (a.s.is_some(), A::String),
        (a.t.is_some(), A::Tensor),
        (a.g.is_some(), A::Graph),
        (a.sparse_tensor.is_some(), A::SparseTensor),
        (a.tp.is_some(), A::TypeProto),
        (!a.floats.is_empty(), A::Floats),
        (!a.ints.is_empty(), A::Ints),
        (!a.strings.is_empty(), A::Strings),
        (!a.tensors.is_empty(), A::Tensors),
        (!a.graphs.is_empty(), A::Graphs),
        (!a.sparse_tensors.is_empty(), A::SparseTensors),
        (!a.type_protos.is_empty(), A::TypeProtos),
    ]
    .into_iter()
    .filter_map(|(set, t)| set.then_some(t))
    .collect()
}

/// Describes a count range: `2`, `2 or 3`, `1 to 5`, `at least 1`.
fn count(range: (usize, usize)) -> String {
    match range {
        (lo, MANY) => format!("at least {lo}"),
        (lo, hi) if lo == hi => format!("{lo}"),
        (lo, hi) if hi == lo + 1 => format!("{lo} or {hi}"),
        (lo, hi) => format!("{lo} to {hi}"),
    }
}

/// Checks `node` (named `name` in errors) against the signature of its op
/// at `opset`: the number of inputs and outputs, that required ones are not
/// empty, and that every attribute is one the op defines, of its type, named
/// once, holding a value of that type.
pub(crate) fn check_node(node: &proto::NodeProto, name: &str, opset: i64) -> Result<()> {
    let op = node.op_type();
    let node_err = |message: String| Error::Node {
        node: name.to_string(),
        op: op.to_string(),
        message,
    };
    let attr_err = |attr: &str, message: String| Error::Attribute {
        node: name.to_string(),
        op: op.to_string(),
        attr: attr.to_string(),
        message,
    };
    let sig = schema(op, opset).ok_or_else(|| {
        node_err(format!(
            "tcc has no signature of {op} at opset {opset} to check the node against"
        ))
    })?;

    let (n_in, n_out) = (node.input.len(), node.output.len());
    if n_in < sig.inputs.0 || n_in > sig.inputs.1 {
        return Err(node_err(format!(
            "has {n_in} input(s), but {op} takes {} at opset {opset}",
            count(sig.inputs)
        )));
    }
    if n_out < sig.outputs.0 || n_out > sig.outputs.1 {
        return Err(node_err(format!(
            "has {n_out} output(s), but {op} has {} at opset {opset}",
            count(sig.outputs)
        )));
    }
    // A variadic list may hold empty names (ONNX allows them); a fixed list's
    // first inputs are required.
    if sig.inputs.1 != MANY {
        if let Some(i) = node.input[..sig.inputs.0].iter().position(|s| s.is_empty()) {
            return Err(node_err(format!(
                "input {i} of {op} is required, but its name is empty"
            )));
        }
    }
    if sig.outputs.1 != MANY {
        if let Some(i) = node.output[..sig.outputs.0]
            .iter()
            .position(|s| s.is_empty())
        {
            return Err(node_err(format!(
                "output {i} of {op} is required, but its name is empty"
            )));
        }
    }

    for (k, a) in node.attribute.iter().enumerate() {
        let attr = a.name();
        if attr.is_empty() {
            return Err(attr_err(attr, format!("attribute {k} has no name")));
        }
        if node.attribute[..k].iter().any(|b| b.name() == attr) {
            return Err(attr_err(attr, "is given more than once".into()));
        }
        if a.ref_attr_name.is_some() {
            return Err(attr_err(
                attr,
                "refers to a function attribute, which tcc does not support".into(),
            ));
        }
        let Some(&(_, want)) = sig.attrs.iter().find(|(n, _)| *n == attr) else {
            let known: Vec<&str> = sig.attrs.iter().map(|(n, _)| *n).collect();
            return Err(attr_err(
                attr,
                format!(
                    "is not an attribute of {op} at opset {opset} ({})",
                    if known.is_empty() {
                        "it has none".to_string()
                    } else {
                        format!("it has {}", known.join(", "))
                    }
                ),
            ));
        };
        let t = attr_type(a).map_err(|m| attr_err(attr, m))?;
        if t == AttributeType::Undefined {
            return Err(attr_err(
                attr,
                format!(
                    "has no type and no value (it must be of type {})",
                    want.as_str_name()
                ),
            ));
        }
        if t != want {
            return Err(attr_err(
                attr,
                format!(
                    "must be of type {}, but it is {}",
                    want.as_str_name(),
                    t.as_str_name()
                ),
            ));
        }
        if let Some(other) = value_types(a).into_iter().find(|&v| v != t) {
            return Err(attr_err(
                attr,
                format!(
                    "is of type {} but holds a value of type {}",
                    t.as_str_name(),
                    other.as_str_name()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{MAX_OPSET, MIN_OPSET};
    use crate::ops::registry;

    #[test]
    fn every_registered_op_has_a_signature_at_every_opset_it_imports() {
        for (op, imp) in registry() {
            for opset in imp.since.max(MIN_OPSET)..=MAX_OPSET {
                assert!(
                    schema(op, opset).is_some(),
                    "{op} is registered from opset {} but has no signature at opset {opset}",
                    imp.since
                );
            }
        }
    }

    #[test]
    fn every_signature_is_of_a_registered_op_and_rows_are_in_order() {
        let reg = registry();
        for (k, s) in SCHEMAS.iter().enumerate() {
            assert!(
                reg.contains_key(s.op),
                "{} has a signature but no importer",
                s.op
            );
            assert!(
                s.inputs.0 <= s.inputs.1 && s.outputs.0 <= s.outputs.1,
                "{s:?}"
            );
            if let Some(prev) = SCHEMAS[..k].iter().rev().find(|p| p.op == s.op) {
                assert!(prev.since < s.since, "{} rows out of order", s.op);
            }
        }
    }

    #[test]
    fn counts_read_as_english() {
        assert_eq!(count((2, 2)), "2");
        assert_eq!(count((2, 3)), "2 or 3");
        assert_eq!(count((3, 5)), "3 to 5");
        assert_eq!(count((1, MANY)), "at least 1");
    }
}
