//! Hostile models: external data that tries to leave the model's folder or
//! to block or exhaust the importer, nodes that do not fit their op's
//! signature, and constant dims that are not sizes. Each must be refused with
//! an error that names the culprit (tensor, node, op, attribute), quickly and
//! without a panic.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use tcc_onnx::load::{MAX_TENSOR_BYTES, MAX_TOTAL_BYTES};
use tcc_onnx::proto::tensor_proto::{DataLocation, DataType};
use tcc_onnx::proto::{self, StringStringEntryProto};
use tcc_onnx::{import_model, Error};

// ----- Helpers ----------------------------------------------------------------

/// A float tensor proto of `dims` whose data is external: `location`, and
/// `offset`/`length` if given.
fn t_ext(
    name: &str,
    dims: &[i64],
    location: &str,
    offset: Option<u64>,
    length: Option<u64>,
) -> proto::TensorProto {
    let kv = |k: &str, v: String| StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v),
    };
    let mut external_data = vec![kv("location", location.into())];
    external_data.extend(offset.map(|o| kv("offset", o.to_string())));
    external_data.extend(length.map(|l| kv("length", l.to_string())));
    proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        data_location: Some(DataLocation::External as i32),
        external_data,
        ..Default::default()
    }
}

/// `y = x + w` with `w` the given initializer of 4 floats.
fn add_model(w: proto::TensorProto) -> proto::ModelProto {
    model(
        vec![node("Add", "add", &["x", "w"], &["y"], vec![])],
        vec![vf("x", &[4])],
        vec![out("y")],
        vec![w],
        17,
    )
}

/// Four little-endian floats, 1 to 4.
fn four_floats() -> Vec<u8> {
    [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// A scratch directory holding a model folder `model/` and a file
/// `secret.bin` beside it (outside the model's folder) with four floats.
fn folders(test: &str) -> (PathBuf, PathBuf) {
    let root = scratch(test);
    let dir = root.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(root.join("secret.bin"), four_floats()).unwrap();
    (root, dir)
}

/// Imports `m` from `dir` on another thread and fails the test if that
/// takes more than 20 seconds (a FIFO opened for reading blocks forever).
fn import_within(m: proto::ModelProto, dir: &Path) -> Result<tcc_ir::Graph, Error> {
    let (tx, rx) = mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(import_model(&m, &dir));
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the import did not finish within 20 seconds")
}

/// The error of importing `m` from `dir`, which must fail.
fn refused(m: proto::ModelProto, dir: &Path) -> Error {
    match import_within(m, dir) {
        Ok(_) => panic!("the hostile model imported"),
        Err(e) => e,
    }
}

/// The error text of importing `m` (no external data), which must fail.
fn refused_text(m: proto::ModelProto) -> String {
    refused(m, Path::new(".")).to_string()
}

/// Checks an external-data error: the variant, the tensor, and that the
/// message says `why`.
fn assert_external(e: &Error, tensor: &str, why: &str) {
    assert!(
        matches!(e, Error::ExternalData { tensor: t, .. } if t == tensor),
        "expected an external data error for `{tensor}`, got: {e}"
    );
    let text = e.to_string();
    assert!(text.contains(&format!("tensor `{tensor}`")), "{text}");
    assert!(text.contains(why), "`{why}` not in: {text}");
}

// ----- External data: the model's folder ------------------------------------

#[test]
fn external_data_inside_the_folder_is_read() {
    let (_root, dir) = folders("ext-inside");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/w.bin"), four_floats()).unwrap();
    let g = import_within(add_model(t_ext("w", &[4], "sub/w.bin", None, None)), &dir)
        .expect("data in a subfolder of the model's folder imports");
    let w = g
        .node_ids()
        .into_iter()
        .find_map(|id| g.const_value(id).cloned())
        .expect("the initializer is a constant");
    assert_eq!(w.as_slice::<f32>(), Some(&[1.0f32, 2.0, 3.0, 4.0][..]));
}

#[test]
fn parent_dir_location_is_refused() {
    let (_root, dir) = folders("ext-dotdot");
    let e = refused(
        add_model(t_ext("w", &[4], "../secret.bin", None, None)),
        &dir,
    );
    assert_external(&e, "w", "`..`");
    // A `..` that comes back inside is refused all the same.
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("w.bin"), four_floats()).unwrap();
    let e = refused(
        add_model(t_ext("w", &[4], "sub/../w.bin", None, None)),
        &dir,
    );
    assert_external(&e, "w", "`..`");
}

#[test]
fn absolute_location_is_refused() {
    let (root, dir) = folders("ext-absolute");
    let abs = root.join("secret.bin");
    assert!(abs.is_absolute());
    let e = refused(
        add_model(t_ext("w", &[4], abs.to_str().unwrap(), None, None)),
        &dir,
    );
    assert_external(&e, "w", "absolute");
}

#[cfg(unix)]
#[test]
fn symlink_leading_outside_is_refused() {
    let (root, dir) = folders("ext-symlink");
    std::os::unix::fs::symlink(root.join("secret.bin"), dir.join("w.bin")).unwrap();
    let e = refused(add_model(t_ext("w", &[4], "w.bin", None, None)), &dir);
    assert_external(&e, "w", "outside the model's directory");
    // A link that stays inside the folder is followed.
    std::fs::write(dir.join("real.bin"), four_floats()).unwrap();
    std::os::unix::fs::symlink(dir.join("real.bin"), dir.join("inside.bin")).unwrap();
    import_within(add_model(t_ext("w", &[4], "inside.bin", None, None)), &dir)
        .expect("a link to a file inside the folder imports");
}

#[cfg(unix)]
#[test]
fn symlinked_subfolder_leading_outside_is_refused() {
    let (root, dir) = folders("ext-symlink-dir");
    std::os::unix::fs::symlink(&root, dir.join("up")).unwrap();
    let e = refused(
        add_model(t_ext("w", &[4], "up/secret.bin", None, None)),
        &dir,
    );
    assert_external(&e, "w", "outside the model's directory");
}

#[cfg(unix)]
#[test]
fn fifo_is_refused_without_blocking() {
    let (_root, dir) = folders("ext-fifo");
    let fifo = dir.join("pipe.bin");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {} failed", fifo.display());
    let e = refused(add_model(t_ext("w", &[4], "pipe.bin", None, None)), &dir);
    assert_external(&e, "w", "FIFO");
}

#[test]
fn directory_is_refused() {
    let (_root, dir) = folders("ext-dir");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let e = refused(add_model(t_ext("w", &[4], "data", None, None)), &dir);
    assert_external(&e, "w", "a directory");
}

// ----- External data: sizes ----------------------------------------------------

#[test]
fn length_that_does_not_match_the_dims_is_refused() {
    let (_root, dir) = folders("ext-length");
    std::fs::write(dir.join("w.bin"), [four_floats(), four_floats()].concat()).unwrap();
    let e = refused(
        add_model(t_ext("w", &[4], "w.bin", Some(0), Some(32))),
        &dir,
    );
    assert_external(&e, "w", "length 32 does not match the 16 bytes");
    let e = refused(add_model(t_ext("w", &[4], "w.bin", Some(0), Some(8))), &dir);
    assert_external(&e, "w", "length 8 does not match the 16 bytes");
}

#[test]
fn offset_past_the_end_is_refused() {
    let (_root, dir) = folders("ext-offset");
    std::fs::write(dir.join("w.bin"), four_floats()).unwrap();
    let e = refused(add_model(t_ext("w", &[4], "w.bin", Some(8), None)), &dir);
    assert_external(&e, "w", "the file has 16 bytes");
    let e = refused(
        add_model(t_ext("w", &[4], "w.bin", Some(u64::MAX - 4), Some(16))),
        &dir,
    );
    assert_external(&e, "w", "overflows");
}

/// A sparse file of `len` bytes (no disk blocks behind it).
fn sparse(path: &Path, len: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
}

/// Checks a budget error: the variant, the tensor, and the limit named.
fn assert_too_large(e: &Error, tensor: &str, limit: &str) {
    assert!(
        matches!(e, Error::TooLarge { tensor: t, .. } if t == tensor),
        "expected a size error for `{tensor}`, got: {e}"
    );
    let text = e.to_string();
    assert!(text.contains(&format!("tensor `{tensor}`")), "{text}");
    assert!(text.contains(limit), "`{limit}` not in: {text}");
}

#[test]
fn sparse_100_gib_external_tensor_is_refused_before_allocating() {
    let (_root, dir) = folders("ext-sparse");
    let len = 100u64 << 30;
    sparse(&dir.join("huge.bin"), len);
    let e = refused(
        add_model(t_ext("w", &[(len / 4) as i64], "huge.bin", None, None)),
        &dir,
    );
    assert_too_large(&e, "w", "4 GiB for one tensor");
    assert!(e.to_string().contains("100 GiB"), "{e}");
    let _ = std::fs::remove_file(dir.join("huge.bin"));
}

#[test]
fn constants_over_the_total_budget_are_refused_before_reading() {
    let (_root, dir) = folders("ext-total");
    let each = MAX_TENSOR_BYTES;
    sparse(&dir.join("big.bin"), each);
    let n = MAX_TOTAL_BYTES / each + 1;
    let inits: Vec<proto::TensorProto> = (0..n)
        .map(|i| {
            t_ext(
                &format!("w{i}"),
                &[(each / 4) as i64],
                "big.bin",
                None,
                None,
            )
        })
        .collect();
    let m = model(
        vec![node("Identity", "id", &["x"], &["y"], vec![])],
        vec![vf("x", &[4])],
        vec![out("y")],
        inits,
        17,
    );
    let e = refused(m, &dir);
    assert_too_large(&e, &format!("w{}", n - 1), "16 GiB for all constants");
    let _ = std::fs::remove_file(dir.join("big.bin"));
}

#[test]
fn oversized_inline_tensor_is_refused_by_its_dims() {
    // The dims declare 8 GiB; the data holds 4 bytes.
    let mut w = t_f32("w", &[1 << 31], &[1.0]);
    w.dims = vec![1 << 31];
    let m = model(
        vec![node("Identity", "id", &["w"], &["y"], vec![])],
        vec![],
        vec![out("y")],
        vec![w],
        17,
    );
    let e = refused(m, Path::new("."));
    assert_too_large(&e, "w", "4 GiB for one tensor");
}

#[test]
fn overflowing_dims_are_refused() {
    let mut w = t_f32("w", &[], &[1.0]);
    w.dims = vec![1 << 40, 1 << 40, 1 << 40];
    let m = model(
        vec![node("Identity", "id", &["w"], &["y"], vec![])],
        vec![],
        vec![out("y")],
        vec![w],
        17,
    );
    let e = refused(m, Path::new("."));
    assert_too_large(&e, "w", "4 GiB for one tensor");
}

#[test]
fn oversized_constant_node_is_refused_naming_node_and_attribute() {
    let mut t = t_f32("", &[], &[1.0]);
    t.dims = vec![1 << 31, 2];
    let m = model(
        vec![node(
            "Constant",
            "big_const",
            &[],
            &["c"],
            vec![a_t("value", t)],
        )],
        vec![],
        vec![out("c")],
        vec![],
        17,
    );
    let e = refused(m, Path::new("."));
    assert_too_large(&e, "big_const.value", "4 GiB for one tensor");
}

#[test]
fn float_range_over_the_budget_is_refused() {
    for (limit, delta) in [(2147483648.0f32, 1.0f32), (1.0, 1e-30)] {
        let m = model(
            vec![node("Range", "rng", &["s", "l", "d"], &["y"], vec![])],
            vec![],
            vec![out("y")],
            vec![
                t_f32("s", &[], &[0.0]),
                t_f32("l", &[], &[limit]),
                t_f32("d", &[], &[delta]),
            ],
            17,
        );
        let text = refused_text(m);
        assert!(text.starts_with("node `rng` (Range):"), "{text}");
        assert!(text.contains("4 GiB for one tensor"), "{text}");
    }
}

// ----- Nodes against their op's signature --------------------------------------

/// A model of one node over float inputs `x` and `s` of shape [2, 4] and [4].
fn one_node(n: proto::NodeProto, outputs: &[&str]) -> proto::ModelProto {
    model(
        vec![n],
        vec![vf("x", &[2, 4]), vf("s", &[4])],
        outputs.iter().map(|o| out(o)).collect(),
        vec![],
        17,
    )
}

#[test]
fn add_with_three_inputs_is_refused() {
    let text = refused_text(one_node(
        node("Add", "add3", &["x", "x", "x"], &["y"], vec![]),
        &["y"],
    ));
    assert_eq!(
        text,
        "node `add3` (Add): has 3 input(s), but Add takes 2 at opset 17"
    );
}

#[test]
fn relu_with_two_inputs_is_refused() {
    let text = refused_text(one_node(
        node("Relu", "relu2", &["x", "x"], &["y"], vec![]),
        &["y"],
    ));
    assert_eq!(
        text,
        "node `relu2` (Relu): has 2 input(s), but Relu takes 1 at opset 17"
    );
}

#[test]
fn layer_norm_with_four_inputs_is_refused() {
    let text = refused_text(one_node(
        node(
            "LayerNormalization",
            "ln4",
            &["x", "s", "s", "s"],
            &["y"],
            vec![],
        ),
        &["y"],
    ));
    assert_eq!(
        text,
        "node `ln4` (LayerNormalization): has 4 input(s), but LayerNormalization takes \
         2 or 3 at opset 17"
    );
}

#[test]
fn extra_outputs_are_refused() {
    let text = refused_text(one_node(
        node("Relu", "relu_two_out", &["x"], &["y", "z"], vec![]),
        &["y"],
    ));
    assert_eq!(
        text,
        "node `relu_two_out` (Relu): has 2 output(s), but Relu has 1 at opset 17"
    );
    let text = refused_text(one_node(
        node(
            "LayerNormalization",
            "ln_out4",
            &["x", "s"],
            &["y", "m", "v", "w"],
            vec![],
        ),
        &["y"],
    ));
    assert_eq!(
        text,
        "node `ln_out4` (LayerNormalization): has 4 output(s), but LayerNormalization has \
         1 to 3 at opset 17"
    );
}

#[test]
fn missing_required_input_is_refused() {
    let text = refused_text(one_node(
        node("Add", "add_empty", &["", "x"], &["y"], vec![]),
        &["y"],
    ));
    assert_eq!(
        text,
        "node `add_empty` (Add): input 0 of Add is required, but its name is empty"
    );
    let text = refused_text(one_node(
        node("Sub", "sub1", &["x"], &["y"], vec![]),
        &["y"],
    ));
    assert_eq!(
        text,
        "node `sub1` (Sub): has 1 input(s), but Sub takes 2 at opset 17"
    );
}

#[test]
fn attribute_of_the_wrong_type_is_refused() {
    let e = refused(
        one_node(
            node(
                "LayerNormalization",
                "ln_eps",
                &["x", "s"],
                &["y"],
                vec![a_i("epsilon", 1)],
            ),
            &["y"],
        ),
        Path::new("."),
    );
    assert!(
        matches!(&e, Error::Attribute { node, op, attr, .. }
            if node == "ln_eps" && op == "LayerNormalization" && attr == "epsilon"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "node `ln_eps` (LayerNormalization): attribute `epsilon`: must be of type FLOAT, \
         but it is INT"
    );
}

#[test]
fn attribute_of_undefined_type_is_refused() {
    let untyped = proto::AttributeProto {
        name: Some("axis".into()),
        ..Default::default()
    };
    let text = refused_text(one_node(
        node("Softmax", "sm", &["x"], &["y"], vec![untyped]),
        &["y"],
    ));
    assert_eq!(
        text,
        "node `sm` (Softmax): attribute `axis`: has no type and no value (it must be of \
         type INT)"
    );
    // A type number ONNX does not define.
    let bogus = proto::AttributeProto {
        name: Some("axis".into()),
        r#type: Some(99),
        i: Some(1),
        ..Default::default()
    };
    let text = refused_text(one_node(
        node("Softmax", "sm", &["x"], &["y"], vec![bogus]),
        &["y"],
    ));
    assert_eq!(
        text,
        "node `sm` (Softmax): attribute `axis`: has type 99, which ONNX does not define"
    );
}

#[test]
fn attribute_whose_value_does_not_match_its_type_is_refused() {
    let mixed = proto::AttributeProto {
        name: Some("axis".into()),
        r#type: Some(proto::attribute_proto::AttributeType::Int as i32),
        f: Some(1.5),
        ..Default::default()
    };
    let text = refused_text(one_node(
        node("Softmax", "sm", &["x"], &["y"], vec![mixed]),
        &["y"],
    ));
    assert_eq!(
        text,
        "node `sm` (Softmax): attribute `axis`: is of type INT but holds a value of type FLOAT"
    );
}

#[test]
fn attribute_the_op_does_not_have_is_refused() {
    let text = refused_text(one_node(
        node("Relu", "r", &["x"], &["y"], vec![a_f("alpha", 0.1)]),
        &["y"],
    ));
    assert_eq!(
        text,
        "node `r` (Relu): attribute `alpha`: is not an attribute of Relu at opset 17 \
         (it has none)"
    );
    // `allowzero` came with Reshape-14.
    let m = model(
        vec![node(
            "Reshape",
            "rs",
            &["x", "shape"],
            &["y"],
            vec![a_i("allowzero", 1)],
        )],
        vec![vf("x", &[2, 4])],
        vec![out("y")],
        vec![t_i64("shape", &[1], &[8])],
        13,
    );
    let text = refused_text(m);
    assert_eq!(
        text,
        "node `rs` (Reshape): attribute `allowzero`: is not an attribute of Reshape at \
         opset 13 (it has none)"
    );
}

#[test]
fn attribute_given_twice_is_refused() {
    let text = refused_text(one_node(
        node(
            "Softmax",
            "sm",
            &["x"],
            &["y"],
            vec![a_i("axis", 1), a_i("axis", 0)],
        ),
        &["y"],
    ));
    assert_eq!(
        text,
        "node `sm` (Softmax): attribute `axis`: is given more than once"
    );
}

// ----- Constant dims that are not sizes ----------------------------------------

/// A model of `op(x, <shape-like initializer c>)` with `x: f32[dims]`.
fn with_const(op: &str, x_dims: &[i64], c: &[i64]) -> proto::ModelProto {
    model(
        vec![node(op, "n", &["x", "c"], &["y"], vec![])],
        vec![vf("x", x_dims)],
        vec![out("y")],
        vec![t_i64("c", &[c.len() as i64], c)],
        17,
    )
}

#[test]
fn expand_with_a_negative_dim_is_refused() {
    let text = refused_text(with_const("Expand", &[1, 8], &[-5, 1, 8]));
    assert_eq!(
        text,
        "node `n` (Expand): the shape [-5, 1, 8] has the negative dim -5"
    );
}

#[test]
fn expand_with_overflowing_dims_is_refused() {
    let text = refused_text(with_const("Expand", &[1], &[1 << 40, 1 << 40]));
    assert!(text.starts_with("node `n` (Expand): the shape"), "{text}");
    assert!(text.contains("spans more than tcc's limit"), "{text}");
}

#[test]
fn tile_with_negative_or_overflowing_repeats_is_refused() {
    let text = refused_text(with_const("Tile", &[2, 4], &[-1, 2]));
    assert_eq!(
        text,
        "node `n` (Tile): the repeats [-1, 2] has the negative dim -1"
    );
    let text = refused_text(with_const("Tile", &[1 << 20, 4], &[1 << 50, 1 << 20]));
    assert!(text.starts_with("node `n` (Tile):"), "{text}");
    assert!(
        text.contains("overflows") || text.contains("spans more"),
        "{text}"
    );
}

#[test]
fn constant_of_shape_with_a_negative_dim_is_refused() {
    let m = model(
        vec![node("ConstantOfShape", "cos", &["c"], &["y"], vec![])],
        vec![],
        vec![out("y")],
        vec![t_i64("c", &[2], &[4, -3])],
        17,
    );
    let text = refused_text(m);
    assert_eq!(
        text,
        "node `cos` (ConstantOfShape): the shape [4, -3] has the negative dim -3"
    );
}

#[test]
fn reshape_targets_that_cannot_hold_the_input_are_refused() {
    // 80 elements do not make rows of 3.
    let text = refused_text(with_const("Reshape", &[2, 5, 8], &[-1, 3]));
    assert!(text.starts_with("node `n` (Reshape):"), "{text}");
    assert!(
        text.contains("80 elements") && text.contains("-1"),
        "{text}"
    );
    for bad in [&[-1, -1][..], &[-2, 40], &[0, -1, 0, 0]] {
        let text = refused_text(with_const("Reshape", &[2, 5, 8], bad));
        assert!(text.starts_with("node `n` (Reshape):"), "{bad:?}: {text}");
    }
    // A valid target still imports.
    import_model(&with_const("Reshape", &[2, 5, 8], &[0, -1]), Path::new("."))
        .expect("[0, -1] on [2, 5, 8] imports");
}

#[test]
fn split_with_a_negative_size_is_refused() {
    let m = model(
        vec![node("Split", "sp", &["x", "c"], &["a", "b"], vec![])],
        vec![vf("x", &[4])],
        vec![out("a"), out("b")],
        vec![t_i64("c", &[2], &[-1, 5])],
        17,
    );
    let text = refused_text(m);
    assert_eq!(
        text,
        "node `sp` (Split): split sizes [-1, 5] have the negative size -1"
    );
}

#[test]
fn graph_input_with_overflowing_dims_is_refused() {
    let m = model(
        vec![node("Relu", "r", &["x"], &["y"], vec![])],
        vec![vf("x", &[1 << 40, 1 << 40])],
        vec![out("y")],
        vec![],
        17,
    );
    let e = refused(m, Path::new("."));
    assert!(
        matches!(&e, Error::Input { name, .. } if name == "x"),
        "{e}"
    );
    assert!(e.to_string().contains("spans more than"), "{e}");
}

// ----- The model file itself ----------------------------------------------------

/// Loads `path` on another thread and fails the test if that takes more than
/// 20 seconds.
fn load_within(path: &Path) -> Result<proto::ModelProto, Error> {
    let (tx, rx) = mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(tcc_onnx::load_model(&path));
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("loading did not finish within 20 seconds")
}

#[cfg(unix)]
#[test]
fn model_file_that_is_a_fifo_is_refused_without_blocking() {
    let dir = scratch("model-fifo");
    let fifo = dir.join("model.onnx");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {} failed", fifo.display());
    let e = load_within(&fifo).expect_err("a FIFO must not load");
    assert!(matches!(e, Error::NotOnnx { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("model.onnx") && text.contains("FIFO"),
        "{text}"
    );
}

#[test]
fn model_file_over_the_protobuf_limit_is_refused_before_reading() {
    let dir = scratch("model-huge");
    let p = dir.join("huge.onnx");
    sparse(&p, tcc_onnx::load::MAX_MODEL_BYTES + 1);
    let e = load_within(&p).expect_err("a file over 2 GiB must not load");
    assert!(matches!(e, Error::NotOnnx { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("huge.onnx") && text.contains("2 GiB"),
        "{text}"
    );
    let _ = std::fs::remove_file(&p);
}

#[test]
fn model_that_decodes_to_far_more_than_its_size_is_refused_before_decoding() {
    // Three million empty nodes: 6 MB on disk, about a GB decoded.
    let n = 3_000_000usize;
    let graph: Vec<u8> = [0x0a, 0x00].repeat(n);
    let mut bytes = vec![0x3a];
    let mut len = graph.len();
    while len >= 0x80 {
        bytes.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    bytes.push(len as u8);
    bytes.extend_from_slice(&graph);
    let dir = scratch("model-amplified");
    let p = dir.join("nodes.onnx");
    std::fs::write(&p, &bytes).unwrap();
    let e = load_within(&p).expect_err("the model must not decode");
    assert!(matches!(e, Error::NotOnnx { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("nodes.onnx") && text.contains("limit of 1 GiB"),
        "{text}"
    );
}
