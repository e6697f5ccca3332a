//! End to end through native code: every shared model, and every model of `tests/zoo`, is
//! compiled once with `tcc compile` into a `.so`, and `tcc run` of that library on every
//! `ref_*.npz` beside the model must match ONNX Runtime's outputs within
//! `1e-4 * max(1, max |ref|)` (the check of tests/tests/models.rs and zoo.rs; models, their
//! references and import options are found by the tests crate, as those tests find them).
//!
//! Heavy (LLVM at -O3 per model): run with `cargo test --release -p tcc-cli --test lower_models`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn tcc(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tcc"))
        .args(args)
        .output()
        .expect("run the tcc binary")
}

/// The scratch directory of one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("lower_models")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles the shared model `name`, runs it on every reference and returns the failures.
fn failures(name: &str) -> Vec<String> {
    let models = tcc_tests::discover_models();
    let model = models
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("the shared model `{name}` is missing"));
    failures_in(model, name, &[])
}

/// Compiles `model` (with its import options), runs it on every reference beside it and
/// returns the failures; `name` names its scratch directory.
fn failures_in(model: &tcc_tests::ModelDir, name: &str, extra: &[&str]) -> Vec<String> {
    failures_with(model, name, extra, &compare_all).0
}

/// Every output against its reference by the model tolerance (the same check as the
/// interpreter's model tests, tests/src/lib.rs); `what` names the case in the failures.
fn compare_all(
    got: &[(String, tcc_ir::Tensor)],
    want: &[(String, tcc_ir::Tensor)],
    what: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (k, t) in got {
        let Some((_, e)) = want.iter().find(|(n, _)| n == k) else {
            failures.push(format!("{what}: output `{k}` has no reference"));
            continue;
        };
        match tcc_tests::compare_model_output(t, e) {
            Ok(worst) => eprintln!("{what}: `{k}` worst difference {worst:e}"),
            Err(why) => failures.push(format!("{what}: `{k}`: {why}")),
        }
    }
    failures
}

/// A comparison of a run's outputs with the reference arrays (inputs included), naming the
/// case `what` in its failures.
type Compare =
    dyn Fn(&[(String, tcc_ir::Tensor)], &[(String, tcc_ir::Tensor)], &str) -> Vec<String>;

/// [`failures_in`] with another comparison; also returns the library's path.
fn failures_with(
    model: &tcc_tests::ModelDir,
    name: &str,
    extra: &[&str],
    compare: &Compare,
) -> (Vec<String>, PathBuf) {
    let work = scratch(name);
    let lib = work.join(format!("{}.so", name.replace('-', "_")));
    let onnx = model.dir.join("model.onnx");
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "compile".as_ref(),
        onnx.as_os_str(),
        "-o".as_ref(),
        lib.as_os_str(),
    ];
    if model.options.int8_matmul == tcc_onnx::Int8MatMul::Exact {
        args.extend([
            std::ffi::OsStr::new("--int8-matmul"),
            std::ffi::OsStr::new("exact"),
        ]);
    }
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let out = tcc(&args);
    assert!(
        out.status.success(),
        "{name}: compile failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!model.cases.is_empty(), "{name}: no references");
    let mut failures = Vec::new();
    for (_, r) in &model.cases {
        let result = work.join(format!("out_{}", r.file_name().unwrap().to_string_lossy()));
        let run = tcc(&[
            "run".as_ref(),
            lib.as_os_str(),
            "--inputs".as_ref(),
            r.as_os_str(),
            "--output".as_ref(),
            result.as_os_str(),
        ]);
        if !run.status.success() {
            failures.push(format!(
                "{}: run failed: {}",
                r.display(),
                String::from_utf8_lossy(&run.stderr)
            ));
            continue;
        }
        let expected = tcc_npz::read_npz(r).unwrap();
        let got = tcc_npz::read_npz(&result).unwrap();
        assert!(!got.is_empty(), "{}: no outputs", r.display());
        failures.extend(compare(&got, &expected, &r.display().to_string()));
    }
    (failures, lib)
}

fn check(name: &str) {
    let f = failures(name);
    assert!(f.is_empty(), "{name}:\n{}", f.join("\n"));
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

#[test]
fn every_zoo_model() {
    let zoo = tcc_tests::discover_zoo();
    assert!(zoo.len() >= 22, "only {} models in tests/zoo", zoo.len());
    let mut all = Vec::new();
    for model in &zoo {
        all.extend(failures_in(model, &format!("zoo-{}", model.name), &[]));
    }
    assert!(
        all.is_empty(),
        "{} failure(s):\n{}",
        all.len(),
        all.join("\n")
    );
}

/// ViT's patch embedding as a GEMM: at the zoo's 16 x 16 images one convolution kernel costs
/// less than the GEMM form's three, so the cost model keeps it; at a batch of 64 the GEMM form
/// wins. Each fp32 ViT of the zoo, compiled for that hint, has no `conv` left and matches its
/// references.
#[test]
fn vit_patch_embedding_as_gemm() {
    let zoo = tcc_tests::discover_zoo();
    let vits: Vec<_> = zoo
        .iter()
        .filter(|m| m.name.starts_with("vit-") && !m.name.ends_with("int8"))
        .collect();
    assert!(
        vits.len() >= 4,
        "only {} fp32 ViT models in tests/zoo",
        vits.len()
    );
    let mut all = Vec::new();
    for model in vits {
        let onnx = model.dir.join("model.onnx");
        let ir = tcc(&[
            "compile".as_ref(),
            onnx.as_os_str(),
            "--emit".as_ref(),
            "ir".as_ref(),
            "--hint".as_ref(),
            "batch=64".as_ref(),
        ]);
        assert!(ir.status.success(), "{}: --emit ir failed", model.name);
        let text = String::from_utf8_lossy(&ir.stdout);
        assert!(
            !text.contains("conv<") && text.contains("gemm<"),
            "{}: the patch embedding is still a convolution at batch=64:\n{text}",
            model.name
        );
        all.extend(failures_in(
            model,
            &format!("vit-gemm-{}", model.name),
            &["--hint", "batch=64"],
        ));
    }
    assert!(
        all.is_empty(),
        "{} failure(s):\n{}",
        all.len(),
        all.join("\n")
    );
}

/// The outputs of `run` (an npz) against `want` by [`tcc_tests::compare_unpadded`]: within the
/// model tolerance where `mask` is nonzero, exactly 0 elsewhere; the failures.
fn compare_unpadded(
    got: &[(String, tcc_ir::Tensor)],
    want: &[(String, tcc_ir::Tensor)],
    mask: &tcc_ir::Tensor,
    what: &str,
) -> Vec<String> {
    got.iter()
        .filter_map(|(k, g)| match want.iter().find(|(n, _)| n == k) {
            None => Some(format!("{what}: output `{k}` has no reference")),
            Some((_, w)) => tcc_tests::compare_unpadded(g, w, mask)
                .err()
                .map(|e| format!("{what}: `{k}`: {e}")),
        })
        .collect()
}

/// `tcc compile --remove-padding`: the shared encoders and every fp32 encoder of tests/zoo
/// (BERT, DistilBERT, RoBERTa, ALBERT from the TorchScript and dynamo exporters; the int8
/// one is refused: its dynamic quantisation reads the padded tokens), compiled once each,
/// match ONNX Runtime's references at every real position and are 0 at the padded ones, on
/// their padded batches and their unpadded cases; the header says so. Then bert-tiny on
/// generated masks (all ones, one real token per row, right- and left-padded with one
/// sequence of full length among short ones, random, a sequence with no real token, and a
/// batch of one) equals the interpreter's unpadded model at the real positions.
#[test]
fn remove_padding_compiled() {
    let models = tcc_tests::discover_models();
    let mut all = Vec::new();
    let mut encoders: Vec<(String, &tcc_tests::ModelDir)> =
        ["minilm-l6", "bert-tiny", "bert-tiny-extdata"]
            .iter()
            .map(|n| (n.to_string(), models.iter().find(|m| m.name == *n).unwrap()))
            .collect();
    let zoo = tcc_tests::discover_zoo();
    let zoo_encoders: Vec<&tcc_tests::ModelDir> = zoo
        .iter()
        .filter(|m| {
            ["bert-", "distilbert-", "roberta-", "albert-"]
                .iter()
                .any(|f| m.name.starts_with(f))
                && !m.name.ends_with("-int8")
        })
        .collect();
    assert!(
        zoo_encoders.len() >= 11,
        "only {} zoo encoders",
        zoo_encoders.len()
    );
    // Dynamic quantisation scales each activation by its extremes over the whole batch, padded
    // tokens included: the packed batch would quantise differently, so it is refused.
    let int8 = zoo.iter().find(|m| m.name == "bert-ts17-int8").unwrap();
    let refused = tcc(&[
        "compile".as_ref(),
        int8.dir.join("model.onnx").as_os_str(),
        "--emit".as_ref(),
        "ir".as_ref(),
        "--remove-padding".as_ref(),
    ]);
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("still runs on the padded batch"),
        "bert-ts17-int8 was not refused: {why}"
    );
    for m in &zoo_encoders {
        assert!(
            m.cases.iter().any(|(c, _)| c == "b4_padded"),
            "{}: no ref_b4_padded.npz (tests/zoo/make_padded_refs.py makes them)",
            m.name
        );
        encoders.push((format!("zoo-{}", m.name), m));
    }
    let unpadded =
        |got: &[(String, tcc_ir::Tensor)], want: &[(String, tcc_ir::Tensor)], what: &str| {
            let mask = &want.iter().find(|(n, _)| n == "attention_mask").unwrap().1;
            compare_unpadded(got, want, mask, what)
        };
    for (name, model) in encoders {
        let (failures, lib) = failures_with(
            model,
            &format!("unpadded-{name}"),
            &["--remove-padding"],
            &unpadded,
        );
        all.extend(failures);
        let header = std::fs::read_to_string(lib.with_extension("h")).unwrap();
        assert!(
            header.contains("are 0 at the padded positions") && header.contains("`attention_mask`"),
            "{name}: the header does not say that padded positions are 0:\n{header}"
        );
    }

    // bert-tiny on generated masks, against the interpreter without the option.
    let model = models.iter().find(|m| m.name == "bert-tiny").unwrap();
    let work = scratch("unpadded-masks");
    let lib = work.join("m.so");
    let onnx = model.dir.join("model.onnx");
    let out = tcc(&[
        "compile".as_ref(),
        onnx.as_os_str(),
        "-o".as_ref(),
        lib.as_os_str(),
        "--remove-padding".as_ref(),
    ]);
    assert!(out.status.success());
    let (b, s) = (4usize, 23usize);
    let mut rng = tcc_tests::Rng(0x2545_f491_4f6c_dd1d);
    let mut masks = tcc_tests::padding_masks(b, s, &[23, 5, 12, 1], 0x2545_f491_4f6c_dd1d);
    masks.push((
        "a sequence with no real token",
        (0..b * s).map(|p| i64::from(p / s != 2)).collect(),
    ));
    masks.push(("a batch of one", (0..s).map(|p| i64::from(p < 9)).collect()));
    for (k, (what, mask)) in masks.into_iter().enumerate() {
        let b = mask.len() / s;
        let ids: Vec<i64> = (0..b * s).map(|_| (rng.next() % 1000) as i64).collect();
        let inputs = vec![
            (
                "input_ids".to_string(),
                tcc_ir::Tensor::from_vec(vec![b, s], ids).unwrap(),
            ),
            (
                "attention_mask".to_string(),
                tcc_ir::Tensor::from_vec(vec![b, s], mask.clone()).unwrap(),
            ),
            (
                "token_type_ids".to_string(),
                tcc_ir::Tensor::from_vec(vec![b, s], vec![0i64; b * s]).unwrap(),
            ),
        ];
        let inp = work.join(format!("in_{k}.npz"));
        tcc_npz::write_npz(&inp, &inputs).unwrap();
        let (got, want) = (
            work.join(format!("got_{k}.npz")),
            work.join(format!("want_{k}.npz")),
        );
        let run = tcc(&[
            "run".as_ref(),
            lib.as_os_str(),
            "--inputs".as_ref(),
            inp.as_os_str(),
            "--output".as_ref(),
            got.as_os_str(),
        ]);
        let interp = tcc(&[
            "interpret".as_ref(),
            onnx.as_os_str(),
            "--inputs".as_ref(),
            inp.as_os_str(),
            "--output".as_ref(),
            want.as_os_str(),
        ]);
        if !run.status.success() || !interp.status.success() {
            all.push(format!(
                "bert-tiny / {what}: {}{}",
                String::from_utf8_lossy(&run.stderr),
                String::from_utf8_lossy(&interp.stderr)
            ));
            continue;
        }
        let (got, want) = (
            tcc_npz::read_npz(&got).unwrap(),
            tcc_npz::read_npz(&want).unwrap(),
        );
        let mask = tcc_ir::Tensor::from_vec(vec![b, s], mask).unwrap();
        all.extend(compare_unpadded(
            &got,
            &want,
            &mask,
            &format!("bert-tiny / {what}"),
        ));
    }
    assert!(
        all.is_empty(),
        "{} failure(s):\n{}",
        all.len(),
        all.join("\n")
    );
}
