//! One test per rewrite: IR text in, one pass, the printed result compared with
//! an insta snapshot that shows the graph before and after.

use tcc_ir::{text, verify::verify};
use tcc_passes::{DeadCode, FoldConstants, FoldShapes, Pass, Simplify};

/// Parses `input`, runs `pass` once, verifies the result and returns the
/// text before and after, with whether the pass said it changed anything.
fn check(pass: &dyn Pass, input: &str) -> String {
    let mut g = text::parse(input, &|_| None).unwrap_or_else(|e| panic!("bad test input: {e}"));
    let before = text::print(&g);
    let changed = pass
        .run(&mut g)
        .unwrap_or_else(|e| panic!("{}: {e}", pass.name()));
    verify(&g).unwrap_or_else(|e| panic!("{} broke the graph: {e}", pass.name()));
    let after = text::print(&g);
    if !changed {
        assert_eq!(after, before, "{} said it changed nothing", pass.name());
    }
    format!(
        "# before\n{before}\n# after {} (changed: {changed})\n{after}",
        pass.name()
    )
}

// fold-shapes

#[test]
fn fold_shapes_turns_shape_arithmetic_into_dims() {
    insta::assert_snapshot!(check(
        &FoldShapes,
        "graph(%x: f32[batch, seq, 128]) {
  %0 = shape<start=0, end=3>(%x) : i64[3]
  %1 = const [2] : i64[1]
  %2 = gather<axis=0>(%0, %1) : i64[1]
  %3 = const [2] : i64[]
  %4 = div(%2, %3) : i64[1]
  %5 = slice<axes=[0], starts=[0], ends=[2], steps=[1]>(%0) : i64[2]
  %6 = concat<axis=0>(%5, %4) : i64[3]
  %7 = mul(%x, %x) : f32[batch, seq, 128]
  return %dims = %6
  return %y = %7
}"
    ));
}

#[test]
fn fold_shapes_makes_constants_when_every_element_is_a_number() {
    insta::assert_snapshot!(check(
        &FoldShapes,
        "graph(%x: f32[batch, 4, 8]) {
  %0 = shape<start=1, end=3>(%x) : i64[2]
  %1 = cast<to=i32>(%0) : i32[2]
  %2 = const [4, 9] : i64[2]
  %3 = equal(%0, %2) : bool[2]
  return %s = %1
  return %e = %3
}"
    ));
}

#[test]
fn fold_shapes_leaves_unknown_values_and_floats() {
    insta::assert_snapshot!(check(
        &FoldShapes,
        "graph(%x: f32[batch, 4], %ids: i64[batch]) {
  %0 = neg(%ids) : i64[batch]
  %1 = shape<start=1, end=2>(%x) : i64[1]
  %2 = cast<to=f32>(%1) : f32[1]
  %3 = range<dtype=i64, start=0, limit=4, delta=1> : i64[4]
  return %a = %0
  return %b = %2
  return %c = %3
}"
    ));
}

// fold-constants (needs the interpreter)

#[test]
fn fold_constants_evaluates_chains_of_constants() {
    insta::assert_snapshot!(check(
        &FoldConstants,
        "graph(%x: f32[batch, 2]) {
  %0 = const [1.0, 2.0] : f32[2]
  %1 = const [0.5] : f32[]
  %2 = mul(%0, %1) : f32[2]
  %3 = neg(%2) : f32[2]
  %4 = add(%x, %3) : f32[batch, 2]
  %5 = const [1, 2, 3, 4, 5, 6] : i64[2, 3]
  %6 = transpose<perm=[1, 0]>(%5) : i64[3, 2]
  %7 = cast<to=f32>(%6) : f32[3, 2]
  return %y = %4
  return %t = %7
}"
    ));
}

#[test]
fn fold_constants_leaves_symbols_inputs_and_large_results() {
    insta::assert_snapshot!(check(
        &FoldConstants,
        "graph(%x: f32[batch, 2]) {
  %0 = const [1.0, 2.0] : f32[2]
  %1 = expand<shape=[batch, 2]>(%0) : f32[batch, 2]
  %2 = add(%x, %0) : f32[batch, 2]
  %3 = const [0.5] : f32[]
  %4 = expand<shape=[64, 128]>(%3) : f32[64, 128]
  return %a = %1
  return %b = %2
  return %c = %4
}"
    ));
}

// simplify

#[test]
fn simplify_removes_no_ops() {
    insta::assert_snapshot!(check(
        &Simplify,
        "graph(%x: f32[batch, seq, 8]) {
  %0 = reshape<shape=[batch, seq, 8]>(%x) : f32[batch, seq, 8]
  %1 = transpose<perm=[0, 1, 2]>(%0) : f32[batch, seq, 8]
  %2 = cast<to=f32>(%1) : f32[batch, seq, 8]
  %3 = expand<shape=[1, 8]>(%2) : f32[batch, seq, 8]
  %4 = slice<axes=[1, 2], starts=[0, 0], ends=[seq, 8], steps=[1, 1]>(%3) : f32[batch, seq, 8]
  %5 = neg(%4) : f32[batch, seq, 8]
  return %y = %5
  return %z = %4
}"
    ));
}

#[test]
fn simplify_keeps_ops_that_do_something() {
    insta::assert_snapshot!(check(
        &Simplify,
        "graph(%x: f32[batch, seq, 8]) {
  %0 = reshape<shape=[batch, seq, 2, 4]>(%x) : f32[batch, seq, 2, 4]
  %1 = transpose<perm=[1, 0, 2]>(%x) : f32[seq, batch, 8]
  %2 = cast<to=f16>(%x) : f16[batch, seq, 8]
  %3 = expand<shape=[2, batch, seq, 8]>(%x) : f32[2, batch, seq, 8]
  %4 = slice<axes=[1], starts=[1], ends=[seq], steps=[1]>(%x) : f32[batch, seq - 1, 8]
  %5 = slice<axes=[2], starts=[7], ends=[-1], steps=[-1]>(%x) : f32[batch, seq, 8]
  return %a = %0
  return %b = %1
  return %c = %2
  return %d = %3
  return %e = %4
  return %f = %5
}"
    ));
}

#[test]
fn simplify_merges_reshape_chains() {
    insta::assert_snapshot!(check(
        &Simplify,
        "graph(%x: f32[batch, seq, 8]) {
  %0 = reshape<shape=[batch, seq, 2, 4]>(%x) : f32[batch, seq, 2, 4]
  %1 = reshape<shape=[batch*seq, 8]>(%0) : f32[batch*seq, 8]
  %2 = reshape<shape=[batch*seq*8]>(%1) : f32[8*batch*seq]
  %3 = reshape<shape=[batch, seq, 2, 4]>(%x) : f32[batch, seq, 2, 4]
  %4 = reshape<shape=[batch, seq, 8]>(%3) : f32[batch, seq, 8]
  %5 = neg(%4) : f32[batch, seq, 8]
  return %flat = %2
  return %same = %5
  return %inner = %0
}"
    ));
}

#[test]
fn simplify_keeps_reshapes_and_expands_whose_sizes_a_run_checks() {
    // Back to x's shape through [4096, 4096], and [5] expanded by a target [t]: both type as
    // no-ops, but a run must check 8*batch*seq = 16777216 and t in {1, 5}, which merging or
    // dropping them would lose. An expand by [1] does nothing and goes.
    insta::assert_snapshot!(check(
        &Simplify,
        "graph(%x: f32[batch, seq, 8], %y: f32[5], %z: f32[t]) {
  %0 = reshape<shape=[4096, 4096]>(%x) : f32[4096, 4096]
  %1 = reshape<shape=[batch, seq, 8]>(%0) : f32[batch, seq, 8]
  %2 = expand<shape=[t]>(%y) : f32[5]
  %3 = expand<shape=[1]>(%y) : f32[5]
  return %back = %1
  return %checked = %2
  return %free = %3
}"
    ));
}

#[test]
fn simplify_composes_transposes() {
    insta::assert_snapshot!(check(
        &Simplify,
        "graph(%x: f32[a, b, c]) {
  %0 = transpose<perm=[1, 2, 0]>(%x) : f32[b, c, a]
  %1 = transpose<perm=[1, 2, 0]>(%0) : f32[c, a, b]
  %2 = transpose<perm=[0, 2, 1]>(%x) : f32[a, c, b]
  %3 = transpose<perm=[0, 2, 1]>(%2) : f32[a, b, c]
  %4 = neg(%3) : f32[a, b, c]
  return %composed = %1
  return %cancelled = %4
}"
    ));
}

#[test]
fn simplify_keeps_a_no_op_whose_known_value_differs() {
    // `transpose` does not carry known values, its operand does: forwarding
    // would change what the user was typed against, so the node stays.
    insta::assert_snapshot!(check(
        &Simplify,
        "graph(%x: f32[batch, 4]) {
  %0 = shape<start=0, end=2>(%x) : i64[2]
  %1 = transpose<perm=[0]>(%0) : i64[2]
  %2 = neg(%1) : i64[2]
  %3 = cast<to=i64>(%0) : i64[2]
  %4 = neg(%3) : i64[2]
  return %t = %2
  return %c = %4
}"
    ));
}

// dead-code

#[test]
fn dead_code_removes_what_no_output_needs() {
    insta::assert_snapshot!(check(
        &DeadCode,
        "graph(%x: f32[4], %unused: f32[4]) {
  %0 = neg(%x) : f32[4]
  %1 = exp(%0) : f32[4]
  %2 = const [1.0] : f32[]
  %3 = add(%1, %2) : f32[4]
  %4 = abs(%x) : f32[4]
  return %y = %0
  return %z = %4
}"
    ));
}

#[test]
fn dead_code_reports_no_change_on_a_live_graph() {
    insta::assert_snapshot!(check(
        &DeadCode,
        "graph(%x: f32[4]) {
  %0 = neg(%x) : f32[4]
  return %y = %0
  return %x = %x
}"
    ));
}
