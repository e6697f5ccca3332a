//! The key-mask analysis (`tcc_passes::key_mask`) on every exporter's attention mask: in
//! each encoder of ../shared and tests/zoo, after the cleanup passes, every softmax reads
//! `scores + M` where `M` is recognised as an additive key-padding mask of the input
//! `attention_mask` (0 at real keys, at most -1e4 at padded ones, batch first and keys last),
//! whichever way the exporter built it (a gather of the flattened mask at `b * seq + j`, a
//! `gather_nd` at `(b, j)` index pairs, `where(mask, 0, min)`); in the causal GPT-2 exports,
//! where the mask also holds the causal triangle, in T5, whose mask is added to the relative
//! position bias, and in linear-attn, which has no softmax over a mask, none is.

use tcc_ir::{BinaryOp, Graph, NodeId, Op};
use tcc_passes::key_mask;

/// The graph after import and the passes that run before the optimiser.
fn cleaned(model: &tcc_tests::ModelDir) -> Graph {
    let mut graph = tcc_onnx::import_file_with(&model.model_path(), &model.options)
        .unwrap_or_else(|e| panic!("{}: {e}", model.name));
    tcc_passes::PassManager::with_passes(&[
        "fold-shapes",
        "fold-constants",
        "simplify",
        "dead-code",
    ])
    .unwrap()
    .run(&mut graph)
    .unwrap_or_else(|e| panic!("{}: {e}", model.name));
    graph
}

/// Per softmax fed by an add: the add's operand that is not the scores' product (the one
/// whose analysis recognises, or the second), and the softmax input's rank.
fn softmax_masks(graph: &Graph) -> Vec<(NodeId, NodeId, usize)> {
    let mut out = Vec::new();
    for id in graph.topo_order() {
        if !matches!(graph.op(id), Op::Softmax { .. }) {
            continue;
        }
        let x = graph.operands(id)[0];
        if matches!(graph.op(x), Op::Binary(BinaryOp::Add)) {
            let ops = graph.operands(x);
            out.push((ops[0], ops[1], graph.ty(x).shape.rank()));
        }
    }
    out
}

#[test]
fn every_encoders_attention_mask_is_recognised_and_no_causal_one() {
    let mut models = tcc_tests::discover_models();
    models.extend(tcc_tests::discover_zoo());
    let mut report = Vec::new();
    let mut recognised = 0;
    for model in &models {
        let graph = cleaned(model);
        let mask = graph
            .inputs()
            .iter()
            .any(|&i| matches!(graph.op(i), Op::Input { name } if name == "attention_mask"))
            .then_some("attention_mask");
        let facts = key_mask::analyse(&graph, &key_mask::mask_candidates(&graph));
        let found: Vec<Option<&str>> = softmax_masks(&graph)
            .into_iter()
            .map(|(a, b, rank)| {
                let of = |n: NodeId| {
                    facts
                        .get(&n)
                        .and_then(|f| key_mask::additive_key_mask(f, rank))
                };
                of(a).or(of(b))
            })
            .collect();
        // GPT-2's masks hold the causal triangle; T5 adds its mask to the relative position
        // bias, which is not a function of the mask.
        let not_key_masks = model.name.starts_with("gpt2") || model.name.starts_with("t5");
        let expected = !not_key_masks && mask.is_some();
        let all = !found.is_empty() && found.iter().all(|f| f.is_some() && *f == mask);
        let none = found.iter().all(|f| f.is_none());
        match (expected, all, none) {
            (true, true, _) => recognised += 1,
            (false, _, true) => {}
            _ => report.push(format!(
                "{}: {} softmax masks, recognised {:?} (attention_mask {:?}; expected {})",
                model.name,
                found.len(),
                found,
                mask,
                if expected { "all" } else { "none" }
            )),
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
    assert!(
        recognised >= 10,
        "only {recognised} models had their masks recognised"
    );
}
