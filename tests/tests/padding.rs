//! Padding elimination (`--remove-padding`), checked with the reference interpreter: the
//! optimised graph packs every encoder's real tokens (its IR has `packed_attention` and no
//! `attention`), and its outputs equal ONNX Runtime's at every real position within the
//! model tolerance and are exactly 0 at the padded ones, on the shared padded batches and
//! the unpadded ones; on random masks (all ones, one real token per row, left- and
//! right-padded, random) of every encoder in tests/zoo it equals the model without the
//! option at the real positions.

use std::collections::HashMap;

use tcc_ir::{Graph, Tensor};
use tcc_passes::egraph::Config;
use tcc_passes::{PassManager, RemovePadding};

fn packed(model: &tcc_tests::ModelDir) -> Graph {
    let mut graph = tcc_onnx::import_file_with(&model.model_path(), &model.options)
        .unwrap_or_else(|e| panic!("{}: {e}", model.name));
    let config = Config {
        remove_padding: Some(RemovePadding::default()),
        ..Config::default()
    };
    PassManager::with_optimiser(config)
        .0
        .run(&mut graph)
        .unwrap_or_else(|e| panic!("{}: {e}", model.name));
    graph
}

fn count(graph: &Graph, name: &str) -> usize {
    graph
        .topo_order()
        .into_iter()
        .filter(|&id| graph.op(id).name() == name)
        .count()
}

/// Checks the packed graph on one case's inputs against `want` (name to tensor): real
/// positions within the model tolerance, padded ones exactly 0.
fn check(graph: &Graph, inputs: &HashMap<String, Tensor>, want: &[(String, Tensor)], what: &str) {
    let got = tcc_ir::interp::run(graph, inputs).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mask = &inputs["attention_mask"];
    for (name, g) in &got {
        let Some((_, w)) = want.iter().find(|(n, _)| n == name) else {
            continue;
        };
        if g.shape().len() < 2 || g.shape()[..2] != *mask.shape() {
            continue;
        }
        tcc_tests::compare_unpadded(g, w, mask).unwrap_or_else(|e| panic!("{what}: `{name}`: {e}"));
    }
}

#[test]
fn shared_encoders_match_onnx_runtime_at_real_positions_and_are_zero_at_padding() {
    for name in ["minilm-l6", "bert-tiny", "bert-tiny-extdata"] {
        let model = tcc_tests::model_dir(name);
        let graph = packed(&model);
        assert!(
            count(&graph, "packed_attention") > 0 && count(&graph, "attention") == 0,
            "{name}: the attention is not packed:\n{}",
            tcc_ir::text::print(&graph)
        );
        assert!(count(&graph, "pack") > 0 && count(&graph, "unpack") > 0);
        for (case, npz) in &model.cases {
            if name == "minilm-l6" && case != "b8_padded" && case != "b1_s128" {
                continue; // The interpreter is slow on the long ones; the compiled tests run them.
            }
            let arrays = tcc_tests::load_npz(npz).unwrap();
            let inputs = tcc_tests::bind_inputs(&graph, &arrays).unwrap();
            check(&graph, &inputs, &arrays, &format!("{name} / {case}"));
        }
    }
}

#[test]
fn zoo_encoders_packed_equal_unpacked_at_real_positions_on_random_masks() {
    let (b, s) = (4usize, 11usize);
    let masks = tcc_tests::padding_masks(b, s, &[11, 3, 7, 1], 0x9e37_79b9_7f4a_7c15);
    let mut checked = 0;
    for model in tcc_tests::discover_zoo() {
        let mut plain = tcc_onnx::import_file_with(&model.model_path(), &model.options).unwrap();
        let is_encoder = ["bert", "distilbert", "roberta", "albert"]
            .iter()
            .any(|f| model.name.starts_with(&format!("{f}-")));
        if !is_encoder || model.options != tcc_onnx::ImportOptions::default() {
            continue;
        }
        tcc_passes::optimize(&mut plain).unwrap();
        // A model whose attention is not one op (a QDQ model quantises and dequantises its
        // scores and probabilities on the way) has no attention to pack.
        if count(&plain, "attention") == 0 {
            continue;
        }
        let graph = packed(&model);
        assert!(count(&graph, "packed_attention") > 0, "{}", model.name);
        for (what, mask) in &masks {
            let mut rng = tcc_tests::Rng(7 + checked as u64);
            let mut inputs = HashMap::new();
            for name in tcc_tests::input_names(&graph) {
                let t = match name.as_str() {
                    "attention_mask" => Tensor::from_vec(vec![b, s], mask.clone()).unwrap(),
                    _ => Tensor::from_vec(
                        vec![b, s],
                        (0..b * s).map(|_| (rng.next() % 50) as i64).collect(),
                    )
                    .unwrap(),
                };
                inputs.insert(name, t);
            }
            let want: Vec<(String, Tensor)> = tcc_ir::interp::run(&plain, &inputs)
                .unwrap()
                .into_iter()
                .collect();
            check(&graph, &inputs, &want, &format!("{} / {what}", model.name));
            checked += 1;
        }
    }
    assert!(checked >= 5 * 5, "only {checked} zoo cases were checked");
}

#[test]
fn models_where_padding_changes_real_tokens_are_refused() {
    for (name, words) in [
        ("gpt2-tiny", &["softmax", "key-padding mask"][..]),
        ("linear-attn", &["no attention softmax"][..]),
    ] {
        let model = tcc_tests::model_dir(name);
        let mut graph = tcc_onnx::import_file_with(&model.model_path(), &model.options).unwrap();
        let config = Config {
            remove_padding: Some(RemovePadding::default()),
            ..Config::default()
        };
        let e = PassManager::with_optimiser(config)
            .0
            .run(&mut graph)
            .expect_err(name)
            .to_string();
        for w in words {
            assert!(e.contains(w), "{name}: `{e}` does not say `{w}`");
        }
    }
    // A mask named that is not an input, or not a mask.
    let model = tcc_tests::model_dir("bert-tiny");
    for (mask, word) in [("nope", "no input `nope`"), ("input_ids", "")] {
        let mut graph = tcc_onnx::import_file_with(&model.model_path(), &model.options).unwrap();
        let config = Config {
            remove_padding: Some(RemovePadding {
                mask: Some(mask.into()),
            }),
            ..Config::default()
        };
        let e = PassManager::with_optimiser(config)
            .0
            .run(&mut graph)
            .expect_err(mask)
            .to_string();
        assert!(
            e.contains(word) && e.contains("cannot remove padding"),
            "{mask}: {e}"
        );
    }
}
