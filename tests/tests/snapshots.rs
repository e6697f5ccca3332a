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

/// The optimiser's report on `model` (rules fired, e-graph per iteration, stop reason,
/// costs; not the time, which varies), then the optimised IR.
fn optimised_with_report(dir: &tcc_tests::ModelDir) -> String {
    let path = dir.model_path();
    let mut graph = tcc_onnx::import_file_with(&path, &dir.options)
        .unwrap_or_else(|e| panic!("import of {} failed: {e}", path.display()));
    let (mut pm, explanation) =
        tcc_passes::PassManager::with_optimiser(tcc_passes::egraph::Config::default());
    pm.run(&mut graph)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.name));
    let e = explanation
        .lock()
        .expect("not poisoned")
        .clone()
        .expect("the egraph pass ran");
    let mut report = String::new();
    for line in e.to_string().lines() {
        let line = match line.find(" time=") {
            Some(i) => {
                let rest = &line[i + 1..];
                let after = rest.find(" cost_before").map(|j| &rest[j..]).unwrap_or("");
                format!("{}{after}", &line[..i])
            }
            None => line.to_string(),
        };
        report.push_str("# ");
        report.push_str(&line);
        report.push('\n');
    }
    format!("{report}{}", tcc_ir::text::print(&graph))
}

/// The optimised IR of every shared model and of one zoo model per family, with the
/// optimiser's report: a rule that stops firing, or fires differently, shows as a diff.
#[test]
fn optimised_models_with_the_optimisers_report() {
    let mut dirs = tcc_tests::discover_models();
    let zoo = tcc_tests::discover_zoo();
    for family in [
        "bert-ts17",
        "bert-ts14",
        "distilbert-dynamo18",
        "roberta-ts17",
        "albert-ts17",
        "t5enc-ts17",
        "gpt2-ts17",
        "gpt2-dynamo23",
        "vit-ts17",
    ] {
        let d = zoo
            .iter()
            .find(|m| m.name == family)
            .unwrap_or_else(|| panic!("tests/zoo/{family} is missing"));
        dirs.push(d.clone());
    }
    for dir in &dirs {
        insta::assert_snapshot!(format!("egraph_{}", dir.name), optimised_with_report(dir));
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
