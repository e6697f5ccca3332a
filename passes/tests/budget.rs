//! The size budget of folding: graphs whose constant nodes would be huge to evaluate go
//! through `fold-constants` and the whole default pipeline with those nodes left for run time,
//! in bounded memory and time, and without an abort.

use std::sync::Arc;
use tcc_ir::{text, BinaryOp, DType, Graph, NodeId, Op, Shape, Tensor};
use tcc_passes::{FoldConstants, Pass, PassManager, FOLD_MAX_ELEMENTS, FOLD_MAX_WORK};

fn parse(input: &str) -> Graph {
    text::parse(input, &|_| None).unwrap_or_else(|e| panic!("bad test input: {e}"))
}

/// The node an output names.
fn output(g: &Graph, name: &str) -> NodeId {
    g.outputs()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, id)| *id)
        .unwrap_or_else(|| panic!("no output `{name}`"))
}

/// True if the node the output `name` refers to was folded into a constant.
fn folded(g: &Graph, name: &str) -> bool {
    matches!(g.op(output(g, name)), Op::Const(_))
}

/// The largest constant in the graph, in elements.
fn largest_constant(g: &Graph) -> usize {
    g.node_ids()
        .into_iter()
        .filter_map(|id| g.const_value(id).map(|t| t.len()))
        .max()
        .unwrap_or(0)
}

#[test]
fn huge_ranges_go_through_the_pipeline_unfolded() {
    // Range(0, 2^31, 1) as f32, as the importer writes an integer range and a cast, then
    // arithmetic on it; and the whole i64 span, whose length does not fit the element count.
    let mut g = parse(
        "graph() {
  %0 = range<dtype=i64, start=0, limit=2147483648, delta=1> : i64[2147483648]
  %1 = cast<to=f32>(%0) : f32[2147483648]
  %2 = const [2.0] : f32[]
  %3 = mul(%1, %2) : f32[2147483648]
  %4 = range<dtype=i64, start=0, limit=9223372036854775807, delta=1> : i64[9223372036854775807]
  %5 = const [3] : i64[]
  %6 = add(%4, %5) : i64[9223372036854775807]
  return %y = %3
  return %z = %6
}",
    );
    let report = PassManager::default_pipeline()
        .run(&mut g)
        .unwrap_or_else(|e| panic!("the pipeline failed: {e}"));
    assert!(!folded(&g, "y") && !folded(&g, "z"), "{}", text::print(&g));
    assert!(largest_constant(&g) <= 1, "{}", text::print(&g));
    // Both ranges are still there, for run time.
    let ranges = g
        .node_ids()
        .into_iter()
        .filter(|&id| matches!(g.op(id), Op::Range { .. }))
        .count();
    assert_eq!(ranges, 2, "{}", text::print(&g));
    assert!(report.passes.iter().any(|p| p.name == "fold-constants"));
}

#[test]
fn expanding_a_constant_to_a_huge_shape_is_not_folded() {
    // ConstantOfShape([65536, 65536]) as the importer lowers it, and a shape whose element
    // count overflows.
    let mut g = parse(
        "graph() {
  %0 = const [1.5] : f32[]
  %1 = expand<shape=[65536, 65536]>(%0) : f32[65536, 65536]
  %2 = neg(%1) : f32[65536, 65536]
  %3 = expand<shape=[4294967296, 4294967296, 4294967296]>(%0) : f32[4294967296, 4294967296, 4294967296]
  return %y = %2
  return %z = %3
}",
    );
    PassManager::default_pipeline()
        .run(&mut g)
        .unwrap_or_else(|e| panic!("the pipeline failed: {e}"));
    assert!(!folded(&g, "y") && !folded(&g, "z"), "{}", text::print(&g));
    assert!(largest_constant(&g) <= 1);
}

/// A graph `y = op(a, b)` of two constants.
fn binary_of_constants(op: Op, a: Tensor, b: Tensor) -> Graph {
    let mut g = Graph::new();
    let a = g.add_const(a, None);
    let b = g.add_const(b, None);
    let y = g.add(op, &[a, b]).expect("well typed");
    g.add_output("y", y);
    g
}

#[test]
fn a_result_over_the_element_limit_is_left_for_run_time() {
    // Folding would not grow the model (the result is no larger than its operands), but the
    // result is over the limit: it stays a node.
    let n = FOLD_MAX_ELEMENTS + 1;
    let big = Tensor::zeros(DType::F32, vec![n]);
    let mut g = binary_of_constants(Op::Binary(BinaryOp::Add), big.clone(), big);
    assert!(!FoldConstants.run(&mut g).expect("fold"));
    assert!(!folded(&g, "y"));
    // At the limit, it folds.
    let at = Tensor::zeros(DType::F32, vec![FOLD_MAX_ELEMENTS]);
    let mut g = binary_of_constants(Op::Binary(BinaryOp::Add), at.clone(), at);
    assert!(FoldConstants.run(&mut g).expect("fold"));
    assert!(folded(&g, "y"));
}

#[test]
fn a_product_over_the_work_limit_is_left_for_run_time() {
    // 2048^3 = 2^33 multiply-adds, over the 2^30 limit, though the result is small.
    assert!(2048u64.pow(3) > FOLD_MAX_WORK);
    let a = Tensor::zeros(DType::F32, vec![2048, 2048]);
    let mut g = binary_of_constants(Op::MatMul, a.clone(), a);
    assert!(!FoldConstants.run(&mut g).expect("fold"));
    assert!(!folded(&g, "y"));
    // 512^3 = 2^27 multiply-adds fold.
    let a = Tensor::zeros(DType::F32, vec![512, 512]);
    let mut g = binary_of_constants(Op::MatMul, a.clone(), a);
    assert!(FoldConstants.run(&mut g).expect("fold"));
    let y = output(&g, "y");
    let value: &Arc<Tensor> = g.const_value(y).expect("folded");
    assert_eq!(value.shape(), &[512, 512]);
    assert_eq!(g.ty(y).shape, Shape::fixed(&[512, 512]));
}
