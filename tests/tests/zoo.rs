//! End-to-end numeric tests on `tests/zoo`: small transformers of seven
//! families (BERT, DistilBERT, RoBERTa, ALBERT, the T5 encoder, GPT-2, ViT) as
//! the TorchScript exporter (opsets 14 and 17) and the dynamo exporter (opset
//! 18, and 23, where attention is the ONNX Attention op) write them, and two
//! int8 models from ONNX Runtime's quantize_dynamic
//! (one with exact references, one with the saturating references of a CPU
//! without VNNI).
//! Each must match ONNX Runtime's outputs at two sizes within
//! `1e-4 * max(1, max |ref|)`, as the shared models must.

use tcc_tests::{check_model_case, discover_zoo, import_and_optimise};

#[test]
fn every_zoo_model_matches_onnx_runtime() {
    let zoo = discover_zoo();
    // make_zoo.py writes 22 models; fewer means some went missing.
    assert!(zoo.len() >= 22, "only {} models in tests/zoo", zoo.len());
    let mut failures = Vec::new();
    for model in &zoo {
        if model.cases.len() < 2 {
            failures.push(format!(
                "{}: {} reference cases, 2 expected",
                model.name,
                model.cases.len()
            ));
            continue;
        }
        let graph = match import_and_optimise(model) {
            Ok(g) => g,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        for (case, npz) in &model.cases {
            let report = check_model_case(&graph, &model.name, case, npz);
            if report.passed.is_empty() && report.failures.is_empty() {
                failures.push(format!("{} / {case}: no output compared", model.name));
            }
            failures.extend(report.failures);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
