//! Tests of the text form: round trips, exact constants, elision and errors.

use super::*;
use crate::dim::Dim;
use crate::dtype::DType;
use crate::error::Error;
use crate::fused::Body;
use crate::op::{BinaryOp, PadMode, ReduceKind, UnaryOp};
use crate::shape::{Shape, TensorType};
use half::{bf16, f16};

fn sym_shape(dims: &str) -> Shape {
    Shape(
        crate::op::split_top_level(dims)
            .into_iter()
            .map(|d| Dim::parse(d).unwrap())
            .collect(),
    )
}

fn ty(dtype: DType, dims: &str) -> TensorType {
    TensorType::new(dtype, sym_shape(dims))
}

/// Prints `g`, parses it back with its elided weights, and checks that the
/// second print is identical to the first. Returns the text.
fn round_trip(g: &Graph) -> String {
    let text = print(g);
    let weights = elided_weights(g);
    let back =
        parse(&text, &|n| weights.get(n).cloned()).unwrap_or_else(|e| panic!("{e}\nin:\n{text}"));
    assert_eq!(print(&back), text);
    assert_eq!(back.node_count(), g.node_count());
    assert_eq!(back.inputs().len(), g.inputs().len());
    assert_eq!(back.outputs().len(), g.outputs().len());
    text
}

fn parse_err(text: &str) -> (usize, String) {
    match parse(text, &|_| None) {
        Err(Error::Parse { line, message }) => (line, message),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

/// A graph that uses every op.
fn every_op() -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, "batch, seq, 8"));
    let ids = g.add_input("input.ids", ty(DType::I64, "batch, seq"));
    let m = g.add_input("mask", ty(DType::Bool, "batch, seq"));
    let mut outs = Vec::new();
    let add = |g: &mut Graph, op: Op, xs: &[NodeId]| g.add(op, xs).unwrap();

    let w = g.add_const(
        Tensor::from_vec(vec![8, 4], (0..32).map(|i| i as f32 * 0.25).collect()).unwrap(),
        Some("encoder.w".into()),
    );
    let unnamed = g.add_const(
        Tensor::from_vec(vec![17], (0..17).map(|i| i as i64).collect()).unwrap(),
        None,
    );
    let half = g.add_const(Tensor::scalar(0.5f32), None);
    let scale = g.add_const(Tensor::from_vec(vec![8], vec![1.0f32; 8]).unwrap(), None);
    let bias = g.add_const(Tensor::from_vec(vec![8], vec![0.0f32; 8]).unwrap(), None);
    outs.push(add(&mut g, Op::Binary(BinaryOp::Add), &[unnamed, unnamed]));
    for u in UnaryOp::ALL {
        let a = if u == UnaryOp::Not { m } else { x };
        outs.push(add(&mut g, Op::Unary(u), &[a]));
    }
    for b in BinaryOp::ALL {
        let (p, q) = if b.is_logical() { (m, m) } else { (x, half) };
        outs.push(add(&mut g, Op::Binary(b), &[p, q]));
    }
    let dims = add(
        &mut g,
        Op::Dims {
            dtype: DType::I64,
            shape: vec![2],
            values: vec![Dim::sym("batch"), Dim::sym("seq")],
        },
        &[],
    );
    outs.push(dims);
    let idsf = add(&mut g, Op::Cast { to: DType::F32 }, &[ids]);
    outs.push(add(&mut g, Op::Where, &[m, idsf, idsf]));
    outs.push(add(&mut g, Op::MatMul, &[x, w]));
    outs.push(add(&mut g, Op::Softmax { axis: 2 }, &[x]));
    outs.push(add(&mut g, Op::LogSoftmax { axis: 1 }, &[x]));
    outs.push(add(
        &mut g,
        Op::LayerNorm {
            axis: 2,
            epsilon: 1e-12,
        },
        &[x, scale, bias],
    ));
    for (i, kind) in ReduceKind::ALL.into_iter().enumerate() {
        let op = Op::Reduce {
            kind,
            axes: vec![1, 2],
            keep_dims: i % 2 == 0,
        };
        outs.push(add(&mut g, op, &[x]));
    }
    for max in [true, false] {
        let op = Op::ArgReduce {
            max,
            axis: 2,
            keep_dims: max,
            select_last: !max,
        };
        outs.push(add(&mut g, op, &[x]));
    }
    let op = Op::CumSum {
        axis: 1,
        exclusive: true,
        reverse: false,
    };
    outs.push(add(&mut g, op, &[x]));
    let shape = sym_shape("batch, seq, 2, 4");
    outs.push(add(&mut g, Op::Reshape { shape }, &[x]));
    outs.push(add(
        &mut g,
        Op::Transpose {
            perm: vec![1, 0, 2],
        },
        &[x],
    ));
    let shape = sym_shape("batch, seq, 8");
    outs.push(add(&mut g, Op::Expand { shape }, &[half]));
    outs.push(add(&mut g, Op::Concat { axis: 2 }, &[x, x, x]));
    let op = Op::Slice {
        axes: vec![1, 2],
        starts: vec![Dim::constant(0), Dim::constant(7)],
        ends: vec![Dim::parse("seq - 1").unwrap(), Dim::constant(-1)],
        steps: vec![1, -2],
    };
    outs.push(add(&mut g, op, &[x]));
    outs.push(add(&mut g, Op::Gather { axis: 0 }, &[w, ids]));
    let idx = g.add_const(
        Tensor::from_vec(vec![1, 1, 2], vec![3i64, -1]).unwrap(),
        None,
    );
    outs.push(add(&mut g, Op::GatherElements { axis: 2 }, &[x, idx]));
    let idx = g.add_const(Tensor::from_vec(vec![2, 1], vec![1i64, 5]).unwrap(), None);
    outs.push(add(&mut g, Op::GatherNd { batch_dims: 0 }, &[w, idx]));
    let op = Op::Tile {
        repeats: vec![Dim::constant(1), Dim::sym("seq"), Dim::constant(2)],
    };
    outs.push(add(&mut g, op, &[x]));
    let op = Op::Range {
        dtype: DType::I32,
        start: Dim::constant(0),
        limit: Dim::sym("seq"),
        delta: 1,
    };
    outs.push(add(&mut g, op, &[]));
    outs.push(add(&mut g, Op::ShapeOf { start: 0, end: 2 }, &[x]));
    outs.push(add(&mut g, Op::Trilu { upper: true, k: -1 }, &[x]));
    for (i, o) in outs.into_iter().enumerate() {
        g.add_output(&format!("out{i}"), o);
    }
    g.add_output("the input", ids);
    g
}

#[test]
fn every_op_round_trips() {
    let g = every_op();
    let text = round_trip(&g);
    // Every op's name appears in the printout.
    for u in UnaryOp::ALL {
        assert!(text.contains(&format!("= {}(", u.name())), "{}", u.name());
    }
    insta::assert_snapshot!(text);
}

/// The example of the module docs, in the printer's order: operands are
/// printed just before their first use.
#[test]
fn the_documented_example_parses_and_prints_back() {
    let text = r#"graph(%input_ids: i64[batch, seq], %"attention.mask": i64[batch, seq]) {
  %0 = const @"embeddings.word_embeddings.weight" : f32[8192, 128]
  %1 = gather<axis=0>(%0, %input_ids) : f32[batch, seq, 128]
  %2 = const [3.0] : f32[]
  %3 = add(%1, %2) : f32[batch, seq, 128]
  %4 = reshape<shape=[batch, seq, 64, 2]>(%3) : f32[batch, seq, 64, 2]
  %5 = const [0.5, 2.0] : f32[2]
  %6 = mul(%4, %5) : f32[batch, seq, 64, 2]
  return %last_hidden_state = %6
  return %"mask.out" = %"attention.mask"
}
"#;
    let weight = Tensor::zeros(DType::F32, vec![8192, 128]);
    let g = parse(text, &|n| {
        (n == "embeddings.word_embeddings.weight").then(|| weight.clone())
    })
    .unwrap();
    assert_eq!(print(&g), text);
    assert_eq!(g.outputs()[0].0, "last_hidden_state");
    assert_eq!(g.outputs()[1].0, "mask.out");
    let w = elided_weights(&g);
    assert_eq!(w.len(), 1);
    assert_eq!(w["embeddings.word_embeddings.weight"], weight);
}

#[test]
fn floats_print_bit_exact() {
    let f32s = vec![
        0.1f32,
        -0.0,
        1e-30,
        f32::MIN_POSITIVE / 3.0,
        f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::from_bits(0x7fc0_0001),
        -f32::NAN,
        16777217.0,
        1e20,
        3.0,
    ];
    let f64s = vec![0.1f64, -0.0, 1e300, 5e-324, f64::NAN, 1.0 / 3.0];
    let f16s: Vec<f16> = [0.1f32, 65504.0, -0.0, 6e-8]
        .iter()
        .map(|&x| f16::from_f32(x))
        .chain([f16::NAN, f16::from_bits(0x7e01)])
        .collect();
    let bf16s: Vec<bf16> = [0.1f32, 3e38, -1.5]
        .iter()
        .map(|&x| bf16::from_f32(x))
        .chain([bf16::NAN, bf16::from_bits(0xffc1)])
        .collect();
    let tensors = [
        Tensor::from_vec(vec![f32s.len()], f32s).unwrap(),
        Tensor::from_vec(vec![2, 3], f64s).unwrap(),
        Tensor::from_vec(vec![6], f16s).unwrap(),
        Tensor::from_vec(vec![5], bf16s).unwrap(),
        Tensor::from_vec(vec![3], vec![i64::MIN, 0, i64::MAX]).unwrap(),
        Tensor::from_vec(vec![2], vec![i32::MIN, -1]).unwrap(),
        Tensor::from_vec(vec![2], vec![i8::MIN, i8::MAX]).unwrap(),
        Tensor::from_vec(vec![2], vec![0u8, 255]).unwrap(),
        Tensor::from_vec(vec![1, 2], vec![true, false]).unwrap(),
        Tensor::scalar(2.5f32),
        Tensor::from_vec::<f32>(vec![0, 3], vec![]).unwrap(),
    ];
    let mut g = Graph::new();
    for (i, t) in tensors.iter().enumerate() {
        let c = g.add_const(t.clone(), None);
        g.add_output(&format!("c{i}"), c);
    }
    let text = round_trip(&g);
    assert!(text.contains("const [2.5] : f32[]"), "{text}");
    assert!(text.contains("const [true, false] : bool[1, 2]"), "{text}");
    assert!(text.contains("const [] : f32[0, 3]"), "{text}");
    let back = parse(&text, &|_| None).unwrap();
    for (i, t) in tensors.iter().enumerate() {
        let got = back.const_value(back.outputs()[i].1).unwrap();
        // Compare bits: NaN != NaN as floats.
        assert_eq!(got.shape(), t.shape());
        assert_eq!(got.dtype(), t.dtype());
        assert_eq!(
            got.data().to_le_bytes(),
            t.data().to_le_bytes(),
            "tensor {i}"
        );
    }
}

#[test]
fn large_constants_are_elided_by_name_or_stable_hash() {
    let big = |k: f32| Tensor::from_vec(vec![17], vec![k; 17]).unwrap();
    let mut g = Graph::new();
    let a = g.add_const(big(1.0), None);
    let b = g.add_const(big(1.0), None);
    let c = g.add_const(big(2.0), None);
    let d = g.add_const(big(3.0), Some("w".into()));
    let e = g.add_const(big(4.0), Some("w".into()));
    for (i, n) in [a, b, c, d, e].into_iter().enumerate() {
        g.add_output(&format!("o{i}"), n);
    }
    let text = round_trip(&g);
    let w = elided_weights(&g);
    // Equal unnamed tensors share one hashed name; different ones do not; two
    // different tensors named `w` are told apart.
    assert_eq!(w.len(), 4, "{w:?}");
    assert_eq!(w["w"], big(3.0));
    assert_eq!(w["w#2"], big(4.0));
    let hashed: Vec<&String> = w.keys().filter(|k| k.starts_with("c.")).collect();
    assert_eq!(hashed.len(), 2);
    for k in hashed {
        assert_eq!(k.len(), "c.".len() + 16);
        assert!(text.contains(&format!("@\"{k}\"")));
    }
    // The names do not depend on the run or on the graph's other contents.
    let mut g2 = Graph::new();
    let c2 = g2.add_const(big(2.0), None);
    g2.add_output("o", c2);
    let k2 = elided_weights(&g2).into_keys().next().unwrap();
    assert_eq!(w[&k2], big(2.0));
}

#[test]
fn odd_names_are_quoted_and_round_trip() {
    let mut g = Graph::new();
    let names = [
        "input.1",
        "0",
        "with \"quotes\" and \\",
        "tab\there",
        "ünïcode",
        "_ok9",
    ];
    let mut last = None;
    for n in names {
        let i = g.add_input(n, ty(DType::F32, "n"));
        last = Some(match last {
            None => i,
            Some(p) => g.add(Op::Binary(BinaryOp::Add), &[p, i]).unwrap(),
        });
    }
    g.add_output("out.0", last.unwrap());
    g.add_output("x y", last.unwrap());
    let text = round_trip(&g);
    assert!(
        text.starts_with("graph(%\"input.1\": f32[n], %\"0\": f32[n], "),
        "{text}"
    );
    assert!(text.contains("%_ok9: f32[n]"));
    // The number 0 belongs to an input, so the nodes start at %1.
    assert!(text.contains("  %1 = add(%\"input.1\", %\"0\")"), "{text}");
    let back = parse(&text, &|_| None).unwrap();
    for (i, n) in names.iter().enumerate() {
        assert_eq!(
            back.op(back.inputs()[i]),
            &Op::Input {
                name: n.to_string()
            }
        );
    }
    assert_eq!(back.outputs()[1].0, "x y");
}

#[test]
fn comments_and_blank_lines_are_ignored() {
    let text = "\n# a test\ngraph(%x: f32[2]) {\n\n  # the body\n  %0 = neg(%x) : f32[2]\n  return %y = %0\n}\n";
    let g = parse(text, &|_| None).unwrap();
    assert_eq!(
        print(&g),
        "graph(%x: f32[2]) {\n  %0 = neg(%x) : f32[2]\n  return %y = %0\n}\n"
    );
}

#[test]
fn errors_name_the_line() {
    let head = "graph(%x: f32[batch, 4]) {\n";
    let cases: &[(&str, usize, &str)] = &[
        (
            "  %0 = frobnicate(%x) : f32[batch, 4]\n",
            2,
            "unknown op `frobnicate`",
        ),
        ("  %0 = neg(%y) : f32[batch, 4]\n", 2, "unknown value `%y`"),
        (
            "  %0 = softmax<axis=x>(%x) : f32[batch, 4]\n",
            2,
            "bad value `x`",
        ),
        (
            "  %0 = softmax<axis=1, extra=2>(%x) : f32[batch, 4]\n",
            2,
            "no attribute `extra`",
        ),
        (
            "  %0 = softmax<axis=1, axis=1>(%x) : f32[batch, 4]\n",
            2,
            "given twice",
        ),
        (
            "  %0 = softmax(%x) : f32[batch, 4]\n",
            2,
            "needs attribute `axis`",
        ),
        (
            "  %0 = softmax<axis=5>(%x) : f32[batch, 4]\n",
            2,
            "out of range",
        ),
        (
            "  %0 = neg(%x) : f32[batch, 5]\n",
            2,
            "stated as f32[batch, 5] but its type is f32[batch, 4]",
        ),
        ("  %0 = neg(%x) : f64[batch, 4]\n", 2, "stated as f64"),
        (
            "  %0 = neg(%x) : f32[batch, 4]\n  %0 = neg(%x) : f32[batch, 4]\n",
            3,
            "duplicate name `%0`",
        ),
        ("  %x = neg(%x) : f32[batch, 4]\n", 2, "duplicate name `%x`"),
        ("  %0 = const @\"w\" : f32[2]\n", 2, "no weight `w`"),
        (
            "  %0 = const [1.0, 2.0] : f32[3]\n",
            2,
            "holds 3 elements but 2",
        ),
        (
            "  %0 = const [1.0, x] : f32[2]\n",
            2,
            "bad float element `x`",
        ),
        ("  %0 = const [1, 2] : f32[n]\n", 2, "must be concrete"),
        ("  %0 = const [300] : u8[1]\n", 2, "bad u8 element `300`"),
        (
            "  %0 = neg(%x) : f32[batch, 4] extra\n",
            2,
            "unexpected `extra`",
        ),
        ("  %0 = neg(%x)\n", 2, "expected `:`"),
        ("  %0 = neg(%x) : q8[2]\n", 2, "unknown dtype `q8`"),
        ("  %0 = input<name=\"x\"> : f32[2]\n", 2, "header"),
        ("  %0 = add(%x) : f32[batch, 4]\n", 2, "operands"),
        ("  return %y = %nope\n", 2, "unknown value `%nope`"),
        ("  return %y = %x\n  return %y = %x\n", 3, "returned twice"),
        (
            "  return %y = %x\n  %0 = neg(%x) : f32[batch, 4]\n",
            3,
            "follows the `return`",
        ),
        ("  hello\n", 2, "expected a node"),
    ];
    for (body, line, needle) in cases {
        let (l, m) = parse_err(&format!("{head}{body}}}\n"));
        assert_eq!(
            (l, m.contains(needle)),
            (*line, true),
            "{body}: line {l}: {m}"
        );
    }
    assert_eq!(parse_err("").0, 1);
    assert!(parse_err("graf(%x: f32[2]) {\n}\n")
        .1
        .contains("expected `graph`"));
    assert!(parse_err("graph(%x: f32[2], %x: f32[2]) {\n}\n")
        .1
        .contains("duplicate name `%x`"));
    let (l, m) = parse_err("graph(%x: f32[2]) {\n  return %y = %x\n");
    assert_eq!((l, m.contains("expected `}`")), (3, true), "{m}");
    let (l, m) = parse_err("graph() {\n}\n}\n");
    assert_eq!((l, m.contains("after the closing")), (3, true), "{m}");
    // A weight of the wrong type.
    let w = |_: &str| Some(Tensor::zeros(DType::F32, vec![3]));
    match parse("graph() {\n  %0 = const @\"w\" : f32[2]\n}\n", &w) {
        Err(Error::Parse { line: 2, message }) => assert!(message.contains("f32[3]"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn symbolic_types_compare_as_polynomials() {
    // `seq*2 + seq` is stated in a non-canonical form: it parses to the same dim.
    let text = "graph(%x: f32[seq]) {\n  %0 = concat<axis=0>(%x, %x, %x) : f32[seq*2 + seq]\n  return %y = %0\n}\n";
    let g = parse(text, &|_| None).unwrap();
    assert!(print(&g).contains(": f32[3*seq]"));
    assert_eq!(
        g.ty(g.outputs()[0].1).shape.dims()[0],
        Dim::parse("3*seq").unwrap()
    );
}

// ------------------------------------------------- every `Op` variant, fused ops included

/// Declares, from one list, [`OP_VARIANTS`] (every variant's name) and [`op_variant`] (the
/// variant of an op), a `match` without a wildcard arm: a new `Op` variant does not compile
/// until it is added here, and once it is, [`every_op_variant_round_trips_to_an_identical_graph`]
/// fails until the round-trip graphs use it.
macro_rules! op_variants {
    ($($name:literal: $p:pat),* $(,)?) => {
        const OP_VARIANTS: &[&str] = &[$($name),*];

        fn op_variant(op: &Op) -> &'static str {
            match op {
                $($p => $name),*
            }
        }
    };
}

op_variants! {
    "Input": Op::Input { .. },
    "Const": Op::Const(_),
    "Dims": Op::Dims { .. },
    "Unary": Op::Unary(_),
    "Binary": Op::Binary(_),
    "Where": Op::Where,
    "Cast": Op::Cast { .. },
    "MatMul": Op::MatMul,
    "MatMulInteger": Op::MatMulInteger { .. },
    "Conv": Op::Conv { .. },
    "Pad": Op::Pad { .. },
    "Softmax": Op::Softmax { .. },
    "LogSoftmax": Op::LogSoftmax { .. },
    "LayerNorm": Op::LayerNorm { .. },
    "Reduce": Op::Reduce { .. },
    "ArgReduce": Op::ArgReduce { .. },
    "CumSum": Op::CumSum { .. },
    "Reshape": Op::Reshape { .. },
    "Transpose": Op::Transpose { .. },
    "Expand": Op::Expand { .. },
    "Concat": Op::Concat { .. },
    "Slice": Op::Slice { .. },
    "Gather": Op::Gather { .. },
    "GatherElements": Op::GatherElements { .. },
    "GatherNd": Op::GatherNd { .. },
    "Tile": Op::Tile { .. },
    "Range": Op::Range { .. },
    "ShapeOf": Op::ShapeOf { .. },
    "Trilu": Op::Trilu { .. },
    "Gemm": Op::Gemm { .. },
    "QGemm": Op::QGemm { .. },
    "Attention": Op::Attention { .. },
    "AddLayerNorm": Op::AddLayerNorm { .. },
    "RmsNorm": Op::RmsNorm { .. },
    "Fused": Op::Fused { .. },
    "Pack": Op::Pack { .. },
    "Unpack": Op::Unpack,
    "PackedAttention": Op::PackedAttention { .. },
}

fn body(s: &str) -> Arc<Body> {
    Arc::new(Body::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")))
}

/// A graph of the ops [`every_op`] leaves out (kept apart so that its snapshot stays as it
/// is): `matmul_integer`, `conv`, `pad` in every mode, and every fused op with every form
/// of its attributes.
fn every_other_op() -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, "batch, seq, 8"));
    let xt = g.add_input("xt", ty(DType::F32, "batch, 8, seq"));
    let q = g.add_input("q", ty(DType::F32, "batch, heads, seq, 4"));
    let kt = g.add_input("kt", ty(DType::F32, "batch, heads, 4, seq"));
    let v = g.add_input("v", ty(DType::F32, "batch, heads, seq, 4"));
    let mask = g.add_input("mask", ty(DType::F32, "batch, 1, 1, seq"));
    let bmask = g.add_input("bmask", ty(DType::Bool, "batch, 1, 1, seq"));
    // The same heads, as `[batch, seq, heads, 4]` before the split's transpose.
    let hs = g.add_input("hs", ty(DType::F32, "batch, seq, heads, 4"));
    let keep = g.add_input("keep", ty(DType::Bool, "batch, seq, 1"));
    let ids = g.add_input("ids", ty(DType::I64, "seq, 1"));
    let qa = g.add_input("qa", ty(DType::U8, "batch, seq, 8"));
    let img = g.add_input("img", ty(DType::F32, "n, 4, h, w"));
    let mut outs = Vec::new();
    let add = |g: &mut Graph, op: Op, xs: &[NodeId]| {
        g.add(op.clone(), xs)
            .unwrap_or_else(|e| panic!("{op:?}: {e}"))
    };
    let w = g.add_const(
        Tensor::from_vec(vec![8, 4], (0..32).map(|i| i as f32 * 0.125).collect()).unwrap(),
        Some("fc.w".into()),
    );
    let w_t = g.add_const(
        Tensor::from_vec(vec![4, 8], (0..32).map(|i| i as f32 * -0.5).collect()).unwrap(),
        Some("fc.w_t".into()),
    );
    let b4 = g.add_const(
        Tensor::from_vec(vec![4], vec![0.5f32, -1.0, 2.0, 0.0]).unwrap(),
        None,
    );
    let scale = g.add_const(Tensor::from_vec(vec![8], vec![1.5f32; 8]).unwrap(), None);
    let bias = g.add_const(Tensor::from_vec(vec![8], vec![-0.25f32; 8]).unwrap(), None);

    // matmul_integer, with and without saturating pairs.
    let qb = g.add_const(
        Tensor::from_vec(vec![8, 4], (0..32).map(|i| (i as i8) - 16).collect()).unwrap(),
        Some("q.w".into()),
    );
    let a_zp = g.add_const(Tensor::scalar(128u8), None);
    let b_zp = g.add_const(Tensor::scalar(-3i8), None);
    for saturate_pairs in [false, true] {
        let op = Op::MatMulInteger { saturate_pairs };
        outs.push(add(&mut g, op, &[qa, qb, a_zp, b_zp]));
    }

    // conv, with symbolic and constant pads.
    let k = g.add_const(
        Tensor::from_vec(vec![6, 2, 3, 2], (0..72).map(|i| i as f32 / 8.0).collect()).unwrap(),
        Some("conv.w".into()),
    );
    let op = Op::Conv {
        strides: vec![1, 2],
        pads_begin: vec![Dim::constant(1), Dim::constant(0)],
        pads_end: vec![Dim::constant(2), Dim::constant(1)],
        dilations: vec![2, 1],
        group: 2,
    };
    outs.push(add(&mut g, op, &[img, k]));

    // pad, in every mode; negative and symbolic amounts.
    let fill = g.add_const(Tensor::scalar(-7.5f32), None);
    for mode in PadMode::ALL {
        let op = Op::Pad {
            mode,
            pads_begin: vec![Dim::constant(0), Dim::constant(-1), Dim::constant(2)],
            pads_end: vec![Dim::constant(1), Dim::sym("seq"), Dim::constant(-3)],
        };
        let xs: &[NodeId] = if mode == PadMode::Constant {
            &[x, fill]
        } else {
            &[x]
        };
        outs.push(add(&mut g, op, xs));
    }

    // gemm: every activation, with and without a bias, with and without each perm.
    for (i, activation) in crate::fused::Activation::ALL.into_iter().enumerate() {
        for with_bias in [false, true] {
            let op = Op::Gemm {
                activation,
                bias: with_bias,
                perm_a: None,
                perm_b: None,
                perm_out: None,
            };
            let xs: &[NodeId] = if with_bias { &[x, w, b4] } else { &[x, w] };
            outs.push(add(&mut g, op, xs));
        }
        // Each perm alone, then all three, on a different activation each time.
        let perms = [
            (Some(vec![0, 2, 1]), None, None),
            (None, Some(vec![1, 0]), None),
            (None, None, Some(vec![1, 0, 2])),
            (Some(vec![0, 2, 1]), Some(vec![1, 0]), Some(vec![2, 0, 1])),
        ];
        let (perm_a, perm_b, perm_out) = perms[i].clone();
        let a = if perm_a.is_some() { xt } else { x };
        let bw = if perm_b.is_some() { w_t } else { w };
        let op = Op::Gemm {
            activation,
            bias: i % 2 == 1,
            perm_a,
            perm_b,
            perm_out,
        };
        let xs: &[NodeId] = if i % 2 == 1 { &[a, bw, b4] } else { &[a, bw] };
        outs.push(add(&mut g, op, xs));
    }

    // attention: every scale, mask on and off, NaN filter on and off, causal (with -inf and with
    // f32::MIN), then the perms.
    let scales = [
        crate::fused::ScoreScale::None,
        crate::fused::ScoreScale::Mul(0.125),
        crate::fused::ScoreScale::Div(8.0),
        crate::fused::ScoreScale::Mul(1e-7),
        crate::fused::ScoreScale::Div(-0.3),
    ];
    for scale in scales {
        for kind in crate::fused::AttentionMask::ALL {
            for (nan_filter, causal, causal_min) in [
                (false, false, false),
                (true, false, false),
                (false, true, false),
                (false, true, true),
            ] {
                let op = Op::Attention {
                    scale,
                    mask: kind,
                    nan_filter,
                    zero_where: false,
                    causal,
                    causal_min,
                    perm_q: None,
                    perm_k: None,
                    perm_v: None,
                    perm_out: None,
                };
                let xs: &[NodeId] = match kind {
                    crate::fused::AttentionMask::None => &[q, kt, v],
                    crate::fused::AttentionMask::Add => &[q, kt, v, mask],
                    crate::fused::AttentionMask::Bool => &[q, kt, v, bmask],
                };
                outs.push(add(&mut g, op, xs));
            }
        }
    }
    let split = Some(vec![0, 2, 1, 3]);
    let perm_sets = [
        (split.clone(), None, None, None),
        (None, Some(vec![0, 2, 3, 1]), None, None),
        (None, None, split.clone(), None),
        (None, None, None, split.clone()),
        (
            split.clone(),
            Some(vec![0, 2, 3, 1]),
            split.clone(),
            split.clone(),
        ),
    ];
    for (perm_q, perm_k, perm_v, perm_out) in perm_sets {
        let xs = [
            if perm_q.is_some() { hs } else { q },
            if perm_k.is_some() { hs } else { kt },
            if perm_v.is_some() { hs } else { v },
            mask,
        ];
        let op = Op::Attention {
            scale: crate::fused::ScoreScale::Div(2.0),
            mask: crate::fused::AttentionMask::Add,
            nan_filter: true,
            zero_where: false,
            causal: false,
            causal_min: false,
            perm_q,
            perm_k,
            perm_v,
            perm_out,
        };
        outs.push(add(&mut g, op, &xs));
    }
    // Zeroing where a condition holds, with and without a mask.
    for (kind, xs) in [
        (crate::fused::AttentionMask::None, vec![q, kt, v, bmask]),
        (
            crate::fused::AttentionMask::Add,
            vec![q, kt, v, mask, bmask],
        ),
    ] {
        let op = Op::Attention {
            scale: crate::fused::ScoreScale::None,
            mask: kind,
            nan_filter: false,
            zero_where: true,
            causal: true,
            causal_min: false,
            perm_q: None,
            perm_k: None,
            perm_v: None,
            perm_out: None,
        };
        outs.push(add(&mut g, op, &xs));
    }

    // qgemm: every activation, with and without a bias, per-tensor and per-row quantisation of
    // A, exact and saturating.
    let w8 = g.add_const(
        Tensor::from_vec(vec![8, 3], (0..24).map(|i| (i * 11 % 255) as i8).collect()).unwrap(),
        None,
    );
    let sw = g.add_const(
        Tensor::from_vec(vec![3], vec![0.5f32, 0.25, 2.0]).unwrap(),
        None,
    );
    let b3 = g.add_const(
        Tensor::from_vec(vec![3], vec![1.0f32, -1.0, 0.5]).unwrap(),
        None,
    );
    let sa = g.add_const(Tensor::scalar(0.125f32), None);
    let za = g.add_const(Tensor::scalar(7u8), None);
    let row_sa = add(
        &mut g,
        Op::Reduce {
            kind: ReduceKind::Max,
            axes: vec![2],
            keep_dims: true,
        },
        &[x],
    );
    let row_za = add(&mut g, Op::Cast { to: DType::U8 }, &[row_sa]);
    for (i, activation) in crate::fused::Activation::ALL.into_iter().enumerate() {
        for with_bias in [false, true] {
            let op = Op::QGemm {
                activation,
                bias: with_bias,
                saturate_pairs: i % 2 == 0,
            };
            let (s, z) = if with_bias {
                (sa, za)
            } else {
                (row_sa, row_za)
            };
            let mut xs = vec![x, s, z, w8, sw];
            if with_bias {
                xs.push(b3);
            }
            outs.push(add(&mut g, op, &xs));
        }
    }

    // add_layer_norm and rms_norm.
    let op = Op::AddLayerNorm {
        axis: 2,
        epsilon: 1e-5,
    };
    outs.push(add(&mut g, op, &[x, x, scale, bias]));
    let op = Op::AddLayerNorm {
        axis: 1,
        epsilon: 0.1,
    };
    outs.push(add(&mut g, op, &[x, bias, scale, bias]));
    for (axis, epsilon) in [(2, 1e-6), (1, 1e-12), (0, 3.0)] {
        outs.push(add(&mut g, Op::RmsNorm { axis, epsilon }, &[x, scale]));
    }

    // fused: leaves, scalars of several dtypes, unary, binary, where and cast.
    let half = g.add_const(Tensor::scalar(0.5f32), None);
    let d64 = g.add_const(
        Tensor::from_vec(vec![3], vec![1.0f64, -2.0, 0.5]).unwrap(),
        None,
    );
    let bodies: &[(&str, &[NodeId])] = &[
        ("$0", &[x]),
        ("$1", &[x, half]),
        ("f32(2.5)", &[]),
        ("neg($0)", &[x]),
        (
            "mul(add(erf(div($0, f32(1.4142135))), f32(1.0)), $1)",
            &[x, half],
        ),
        ("where(less($0, f32(0.0)), mul($0, f32(0.01)), $0)", &[x]),
        ("where($1, $0, f32(-1e30))", &[x, keep]),
        ("where(and($1, bool(true)), $0, neg(f32(inf)))", &[x, keep]),
        ("add($0, cast(f32, mul($1, i64(-3))))", &[x, ids]),
        ("cast(i64, floor($0))", &[x]),
        ("cast(bool, $2)", &[x, half, ids]),
        ("pow(sqrt(abs($0)), f32(3.0))", &[x]),
        ("where(greater_equal($0, $1), $0, $1)", &[x, scale]),
        ("add(mul($0, f64(0.1)), cast(f64, i32(7)))", &[d64]),
        ("sub(f16(0.1), cast(f16, $0))", &[x]),
        ("or(xor($0, bool(false)), not($0))", &[keep]),
    ];
    for (text, xs) in bodies {
        outs.push(add(&mut g, Op::Fused { body: body(text) }, xs));
    }
    for (i, o) in outs.into_iter().enumerate() {
        g.add_output(&format!("out{i}"), o);
    }
    g
}

/// A graph of padding elimination's ops: `pack` over bool and integer masks (two packs of one
/// symbol over one mask, rank 3 and 4), `packed_attention` with every kind of scale, and
/// `unpack` back to the padded layout.
fn padding_ops() -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, "batch, seq, 8"));
    let hs = g.add_input("hs", ty(DType::F32, "batch, seq, heads, 4"));
    let m = g.add_input("m", ty(DType::Bool, "batch, seq"));
    let im = g.add_input("im", ty(DType::I64, "batch, seq"));
    let add = |g: &mut Graph, op: Op, xs: &[NodeId]| {
        g.add(op.clone(), xs)
            .unwrap_or_else(|e| panic!("{op:?}: {e}"))
    };
    let pack = |tokens: &str| Op::Pack {
        tokens: tokens.into(),
    };
    let mut outs = Vec::new();
    let px = add(&mut g, pack("tokens"), &[x, m]);
    let ph = add(&mut g, pack("tokens"), &[hs, m]);
    let pi = add(&mut g, pack("real"), &[x, im]);
    outs.push(add(&mut g, Op::Unpack, &[px, m]));
    outs.push(add(&mut g, Op::Unpack, &[pi, im]));
    for scale in [
        crate::fused::ScoreScale::None,
        crate::fused::ScoreScale::Mul(0.5),
        crate::fused::ScoreScale::Div(2.0),
    ] {
        let y = add(&mut g, Op::PackedAttention { scale }, &[ph, ph, ph, m]);
        outs.push(add(&mut g, Op::Unpack, &[y, m]));
    }
    for (i, o) in outs.into_iter().enumerate() {
        g.add_output(&format!("out{i}"), o);
    }
    g
}

/// Checks that `b` is `a` node for node: the same inputs, ops (constants by value, and by
/// name where `a` has one), types, operands and outputs, matched by position in
/// [`Graph::topo_order`].
fn assert_same_graph(a: &Graph, b: &Graph) {
    let (oa, ob) = (a.topo_order(), b.topo_order());
    assert_eq!(oa.len(), ob.len(), "node counts differ");
    let pos_a: HashMap<NodeId, usize> = oa.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let pos_b: HashMap<NodeId, usize> = ob.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    for (i, (&na, &nb)) in oa.iter().zip(&ob).enumerate() {
        let (x, y) = (a.op(na), b.op(nb));
        match (x, y) {
            (Op::Const(cx), Op::Const(cy)) => {
                assert_eq!(cx.value, cy.value, "node {i}: constant values differ");
                if cx.name.is_some() {
                    assert_eq!(cx.name, cy.name, "node {i}: constant names differ");
                }
            }
            _ => assert_eq!(x, y, "node {i}: ops differ"),
        }
        assert_eq!(a.ty(na), b.ty(nb), "node {i} ({}): types differ", x.name());
        let ops_a: Vec<usize> = a.operands(na).iter().map(|o| pos_a[o]).collect();
        let ops_b: Vec<usize> = b.operands(nb).iter().map(|o| pos_b[o]).collect();
        assert_eq!(ops_a, ops_b, "node {i} ({}): operands differ", x.name());
    }
    let ins = |g: &Graph, pos: &HashMap<NodeId, usize>| -> Vec<usize> {
        g.inputs().iter().map(|n| pos[n]).collect()
    };
    assert_eq!(ins(a, &pos_a), ins(b, &pos_b), "inputs differ");
    let outs = |g: &Graph, pos: &HashMap<NodeId, usize>| -> Vec<(String, usize)> {
        g.outputs()
            .iter()
            .map(|(name, n)| (name.clone(), pos[n]))
            .collect()
    };
    assert_eq!(outs(a, &pos_a), outs(b, &pos_b), "outputs differ");
}

#[test]
fn every_op_variant_round_trips_to_an_identical_graph() {
    let mut seen: Vec<&str> = Vec::new();
    for g in [every_op(), every_other_op(), padding_ops()] {
        let text = round_trip(&g);
        let weights = elided_weights(&g);
        let back = parse(&text, &|n| weights.get(n).cloned()).unwrap();
        assert_same_graph(&g, &back);
        for id in g.node_ids() {
            let op = g.op(id);
            seen.push(op_variant(op));
            // Every op but `input` and `const` rebuilds from its printed name and attributes.
            if !matches!(op, Op::Input { .. } | Op::Const(_)) {
                let attrs: Vec<(String, String)> = op
                    .attrs()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                assert_eq!(
                    Op::from_parts(op.name(), &attrs).as_ref(),
                    Ok(op),
                    "{}",
                    op.name()
                );
            }
        }
    }
    let missing: Vec<&&str> = OP_VARIANTS.iter().filter(|v| !seen.contains(v)).collect();
    assert!(
        missing.is_empty(),
        "no round-trip test covers the op variants {missing:?}"
    );
    let mut names = OP_VARIANTS.to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), OP_VARIANTS.len(), "a variant is listed twice");
}

#[test]
fn fused_ops_print_their_attributes() {
    let text = round_trip(&every_other_op());
    for needle in [
        "gemm<activation=none, bias=false>(%x, %12) : f32[batch, seq, 4]",
        "gemm<activation=gelu_tanh, bias=true>(",
        "gemm<activation=relu, bias=true, perm_b=[1, 0]>(",
        "perm_a=[0, 2, 1], perm_b=[1, 0], perm_out=[2, 0, 1]>(%xt, ",
        "attention<scale=none, mask=none, nan_filter=false>(%q, %kt, %v)",
        "attention<scale=mul(0.125), mask=add, nan_filter=true>(%q, %kt, %v, %mask)",
        "attention<scale=div(8.0), mask=add, nan_filter=false>",
        "attention<scale=mul(1e-7), ",
        "attention<scale=div(-0.3), ",
        "perm_q=[0, 2, 1, 3], perm_k=[0, 2, 3, 1], perm_v=[0, 2, 1, 3], perm_out=[0, 2, 1, 3]>(%hs, %hs, %hs, %mask)",
        "add_layer_norm<axis=2, epsilon=1e-5>(%x, %x, ",
        "rms_norm<axis=1, epsilon=1e-12>(%x, ",
        "fused<body=mul(add(erf(div($0, f32(1.4142135))), f32(1.0)), $1)>(%x, ",
        "fused<body=f32(2.5)> : f32[]",
        "fused<body=add($0, cast(f32, mul($1, i64(-3))))>(%x, %ids) : f32[batch, seq, 8]",
        "fused<body=where(and($1, bool(true)), $0, neg(f32(inf)))>(%x, %keep)",
        "matmul_integer<saturate_pairs=true>(%qa, ",
        "pad<mode=wrap, pads_begin=[0, -1, 2], pads_end=[1, seq, -3]>(%x)",
    ] {
        assert!(text.contains(needle), "`{needle}` is not in:\n{text}");
    }
}

#[test]
fn padding_ops_print_their_attributes() {
    let text = round_trip(&padding_ops());
    for needle in [
        "pack<tokens=tokens>(%x, %m) : f32[tokens, 8]",
        "pack<tokens=tokens>(%hs, %m) : f32[tokens, heads, 4]",
        "pack<tokens=real>(%x, %im) : f32[real, 8]",
        " : f32[batch, seq, 8]",
        "packed_attention<scale=none>(%",
        "packed_attention<scale=mul(0.5)>(%",
        "packed_attention<scale=div(2.0)>(%",
        " : f32[tokens, heads, 4]",
    ] {
        assert!(text.contains(needle), "`{needle}` is not in:\n{text}");
    }
    assert!(text.contains("unpack("), "{text}");
}

#[test]
fn bad_padding_attributes_name_the_attribute() {
    let head = "graph(%x: f32[b, s, 4], %m: bool[b, s]) {\n";
    for (line, want) in [
        (
            "  %0 = pack<tokens=2t>(%x, %m) : f32[t, 4]\n",
            "attribute `tokens` of `pack` must be a symbol name, got `2t`",
        ),
        (
            "  %0 = pack<tokens=t + 1>(%x, %m) : f32[t, 4]\n",
            "attribute `tokens` of `pack` must be a symbol name",
        ),
        (
            "  %0 = pack(%x, %m) : f32[t, 4]\n",
            "op `pack` needs attribute `tokens`",
        ),
        (
            "  %0 = unpack<tokens=t>(%x, %m) : f32[b, s, 4]\n",
            "op `unpack` takes no attribute, but `tokens` was given",
        ),
        (
            "  %0 = packed_attention<scale=pow(2.0)>(%x, %x, %x, %m) : f32[b, s, 4]\n",
            "attribute `scale` of `packed_attention`: bad scale `pow(2.0)`",
        ),
    ] {
        let (n, message) = parse_err(&format!("{head}{line}}}\n"));
        assert_eq!(n, 2, "{line}: {message}");
        assert!(
            message.contains(want),
            "{line}: `{want}` not in `{message}`"
        );
    }
}

// ------------------------------------------------------------- the fused body's text form

/// A seeded splitmix64 generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn scalar_body<T: crate::tensor::Element>(v: T) -> Body {
    Body::Scalar(Tensor::scalar(v))
}

/// Asserts that `b` prints to text that parses back to `b`, and that this text prints back
/// unchanged.
fn body_round_trip(b: &Body) -> String {
    let text = b.to_string();
    let back = Body::parse(&text).unwrap_or_else(|e| panic!("`{text}`: {e}"));
    assert_eq!(&back, b, "`{text}`");
    assert_eq!(back.to_string(), text);
    text
}

/// A random body over `n` operands, at most `depth` ops deep.
fn random_body(r: &mut Rng, n: usize, depth: usize) -> Body {
    let leaf = |r: &mut Rng| match r.below(4) {
        0 => scalar_body(f32::from_bits(r.next() as u32 & 0x7f7f_ffff) * 1e-3),
        1 => scalar_body(r.next() as i64 >> r.below(64)),
        2 => scalar_body(r.below(2) == 0),
        _ => Body::Leaf(r.below(n)),
    };
    if depth == 0 {
        return leaf(r);
    }
    let sub = |r: &mut Rng| Box::new(random_body(r, n, depth - 1));
    match r.below(5) {
        0 => leaf(r),
        1 => Body::Unary(UnaryOp::ALL[r.below(UnaryOp::ALL.len())], sub(r)),
        2 => Body::Binary(BinaryOp::ALL[r.below(BinaryOp::ALL.len())], sub(r), sub(r)),
        3 => Body::Where(Box::new([*sub(r), *sub(r), *sub(r)])),
        _ => {
            const DTYPES: [DType; 9] = [
                DType::F32,
                DType::F64,
                DType::F16,
                DType::BF16,
                DType::I64,
                DType::I32,
                DType::I8,
                DType::U8,
                DType::Bool,
            ];
            Body::Cast(DTYPES[r.below(DTYPES.len())], sub(r))
        }
    }
}

#[test]
fn body_text_round_trips_every_op_and_scalar() {
    let x = || Box::new(Body::Leaf(0));
    let y = || Box::new(Body::Leaf(11));
    let mut bodies = vec![Body::Leaf(0), Body::Leaf(7)];
    bodies.extend(UnaryOp::ALL.map(|u| Body::Unary(u, x())));
    bodies.extend(BinaryOp::ALL.map(|b| Body::Binary(b, x(), y())));
    bodies.push(Body::Where(Box::new([Body::Leaf(2), *x(), *y()])));
    for d in [
        DType::F32,
        DType::F64,
        DType::F16,
        DType::BF16,
        DType::I64,
        DType::I32,
        DType::I8,
        DType::U8,
        DType::Bool,
    ] {
        bodies.push(Body::Cast(d, x()));
    }
    let f32s = [
        0.0f32,
        -0.0,
        1.0,
        -2.5,
        0.1,
        1e-12,
        f32::MIN_POSITIVE,
        f32::MIN_POSITIVE / 7.0,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        16_777_217.0,
        1e15,
        std::f32::consts::SQRT_2,
    ];
    bodies.extend(f32s.map(scalar_body));
    bodies.extend([0.1f64, -0.0, 1e300, 5e-324, f64::NEG_INFINITY].map(scalar_body));
    bodies.extend([0.1f32, 65504.0, -0.0, 6e-8].map(|v| scalar_body(f16::from_f32(v))));
    bodies.extend([0.1f32, 3e38, -1.5].map(|v| scalar_body(bf16::from_f32(v))));
    bodies.extend([i64::MIN, -1, 0, i64::MAX].map(scalar_body));
    bodies.extend([i32::MIN, i32::MAX].map(scalar_body));
    bodies.extend([i8::MIN, i8::MAX].map(scalar_body));
    bodies.extend([0u8, 255].map(scalar_body));
    bodies.extend([true, false].map(scalar_body));
    // Nested, as the optimiser writes them: the exact GELU times an operand.
    bodies.push(Body::Binary(
        BinaryOp::Mul,
        Box::new(Body::Binary(
            BinaryOp::Add,
            Box::new(Body::Unary(UnaryOp::Erf, x())),
            Box::new(scalar_body(1.0f32)),
        )),
        y(),
    ));
    for b in &bodies {
        body_round_trip(b);
    }
    assert_eq!(
        body_round_trip(&bodies[bodies.len() - 1]),
        "mul(add(erf($0), f32(1.0)), $11)"
    );
    assert_eq!(body_round_trip(&scalar_body(-0.0f32)), "f32(-0.0)");
    assert_eq!(body_round_trip(&scalar_body(u8::MAX)), "u8(255)");
    assert_eq!(body_round_trip(&scalar_body(true)), "bool(true)");
    assert_eq!(
        body_round_trip(&Body::Cast(DType::BF16, x())),
        "cast(bf16, $0)"
    );
}

#[test]
fn body_text_round_trips_random_bodies_and_f32_scalars() {
    let mut r = Rng(0x5eed);
    for _ in 0..2000 {
        let n = 1 + r.below(4);
        let b = random_body(&mut r, n, 4);
        body_round_trip(&b);
        assert!(b.operand_count() <= n);
    }
    // f32 scalars keep their bits, whatever they are (NaNs aside).
    for _ in 0..50_000 {
        let v = f32::from_bits(r.next() as u32);
        if !v.is_nan() {
            let b = scalar_body(v);
            let back = Body::parse(&b.to_string()).unwrap();
            match back {
                Body::Scalar(t) => assert_eq!(
                    t.as_slice::<f32>().unwrap()[0].to_bits(),
                    v.to_bits(),
                    "{b}"
                ),
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn body_text_tolerates_spaces() {
    assert_eq!(
        Body::parse("  mul( add( $0 ,f32( 1.0 ) ) ,  $1 ) ").unwrap(),
        Body::parse("mul(add($0, f32(1.0)), $1)").unwrap()
    );
}

#[test]
fn body_counts_operands_and_ops() {
    let b = Body::parse("where(less($0, f32(0.0)), mul($2, f32(0.01)), cast(f32, $0))").unwrap();
    assert_eq!((b.operand_count(), b.op_count()), (3, 4));
    let b = Body::parse("f32(1.0)").unwrap();
    assert_eq!((b.operand_count(), b.op_count()), (0, 0));
    let b = Body::parse("$4").unwrap();
    assert_eq!((b.operand_count(), b.op_count()), (5, 0));
}

#[test]
fn malformed_bodies_are_rejected_with_a_reason() {
    let cases: &[(&str, &str)] = &[
        // Unknown ops and dtypes.
        ("frobnicate($0)", "unknown op `frobnicate` in a fused body"),
        ("softmax($0)", "unknown op `softmax` in a fused body"),
        ("cast(q8, $0)", "unknown dtype `q8` in a fused cast"),
        // Argument counts.
        ("add($0)", "`add` in a fused body takes 2 arguments, got 1"),
        ("add()", "`add` in a fused body takes 2 arguments, got 0"),
        (
            "neg($0, $1)",
            "`neg` in a fused body takes 1 arguments, got 2",
        ),
        (
            "where($0, $1)",
            "`where` in a fused body takes 3 arguments, got 2",
        ),
        (
            "cast($0)",
            "`cast` in a fused body takes 2 arguments, got 1",
        ),
        (
            "f32(1.0, 2.0)",
            "`f32` in a fused body takes 1 arguments, got 2",
        ),
        // Scalars.
        ("f32(abc)", "bad float `abc`"),
        ("f32()", "`f32` in a fused body takes 1 arguments, got 0"),
        ("i64(1.5)", "bad integer `1.5`"),
        ("bool(1)", "bad bool `1`"),
        ("u8(256)", "bad u8 scalar `256`"),
        ("i8(-129)", "bad i8 scalar `-129`"),
        ("i32(2147483648)", "bad i32 scalar `2147483648`"),
        // Operands.
        ("$x", "bad operand `$x`"),
        ("$-1", "bad operand `$-1`"),
        ("$", "bad operand `$`"),
        ("", "expected `$k` or `op(..)`"),
        ("x", "expected `$k` or `op(..)`"),
        ("add($0, )", "expected `$k` or `op(..)`"),
        // Parentheses.
        ("neg($0", "unbalanced parentheses"),
        ("add($0, neg($1)", "unbalanced parentheses"),
        ("add(neg($0, $1)", "unbalanced parentheses"),
        ("neg($0))", "unbalanced parentheses"),
        ("add(neg($0)), $1)", "unbalanced parentheses"),
        ("neg($0) extra", "unbalanced parentheses"),
    ];
    let mut wrong = Vec::new();
    for (text, needle) in cases {
        match Body::parse(text) {
            Ok(b) => wrong.push(format!("`{text}` parsed as `{b}`")),
            Err(m) if !m.contains(needle) => {
                wrong.push(format!("`{text}`: `{m}` lacks `{needle}`"))
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_huge_operand_index_is_an_error_not_a_panic() {
    let text = format!(
        "graph(%x: f32[2]) {{\n  %0 = fused<body=${}>(%x) : f32[2]\n}}\n",
        usize::MAX
    );
    let (line, m) = parse_err(&text);
    assert_eq!(line, 2, "{m}");
    assert!(m.contains("fused"), "{m}");
}

#[test]
fn bad_fused_attributes_in_a_graph_name_the_attribute() {
    let head = "graph(%x: f32[b, 4], %y: f32[4, 3]) {\n";
    let cases: &[(&str, &str)] = &[
        (
            "  %0 = fused<body=frob($0)>(%x) : f32[b, 4]\n",
            "attribute `body` of `fused`: unknown op `frob`",
        ),
        (
            "  %0 = fused<body=add($0, $1)>(%x) : f32[b, 4]\n",
            "fused: takes Exact(2) operands, got 1",
        ),
        ("  %0 = fused(%x) : f32[b, 4]\n", "needs attribute `body`"),
        (
            "  %0 = gemm<activation=swish, bias=false>(%x, %y) : f32[b, 3]\n",
            "attribute `activation` of `gemm`: unknown activation `swish`",
        ),
        (
            "  %0 = gemm<activation=none>(%x, %y) : f32[b, 3]\n",
            "needs attribute `bias`",
        ),
        (
            "  %0 = gemm<activation=none, bias=false, perm_a=[1, x]>(%x, %y) : f32[b, 3]\n",
            "attribute `perm_a` of `gemm`",
        ),
        (
            "  %0 = gemm<activation=none, bias=false, perm_c=[1, 0]>(%x, %y) : f32[b, 3]\n",
            "op `gemm` has no attribute `perm_c`",
        ),
        (
            "  %0 = attention<scale=pow(2.0), mask=none, nan_filter=false>(%x, %x, %x) : f32[b, 4]\n",
            "attribute `scale` of `attention`: bad scale `pow(2.0)`",
        ),
        (
            "  %0 = attention<scale=mul(x), mask=none, nan_filter=false>(%x, %x, %x) : f32[b, 4]\n",
            "attribute `scale` of `attention`: invalid float literal",
        ),
        (
            "  %0 = rms_norm<axis=1>(%x, %x) : f32[b, 4]\n",
            "needs attribute `epsilon`",
        ),
        (
            "  %0 = add_layer_norm<axis=1, epsilon=e>(%x, %x, %x, %x) : f32[b, 4]\n",
            "attribute `epsilon` of `add_layer_norm`: bad value `e`",
        ),
    ];
    for (body, needle) in cases {
        let (l, m) = parse_err(&format!("{head}{body}}}\n"));
        assert_eq!((l, m.contains(needle)), (2, true), "{body}: line {l}: {m}");
    }
}

#[test]
fn score_scale_parses_its_text_form() {
    use crate::fused::ScoreScale;
    let cases = [
        ("none", ScoreScale::None),
        ("  none ", ScoreScale::None),
        ("mul(0.125)", ScoreScale::Mul(0.125)),
        ("div(8.0)", ScoreScale::Div(8.0)),
        ("div(8)", ScoreScale::Div(8.0)),
        ("mul( -1e-3 )", ScoreScale::Mul(-1e-3)),
        ("div(inf)", ScoreScale::Div(f32::INFINITY)),
    ];
    for (text, want) in cases {
        assert_eq!(ScoreScale::parse(text), Ok(want), "`{text}`");
    }
    for s in [
        ScoreScale::None,
        ScoreScale::Mul(0.125),
        ScoreScale::Div(8.0),
        ScoreScale::Mul(1.0 / 3.0),
        ScoreScale::Div(f32::MIN_POSITIVE / 3.0),
        ScoreScale::Mul(-0.0),
        ScoreScale::Div(f32::MAX),
        ScoreScale::Mul(1e15),
    ] {
        let text = s.to_string();
        let back = ScoreScale::parse(&text).unwrap();
        assert_eq!(format!("{back:?}"), format!("{s:?}"), "`{text}`");
    }
    assert_eq!(ScoreScale::Div(8.0).to_string(), "div(8.0)");
    assert_eq!(ScoreScale::Mul(0.125).to_string(), "mul(0.125)");
    assert_eq!(ScoreScale::default(), ScoreScale::None);
    for (text, needle) in [
        ("", "bad scale ``"),
        ("None", "bad scale `None`"),
        (
            "pow(2.0)",
            "bad scale `pow(2.0)`: expected `none`, `mul(C)` or `div(C)`",
        ),
        ("mul", "bad scale `mul`"),
        ("mul(0.5", "bad scale `mul(0.5`"),
        ("mul 0.5", "bad scale `mul 0.5`"),
        ("mul(x)", "invalid float literal"),
        ("div()", "empty string"),
    ] {
        match ScoreScale::parse(text) {
            Ok(s) => panic!("`{text}` parsed as {s:?}"),
            Err(m) => assert!(m.contains(needle), "`{text}`: `{m}` lacks `{needle}`"),
        }
    }
}
