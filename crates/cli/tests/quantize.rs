//! `tcc compile --quantize int8`: minilm-l6 (real weights, ../shared) quantised with the
//! accuracy gate on its real sentences keeps sentence embeddings (the attention-mask-weighted
//! mean of `last_hidden_state`, L2-normalised) within cosine 0.995 of ONNX Runtime's f32 ones
//! on every sentence of ref_sentences and of the padded batch ref_b8_padded, compiled; the IR
//! has a qgemm per product; the report names what it did; bad flags are named errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tcc_ir::Tensor;
use tcc_tests::{load_npz, model_dir};

fn tcc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcc"))
        .args(args)
        .output()
        .expect("run the tcc binary")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tcc-quantize-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

fn array<'a>(arrays: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &arrays
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no array `{name}`"))
        .1
}

/// The sentence embeddings of `hidden` (`[b, s, h]`): mask-weighted means, L2-normalised.
fn embeddings(hidden: &Tensor, mask: &Tensor) -> Vec<Vec<f64>> {
    let (v, m) = (hidden.data().to_f64_vec(), mask.data().to_f64_vec());
    let (b, s, h) = (hidden.shape()[0], hidden.shape()[1], hidden.shape()[2]);
    (0..b)
        .map(|i| {
            let mut e = vec![0.0; h];
            let mut n = 0.0;
            for t in 0..s {
                let w = m[i * s + t];
                n += w;
                for (j, x) in e.iter_mut().enumerate() {
                    *x += w * v[(i * s + t) * h + j];
                }
            }
            let norm = e.iter().map(|x| (x / n) * (x / n)).sum::<f64>().sqrt();
            e.iter().map(|x| x / n / norm).collect()
        })
        .collect()
}

#[test]
fn minilm_quantised_with_the_gate_keeps_sentence_embeddings() {
    let model = model_dir("minilm-l6");
    let onnx = model.model_path();
    let sentences = model.dir.join("ref_sentences.npz");
    let dir = scratch("minilm");
    let lib = dir.join("minilm-int8.so");
    let o = tcc(&[
        "compile",
        p(&onnx),
        "-o",
        p(&lib),
        "--quantize",
        "int8",
        "--min-cosine",
        "0.995",
        "--calibrate",
        p(&sentences),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("tcc quantize: "), "{err}");
    assert!(
        err.contains("products int8") && err.contains("cosine"),
        "{err}"
    );
    // The optimised IR: a qgemm for every product by weights, no matmul_integer chain left.
    let ir = dir.join("minilm-int8.ir");
    let o = tcc(&[
        "compile",
        p(&onnx),
        "--emit",
        "ir",
        "-o",
        p(&ir),
        "--quantize",
        "int8",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no accuracy gate applied"),
        "{}",
        stderr(&o)
    );
    let text = std::fs::read_to_string(&ir).unwrap();
    assert_eq!(text.matches("qgemm<").count(), 36, "{text}");
    assert!(!text.contains("matmul_integer"), "{text}");
    for case in ["ref_sentences", "ref_b8_padded"] {
        let npz = model.dir.join(format!("{case}.npz"));
        let out = dir.join(format!("{case}.out.npz"));
        let o = tcc(&[
            "run",
            p(&lib),
            "--inputs",
            p(&npz),
            "--output",
            p(&out),
            "--threads",
            "2",
        ]);
        assert!(o.status.success(), "{case}: {}", stderr(&o));
        let (want, got) = (load_npz(&npz).unwrap(), load_npz(&out).unwrap());
        let mask = array(&want, "attention_mask");
        let (w, g) = (
            embeddings(array(&want, "last_hidden_state"), mask),
            embeddings(array(&got, "last_hidden_state"), mask),
        );
        for (i, (a, b)) in w.iter().zip(&g).enumerate() {
            let cos: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            assert!(cos >= 0.995, "{case}: sentence {i} has cosine {cos}");
        }
    }
    // Per-row quantisation is token-wise: with padding elimination the padded batch's real
    // tokens get the same embeddings.
    let packed = dir.join("minilm-int8-packed.so");
    let o = tcc(&[
        "compile",
        p(&onnx),
        "-o",
        p(&packed),
        "--quantize",
        "int8",
        "--remove-padding",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let npz = model.dir.join("ref_b8_padded.npz");
    let out = dir.join("packed.out.npz");
    let o = tcc(&["run", p(&packed), "--inputs", p(&npz), "--output", p(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (want, got) = (load_npz(&npz).unwrap(), load_npz(&out).unwrap());
    let mask = array(&want, "attention_mask");
    let unpacked = load_npz(&dir.join("ref_b8_padded.out.npz")).unwrap();
    let (g, u) = (
        embeddings(array(&got, "last_hidden_state"), mask),
        embeddings(array(&unpacked, "last_hidden_state"), mask),
    );
    for (i, (a, b)) in g.iter().zip(&u).enumerate() {
        let cos: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        assert!(
            cos > 0.999_999,
            "sentence {i}: packed and padded differ ({cos})"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_quantisation_flags_are_named_errors() {
    let model = model_dir("bert-tiny");
    let onnx = model.model_path();
    let dir = scratch("flags");
    let lib = dir.join("x.so");
    let fails = |args: &[&str], words: &[&str]| {
        let o = tcc(args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(!err.contains("panicked"), "{err}");
        for w in words {
            assert!(err.contains(w), "`{w}` not in: {err}");
        }
    };
    let sentences = model.dir.join("ref_b2_s17.npz");
    let s = p(&sentences);
    fails(
        &["compile", p(&onnx), "-o", p(&lib), "--quantize", "int4"],
        &["int4", "int8"],
    );
    fails(
        &["compile", p(&onnx), "-o", p(&lib), "--calibrate", s],
        &["--quantize"],
    );
    fails(
        &[
            "compile",
            p(&onnx),
            "-o",
            p(&lib),
            "--quantize",
            "int8",
            "--calibrate",
            s,
            "--min-cosine",
            "2",
        ],
        &["--min-cosine", "2"],
    );
    let missing = dir.join("missing.npz");
    fails(
        &[
            "compile",
            p(&onnx),
            "-o",
            p(&lib),
            "--quantize",
            "int8",
            "--calibrate",
            p(&missing),
        ],
        &["missing.npz"],
    );
    assert!(!lib.exists(), "a failed compile left a library");
    let _ = std::fs::remove_dir_all(&dir);
}
