//! Library-level errors on real files and hand-built models: each must name
//! what is at fault (the missing file, the node, op type, domain and opset,
//! the input).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tcc_ir::{Tensor, TensorData};
use tcc_onnx::proto::{
    tensor_shape_proto, type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use tcc_tests::{load_npz, model_dir};

/// A fresh, empty directory under the target's temporary directory.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("scratch directory can be cleared");
    }
    std::fs::create_dir_all(&dir).expect("scratch directory can be created");
    dir
}

/// A graph input or output of f32 elements and fixed `dims`.
fn f32_value(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A model of one node with the given inputs and output `y`.
fn one_node_model(
    node: NodeProto,
    inputs: Vec<ValueInfoProto>,
    output: ValueInfoProto,
    opsets: &[(&str, i64)],
) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: opsets
            .iter()
            .map(|&(domain, version)| OperatorSetIdProto {
                domain: Some(domain.into()),
                version: Some(version),
            })
            .collect(),
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: vec![node],
            input: inputs,
            output: vec![output],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A node of `op_type` in `domain`, named `name`.
fn node(name: &str, op_type: &str, domain: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op_type.into()),
        domain: Some(domain.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn missing_external_data_names_the_file() {
    let src = model_dir("bert-tiny-extdata").model_path();
    let model = tcc_onnx::load_model(&src).expect("the shared model loads");
    // The file the initializers point at, as the model itself names it.
    let locations: Vec<String> = model
        .graph
        .iter()
        .flat_map(|g| &g.initializer)
        .flat_map(|t| &t.external_data)
        .filter(|kv| kv.key() == "location")
        .map(|kv| kv.value().to_string())
        .collect();
    assert!(
        !locations.is_empty(),
        "{} has no external data",
        src.display()
    );
    let dir = scratch_dir("errors-missing-extdata");
    let copy = dir.join("model.onnx");
    std::fs::copy(&src, &copy).expect("model.onnx can be copied");
    let err = match tcc_onnx::import_file(&copy) {
        Ok(_) => panic!("import without {} succeeded", locations[0]),
        Err(e) => e.to_string(),
    };
    eprintln!("{err}");
    assert!(
        locations.iter().any(|l| err.contains(l.as_str())),
        "the error does not name the missing file {locations:?}: {err}"
    );
}

#[test]
fn unsupported_op_names_type_domain_opset_and_node() {
    let model = one_node_model(
        node("my_foobar_node", "FooBar", "com.example", &["x"], &["y"]),
        vec![f32_value("x", &[3])],
        f32_value("y", &[3]),
        &[("", 17), ("com.example", 5)],
    );
    let err = match tcc_onnx::import_model(&model, Path::new(".")) {
        Ok(_) => panic!("a FooBar node was accepted"),
        Err(e) => e.to_string(),
    };
    eprintln!("{err}");
    for part in ["FooBar", "com.example", "5", "my_foobar_node"] {
        assert!(err.contains(part), "the error lacks `{part}`: {err}");
    }

    // The same in the default domain, at opset 17.
    let model = one_node_model(
        node("default_foobar", "FooBar", "", &["x"], &["y"]),
        vec![f32_value("x", &[3])],
        f32_value("y", &[3]),
        &[("", 17)],
    );
    let err = match tcc_onnx::import_model(&model, Path::new(".")) {
        Ok(_) => panic!("a FooBar node was accepted"),
        Err(e) => e.to_string(),
    };
    eprintln!("{err}");
    for part in ["FooBar", "17", "default_foobar"] {
        assert!(err.contains(part), "the error lacks `{part}`: {err}");
    }
}

#[test]
fn add_of_mismatched_shapes_names_the_node() {
    let model = one_node_model(
        node("the_bad_add", "Add", "", &["a", "b"], &["y"]),
        vec![f32_value("a", &[3]), f32_value("b", &[4])],
        f32_value("y", &[4]),
        &[("", 17)],
    );
    let err = match tcc_onnx::import_model(&model, Path::new(".")) {
        Ok(_) => panic!("Add of [3] and [4] was accepted"),
        Err(e) => e.to_string(),
    };
    eprintln!("{err}");
    assert!(
        err.contains("the_bad_add"),
        "the error lacks the node name: {err}"
    );
}

/// bert-tiny as imported, and the inputs of its `b2_s17` reference case.
fn bert_tiny_and_inputs() -> (tcc_ir::Graph, HashMap<String, Tensor>) {
    let model = model_dir("bert-tiny");
    let graph = tcc_onnx::import_file(&model.model_path()).expect("bert-tiny imports");
    let npz = model
        .cases
        .iter()
        .find(|(c, _)| c == "b2_s17")
        .map(|(_, p)| p.clone())
        .expect("bert-tiny has the b2_s17 case");
    let arrays = load_npz(&npz).expect("the reference loads");
    let inputs = tcc_tests::bind_inputs(&graph, &arrays).expect("the reference has the inputs");
    assert!(inputs.contains_key("input_ids") && inputs.contains_key("attention_mask"));
    (graph, inputs)
}

/// Runs the interpreter, expecting an input error; returns the input it
/// names and the message.
fn input_error(graph: &tcc_ir::Graph, inputs: &HashMap<String, Tensor>) -> (String, String) {
    match tcc_ir::interp::run(graph, inputs) {
        Ok(_) => panic!("the run succeeded"),
        Err(e @ tcc_ir::Error::Input { .. }) => {
            let tcc_ir::Error::Input { name, .. } = &e else {
                unreachable!()
            };
            eprintln!("{e}");
            (name.clone(), e.to_string())
        }
        Err(e) => panic!("not an input error: {e}"),
    }
}

#[test]
fn interpreter_names_a_missing_input() {
    let (graph, mut inputs) = bert_tiny_and_inputs();
    inputs.remove("input_ids");
    let (name, msg) = input_error(&graph, &inputs);
    assert_eq!(name, "input_ids", "{msg}");
}

#[test]
fn interpreter_names_an_input_of_the_wrong_dtype() {
    let (graph, mut inputs) = bert_tiny_and_inputs();
    let ids = &inputs["input_ids"];
    let as_f32 = ids.cast(tcc_ir::DType::F32);
    assert_ne!(ids.dtype(), as_f32.dtype());
    inputs.insert("input_ids".into(), as_f32);
    let (name, msg) = input_error(&graph, &inputs);
    assert_eq!(name, "input_ids", "{msg}");
}

#[test]
fn interpreter_names_an_input_whose_seq_disagrees() {
    let (graph, mut inputs) = bert_tiny_and_inputs();
    let mask = &inputs["attention_mask"];
    assert_eq!(mask.shape(), &[2, 17]);
    // Keep the first 16 tokens of each row.
    let values = mask.data().to_i64_vec();
    let cut: Vec<i64> = values
        .chunks(17)
        .flat_map(|row| row[..16].to_vec())
        .collect();
    let short =
        Tensor::new(vec![2, 16], TensorData::from_i64(mask.dtype(), cut)).expect("2 x 16 elements");
    inputs.insert("attention_mask".into(), short);
    let (name, msg) = input_error(&graph, &inputs);
    // `input_ids` comes first and binds `seq`, so `attention_mask` is at fault.
    assert_eq!(name, "attention_mask", "{msg}");
    assert!(
        msg.contains("seq") && msg.contains("16") && msg.contains("17"),
        "does not give the symbol and both sizes: {msg}"
    );
}
