//! Snapshots of the IR text of real models, as imported and after the
//! default pass pipeline.
//!
//! The `.snap` files under `snapshots/` are expectations, read and accepted
//! by hand (`cargo insta review`, or `INSTA_UPDATE=always` once and then a
//! careful read): a change in the importer or a pass shows here as a diff.

use tcc_tests::{import_and_optimise, model_dir};

/// The text form of `model` as imported, with no pass run.
fn imported(model: &str) -> String {
    let path = model_dir(model).model_path();
    match tcc_onnx::import_file(&path) {
        Ok(g) => tcc_ir::text::print(&g),
        Err(e) => panic!("import of {} failed: {e}", path.display()),
    }
}

/// The text form of `model` after the default pass pipeline.
fn optimised(model: &str) -> String {
    match import_and_optimise(&model_dir(model)) {
        Ok(g) => tcc_ir::text::print(&g),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn bert_tiny_imported() {
    insta::assert_snapshot!(imported("bert-tiny"));
}

#[test]
fn bert_tiny_optimised() {
    insta::assert_snapshot!(optimised("bert-tiny"));
}

#[test]
fn linear_attn_imported() {
    insta::assert_snapshot!(imported("linear-attn"));
}

#[test]
fn linear_attn_optimised() {
    insta::assert_snapshot!(optimised("linear-attn"));
}

/// Every symbol in a reshape or expand target of `graph`, and in any node's
/// result type, must be one that the graph's inputs bind: a reshape target
/// written in terms of a fresh symbol could not be evaluated at run time.
/// Returns one message per offending node.
fn foreign_symbols(graph: &tcc_ir::Graph) -> Vec<String> {
    let bound = graph.input_symbols();
    let mut bad = Vec::new();
    for id in graph.node_ids() {
        let node = graph.node(id);
        let mut dims: Vec<&tcc_ir::Dim> = node.ty.shape.dims().iter().collect();
        if let tcc_ir::Op::Reshape { shape } | tcc_ir::Op::Expand { shape } = &node.op {
            dims.extend(shape.dims());
        }
        for d in dims {
            for s in d.symbols() {
                if !bound.contains(&s) {
                    bad.push(format!(
                        "node {} ({}, from {:?}) uses symbol `{s}`, which no input binds",
                        id.index(),
                        node.op.name(),
                        node.origin
                    ));
                }
            }
        }
    }
    bad
}

#[test]
fn shapes_use_only_input_symbols() {
    for model in ["bert-tiny", "linear-attn"] {
        let dir = model_dir(model);
        let imported = tcc_onnx::import_file(&dir.model_path())
            .unwrap_or_else(|e| panic!("import of {model} failed: {e}"));
        let bad = foreign_symbols(&imported);
        assert!(bad.is_empty(), "{model} as imported:\n{}", bad.join("\n"));
        let optimised = import_and_optimise(&dir).unwrap_or_else(|e| panic!("{e}"));
        let bad = foreign_symbols(&optimised);
        assert!(bad.is_empty(), "{model} optimised:\n{}", bad.join("\n"));
    }
}

#[test]
fn no_shape_chain_is_left_after_the_pipeline() {
    for model in ["bert-tiny", "linear-attn"] {
        let graph = import_and_optimise(&model_dir(model)).unwrap_or_else(|e| panic!("{e}"));
        let left: Vec<String> = graph
            .node_ids()
            .into_iter()
            .filter(|&id| matches!(graph.op(id), tcc_ir::Op::ShapeOf { .. }))
            .map(|id| format!("node {} from {:?}", id.index(), graph.node(id).origin))
            .collect();
        assert!(
            left.is_empty(),
            "{model}: shape nodes left after the default pipeline: {}",
            left.join(", ")
        );
    }
}
