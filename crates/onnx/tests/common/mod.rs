//! Helpers shared by the importer's tests: the shared data directory and
//! small builders for hand-made ONNX protos.

#![allow(dead_code)]

use std::path::PathBuf;
use tcc_onnx::proto;
use tcc_onnx::proto::attribute_proto::AttributeType;
use tcc_onnx::proto::tensor_proto::DataType;
use tcc_onnx::proto::tensor_shape_proto::dimension::Value as DimValue;
use tcc_onnx::proto::tensor_shape_proto::Dimension;
use tcc_onnx::proto::type_proto;

/// The shared data directory (`../shared` beside the workspace root); fails
/// the test with a clear message if it is missing.
pub fn shared() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        p.join("models").is_dir(),
        "the shared data directory {} is missing: the model tests need ../shared/models \
         beside the workspace root",
        p.display()
    );
    p
}

/// A fresh scratch directory for one test.
pub fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tcc-onnx-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("cannot create a scratch directory");
    d
}

/// A dim of a value info: a number, a named parameter, or missing (`?`).
pub enum D {
    /// `dim_value`.
    V(i64),
    /// `dim_param`.
    P(&'static str),
    /// No value.
    Missing,
}

/// A tensor value info.
pub fn vi(name: &str, elem: DataType, dims: &[D]) -> proto::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: None,
            value: match d {
                D::V(v) => Some(DimValue::DimValue(*v)),
                D::P(p) => Some(DimValue::DimParam(p.to_string())),
                D::Missing => None,
            },
        })
        .collect();
    proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            denotation: None,
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(proto::TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

/// A float value info of fixed dims.
pub fn vf(name: &str, dims: &[i64]) -> proto::ValueInfoProto {
    let d: Vec<D> = dims.iter().map(|&v| D::V(v)).collect();
    vi(name, DataType::Float, &d)
}

/// A node.
pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<proto::AttributeProto>,
) -> proto::NodeProto {
    proto::NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

/// An integer attribute.
pub fn a_i(name: &str, v: i64) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

/// A float attribute.
pub fn a_f(name: &str, v: f32) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

/// A string attribute.
pub fn a_s(name: &str, v: &str) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// An integer list attribute.
pub fn a_ints(name: &str, v: &[i64]) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// A tensor attribute.
pub fn a_t(name: &str, t: proto::TensorProto) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(t),
        ..Default::default()
    }
}

/// An int64 tensor proto.
pub fn t_i64(name: &str, dims: &[i64], v: &[i64]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Int64 as i32),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

/// A float tensor proto.
pub fn t_f32(name: &str, dims: &[i64], v: &[f32]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        float_data: v.to_vec(),
        ..Default::default()
    }
}

/// A model of one graph at `opset` of the default domain.
pub fn model(
    nodes: Vec<proto::NodeProto>,
    inputs: Vec<proto::ValueInfoProto>,
    outputs: Vec<proto::ValueInfoProto>,
    inits: Vec<proto::TensorProto>,
    opset: i64,
) -> proto::ModelProto {
    proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(proto::GraphProto {
            name: Some("test".into()),
            node: nodes,
            input: inputs,
            output: outputs,
            initializer: inits,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An output value info that only names the output (no type to check).
pub fn out(name: &str) -> proto::ValueInfoProto {
    proto::ValueInfoProto {
        name: Some(name.into()),
        ..Default::default()
    }
}
