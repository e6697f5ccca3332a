//! End to end through native code: every shared model is compiled once with `tcc compile`
//! into a `.so`, and `tcc run` of that library on every `ref_*.npz` beside the model must match
//! ONNX Runtime's outputs within `1e-4 * max(1, max |ref|)` (the check of tests/tests/models.rs).
//!
//! Heavy (LLVM at -O3 per model): run with `cargo test --release -p tcc-cli --test lower_models`.

use std::path::{Path, PathBuf};
use std::process::Command;

use tcc_ir::Tensor;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

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

fn values(t: &Tensor) -> Vec<f64> {
    t.data().to_f64_vec()
}

/// Compiles model `name`, runs it on every reference and returns the failures.
fn failures(name: &str) -> Vec<String> {
    let dir = shared().join(name);
    let work = scratch(name);
    let lib = work.join(format!("{}.so", name.replace('-', "_")));
    let out = tcc(&[
        "compile".as_ref(),
        dir.join("model.onnx").as_os_str(),
        "-o".as_ref(),
        lib.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{name}: compile failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut refs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ref_") && n.ends_with(".npz"))
        })
        .collect();
    refs.sort();
    assert!(!refs.is_empty(), "{name}: no references");
    let mut failures = Vec::new();
    for r in refs {
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
        let expected = tcc_npz::read_npz(&r).unwrap();
        let got = tcc_npz::read_npz(&result).unwrap();
        assert!(!got.is_empty(), "{}: no outputs", r.display());
        for (k, t) in &got {
            let Some((_, e)) = expected.iter().find(|(n, _)| n == k) else {
                failures.push(format!("{}: output `{k}` has no reference", r.display()));
                continue;
            };
            if t.shape() != e.shape() {
                failures.push(format!(
                    "{}: `{k}` has shape {:?}, reference {:?}",
                    r.display(),
                    t.shape(),
                    e.shape()
                ));
                continue;
            }
            let (a, b) = (values(t), values(e));
            let scale = b.iter().fold(1f64, |m, x| m.max(x.abs()));
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| {
                    if x.is_nan() != y.is_nan() {
                        f64::INFINITY
                    } else if x.is_nan() {
                        0.0
                    } else {
                        (x - y).abs()
                    }
                })
                .fold(0f64, f64::max);
            eprintln!(
                "{}: `{k}` worst difference {worst:e} (scale {scale:e})",
                r.display()
            );
            if worst > 1e-4 * scale {
                failures.push(format!(
                    "{}: `{k}` differs by {worst:e} (tolerance {:e})",
                    r.display(),
                    1e-4 * scale
                ));
            }
        }
    }
    failures
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
