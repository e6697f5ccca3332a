//! Every kind of failure gives a clear error that names what is at fault:
//! hand-built ModelProtos for node-level errors, damaged files for loading.

mod common;

use common::*;
use prost::Message;
use std::path::Path;
use tcc_onnx::proto::tensor_proto::DataType;
use tcc_onnx::{import_file, import_model, load_model, Error};

fn import(m: &tcc_onnx::proto::ModelProto) -> Result<tcc_ir::Graph, Error> {
    import_model(m, Path::new("."))
}

fn err_text(m: &tcc_onnx::proto::ModelProto) -> String {
    match import(m) {
        Ok(_) => panic!("the import was expected to fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unsupported_op_names_op_domain_opset_and_node() {
    let m = model(
        vec![node("Foo", "/encoder/Foo_3", &["x"], &["y"], vec![])],
        vec![vf("x", &[2])],
        vec![out("y")],
        vec![],
        17,
    );
    assert_eq!(
        err_text(&m),
        "unsupported op `Foo` (domain `ai.onnx`, opset 17) at node `/encoder/Foo_3`"
    );
}

#[test]
fn op_of_another_domain_is_unsupported() {
    let mut m = model(
        vec![{
            let mut n = node("Gelu", "/m/Gelu_1", &["x"], &["y"], vec![]);
            n.domain = Some("com.microsoft".into());
            n
        }],
        vec![vf("x", &[2])],
        vec![out("y")],
        vec![],
        17,
    );
    m.opset_import.push(tcc_onnx::proto::OperatorSetIdProto {
        domain: Some("com.microsoft".into()),
        version: Some(1),
    });
    assert_eq!(
        err_text(&m),
        "unsupported op `Gelu` (domain `com.microsoft`, opset 1) at node `/m/Gelu_1`"
    );
}

#[test]
fn op_newer_than_the_model_opset_is_unsupported() {
    // Gelu joined the default domain at opset 20.
    let m = model(
        vec![node("Gelu", "g", &["x"], &["y"], vec![])],
        vec![vf("x", &[2])],
        vec![out("y")],
        vec![],
        17,
    );
    assert!(matches!(
        import(&m),
        Err(Error::UnsupportedOp { opset: 17, .. })
    ));
}

#[test]
fn shapes_that_cannot_broadcast_name_the_node() {
    let m = model(
        vec![node("Add", "/layer/Add_7", &["a", "b"], &["c"], vec![])],
        vec![vf("a", &[3]), vf("b", &[4])],
        vec![out("c")],
        vec![],
        17,
    );
    let e = import(&m).expect_err("[3] + [4] must not import");
    assert!(
        matches!(e, Error::Ir { ref node, ref op, .. } if node == "/layer/Add_7" && op == "Add")
    );
    let text = e.to_string();
    assert!(
        text.contains("/layer/Add_7") && text.contains("[3]") && text.contains("[4]"),
        "{text}"
    );
}

#[test]
fn mistyped_attribute_is_named() {
    // `axis` must be an INT; here it is a FLOAT.
    let m = model(
        vec![node(
            "Softmax",
            "sm",
            &["x"],
            &["y"],
            vec![a_f("axis", 1.0)],
        )],
        vec![vf("x", &[2, 3])],
        vec![out("y")],
        vec![],
        17,
    );
    let e = import(&m).expect_err("a float axis must not import");
    assert!(matches!(e, Error::Attribute { ref attr, .. } if attr == "axis"));
    assert_eq!(
        e.to_string(),
        "node `sm` (Softmax): attribute `axis`: must be of type INT, but it is FLOAT"
    );
}

#[test]
fn data_dependent_shape_is_a_clear_error() {
    let m = model(
        vec![node("Reshape", "/r", &["x", "s"], &["y"], vec![])],
        vec![vf("x", &[2, 3]), vi("s", DataType::Int64, &[D::V(2)])],
        vec![out("y")],
        vec![],
        17,
    );
    let text = err_text(&m);
    assert!(text.contains("node `/r` (Reshape)"), "{text}");
    assert!(
        text.contains("input 1 (shape) is computed from data at run time"),
        "{text}"
    );
    assert!(text.contains("compile time"), "{text}");
}

#[test]
fn using_an_output_tcc_does_not_compute_is_an_error() {
    let m = model(
        vec![node(
            "LayerNormalization",
            "ln",
            &["x", "s"],
            &["y", "mean"],
            vec![],
        )],
        vec![vf("x", &[2, 4]), vf("s", &[4])],
        vec![out("y"), out("mean")],
        vec![],
        17,
    );
    let text = err_text(&m);
    assert!(text.contains("`mean`") && text.contains("`ln`"), "{text}");
}

#[test]
fn non_tensor_input_is_named() {
    let mut seq = vf("xs", &[2]);
    let elem = seq.r#type.take();
    seq.r#type = Some(tcc_onnx::proto::TypeProto {
        denotation: None,
        value: Some(tcc_onnx::proto::type_proto::Value::SequenceType(Box::new(
            tcc_onnx::proto::type_proto::Sequence {
                elem_type: elem.map(Box::new),
            },
        ))),
    });
    let m = model(
        vec![node("Identity", "i", &["xs"], &["y"], vec![])],
        vec![seq],
        vec![out("y")],
        vec![],
        17,
    );
    let e = import(&m).expect_err("a sequence input must not import");
    assert!(
        matches!(e, Error::Input { ref name, .. } if name == "xs"),
        "{e}"
    );
}

#[test]
fn unsupported_opset_is_an_error() {
    let m = model(vec![], vec![], vec![], vec![], 6);
    assert!(matches!(import(&m), Err(Error::Opset(_))));
}

#[test]
fn missing_file_names_the_path() {
    let p = scratch("missing").join("nope.onnx");
    let e = load_model(&p).expect_err("a missing file must not load");
    assert!(matches!(e, Error::Io { .. }));
    assert!(e.to_string().contains("nope.onnx"), "{e}");
}

#[test]
fn non_onnx_file_names_the_path() {
    let dir = scratch("not-onnx");
    for (name, bytes) in [
        ("text.onnx", b"this is not a protobuf\n".to_vec()),
        ("empty.onnx", vec![]),
        // A valid protobuf message, but no ModelProto field: `producer_name` only.
        ("nograph.onnx", {
            let m = tcc_onnx::proto::ModelProto {
                producer_name: Some("x".into()),
                ..Default::default()
            };
            m.encode_to_vec()
        }),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = load_model(&p).expect_err("a non-ONNX file must not load");
        assert!(matches!(e, Error::NotOnnx { .. }), "{name}: {e}");
        assert!(e.to_string().contains(name), "{e}");
    }
}

#[test]
fn truncated_file_is_reported_as_truncated() {
    let src = shared().join("models/bert-tiny/model.onnx");
    let bytes = std::fs::read(&src).unwrap();
    let p = scratch("truncated").join("cut.onnx");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_model(&p).expect_err("a truncated file must not load");
    assert!(matches!(e, Error::Truncated { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("cut.onnx") && text.contains("truncated"),
        "{text}"
    );
}

#[test]
fn missing_external_data_names_tensor_and_file() {
    let dir = scratch("no-extdata");
    let src = shared().join("models/bert-tiny-extdata/model.onnx");
    let p = dir.join("model.onnx");
    std::fs::copy(&src, &p).unwrap();
    let e = import_file(&p).expect_err("the import must fail without model.onnx.data");
    match &e {
        Error::ExternalData { tensor, file, .. } => {
            assert!(!tensor.is_empty());
            assert_eq!(file, &dir.join("model.onnx.data"));
        }
        other => panic!("expected an external data error, got {other}"),
    }
    assert!(e.to_string().contains("model.onnx.data"), "{e}");
}

#[test]
fn short_external_data_names_tensor_and_file() {
    let dir = scratch("short-extdata");
    let src = shared().join("models/bert-tiny-extdata");
    std::fs::copy(src.join("model.onnx"), dir.join("model.onnx")).unwrap();
    let data = std::fs::read(src.join("model.onnx.data")).unwrap();
    std::fs::write(dir.join("model.onnx.data"), &data[..data.len() / 3]).unwrap();
    let e = import_file(&dir.join("model.onnx")).expect_err("a short data file must fail");
    assert!(matches!(e, Error::ExternalData { .. }), "{e}");
    assert!(e.to_string().contains("bytes"), "{e}");
}
