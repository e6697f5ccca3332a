//! Tests of the text form: round trips, exact constants, elision and errors.

use super::*;
use crate::dim::Dim;
use crate::dtype::DType;
use crate::error::Error;
use crate::op::{BinaryOp, ReduceKind, UnaryOp};
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
