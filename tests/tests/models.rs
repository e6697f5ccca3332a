//! End-to-end numeric tests: every shared model, imported, run through the
//! default pass pipeline and interpreted on each of its reference cases, must
//! match ONNX Runtime's outputs within `1e-4 * max(1, max |ref|)`.
//!
//! There is one test per known model so that a failure shows which model it
//! is, and `other_models` runs whatever else the models directory holds.
//! The cases are discovered from the `ref_*.npz` files beside each model.

use tcc_tests::{check_model_case, discover_models, import_and_optimise, model_dir, ModelDir};

/// Imports and optimises `model`, runs every reference case and returns one
/// line per failure (model, case, output and the measured error).
fn failures_of(model: &ModelDir) -> Vec<String> {
    if model.cases.is_empty() {
        return vec![format!(
            "{}: no ref_*.npz case in {}",
            model.name,
            model.dir.display()
        )];
    }
    let graph = match import_and_optimise(model) {
        Ok(g) => g,
        Err(e) => return vec![e],
    };
    let mut failures = Vec::new();
    for (case, npz) in &model.cases {
        let start = std::time::Instant::now();
        let report = check_model_case(&graph, &model.name, case, npz);
        let worst = report
            .passed
            .iter()
            .map(|(name, err)| format!("{name} {err:.2e}"))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!(
            "{} / {case}: {} passed [{worst}], {} failed, {:.2?}",
            model.name,
            report.passed.len(),
            report.failures.len(),
            start.elapsed()
        );
        failures.extend(report.failures);
    }
    failures
}

/// Runs every case of the model called `name` and fails listing each failure.
fn check(name: &str) {
    let model = model_dir(name);
    let failures = failures_of(&model);
    assert!(
        failures.is_empty(),
        "{} failure(s) in {name}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_known_models_are_found() {
    let models = discover_models();
    let found: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    for known in tcc_tests::KNOWN_MODELS {
        assert!(
            found.contains(&known),
            "model `{known}` not found; found {found:?}"
        );
    }
    for m in &models {
        assert!(
            !m.cases.is_empty(),
            "{} has no ref_*.npz case in {}",
            m.name,
            m.dir.display()
        );
    }
}

#[test]
fn bert_tiny() {
    check("bert-tiny");
}

#[test]
fn bert_tiny_extdata() {
    check("bert-tiny-extdata");
}

#[test]
fn bert_tiny_int8() {
    check("bert-tiny-int8");
}

#[test]
fn gpt2_tiny() {
    check("gpt2-tiny");
}

#[test]
fn linear_attn() {
    check("linear-attn");
}

#[test]
fn minilm_l6() {
    check("minilm-l6");
}

/// Any model directory beyond the known six is run here, so that a model
/// added to the shared data is tested without editing this file.
#[test]
fn other_models() {
    let mut failures = Vec::new();
    for model in discover_models() {
        if !tcc_tests::KNOWN_MODELS.contains(&model.name.as_str()) {
            failures.extend(failures_of(&model));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
