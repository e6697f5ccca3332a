//! The importers of `Conv`, `Pad` and `Einsum`, on small hand-built models:
//! the IR they produce (types with symbolic spatial sizes, resolved
//! `auto_pad`, opset forms) and, through the interpreter, values checked
//! against direct loops written here from the ONNX spec, including an
//! independent einsum that sums over every assignment of the labels.

mod common;

use common::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tcc_ir::{Graph, Op, Tensor};
use tcc_onnx::proto::tensor_proto::DataType;
use tcc_onnx::{import_model, proto};

fn try_import(m: &proto::ModelProto) -> tcc_onnx::Result<Graph> {
    let g = import_model(m, Path::new("."))?;
    tcc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("the verifier rejects the import: {e}"));
    Ok(g)
}

/// The single-node model `op(names) -> y`, where `names` lists the node's
/// inputs in order (`""` for an absent one).
fn one(
    op: &str,
    names: &[&str],
    inputs: Vec<proto::ValueInfoProto>,
    inits: Vec<proto::TensorProto>,
    attrs: Vec<proto::AttributeProto>,
    opset: i64,
) -> tcc_onnx::Result<Graph> {
    try_import(&model(
        vec![node(op, "n", names, &["y"], attrs)],
        inputs,
        vec![out("y")],
        inits,
        opset,
    ))
}

fn ok(g: tcc_onnx::Result<Graph>) -> Graph {
    g.unwrap_or_else(|e| panic!("import failed: {e}"))
}

fn out_ty(g: &Graph) -> String {
    g.ty(g.outputs()[0].1).to_string()
}

/// The non-leaf ops of the graph, by name, in topological order.
fn op_names(g: &Graph) -> Vec<&'static str> {
    g.topo_order()
        .into_iter()
        .filter(|&i| !matches!(g.op(i), Op::Input { .. } | Op::Const(_)))
        .map(|i| g.op(i).name())
        .collect()
}

fn run(g: &Graph, inputs: &[(&str, Tensor)]) -> Tensor {
    let map: HashMap<String, Tensor> = inputs
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let mut outs = tcc_ir::interp::run(g, &map).unwrap_or_else(|e| panic!("run failed: {e}"));
    outs.remove(0).1
}

fn f32s(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_vec(shape.to_vec(), v).unwrap()
}

/// Small deterministic values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}"
        );
    }
}

fn sym(name: &'static str) -> D {
    D::P(name)
}

fn v(x: i64) -> D {
    D::V(x)
}

// ----- Conv -------------------------------------------------------------------

/// A direct 2-D convolution with bias, from the ONNX spec: zero padding,
/// `pads = [top, left, bottom, right]`.
fn conv2d_ref(
    x: &[f32],
    [c, h, w]: [usize; 3],
    wt: &[f32],
    [m, kh, kw]: [usize; 3],
    bias: &[f32],
    stride: usize,
    pads: [usize; 4],
) -> Vec<f64> {
    let oh = (h + pads[0] + pads[2] - kh) / stride + 1;
    let ow = (w + pads[1] + pads[3] - kw) / stride + 1;
    let mut y = Vec::new();
    for o in 0..m {
        for i in 0..oh {
            for j in 0..ow {
                let mut s = bias[o] as f64;
                for ci in 0..c {
                    for a in 0..kh {
                        for e in 0..kw {
                            let r = (i * stride + a) as i64 - pads[0] as i64;
                            let q = (j * stride + e) as i64 - pads[1] as i64;
                            if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < w {
                                s += x[(ci * h + r as usize) * w + q as usize] as f64
                                    * wt[((o * c + ci) * kh + a) * kw + e] as f64;
                            }
                        }
                    }
                }
                y.push(s);
            }
        }
    }
    y
}

#[test]
fn conv_with_bias_and_explicit_pads() {
    let (xv, wv, bv) = (noise(2 * 5 * 4, 1), noise(3 * 2 * 3 * 3, 2), noise(3, 3));
    let g = ok(one(
        "Conv",
        &["x", "w", "b"],
        vec![vf("x", &[1, 2, 5, 4])],
        vec![t_f32("w", &[3, 2, 3, 3], &wv), t_f32("b", &[3], &bv)],
        vec![a_ints("pads", &[1, 0, 2, 1]), a_ints("strides", &[2, 2])],
        22,
    ));
    assert_eq!(op_names(&g), ["conv", "reshape", "add"]);
    // Rows: floor((5 + 3 - 3) / 2) + 1 = 3; columns: floor((4 + 1 - 3) / 2) + 1 = 2.
    assert_eq!(out_ty(&g), "f32[1, 3, 3, 2]");
    let y = run(&g, &[("x", f32s(&[1, 2, 5, 4], xv.clone()))]);
    let want = conv2d_ref(&xv, [2, 5, 4], &wv, [3, 3, 3], &bv, 2, [1, 0, 2, 1]);
    assert_close(&y.data().to_f64_vec(), &want, 1e-5);
}

/// `SAME_UPPER` and `SAME_LOWER` with symbolic spatial sizes: the output is
/// `ceil(in / stride)`, and the odd element of padding goes at the end
/// (upper) or the beginning (lower). At h = 5, w = 6, stride 2, kernel 3:
/// total pads max(0, (3 - 1) * 2 + 3 - 5) = 2 rows and (3 - 1) * 2 + 3 - 6 = 1
/// column, so upper pads rows [1, 1] and columns [0, 1], lower rows [1, 1]
/// and columns [1, 0].
#[test]
fn conv_auto_pad_same_with_symbolic_sizes() {
    let (xv, wv) = (noise(5 * 6, 4), noise(9, 5));
    for (mode, col_pads) in [("SAME_UPPER", [0, 1]), ("SAME_LOWER", [1, 0])] {
        let g = ok(one(
            "Conv",
            &["x", "w"],
            vec![vi(
                "x",
                DataType::Float,
                &[sym("N"), v(1), sym("H"), sym("W")],
            )],
            vec![t_f32("w", &[1, 1, 3, 3], &wv)],
            vec![a_s("auto_pad", mode), a_ints("strides", &[2, 2])],
            11,
        ));
        let y = run(&g, &[("x", f32s(&[1, 1, 5, 6], xv.clone()))]);
        assert_eq!(y.shape(), &[1, 1, 3, 3], "{mode}");
        let want = conv2d_ref(
            &xv,
            [1, 5, 6],
            &wv,
            [1, 3, 3],
            &[0.0],
            2,
            [1, col_pads[0], 1, col_pads[1]],
        );
        assert_close(&y.data().to_f64_vec(), &want, 1e-5);
        // The pads are symbolic dims of H and W.
        let conv = g
            .node_ids()
            .into_iter()
            .find(|&i| matches!(g.op(i), Op::Conv { .. }))
            .unwrap();
        let Op::Conv { pads_begin, .. } = g.op(conv) else {
            unreachable!()
        };
        assert!(!pads_begin[0].symbols().is_empty(), "{pads_begin:?}");
    }
}

/// A ViT patch embedding with symbolic image sizes: `kernel = stride = 16`,
/// `auto_pad` unset, so the output is `floor((H - 16) / 16) + 1`.
#[test]
fn conv_patch_embedding_with_symbolic_image() {
    let g = ok(one(
        "Conv",
        &["x", "w", "b"],
        vec![vi(
            "x",
            DataType::Float,
            &[sym("batch"), v(3), sym("H"), sym("W")],
        )],
        vec![
            t_f32("w", &[8, 3, 16, 16], &noise(8 * 3 * 256, 6)),
            t_f32("b", &[8], &[0.5; 8]),
        ],
        vec![
            a_ints("kernel_shape", &[16, 16]),
            a_ints("strides", &[16, 16]),
        ],
        17,
    ));
    assert_eq!(
        out_ty(&g),
        "f32[batch, 8, floordiv(H - 16, 16) + 1, floordiv(W - 16, 16) + 1]"
    );
    let y = run(
        &g,
        &[("x", Tensor::zeros(tcc_ir::DType::F32, vec![2, 3, 32, 48]))],
    );
    assert_eq!(y.shape(), &[2, 8, 2, 3]);
    assert!(y.data().to_f64_vec().iter().all(|&v| v == 0.5));
}

#[test]
fn conv_1d_valid_with_dilation() {
    // y[i] = x[i] + 10 * x[i + 2] (dilation 2), VALID.
    let g = ok(one(
        "Conv",
        &["x", "w"],
        vec![vf("x", &[1, 1, 6])],
        vec![t_f32("w", &[1, 1, 2], &[1.0, 10.0])],
        vec![a_s("auto_pad", "VALID"), a_ints("dilations", &[2])],
        11,
    ));
    let y = run(
        &g,
        &[("x", f32s(&[1, 1, 6], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))],
    );
    assert_eq!(y.data().to_f64_vec(), [31.0, 42.0, 53.0, 64.0]);
}

#[test]
fn conv_errors_name_the_attribute() {
    let bad = |attrs: Vec<proto::AttributeProto>| {
        one(
            "Conv",
            &["x", "w"],
            vec![vf("x", &[1, 2, 5, 5])],
            vec![t_f32("w", &[2, 2, 3, 3], &[0.0; 36])],
            attrs,
            11,
        )
        .unwrap_err()
        .to_string()
    };
    let e = bad(vec![a_ints("kernel_shape", &[2, 3])]);
    assert!(e.contains("kernel_shape"), "{e}");
    let e = bad(vec![a_s("auto_pad", "SAME")]);
    assert!(e.contains("auto_pad") && e.contains("SAME"), "{e}");
    let e = bad(vec![a_ints("pads", &[1, 1])]);
    assert!(e.contains("pads"), "{e}");
    let e = bad(vec![a_ints("strides", &[0, 1])]);
    assert!(e.contains("strides"), "{e}");
    let e = bad(vec![a_i("group", 2)]);
    assert!(e.contains("channels"), "{e}");
}

// ----- Pad --------------------------------------------------------------------

fn pad_x() -> Tensor {
    f32s(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
}

#[test]
fn pad_opset_7_attribute_form() {
    let g = ok(one(
        "Pad",
        &["x"],
        vec![vf("x", &[2, 3])],
        vec![],
        vec![a_ints("pads", &[0, 1, 1, 0]), a_f("value", 9.0)],
        7,
    ));
    assert_eq!(out_ty(&g), "f32[3, 4]");
    let y = run(&g, &[("x", pad_x())]);
    assert_eq!(
        y.data().to_f64_vec(),
        [9.0, 1.0, 2.0, 3.0, 9.0, 4.0, 5.0, 6.0, 9.0, 9.0, 9.0, 9.0]
    );
    let g = ok(one(
        "Pad",
        &["x"],
        vec![vf("x", &[2, 3])],
        vec![],
        vec![a_ints("pads", &[1, 0, 0, 0]), a_s("mode", "edge")],
        10,
    ));
    let y = run(&g, &[("x", pad_x())]);
    assert_eq!(
        y.data().to_f64_vec(),
        [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
}

#[test]
fn pad_opset_11_inputs_with_negative_pads_and_a_runtime_value() {
    // Rows: crop one at the end, add one at the front; columns: reflect two at the end.
    let g = ok(one(
        "Pad",
        &["x", "pads", "value"],
        vec![vf("x", &[2, 3]), vi("value", DataType::Float, &[v(1)])],
        vec![t_i64("pads", &[4], &[1, 0, -1, 2])],
        vec![],
        13,
    ));
    assert_eq!(out_ty(&g), "f32[2, 5]");
    let y = run(&g, &[("x", pad_x()), ("value", f32s(&[1], vec![-7.0]))]);
    assert_eq!(
        y.data().to_f64_vec(),
        [-7.0, -7.0, -7.0, -7.0, -7.0, 1.0, 2.0, 3.0, -7.0, -7.0]
    );
    let g = ok(one(
        "Pad",
        &["x", "pads"],
        vec![vf("x", &[2, 3])],
        vec![t_i64("pads", &[4], &[0, 0, 0, 2])],
        vec![a_s("mode", "reflect")],
        13,
    ));
    let y = run(&g, &[("x", pad_x())]);
    assert_eq!(
        y.data().to_f64_vec(),
        [1.0, 2.0, 3.0, 2.0, 1.0, 4.0, 5.0, 6.0, 5.0, 4.0]
    );
}

#[test]
fn pad_opset_18_axes_and_19_wrap() {
    // Only axis -1 is padded: one in front, two behind, wrapping.
    let g = ok(one(
        "Pad",
        &["x", "pads", "", "axes"],
        vec![vf("x", &[2, 3])],
        vec![t_i64("pads", &[2], &[1, 2]), t_i64("axes", &[1], &[-1])],
        vec![a_s("mode", "wrap")],
        19,
    ));
    assert_eq!(out_ty(&g), "f32[2, 6]");
    let y = run(&g, &[("x", pad_x())]);
    assert_eq!(
        y.data().to_f64_vec(),
        [3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 6.0, 4.0, 5.0, 6.0, 4.0, 5.0]
    );
    // Wrap does not exist before opset 19.
    let e = one(
        "Pad",
        &["x", "pads"],
        vec![vf("x", &[2, 3])],
        vec![t_i64("pads", &[4], &[0, 0, 0, 1])],
        vec![a_s("mode", "wrap")],
        18,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("mode") && e.contains("wrap"), "{e}");
}

/// Pads computed from a symbolic shape (`Shape` of the input, as exporters
/// write it) are symbolic dims; pads given at run time are refused.
#[test]
fn pad_amounts_from_shapes_and_at_run_time() {
    // pads = [0, 0, 0, seq]: doubles the sequence axis.
    let m = model(
        vec![
            node("Shape", "s", &["x"], &["shape"], vec![a_i("start", 1)]),
            node(
                "Concat",
                "c",
                &["zeros", "shape"],
                &["pads"],
                vec![a_i("axis", 0)],
            ),
            node("Pad", "p", &["x", "pads"], &["y"], vec![]),
        ],
        vec![vi("x", DataType::Float, &[v(2), sym("seq")])],
        vec![out("y")],
        vec![t_i64("zeros", &[3], &[0, 0, 0])],
        15,
    );
    let g = ok(try_import(&m));
    assert_eq!(out_ty(&g), "f32[2, 2*seq]");
    let y = run(&g, &[("x", pad_x())]);
    assert_eq!(
        y.data().to_f64_vec(),
        [1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 4.0, 5.0, 6.0, 0.0, 0.0, 0.0]
    );
    let e = one(
        "Pad",
        &["x", "pads"],
        vec![vf("x", &[2, 3]), vi("pads", DataType::Int64, &[v(4)])],
        vec![],
        vec![],
        13,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("pads") && e.contains("`n`"), "{e}");
}

// ----- Einsum -----------------------------------------------------------------

/// An independent einsum: for an explicit equation (letters only), sums the
/// product of the operands over every assignment of the labels the output
/// does not keep, one output element at a time.
fn einsum_ref(equation: &str, xs: &[(&[usize], &[f32])]) -> (Vec<usize>, Vec<f64>) {
    let (lhs, rhs) = equation.split_once("->").unwrap();
    let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
    let out: Vec<char> = rhs.chars().collect();
    let mut size: BTreeMap<char, usize> = BTreeMap::new();
    for (t, (shape, _)) in terms.iter().zip(xs) {
        for (l, &d) in t.iter().zip(shape.iter()) {
            size.insert(*l, d);
        }
    }
    let labels: Vec<char> = size.keys().copied().collect();
    let out_shape: Vec<usize> = out.iter().map(|l| size[l]).collect();
    let n_out: usize = out_shape.iter().product();
    let mut y = vec![0f64; n_out];
    let total: usize = labels.iter().map(|l| size[l]).product();
    for flat in 0..total {
        let mut val: BTreeMap<char, usize> = BTreeMap::new();
        let mut rest = flat;
        for l in labels.iter().rev() {
            val.insert(*l, rest % size[l]);
            rest /= size[l];
        }
        let mut p = 1f64;
        for (t, (shape, data)) in terms.iter().zip(xs) {
            let mut idx = 0;
            for (l, &d) in t.iter().zip(shape.iter()) {
                idx = idx * d + val[l];
            }
            p *= data[idx] as f64;
        }
        let mut o = 0;
        for (l, &d) in out.iter().zip(&out_shape) {
            o = o * d + val[l];
        }
        y[o] += p;
    }
    (out_shape, y)
}

/// Imports `Einsum(equation)` on float inputs of the given shapes and
/// checks its value against [`einsum_ref`] on `reference` (the same
/// equation written explicitly, letters only).
fn check_einsum(equation: &str, reference: &str, shapes: &[&[usize]]) -> Graph {
    let names: Vec<String> = (0..shapes.len()).map(|i| format!("x{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let inputs = shapes
        .iter()
        .zip(&names)
        .map(|(s, n)| vf(n, &s.iter().map(|&d| d as i64).collect::<Vec<_>>()))
        .collect();
    let g = one(
        "Einsum",
        &refs,
        inputs,
        vec![],
        vec![a_s("equation", equation)],
        12,
    )
    .unwrap_or_else(|e| panic!("{equation}: {e}"));
    let data: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| noise(s.iter().product(), 10 + i as u64))
        .collect();
    let args: Vec<(&[usize], &[f32])> = shapes
        .iter()
        .zip(&data)
        .map(|(s, d)| (*s, d.as_slice()))
        .collect();
    let (want_shape, want) = einsum_ref(reference, &args);
    let feeds: Vec<(&str, Tensor)> = refs
        .iter()
        .zip(shapes.iter().zip(&data))
        .map(|(n, (s, d))| (*n, f32s(s, d.clone())))
        .collect();
    let y = run(&g, &feeds);
    assert_eq!(y.shape(), want_shape.as_slice(), "{equation}");
    assert_close(&y.data().to_f64_vec(), &want, 1e-5);
    g
}

#[test]
fn einsum_attention_scores_are_one_batched_matmul() {
    let g = check_einsum(
        "bhqd,bhkd->bhqk",
        "bhqd,bhkd->bhqk",
        &[&[2, 3, 4, 5], &[2, 3, 6, 5]],
    );
    assert_eq!(op_names(&g), ["transpose", "matmul"]);
    let g = check_einsum(
        "bhqk,bhkd->bhqd",
        "bhqk,bhkd->bhqd",
        &[&[2, 3, 4, 6], &[2, 3, 6, 5]],
    );
    assert_eq!(op_names(&g), ["matmul"]);
}

#[test]
fn einsum_common_forms() {
    let g = check_einsum("ij,jk->ik", "ij,jk->ik", &[&[3, 4], &[4, 5]]);
    assert_eq!(op_names(&g), ["matmul"]);
    let g = check_einsum("bij->bji", "bij->bji", &[&[2, 3, 4]]);
    assert_eq!(op_names(&g), ["transpose"]);
    // Implicit output: the letters seen once, sorted.
    check_einsum("ij,jk", "ij,jk->ik", &[&[3, 4], &[4, 5]]);
    check_einsum("ba,bc", "ba,bc->ac", &[&[3, 4], &[3, 2]]);
    // Sums, inner and outer products, and elementwise products.
    check_einsum("ij->i", "ij->i", &[&[3, 4]]);
    check_einsum(" i , i ", "i,i->", &[&[5], &[5]]);
    let g = check_einsum("i,j->ij", "i,j->ij", &[&[3], &[4]]);
    assert_eq!(op_names(&g), ["reshape", "reshape", "mul"]);
    check_einsum("ij,ij->ij", "ij,ij->ij", &[&[3, 4], &[3, 4]]);
    // Labels summed inside one operand before the product, batch labels
    // kept, and an output order that differs from the operands'.
    check_einsum(
        "bxij,bjk->kbi",
        "bxij,bjk->kbi",
        &[&[2, 3, 4, 5], &[2, 5, 3]],
    );
}

#[test]
fn einsum_three_operands_fold_left() {
    check_einsum("ij,jk,kl->il", "ij,jk,kl->il", &[&[2, 3], &[3, 4], &[4, 5]]);
    // `j` is shared by the first and third operand; it survives the first product.
    check_einsum("ij,ik,jk->i", "ij,ik,jk->i", &[&[2, 3], &[2, 4], &[3, 4]]);
}

#[test]
fn einsum_diagonals_and_traces() {
    let g = check_einsum("ii->i", "ii->i", &[&[4, 4]]);
    assert_eq!(op_names(&g), ["reshape", "slice"]);
    check_einsum("ii", "ii->", &[&[3, 3]]);
    check_einsum("bii->bi", "bii->bi", &[&[2, 3, 3]]);
    check_einsum("iji->ij", "iji->ij", &[&[3, 2, 3]]);
}

#[test]
fn einsum_ellipsis_broadcasts() {
    // `...` is right-aligned: [2, 1] and [3] broadcast to [2, 3].
    let g = ok(one(
        "Einsum",
        &["a", "b"],
        vec![vf("a", &[2, 1, 4, 5]), vf("b", &[3, 5, 6])],
        vec![],
        vec![a_s("equation", "...ij,...jk->...ik")],
        12,
    ));
    assert_eq!(out_ty(&g), "f32[2, 3, 4, 6]");
    let (av, bv) = (noise(40, 1), noise(90, 2));
    let y = run(
        &g,
        &[
            ("a", f32s(&[2, 1, 4, 5], av.clone())),
            ("b", f32s(&[3, 5, 6], bv.clone())),
        ],
    );
    // Each [2, 3] batch entry is the product of a[p] and b[q].
    let mut want = Vec::new();
    for p in 0..2 {
        for q in 0..3 {
            let (_, w) = einsum_ref(
                "ij,jk->ik",
                &[
                    (&[4, 5], &av[p * 20..][..20]),
                    (&[5, 6], &bv[q * 30..][..30]),
                ],
            );
            want.extend(w);
        }
    }
    assert_close(&y.data().to_f64_vec(), &want, 1e-5);
    // Implicit output with an ellipsis: ellipsis axes first.
    check_einsum("...j,j", "abj,j->ab", &[&[2, 3, 4], &[4]]);
    // Symbolic batch dims carry through.
    let g = ok(one(
        "Einsum",
        &["q", "k"],
        vec![
            vi(
                "q",
                DataType::Float,
                &[sym("batch"), v(2), sym("seq"), v(8)],
            ),
            vi(
                "k",
                DataType::Float,
                &[sym("batch"), v(2), sym("seq"), v(8)],
            ),
        ],
        vec![],
        vec![a_s("equation", "...qd,...kd->...qk")],
        12,
    ));
    assert_eq!(out_ty(&g), "f32[batch, 2, seq, seq]");
}

#[test]
fn einsum_errors_name_the_equation() {
    let bad = |eq: &str, shapes: &[&[i64]]| {
        let names: Vec<String> = (0..shapes.len()).map(|i| format!("x{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let inputs = shapes.iter().zip(&names).map(|(s, n)| vf(n, s)).collect();
        one(
            "Einsum",
            &refs,
            inputs,
            vec![],
            vec![a_s("equation", eq)],
            12,
        )
        .unwrap_err()
        .to_string()
    };
    for (eq, shapes, what) in [
        ("ij,jk->ik", &[&[2, 3][..]][..], "input terms"),
        ("i1->i", &[&[2, 3][..]][..], "`1` is not a letter"),
        ("ijk->i", &[&[2, 3][..]][..], "rank 2"),
        ("ij->iz", &[&[2, 3][..]][..], "`z`"),
        ("ij->ii", &[&[2, 3][..]][..], "repeats"),
        ("ii->i", &[&[2, 3][..]][..], "diagonal"),
        (
            "ij,jk->ik",
            &[&[2, 3][..], &[4, 5][..]][..],
            "sizes 3 and 4",
        ),
    ] {
        let e = bad(eq, shapes);
        assert!(e.contains(eq) && e.contains(what), "{eq}: {e}");
    }
    // A diagonal over a symbolic size is refused with the equation.
    let e = one(
        "Einsum",
        &["x"],
        vec![vi("x", DataType::Float, &[sym("n"), sym("n")])],
        vec![],
        vec![a_s("equation", "ii->i")],
        12,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("ii->i") && e.contains("constant"), "{e}");
}
