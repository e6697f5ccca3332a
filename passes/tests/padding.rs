//! Padding elimination's ops in the passes: the e-graph takes a graph with `pack`, `unpack`
//! and `packed_attention` in and gives it back unchanged (with no rules, and through the whole
//! pipeline, where the rules fuse around them), rule patterns can name them, `fold-constants`
//! leaves them alone, and the cost model prices packed attention by the real tokens.

use std::collections::HashMap;
use tcc_ir::{interp, text, verify::verify, DType, Dim, Graph, Op, ScoreScale, Tensor, TensorType};
use tcc_passes::egraph::{convert, cost::repeats, extract, CostModel};
use tcc_passes::{FoldConstants, Pass};

/// A packed layer: the real tokens of `x` go through a projection and attention within each
/// sequence, then back to the padded layout.
const LAYER: &str = "graph(%x: f32[batch, seq, 8], %m: i64[batch, seq]) {
  %0 = pack<tokens=tokens>(%x, %m) : f32[tokens, 8]
  %1 = const @\"wq\" : f32[8, 8]
  %2 = matmul(%0, %1) : f32[tokens, 8]
  %3 = const @\"bq\" : f32[8]
  %4 = add(%2, %3) : f32[tokens, 8]
  %5 = reshape<shape=[tokens, 2, 4]>(%4) : f32[tokens, 2, 4]
  %6 = packed_attention<scale=div(2.0)>(%5, %5, %5, %m) : f32[tokens, 2, 4]
  %7 = reshape<shape=[tokens, 8]>(%6) : f32[tokens, 8]
  %8 = unpack(%7, %m) : f32[batch, seq, 8]
  return %y = %8
}";

fn weight(name: &str) -> Option<Tensor> {
    let (shape, n) = match name {
        "wq" => (vec![8, 8], 64),
        "bq" => (vec![8], 8),
        _ => return None,
    };
    let v = (0..n)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 16.0)
        .collect();
    Tensor::from_vec(shape, v).ok()
}

fn layer() -> Graph {
    let g = text::parse(LAYER, &weight).expect("the layer parses");
    verify(&g).expect("the layer verifies");
    g
}

/// The layer's output on a batch of 3 sequences of 5, one padded whole, the others left-
/// and right-padded.
fn run_layer(g: &Graph) -> Tensor {
    let x: Vec<f32> = (0..3 * 5 * 8)
        .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
        .collect();
    let m: Vec<i64> = vec![1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1];
    let inputs: HashMap<String, Tensor> = [
        ("x".to_string(), Tensor::from_vec(vec![3, 5, 8], x).unwrap()),
        ("m".to_string(), Tensor::from_vec(vec![3, 5], m).unwrap()),
    ]
    .into_iter()
    .collect();
    interp::run(g, &inputs).expect("the layer runs").remove(0).1
}

#[test]
fn the_egraph_gives_padding_ops_back_unchanged() {
    let g = layer();
    let loaded = convert::to_egraph(&g);
    let extraction = extract::extract(&loaded.egraph, &CostModel::default(), &loaded.outputs);
    let back = convert::from_egraph(&loaded, &extraction.choice, &g).expect("rebuilds");
    verify(&back).expect("the rebuilt graph verifies");
    assert_eq!(text::print(&back), text::print(&g));
}

#[test]
fn the_pipeline_keeps_padding_ops_and_their_results() {
    let g = layer();
    let want = run_layer(&g);
    let mut opt = g.clone();
    tcc_passes::optimize(&mut opt).expect("the pipeline runs");
    verify(&opt).expect("the optimised graph verifies");
    let printed = text::print(&opt);
    for needle in [
        "pack<tokens=tokens>(%x, %m) : f32[tokens, 8]",
        "packed_attention<scale=div(2.0)>(",
        "unpack(",
        // The projection's epilogue fuses on the packed tokens as on padded ones.
        "gemm<activation=none, bias=true>(%0, ",
    ] {
        assert!(printed.contains(needle), "`{needle}` is not in:\n{printed}");
    }
    let got = run_layer(&opt);
    assert_eq!(got.shape(), want.shape());
    assert!(
        got.data().to_le_bytes() == want.data().to_le_bytes(),
        "the optimised layer computes other values:\n{printed}"
    );
}

#[test]
fn fold_constants_leaves_padding_ops_alone() {
    // `unpack` of constants has a constant type, and would fold but for the rule.
    let text = "graph() {
  %0 = const [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] : f32[3, 2]
  %1 = const [true, false, true, true] : bool[2, 2]
  %2 = unpack(%0, %1) : f32[2, 2, 2]
  %3 = pack<tokens=t>(%2, %1) : f32[t, 2]
  %4 = reshape<shape=[t, 1, 2]>(%3) : f32[t, 1, 2]
  %5 = packed_attention<scale=none>(%4, %4, %4, %1) : f32[t, 1, 2]
  return %u = %2
  return %a = %5
}";
    let mut g = text::parse(text, &|_| None).unwrap();
    verify(&g).unwrap();
    assert!(!FoldConstants.run(&mut g).unwrap(), "{}", text::print(&g));
    assert_eq!(
        text::print(&g),
        text::parse(text, &|_| None)
            .map(|g| text::print(&g))
            .unwrap()
    );
}

#[test]
fn packed_attention_costs_attention_over_the_real_tokens() {
    // 768 real tokens in 8 sequences of 384: each query sees 96 keys on average, not 384.
    let (b, s, tokens, h, d) = (8.0, 384.0, 768.0, 12.0, 64.0);
    let model = CostModel {
        hints: [("batch", 8), ("seq", 384), ("tokens", 768)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        ..CostModel::default()
    };
    let t = |dtype: DType, dims: &[&str]| {
        let dims: Vec<Dim> = dims
            .iter()
            .map(|d| {
                d.parse::<i64>()
                    .map(Dim::constant)
                    .unwrap_or_else(|_| Dim::sym(d))
            })
            .collect();
        TensorType::new(dtype, dims)
    };
    let time = |flops: f64, bytes: f64| {
        (flops / model.peak()).max(bytes / model.bandwidth) + model.launch_ns
    };
    let mask = t(DType::I64, &["batch", "seq"]);
    let packed = t(DType::F32, &["tokens", "12", "64"]);
    let packed_cost = model.op_cost(
        &Op::PackedAttention {
            scale: ScoreScale::Div(8.0),
        },
        &[&packed, &packed, &packed, &mask],
        &repeats(&[0, 1, 2, 3]),
        &packed,
    );
    // Per score `2 (d + dv)` flops and 10 for the softmax; q, k, v, the mask and the result
    // move once.
    let want = time(
        tokens * h * (tokens / b) * (2.0 * (d + d) + 10.0),
        4.0 * tokens * h * d * 4.0 + b * s * 8.0,
    );
    assert!(
        (packed_cost - want).abs() < 1e-6 * want,
        "{packed_cost} ns, want {want}"
    );

    // The padded batch's attention costs more, by the ratio of the scores (16) at these
    // compute-bound sizes.
    let q = t(DType::F32, &["batch", "12", "seq", "64"]);
    let kt = t(DType::F32, &["batch", "12", "64", "seq"]);
    let bool_mask = t(DType::Bool, &["batch", "1", "1", "seq"]);
    let padded_cost = model.op_cost(
        &Op::Attention {
            scale: ScoreScale::Div(8.0),
            mask: tcc_ir::AttentionMask::Bool,
            nan_filter: false,
            zero_where: false,
            causal: false,
            causal_min: false,
            perm_q: None,
            perm_k: None,
            perm_v: None,
            perm_out: None,
        },
        &[&q, &kt, &q, &bool_mask],
        &repeats(&[0, 1, 2, 3]),
        &q,
    );
    let ratio = (padded_cost - model.launch_ns) / (packed_cost - model.launch_ns);
    assert!(
        (ratio - 16.0).abs() < 1e-9,
        "packed {packed_cost} ns, padded {padded_cost} ns"
    );

    // pack and unpack only move bytes: the operands read once, the result written.
    let x = t(DType::F32, &["batch", "seq", "768"]);
    let rows = t(DType::F32, &["tokens", "768"]);
    let pack = Op::Pack {
        tokens: "tokens".into(),
    };
    let moved = b * s * 768.0 * 4.0 + b * s * 8.0 + tokens * 768.0 * 4.0;
    let cost = model.op_cost(&pack, &[&x, &mask], &repeats(&[0, 1]), &rows);
    assert!((cost - time(0.0, moved)).abs() < 1e-6, "pack: {cost} ns");
    let cost = model.op_cost(&Op::Unpack, &[&rows, &mask], &repeats(&[0, 1]), &x);
    assert!((cost - time(0.0, moved)).abs() < 1e-6, "unpack: {cost} ns");
}

#[test]
fn patterns_name_the_padding_ops() {
    // Rules will name them: `pack` and `packed_attention` (with attributes) as wildcards of
    // their name, `unpack` (without) exactly; each matches the layer's one node.
    use tcc_passes::egraph::egg::{Pattern, Searcher};
    use tcc_passes::egraph::lang::ENode;
    let mut egraph = convert::to_egraph(&layer()).egraph;
    egraph.rebuild(); // Searching goes through the index of classes by op that this builds.
    for pattern in [
        "(pack ?x ?m)",
        "(unpack ?y ?m)",
        "(packed_attention ?q ?k ?v ?m)",
    ] {
        let p: Pattern<ENode> = pattern.parse().unwrap_or_else(|e| panic!("{pattern}: {e}"));
        assert_eq!(p.search(&egraph).len(), 1, "{pattern}");
    }
}

/// `remove-padding` refuses, naming it, an output that is not one row per token (a pooler's
/// `[batch, hidden]` reads across the sequence, padded positions included).
#[test]
fn an_output_across_the_sequence_is_refused() {
    let text = r#"graph(%x: f32[b, s, 8], %m: i64[b, s]) {
  %k = transpose<perm=[0, 2, 1]>(%x) : f32[b, 8, s]
  %sc = matmul(%x, %k) : f32[b, s, s]
  %r = reshape<shape=[b, 1, s]>(%m) : i64[b, 1, s]
  %f = cast<to=f32>(%r) : f32[b, 1, s]
  %one = const [1.0] : f32[]
  %inv = sub(%one, %f) : f32[b, 1, s]
  %min = const [-3.4028235e38] : f32[]
  %add = mul(%inv, %min) : f32[b, 1, s]
  %a = add(%sc, %add) : f32[b, s, s]
  %p = softmax<axis=2>(%a) : f32[b, s, s]
  %o = matmul(%p, %x) : f32[b, s, 8]
  %first = slice<axes=[1], starts=[0], ends=[1], steps=[1]>(%o) : f32[b, 1, 8]
  %pooled = reshape<shape=[b, 8]>(%first) : f32[b, 8]
  return %hidden = %o
  return %pooled = %pooled
}"#;
    let mut graph = tcc_ir::text::parse(text, &|_| None).expect("parses");
    let e = tcc_passes::RemovePadding::default()
        .run(&mut graph)
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("the output `pooled`") && e.contains("not one row per token"),
        "{e}"
    );
}
