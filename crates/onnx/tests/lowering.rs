//! The lowering of single ONNX nodes into core IR ops, checked on small
//! hand-built models: the ops and explicit shapes the importer produces, and,
//! through the IR interpreter, values computed by hand from the ONNX spec.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;
use tcc_ir::{DType, Graph, Op, Tensor, TensorData};
use tcc_onnx::proto::tensor_proto::DataType;
use tcc_onnx::{
    import_model, import_model_with, proto, tensor_from_proto, ImportOptions, Int8MatMul,
};

fn import(m: &proto::ModelProto) -> Graph {
    match import_model(m, Path::new(".")) {
        Ok(g) => g,
        Err(e) => panic!("import failed: {e}"),
    }
}

/// The single-node model `op(inputs) -> y`.
fn one(
    op: &str,
    inputs: Vec<proto::ValueInfoProto>,
    inits: Vec<proto::TensorProto>,
    attrs: Vec<proto::AttributeProto>,
    opset: i64,
) -> Graph {
    let mut names: Vec<String> = inputs.iter().map(|i| i.name().to_string()).collect();
    names.extend(inits.iter().map(|i| i.name().to_string()));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    import(&model(
        vec![node(op, "n", &refs, &["y"], attrs)],
        inputs,
        vec![out("y")],
        inits,
        opset,
    ))
}

/// The ops of the graph (inputs and constants left out), in topological order.
fn ops(g: &Graph) -> Vec<String> {
    g.topo_order()
        .into_iter()
        .filter(|&i| !matches!(g.op(i), Op::Input { .. } | Op::Const(_)))
        .map(|i| {
            let op = g.op(i);
            let attrs: Vec<String> = op.attrs().iter().map(|(k, v)| format!("{k}={v}")).collect();
            if attrs.is_empty() {
                op.name().to_string()
            } else {
                format!("{}<{}>", op.name(), attrs.join(", "))
            }
        })
        .collect()
}

fn out_ty(g: &Graph) -> String {
    g.ty(g.outputs()[0].1).to_string()
}

fn run(g: &Graph, inputs: &[(&str, Tensor)]) -> Vec<f64> {
    let map: HashMap<String, Tensor> = inputs
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let outs = tcc_ir::interp::run(g, &map).expect("the interpreter failed");
    outs[0].1.data().to_f64_vec()
}

fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(shape.to_vec(), v.to_vec()).unwrap()
}

// ----- TensorProto storage --------------------------------------------------

#[test]
fn tensor_storage_forms_decode() {
    let mk = |dt: DataType, dims: &[i64]| proto::TensorProto {
        name: Some("t".into()),
        dims: dims.to_vec(),
        data_type: Some(dt as i32),
        ..Default::default()
    };
    let cases: Vec<(proto::TensorProto, TensorData)> = vec![
        (
            proto::TensorProto {
                raw_data: Some(
                    [1.5f32, -2.0]
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                ),
                ..mk(DataType::Float, &[2])
            },
            TensorData::F32(vec![1.5, -2.0]),
        ),
        (
            proto::TensorProto {
                float_data: vec![0.25, 4.0, 8.0],
                ..mk(DataType::Float, &[3, 1])
            },
            TensorData::F32(vec![0.25, 4.0, 8.0]),
        ),
        (
            proto::TensorProto {
                double_data: vec![1e300],
                ..mk(DataType::Double, &[])
            },
            TensorData::F64(vec![1e300]),
        ),
        (
            proto::TensorProto {
                int64_data: vec![-9, 1 << 40],
                ..mk(DataType::Int64, &[2])
            },
            TensorData::I64(vec![-9, 1 << 40]),
        ),
        (
            proto::TensorProto {
                int32_data: vec![-7, 70000],
                ..mk(DataType::Int32, &[2])
            },
            TensorData::I32(vec![-7, 70000]),
        ),
        (
            proto::TensorProto {
                int32_data: vec![-128, 127],
                ..mk(DataType::Int8, &[2])
            },
            TensorData::I8(vec![-128, 127]),
        ),
        (
            proto::TensorProto {
                int32_data: vec![0, 255],
                ..mk(DataType::Uint8, &[2])
            },
            TensorData::U8(vec![0, 255]),
        ),
        (
            proto::TensorProto {
                int32_data: vec![1, 0],
                ..mk(DataType::Bool, &[2])
            },
            TensorData::Bool(vec![true, false]),
        ),
        (
            // f16 bit patterns: 0x3C00 = 1.0, 0xC000 = -2.0.
            proto::TensorProto {
                int32_data: vec![0x3C00, 0xC000],
                ..mk(DataType::Float16, &[2])
            },
            TensorData::F16(vec![half::f16::from_f32(1.0), half::f16::from_f32(-2.0)]),
        ),
        (
            // bf16 bit patterns: 0x3F80 = 1.0, 0x4040 = 3.0.
            proto::TensorProto {
                int32_data: vec![0x3F80, 0x4040],
                ..mk(DataType::Bfloat16, &[2])
            },
            TensorData::BF16(vec![half::bf16::from_f32(1.0), half::bf16::from_f32(3.0)]),
        ),
    ];
    for (t, want) in cases {
        let got = tensor_from_proto(&t, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            got.shape(),
            t.dims.iter().map(|&d| d as usize).collect::<Vec<_>>()
        );
        assert!(got.data() == &want, "{:?}: got {:?}", t.data_type(), got);
    }
}

#[test]
fn tensor_errors_name_the_tensor() {
    let s = proto::TensorProto {
        name: Some("words".into()),
        dims: vec![1],
        data_type: Some(DataType::String as i32),
        string_data: vec![b"hi".to_vec()],
        ..Default::default()
    };
    let e = tensor_from_proto(&s, None).unwrap_err().to_string();
    assert!(e.contains("`words`") && e.contains("STRING"), "{e}");

    let short = t_f32("w", &[2, 2], &[1.0, 2.0, 3.0]);
    let e = tensor_from_proto(&short, None).unwrap_err().to_string();
    assert!(
        e.contains("`w`") && e.contains('4') && e.contains('3'),
        "{e}"
    );
}

// ----- Inputs -----------------------------------------------------------------

#[test]
fn input_dims_become_constants_and_sanitised_symbols() {
    let g = import(&model(
        vec![node("Identity", "i", &["x"], &["y"], vec![])],
        vec![vi(
            "x",
            DataType::Int64,
            &[D::P("batch size"), D::V(7), D::P("2d"), D::Missing],
        )],
        vec![out("y")],
        vec![],
        17,
    ));
    assert_eq!(out_ty(&g), "i64[batch_size, 7, s2d, x_d3]");
}

// ----- Shape ops ----------------------------------------------------------------

#[test]
fn reshape_resolves_zero_and_minus_one() {
    let x = vi("x", DataType::Float, &[D::P("b"), D::P("s"), D::V(128)]);
    let g = one(
        "Reshape",
        vec![x],
        vec![t_i64("shape", &[4], &[0, 0, 2, -1])],
        vec![],
        17,
    );
    assert_eq!(ops(&g), ["reshape<shape=[b, s, 2, 64]>"]);
}

#[test]
fn reshape_allowzero_keeps_zero() {
    let g = one(
        "Reshape",
        vec![vf("x", &[0, 3])],
        vec![t_i64("shape", &[2], &[3, 0])],
        vec![a_i("allowzero", 1)],
        17,
    );
    assert_eq!(out_ty(&g), "f32[3, 0]");
}

#[test]
fn squeeze_unsqueeze_flatten_become_reshapes() {
    let x = || vi("x", DataType::Float, &[D::P("b"), D::V(1), D::V(4)]);
    let g = one(
        "Squeeze",
        vec![x()],
        vec![t_i64("axes", &[1], &[-2])],
        vec![],
        17,
    );
    assert_eq!(ops(&g), ["reshape<shape=[b, 4]>"]);
    // Opset 11: axes is an attribute.
    let g = one("Squeeze", vec![x()], vec![], vec![a_ints("axes", &[1])], 11);
    assert_eq!(ops(&g), ["reshape<shape=[b, 4]>"]);
    let g = one(
        "Unsqueeze",
        vec![x()],
        vec![t_i64("axes", &[2], &[0, -1])],
        vec![],
        17,
    );
    assert_eq!(ops(&g), ["reshape<shape=[1, b, 1, 4, 1]>"]);
    let g = one("Flatten", vec![x()], vec![], vec![a_i("axis", -1)], 17);
    assert_eq!(ops(&g), ["reshape<shape=[b, 4]>"]);
}

#[test]
fn transpose_defaults_to_reversing() {
    let g = one("Transpose", vec![vf("x", &[2, 3, 4])], vec![], vec![], 17);
    assert_eq!(ops(&g), ["transpose<perm=[2, 1, 0]>"]);
}

#[test]
fn slice_normalises_and_clamps_bounds() {
    let x = || vi("x", DataType::Float, &[D::P("s"), D::V(10)]);
    // Axis 1: -3 from the end of 10; axis 0: 1 to "the end" (i64::MAX).
    let g = one(
        "Slice",
        vec![x()],
        vec![
            t_i64("starts", &[2], &[-3, 1]),
            t_i64("ends", &[2], &[100, i64::MAX]),
            t_i64("axes", &[2], &[1, 0]),
        ],
        vec![],
        17,
    );
    assert_eq!(
        ops(&g),
        ["slice<axes=[1, 0], starts=[7, 1], ends=[10, s], steps=[1, 1]>"]
    );
    assert_eq!(out_ty(&g), "f32[s - 1, 3]");
    // A reverse slice over the whole axis: from -1 to "before the start".
    let g = one(
        "Slice",
        vec![x()],
        vec![
            t_i64("starts", &[1], &[-1]),
            t_i64("ends", &[1], &[i64::MIN + 1]),
            t_i64("axes", &[1], &[1]),
            t_i64("steps", &[1], &[-1]),
        ],
        vec![],
        17,
    );
    assert_eq!(
        ops(&g),
        ["slice<axes=[1], starts=[9], ends=[-1], steps=[-1]>"]
    );
    assert_eq!(out_ty(&g), "f32[s, 10]");
}

#[test]
fn split_becomes_slices() {
    let x = vi("x", DataType::Float, &[D::P("b"), D::V(384)]);
    let g = import(&model(
        vec![node(
            "Split",
            "sp",
            &["x"],
            &["q", "k", "v"],
            vec![a_i("axis", 1), a_i("num_outputs", 3)],
        )],
        vec![x],
        vec![out("q"), out("k"), out("v")],
        vec![],
        18,
    ));
    let tys: Vec<String> = g
        .outputs()
        .iter()
        .map(|(_, o)| g.ty(*o).to_string())
        .collect();
    assert_eq!(tys, ["f32[b, 128]"; 3]);
    let starts: Vec<String> = g
        .outputs()
        .iter()
        .map(|(_, o)| match g.op(*o) {
            Op::Slice { starts, ends, .. } => format!("{}..{}", starts[0], ends[0]),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(starts, ["0..128", "128..256", "256..384"]);
}

#[test]
fn shape_chains_fold_into_explicit_shapes() {
    // y = Reshape(x, Concat(Shape(x)[0:1], [-1])): what exporters write.
    let x = vi("x", DataType::Float, &[D::P("b"), D::P("s"), D::V(8)]);
    let g = import(&model(
        vec![
            node("Shape", "sh", &["x"], &["s"], vec![]),
            node("Gather", "g", &["s", "zero"], &["b"], vec![a_i("axis", 0)]),
            node("Unsqueeze", "u", &["b", "axes"], &["b1"], vec![]),
            node(
                "Concat",
                "c",
                &["b1", "minus1"],
                &["shape"],
                vec![a_i("axis", 0)],
            ),
            node("Reshape", "r", &["x", "shape"], &["y"], vec![]),
        ],
        vec![x],
        vec![out("y")],
        vec![
            t_i64("zero", &[], &[0]),
            t_i64("axes", &[1], &[0]),
            t_i64("minus1", &[1], &[-1]),
        ],
        17,
    ));
    assert_eq!(ops(&g), ["reshape<shape=[b, 8*s]>"]);
    assert_eq!(g.node_count(), 2, "the Shape chain must be removed");
}

#[test]
fn constant_of_shape_expands_a_scalar() {
    let x = vi("x", DataType::Float, &[D::P("b"), D::V(3)]);
    let value = proto::TensorProto {
        name: Some("v".into()),
        dims: vec![1],
        data_type: Some(DataType::Int64 as i32),
        int64_data: vec![7],
        ..Default::default()
    };
    let g = import(&model(
        vec![
            node("Shape", "sh", &["x"], &["s"], vec![]),
            node(
                "ConstantOfShape",
                "c",
                &["s"],
                &["y"],
                vec![a_t("value", value)],
            ),
        ],
        vec![x],
        vec![out("y")],
        vec![],
        17,
    ));
    assert_eq!(ops(&g), ["expand<shape=[b, 3]>"]);
    assert_eq!(out_ty(&g), "i64[b, 3]");
}

#[test]
fn range_and_size() {
    let x = vi("x", DataType::Float, &[D::P("s"), D::V(4)]);
    let g = import(&model(
        vec![
            node("Shape", "sh", &["x"], &["shape"], vec![]),
            node(
                "Gather",
                "g",
                &["shape", "zero"],
                &["n"],
                vec![a_i("axis", 0)],
            ),
            node("Range", "r", &["zero", "n", "one"], &["y"], vec![]),
        ],
        vec![x],
        vec![out("y")],
        vec![t_i64("zero", &[], &[0]), t_i64("one", &[], &[1])],
        17,
    ));
    assert_eq!(ops(&g), ["range<dtype=i64, start=0, limit=s, delta=1>"]);
    // A float range of constants becomes a constant.
    let g = import(&model(
        vec![node("Range", "r", &["a", "b", "c"], &["y"], vec![])],
        vec![],
        vec![out("y")],
        vec![
            t_f32("a", &[], &[1.0]),
            t_f32("b", &[], &[2.0]),
            t_f32("c", &[], &[0.25]),
        ],
        17,
    ));
    assert_eq!(run(&g, &[]), [1.0, 1.25, 1.5, 1.75]);
    let g = one(
        "Size",
        vec![vi("x", DataType::Float, &[D::P("s"), D::V(4)])],
        vec![],
        vec![],
        17,
    );
    assert_eq!(ops(&g), ["dims<dtype=i64, shape=[], values=[4*s]>"]);
}

// ----- Arithmetic lowerings -----------------------------------------------------

#[test]
fn gemm_lowers_to_transpose_matmul_scale_and_bias() {
    let g = import(&model(
        vec![node(
            "Gemm",
            "gemm",
            &["a", "w", "c"],
            &["y"],
            vec![a_i("transB", 1), a_f("alpha", 2.0), a_f("beta", 0.5)],
        )],
        vec![vf("a", &[1, 2])],
        vec![out("y")],
        vec![
            t_f32("w", &[3, 2], &[1., 0., 0., 1., 1., 1.]),
            t_f32("c", &[3], &[2., 4., 6.]),
        ],
        17,
    ));
    assert_eq!(
        ops(&g),
        ["transpose<perm=[1, 0]>", "matmul", "mul", "mul", "add"]
    );
    // a = [3, 5]: a @ w^T = [3, 5, 8]; * 2 = [6, 10, 16]; + 0.5 c = [7, 12, 19].
    assert_eq!(
        run(&g, &[("a", f32s(&[1, 2], &[3.0, 5.0]))]),
        [7.0, 12.0, 19.0]
    );
}

#[test]
fn matmul_with_vectors_reshapes_and_back() {
    let g = one(
        "MatMul",
        vec![vf("a", &[3]), vf("b", &[3, 2])],
        vec![],
        vec![],
        17,
    );
    assert_eq!(out_ty(&g), "f32[2]");
    let g = one(
        "MatMul",
        vec![vf("a", &[3]), vf("b", &[3])],
        vec![],
        vec![],
        17,
    );
    assert_eq!(out_ty(&g), "f32[]");
    let v = run(
        &g,
        &[
            ("a", f32s(&[3], &[1., 2., 3.])),
            ("b", f32s(&[3], &[4., 5., 6.])),
        ],
    );
    assert_eq!(v, [32.0]);
}

#[test]
fn clip_uses_inputs_or_old_attributes() {
    let x = f32s(&[4], &[-5.0, 0.5, 2.0, 9.0]);
    let g = one(
        "Clip",
        vec![vf("x", &[4])],
        vec![t_f32("lo", &[], &[0.0]), t_f32("hi", &[], &[1.0])],
        vec![],
        13,
    );
    assert_eq!(run(&g, &[("x", x.clone())]), [0.0, 0.5, 1.0, 1.0]);
    let g = one(
        "Clip",
        vec![vf("x", &[4])],
        vec![],
        vec![a_f("max", 2.0)],
        7,
    );
    assert_eq!(run(&g, &[("x", x)]), [-5.0, 0.5, 2.0, 2.0]);
}

#[test]
fn variadic_ops_chain() {
    let g = one(
        "Mean",
        vec![vf("a", &[2]), vf("b", &[2]), vf("c", &[2])],
        vec![],
        vec![],
        17,
    );
    let v = run(
        &g,
        &[
            ("a", f32s(&[2], &[1.0, 2.0])),
            ("b", f32s(&[2], &[2.0, 4.0])),
            ("c", f32s(&[2], &[3.0, 9.0])),
        ],
    );
    assert_eq!(v, [2.0, 5.0]);
}

#[test]
fn softmax_before_opset_13_coerces_to_2d() {
    let g = one(
        "Softmax",
        vec![vf("x", &[2, 3, 4])],
        vec![],
        vec![a_i("axis", 1)],
        11,
    );
    assert_eq!(
        ops(&g),
        [
            "reshape<shape=[2, 12]>",
            "softmax<axis=1>",
            "reshape<shape=[2, 3, 4]>"
        ]
    );
    let g = one("Softmax", vec![vf("x", &[2, 3, 4])], vec![], vec![], 13);
    assert_eq!(ops(&g), ["softmax<axis=2>"]);
}

#[test]
fn reduce_axes_from_attribute_or_input() {
    let g = one(
        "ReduceMean",
        vec![vf("x", &[2, 3])],
        vec![],
        vec![a_ints("axes", &[-1])],
        17,
    );
    assert_eq!(ops(&g), ["reduce_mean<axes=[1], keep_dims=true>"]);
    let g = one(
        "ReduceMean",
        vec![vf("x", &[2, 3])],
        vec![t_i64("axes", &[1], &[0])],
        vec![a_i("keepdims", 0)],
        18,
    );
    assert_eq!(ops(&g), ["reduce_mean<axes=[0], keep_dims=false>"]);
    let g = one(
        "ReduceL2",
        vec![vf("x", &[2, 2])],
        vec![],
        vec![a_i("keepdims", 0)],
        17,
    );
    let v = run(&g, &[("x", f32s(&[2, 2], &[3.0, 4.0, 0.0, 0.0]))]);
    assert_eq!(v, [5.0]);
}

#[test]
fn layer_norm_without_bias_gets_zeros() {
    let g = one(
        "LayerNormalization",
        vec![vf("x", &[2, 4]), vf("s", &[4])],
        vec![],
        vec![],
        17,
    );
    assert_eq!(ops(&g), ["layer_norm<axis=1, epsilon=1e-5>"]);
}

#[test]
fn gelu_tanh_matches_the_formula() {
    let g = one(
        "Gelu",
        vec![vf("x", &[3])],
        vec![],
        vec![a_s("approximate", "tanh")],
        20,
    );
    let xs = [-1.0f32, 0.0, 2.0];
    let v = run(&g, &[("x", f32s(&[3], &xs))]);
    for (x, got) in xs.iter().zip(v) {
        let x = *x as f64;
        let want = 0.5
            * x
            * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh());
        assert!((got - want).abs() < 1e-6, "gelu({x}) = {got}, want {want}");
    }
}

#[test]
fn float_mod_takes_the_divisor_sign() {
    let g = one(
        "Mod",
        vec![vf("a", &[4]), vf("b", &[4])],
        vec![],
        vec![],
        17,
    );
    let v = run(
        &g,
        &[
            ("a", f32s(&[4], &[5.0, -5.0, 5.0, 6.0])),
            ("b", f32s(&[4], &[3.0, 3.0, -3.0, 3.0])),
        ],
    );
    assert_eq!(v, [2.0, 1.0, -1.0, 0.0]);
}

#[test]
fn constant_attribute_forms() {
    let g = import(&model(
        vec![node(
            "Constant",
            "k",
            &[],
            &["y"],
            vec![a_ints("value_ints", &[4, 5])],
        )],
        vec![],
        vec![out("y")],
        vec![],
        17,
    ));
    assert_eq!(out_ty(&g), "i64[2]");
    let mut sa = a_s("value_string", "x");
    sa.name = Some("value_string".into());
    let m = model(
        vec![node("Constant", "k", &[], &["y"], vec![sa])],
        vec![],
        vec![out("y")],
        vec![],
        17,
    );
    let e = import_model(&m, Path::new(".")).unwrap_err().to_string();
    assert!(e.contains("value_string"), "{e}");
}

// ----- Quantisation -------------------------------------------------------------

#[test]
fn dynamic_quantize_linear_follows_its_function_definition() {
    let g = import(&model(
        vec![node(
            "DynamicQuantizeLinear",
            "q",
            &["x"],
            &["y", "s", "z"],
            vec![],
        )],
        vec![vf("x", &[4])],
        vec![out("y"), out("s"), out("z")],
        vec![],
        17,
    ));
    let map: HashMap<String, Tensor> =
        [("x".to_string(), f32s(&[4], &[-1.0, 0.0, 1.0, 2.0]))].into();
    let outs = tcc_ir::interp::run(&g, &map).unwrap();
    // scale = (2 - (-1)) / 255; zp = round(1 / scale) = round(85) = 85;
    // y = round(x / scale) + 85 = [0, 85, 170, 255].
    assert_eq!(outs[0].1.dtype(), DType::U8);
    assert_eq!(outs[0].1.data().to_i64_vec(), [0, 85, 170, 255]);
    let s = outs[1].1.data().to_f64_vec()[0];
    assert!((s - 3.0 / 255.0).abs() < 1e-7, "scale {s}");
    assert_eq!(outs[2].1.data().to_i64_vec(), [85]);
}

#[test]
fn dequantize_linear_per_axis() {
    let x = proto::TensorProto {
        name: Some("x".into()),
        dims: vec![2, 2],
        data_type: Some(DataType::Int8 as i32),
        int32_data: vec![10, -10, 4, 8],
        ..Default::default()
    };
    let zp = proto::TensorProto {
        name: Some("zp".into()),
        dims: vec![2],
        data_type: Some(DataType::Int8 as i32),
        int32_data: vec![0, 2],
        ..Default::default()
    };
    let g = import(&model(
        vec![node(
            "DequantizeLinear",
            "dq",
            &["x", "s", "zp"],
            &["y"],
            vec![a_i("axis", 0)],
        )],
        vec![],
        vec![out("y")],
        vec![x, t_f32("s", &[2], &[0.5, 2.0]), zp],
        17,
    ));
    // Row 0: (x - 0) * 0.5; row 1: (x - 2) * 2.
    assert_eq!(run(&g, &[]), [5.0, -5.0, 4.0, 12.0]);
}

#[test]
fn matmul_integer_subtracts_zero_points() {
    let u8t = |name: &str, dims: &[i64], v: &[i32]| proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Uint8 as i32),
        int32_data: v.to_vec(),
        ..Default::default()
    };
    let g = import(&model(
        vec![node(
            "MatMulInteger",
            "mmi",
            &["a", "b", "az", "bz"],
            &["y"],
            vec![],
        )],
        vec![],
        vec![out("y")],
        vec![
            u8t("a", &[1, 2], &[10, 20]),
            u8t("b", &[2, 2], &[1, 2, 3, 4]),
            u8t("az", &[], &[10]),
            u8t("bz", &[2], &[1, 0]),
        ],
        17,
    ));
    assert_eq!(out_ty(&g), "i32[1, 2]");
    // (a - 10) = [0, 10]; (b - [1, 0]) = [[0, 2], [2, 4]]; product [20, 40].
    assert_eq!(run(&g, &[]), [20.0, 40.0]);
}

#[test]
fn matmul_integer_u8_by_i8_saturates_pairs_like_onnx_runtime_on_x86() {
    let t = |name: &str, dt: DataType, dims: &[i64], v: &[i32]| proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(dt as i32),
        int32_data: v.to_vec(),
        ..Default::default()
    };
    // k = 3: the pair (k0, k1) overflows i16, the odd k2 stands alone.
    let m = model(
        vec![node(
            "MatMulInteger",
            "mmi",
            &["a", "b", "az"],
            &["y"],
            vec![],
        )],
        vec![],
        vec![out("y")],
        vec![
            t("a", DataType::Uint8, &[1, 3], &[255, 255, 2]),
            t("b", DataType::Int8, &[3, 1], &[127, 127, -3]),
            t("az", DataType::Uint8, &[], &[1]),
        ],
        17,
    );
    // Pairs: sat16(255*127 + 255*127) = 32767, then 2*(-3) = -6; minus
    // az * sum(b) = 251: 32767 - 6 - 251 = 32510.
    assert_eq!(run(&import(&m), &[]), [32510.0]);
    let exact = import_model_with(
        &m,
        Path::new("."),
        &ImportOptions {
            int8_matmul: Int8MatMul::Exact,
        },
    )
    .expect("imports");
    // Exactly: 254*127 + 254*127 + 1*(-3) = 64513.
    assert_eq!(run(&exact, &[]), [64513.0]);
}

// ----- f16 and bf16: one rounding per ONNX op -----------------------------------

/// `v` rounded to nearest even with `bits` significant bits (8 for bf16, 11
/// for f16), for normal values: scaling by a power of two is exact in f64, so
/// only the final `round_ties_even` rounds.
fn round_to_bits(v: f64, bits: i32) -> f64 {
    if v == 0.0 {
        return v;
    }
    let ulp = 2f64.powi(v.abs().log2().floor() as i32 - bits + 1);
    (v / ulp).round_ties_even() * ulp
}

fn bf16s(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_vec(
        shape.to_vec(),
        v.iter().map(|&x| half::bf16::from_f64(x)).collect(),
    )
    .unwrap()
}

/// The single-node model `op(inputs) -> y` with every input a graph input.
fn one_of(
    op: &str,
    inputs: Vec<proto::ValueInfoProto>,
    attrs: Vec<proto::AttributeProto>,
    opset: i64,
) -> Graph {
    one(op, inputs, vec![], attrs, opset)
}

#[test]
fn elu_on_bf16_rounds_once() {
    let g = one_of(
        "Elu",
        vec![vi("x", DataType::Bfloat16, &[D::V(4)])],
        vec![],
        13,
    );
    assert_eq!(out_ty(&g), "bf16[4]");
    let xs = [-0.25, -1.5, -3.0, 0.75];
    let got = run(&g, &[("x", bf16s(&[4], &xs))]);
    for (&x, &y) in xs.iter().zip(&got) {
        // ONNX: alpha (exp(x) - 1) below zero, x above; computed here with
        // `exp_m1`, not the lowering's `exp` and `- 1`, and rounded once.
        let want = if x < 0.0 {
            round_to_bits(f64::exp_m1(x), 8)
        } else {
            x
        };
        assert_eq!(y, want, "elu({x})");
    }
    // By hand: exp(-0.25) - 1 = -0.221199..., 226.51 ulps of 2^-10, so
    // -227 / 1024. Rounding after each core op instead gives exp(-0.25) =
    // 0.778801 -> 199 / 256, minus one = -57 / 256 = -0.22265625.
    assert_eq!(got[0], -227.0 / 1024.0);
    let stepwise = round_to_bits(round_to_bits((-0.25f64).exp(), 8) - 1.0, 8);
    assert_eq!(stepwise, -0.22265625);
    assert_ne!(got[0], stepwise);
}

#[test]
fn celu_on_bf16_rounds_once() {
    // The case ONNX's test_celu_bfloat16 checks: alpha = 2, x = -0.5.
    let g = one_of(
        "Celu",
        vec![vi("x", DataType::Bfloat16, &[D::V(3)])],
        vec![a_f("alpha", 2.0)],
        12,
    );
    let got = run(&g, &[("x", bf16s(&[3], &[-0.5, -3.0, 3.0]))]);
    // 2 (exp(-0.25) - 1) = -0.442398..., 226.51 ulps of 2^-9: -227 / 512.
    assert_eq!(got[0], -227.0 / 512.0);
    assert_eq!(got[0], round_to_bits(2.0 * f64::exp_m1(-0.25), 8));
    // Rounded after every step: exp -> 199 / 256, - 1 -> -57 / 256, * 2.
    assert_eq!(-57.0 / 128.0, -0.4453125);
    assert_ne!(got[0], -0.4453125);
    assert_eq!(got[1], round_to_bits(2.0 * f64::exp_m1(-1.5), 8));
    assert_eq!(got[2], 3.0);
}

#[test]
fn casts_to_16_bits_round_once() {
    // Values just above a 16-bit tie must round up. Rounding through the
    // nearest f32, or dropping the low bits of the f64, lands on the tie and
    // rounds to even: down.
    let tie_plus = |bits: i32| 1.0 + 2f64.powi(-bits) + 2f64.powi(-40);
    let cases = [
        (DataType::Float16, 11, "f16[1]"),
        (DataType::Bfloat16, 8, "bf16[1]"),
    ];
    for (to, bits, ty) in cases {
        let g = one_of(
            "Cast",
            vec![vi("x", DataType::Double, &[D::V(1)])],
            vec![a_i("to", to as i64)],
            13,
        );
        assert_eq!(out_ty(&g), ty);
        let x = Tensor::from_vec(vec![1], vec![tie_plus(bits)]).unwrap();
        let got = run(&g, &[("x", x)]);
        assert_eq!(got, [1.0 + 2f64.powi(1 - bits)], "cast to {ty}");
    }
    // An f32 just above a bf16 tie: 1 + 2^-8 + 2^-23 rounds up to 1 + 2^-7.
    let g = one_of(
        "Cast",
        vec![vf("x", &[1])],
        vec![a_i("to", DataType::Bfloat16 as i64)],
        13,
    );
    let x = f32::from_bits(0x3F80_8001);
    assert_eq!(x as f64, 1.0 + 2f64.powi(-8) + 2f64.powi(-23));
    assert_eq!(run(&g, &[("x", f32s(&[1], &[x]))]), [1.0 + 2f64.powi(-7)]);
}

/// True if `d` is f16 or bf16.
fn narrow(d: DType) -> bool {
    matches!(d, DType::F16 | DType::BF16)
}

#[test]
fn multi_op_lowerings_compute_in_f32_for_16_bit_floats() {
    let v = |name: &str, dt: DataType, dims: &[i64]| {
        let d: Vec<D> = dims.iter().map(|&v| D::V(v)).collect();
        vi(name, dt, &d)
    };
    // (op, opset, inputs as (name, dims, float or u8), attributes)
    type Case = (
        &'static str,
        i64,
        Vec<(&'static str, Vec<i64>, bool)>,
        Vec<proto::AttributeProto>,
    );
    let x4 = || vec![("x", vec![2, 4], true)];
    let cases: Vec<Case> = vec![
        ("Elu", 13, x4(), vec![]),
        ("Celu", 12, x4(), vec![]),
        ("Selu", 13, x4(), vec![]),
        ("Gelu", 20, x4(), vec![]),
        ("Gelu", 20, x4(), vec![a_s("approximate", "tanh")]),
        ("LeakyRelu", 16, x4(), vec![]),
        ("ThresholdedRelu", 10, x4(), vec![a_f("alpha", 0.1)]),
        ("HardSigmoid", 13, x4(), vec![]),
        ("HardSwish", 14, x4(), vec![]),
        ("Softplus", 13, x4(), vec![]),
        ("Softsign", 13, x4(), vec![]),
        ("Mish", 18, x4(), vec![]),
        ("ReduceL2", 13, x4(), vec![]),
        ("ReduceSumSquare", 13, x4(), vec![]),
        ("ReduceLogSum", 13, x4(), vec![]),
        ("ReduceLogSumExp", 13, x4(), vec![a_i("keepdims", 0)]),
        (
            "Mean",
            13,
            vec![("a", vec![4], true), ("b", vec![4], true)],
            vec![],
        ),
        (
            "Sum",
            13,
            vec![
                ("a", vec![4], true),
                ("b", vec![4], true),
                ("c", vec![4], true),
            ],
            vec![],
        ),
        (
            "Gemm",
            13,
            vec![
                ("a", vec![2, 3], true),
                ("b", vec![3, 4], true),
                ("c", vec![4], true),
            ],
            vec![a_f("alpha", 0.5)],
        ),
        (
            "RMSNormalization",
            23,
            vec![("x", vec![2, 4], true), ("s", vec![4], true)],
            vec![],
        ),
        (
            "DequantizeLinear",
            19,
            vec![("x", vec![4], false), ("s", vec![], true)],
            vec![],
        ),
        (
            "QuantizeLinear",
            19,
            vec![("x", vec![4], true), ("s", vec![], true)],
            vec![],
        ),
    ];
    for (op, opset, ins, attrs) in cases {
        for float in [DataType::Float, DataType::Float16, DataType::Bfloat16] {
            let inputs = ins
                .iter()
                .map(|(n, dims, is_float)| {
                    v(n, if *is_float { float } else { DataType::Uint8 }, dims)
                })
                .collect();
            let g = one_of(op, inputs, attrs.clone(), opset);
            let what = format!("{op} {attrs:?} on {float:?}");
            let order = g.topo_order();
            let float_casts: Vec<_> = order
                .iter()
                .filter(|&&i| matches!(g.op(i), Op::Cast { .. }))
                .filter(|&&i| g.operands(i).iter().any(|&o| g.ty(o).dtype.is_float()))
                .filter(|&&i| g.ty(i).dtype.is_float())
                .collect();
            if float == DataType::Float {
                assert!(float_casts.is_empty(), "{what}: an f32 graph gains casts");
                continue;
            }
            // Nothing but the inputs and the final cast is of a 16-bit type.
            let y = g.outputs()[0].1;
            for &i in &order {
                let is_input = matches!(g.op(i), Op::Input { .. });
                if narrow(g.ty(i).dtype) && !is_input && i != y {
                    panic!(
                        "{what}: node {} computes in {}",
                        g.op(i).name(),
                        g.ty(i).dtype
                    );
                }
            }
            if op == "QuantizeLinear" {
                assert_eq!(g.ty(y).dtype, DType::U8, "{what}");
            } else {
                assert!(narrow(g.ty(y).dtype), "{what}: the result is {}", g.ty(y));
                assert!(
                    matches!(g.op(y), Op::Cast { .. }),
                    "{what}: ends in {}",
                    g.op(y).name()
                );
            }
        }
    }
}
