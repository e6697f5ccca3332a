//! End to end through native code: every shared model, and every model of `tests/zoo`, is
//! compiled once with `tcc compile` into a `.so`, and `tcc run` of that library on every
//! `ref_*.npz` beside the model must match ONNX Runtime's outputs within
//! `1e-4 * max(1, max |ref|)` (the check of tests/tests/models.rs and zoo.rs).
//!
//! Heavy (LLVM at -O3 per model): run with `cargo test --release -p tcc-cli --test lower_models`.

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Compiles the shared model `name`, runs it on every reference and returns the failures.
fn failures(name: &str) -> Vec<String> {
    failures_in(&shared().join(name), name)
}

/// Compiles the model in `dir` (with the import options of its `import.txt`, if any), runs
/// it on every reference beside it and returns the failures.
fn failures_in(dir: &Path, name: &str) -> Vec<String> {
    let work = scratch(name);
    let lib = work.join(format!("{}.so", name.replace('-', "_")));
    let model = dir.join("model.onnx");
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "compile".as_ref(),
        model.as_os_str(),
        "-o".as_ref(),
        lib.as_os_str(),
    ];
    let options = std::fs::read_to_string(dir.join("import.txt")).unwrap_or_default();
    if options.contains("int8_matmul = exact") {
        args.extend([
            std::ffi::OsStr::new("--int8-matmul"),
            std::ffi::OsStr::new("exact"),
        ]);
    }
    let out = tcc(&args);
    assert!(
        out.status.success(),
        "{name}: compile failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut refs: Vec<PathBuf> = std::fs::read_dir(dir)
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
            // The same check as the interpreter's model tests (tests/src/lib.rs).
            match tcc_tests::compare_model_output(t, e) {
                Ok(worst) => eprintln!("{}: `{k}` worst difference {worst:e}", r.display()),
                Err(why) => failures.push(format!("{}: `{k}`: {why}", r.display())),
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

#[test]
fn every_zoo_model() {
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/zoo");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&zoo)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", zoo.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 18,
        "only {} models in {}",
        dirs.len(),
        zoo.display()
    );
    let mut all = Vec::new();
    for dir in &dirs {
        let name = format!("zoo-{}", dir.file_name().unwrap().to_string_lossy());
        all.extend(failures_in(dir, &name));
    }
    assert!(
        all.is_empty(),
        "{} failure(s):\n{}",
        all.len(),
        all.join("\n")
    );
}
