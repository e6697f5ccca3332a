//! End-to-end tests of the `tcc` binary: help texts, `inspect`, `interpret`
//! and `compile` on the committed tiny-encoder example, and the error paths,
//! each of which must exit non-zero with a message naming the thing at fault
//! and without a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tcc_ir::{DType, Tensor};

/// The example's architecture, from examples/tiny-encoder/make_model.py.
const VOCAB: usize = 100;
const MAX_POS: usize = 64;
const HIDDEN: usize = 32;
const FFN: usize = 64;

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/tiny-encoder")
        .join(file)
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tcc-cli-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

fn tcc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcc"))
        .args(args)
        .output()
        .expect("run the tcc binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Asserts that `o` is a clean failure: a non-zero exit, `error:` on stderr,
/// every one of `names` in the message, and no panic.
fn assert_fails_naming(o: &Output, names: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected a failure; stderr:\n{err}");
    assert!(err.contains("error:"), "no `error:` in stderr:\n{err}");
    assert!(!err.contains("panicked"), "tcc panicked:\n{err}");
    for name in names {
        assert!(err.contains(name), "stderr does not name `{name}`:\n{err}");
    }
}

fn write_npz(path: &Path, arrays: Vec<(&str, Tensor)>) {
    let arrays: Vec<(String, Tensor)> = arrays
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    tcc_npz::write_npz(path, &arrays).expect("write a test npz");
}

fn example_inputs() -> Vec<(String, Tensor)> {
    tcc_npz::read_npz(&example("inputs.npz")).expect("read the example inputs")
}

fn input(name: &str) -> Tensor {
    example_inputs()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .expect("the example has this input")
}

#[test]
fn help_teaches_each_subcommand() {
    let top = tcc(&["--help"]);
    assert!(top.status.success());
    let top = stdout(&top);
    for cmd in ["inspect", "interpret", "compile"] {
        assert!(top.contains(cmd), "top-level help lists `{cmd}`:\n{top}");
    }
    let cases: [(&str, &[&str]); 3] = [
        ("inspect", &["MODEL.onnx", "Examples:", "tcc inspect "]),
        (
            "interpret",
            &[
                "--inputs",
                "--output",
                "--no-opt",
                "Examples:",
                "tcc interpret ",
            ],
        ),
        (
            "compile",
            &[
                "--emit",
                "--dump-after",
                "--disable-pass",
                "--time-passes",
                "Examples:",
                "tcc compile ",
            ],
        ),
    ];
    for (cmd, wants) in cases {
        let o = tcc(&[cmd, "--help"]);
        assert!(o.status.success(), "`tcc {cmd} --help` fails");
        let text = stdout(&o);
        for want in wants {
            assert!(
                text.contains(want),
                "`tcc {cmd} --help` lacks `{want}`:\n{text}"
            );
        }
    }
}

#[test]
fn inspect_reports_the_example() {
    let o = tcc(&["inspect", p(&example("model.onnx"))]);
    let out = stdout(&o);
    assert!(o.status.success(), "inspect failed:\n{}", stderr(&o));
    assert!(out.contains("producer: tcc-examples 1"), "{out}");
    assert!(out.contains("opset: ai.onnx 17"), "{out}");
    let line = |prefix: &str| -> String {
        out.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with `{prefix}`:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("input_ids"), "input_ids i64[batch, seq]");
    assert_eq!(line("attention_mask"), "attention_mask i64[batch, seq]");
    assert_eq!(
        line("last_hidden_state"),
        format!("last_hidden_state f32[batch, seq, {HIDDEN}]")
    );
    // The weights, from the architecture: embeddings and their LayerNorm;
    // query, key, value and output projections with biases and a LayerNorm;
    // the two feed-forward layers with biases and a LayerNorm.
    let params = VOCAB * HIDDEN
        + MAX_POS * HIDDEN
        + 2 * HIDDEN
        + 4 * (HIDDEN * HIDDEN + HIDDEN)
        + 2 * HIDDEN
        + (HIDDEN * FFN + FFN)
        + (FFN * HIDDEN + HIDDEN)
        + 2 * HIDDEN;
    let tensors = 2 + 3 * 2 + 6 * 2;
    assert_eq!(
        line("parameters:"),
        format!(
            "parameters: {params} in {tensors} tensors, {} bytes ({:.1} KiB)",
            params * 4,
            params as f64 * 4.0 / 1024.0
        )
    );
    // The op histogram, most frequent first, as the generator wrote the nodes:
    // six linear layers and two attention products; three LayerNorms.
    assert_eq!(line("MatMul"), "MatMul 8");
    assert_eq!(line("LayerNormalization"), "LayerNormalization 3");
    assert_eq!(line("Softmax"), "Softmax 1");
    assert_eq!(line("Erf"), "Erf 1");
    let hist: Vec<usize> = out
        .lines()
        .skip_while(|l| !l.starts_with("onnx nodes:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            l.split_whitespace()
                .last()
                .and_then(|n| n.parse().ok())
                .expect("a count")
        })
        .collect();
    assert!(hist.len() > 10, "{out}");
    assert!(
        hist.windows(2).all(|w| w[0] >= w[1]),
        "sorted by count:\n{out}"
    );
    assert!(line("ir nodes:").starts_with("ir nodes: "));
}

/// Runs `interpret` on the example and compares with ONNX Runtime's output.
fn check_interpret(inputs: &Path, extra: &[&str], test: &str) {
    let out = scratch(test).join("out.npz");
    let model = example("model.onnx");
    let mut args = vec![
        "interpret",
        p(&model),
        "--inputs",
        p(inputs),
        "--output",
        p(&out),
    ];
    args.extend_from_slice(extra);
    let o = tcc(&args);
    assert!(o.status.success(), "interpret failed:\n{}", stderr(&o));
    assert!(
        stderr(&o).contains("last_hidden_state f32[2, 7, 32]"),
        "summary: {}",
        stderr(&o)
    );
    let got = tcc_npz::read_npz(&out).expect("read the output");
    assert_eq!(got.len(), 1, "one output");
    assert_eq!(got[0].0, "last_hidden_state");
    let expected = tcc_npz::read_npz(&example("expected.npz")).expect("read the reference");
    let want = &expected
        .iter()
        .find(|(n, _)| n == "last_hidden_state")
        .expect("the reference has the output")
        .1;
    let got = &got[0].1;
    assert_eq!(got.dtype(), DType::F32);
    assert_eq!(got.shape(), want.shape());
    let (g, w) = (got.data().to_f64_vec(), want.data().to_f64_vec());
    let scale = w.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    let tol = 1e-4 * scale;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= tol,
            "element {i}: tcc {a} vs onnxruntime {b} (tolerance {tol})"
        );
    }
}

#[test]
fn interpret_matches_onnx_runtime() {
    check_interpret(&example("inputs.npz"), &[], "interpret");
}

#[test]
fn interpret_without_passes_matches_onnx_runtime() {
    check_interpret(&example("inputs.npz"), &["--no-opt"], "interpret-no-opt");
}

#[test]
fn interpret_ignores_arrays_that_are_not_inputs() {
    // The reference archive also holds last_hidden_state.
    check_interpret(&example("expected.npz"), &[], "interpret-ref");
}

#[test]
fn compile_emits_ir_to_stdout_and_to_a_file() {
    let model = example("model.onnx");
    let o = tcc(&["compile", p(&model), "--emit", "ir"]);
    assert!(o.status.success(), "compile failed:\n{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("input_ids"),
        "the IR names the inputs:\n{text}"
    );
    let file = scratch("compile").join("model.tir");
    let o = tcc(&["compile", p(&model), "--emit", "ir", "-o", p(&file)]);
    assert!(o.status.success(), "compile -o failed:\n{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "with -o nothing goes to stdout");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), text);
    let o = tcc(&["compile", p(&model), "--emit", "ir", "--no-opt"]);
    assert!(
        o.status.success(),
        "compile --no-opt failed:\n{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("input_ids"));
}

#[test]
fn compile_times_passes() {
    let o = tcc(&[
        "compile",
        p(&example("model.onnx")),
        "--emit",
        "ir",
        "--time-passes",
    ]);
    assert!(o.status.success(), "compile failed:\n{}", stderr(&o));
    let names = tcc_passes::pass_names();
    let err = stderr(&o);
    assert!(
        names.iter().any(|n| err.contains(n)),
        "the timing report names the passes:\n{err}"
    );
}

#[test]
fn explain_reports_the_optimiser_and_the_ir_shows_its_fused_ops() {
    let model = example("model.onnx");
    let o = tcc(&["compile", p(&model), "--emit", "ir", "--explain"]);
    assert!(o.status.success(), "compile failed:\n{}", stderr(&o));
    let err = stderr(&o);
    let last = err.lines().last().unwrap_or_default();
    let fields: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(fields[..2], ["tcc", "explain:"], "last line: {last}");
    for (field, key) in fields[2..].iter().zip([
        "rules=",
        "iterations=",
        "enodes=",
        "eclasses=",
        "time=",
        "ms",
        "cost_before=",
        "cost_after=",
    ]) {
        assert!(field.starts_with(key), "`{field}` in `{last}`");
    }
    assert!(err.contains("stop reason: saturated"), "{err}");
    assert!(
        err.contains("matmul-gemm"),
        "the rules that fired are listed:\n{err}"
    );
    let ir = stdout(&o);
    assert!(ir.contains("attention<") && ir.contains("gemm<"), "{ir}");
    assert!(
        !ir.contains("softmax<"),
        "the softmax is inside attention:\n{ir}"
    );
    // Without the optimiser the IR keeps its core ops.
    let o = tcc(&[
        "compile",
        p(&model),
        "--emit",
        "ir",
        "--disable-pass",
        "egraph",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("softmax<") && !stdout(&o).contains("attention<"));
}

#[test]
fn a_bad_hint_is_named() {
    let model = example("model.onnx");
    let o = tcc(&["compile", p(&model), "--emit", "ir", "--hint", "seq=abc"]);
    assert_fails_naming(&o, &["--hint", "seq"]);
    let o = tcc(&[
        "compile",
        p(&model),
        "--emit",
        "ir",
        "--hint",
        "seq=4096",
        "--explain",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn emit_dot_draws_the_graph_before_and_after() {
    let o = tcc(&["compile", p(&example("model.onnx")), "--emit", "dot"]);
    assert!(o.status.success(), "compile failed:\n{}", stderr(&o));
    let dot = stdout(&o);
    assert!(
        dot.starts_with("digraph tcc {") && dot.trim_end().ends_with('}'),
        "{dot}"
    );
    assert!(dot.contains("subgraph cluster_before") && dot.contains("subgraph cluster_after"));
    assert!(
        dot.contains("fillcolor") && dot.contains("attention"),
        "fused ops are marked:\n{dot}"
    );
}

#[test]
fn compiling_a_library_needs_an_output_file() {
    let o = tcc(&["compile", p(&example("model.onnx"))]);
    assert_fails_naming(&o, &["--emit lib", "-o"]);
}

#[test]
fn unknown_pass_is_refused_with_the_valid_names() {
    let o = tcc(&[
        "compile",
        p(&example("model.onnx")),
        "--emit",
        "ir",
        "--disable-pass",
        "no-such-pass",
    ]);
    assert_fails_naming(&o, &["no-such-pass"]);
    let names = tcc_passes::pass_names();
    assert!(
        names.iter().all(|n| stderr(&o).contains(n)),
        "lists the valid passes:\n{}",
        stderr(&o)
    );
}

#[test]
fn a_file_that_is_not_onnx_is_an_error() {
    let path = scratch("not-onnx").join("notes.onnx");
    std::fs::write(&path, "these are not the protobufs you are looking for\n").expect("write");
    let o = tcc(&["inspect", p(&path)]);
    assert_fails_naming(&o, &["notes.onnx"]);
}

#[test]
fn a_truncated_model_is_an_error() {
    let bytes = std::fs::read(example("model.onnx")).expect("read the model");
    let path = scratch("truncated").join("truncated.onnx");
    std::fs::write(&path, &bytes[..100]).expect("write");
    let o = tcc(&["inspect", p(&path)]);
    assert_fails_naming(&o, &["truncated.onnx"]);
    let out = scratch("truncated").join("out.npz");
    let o = tcc(&[
        "interpret",
        p(&path),
        "--inputs",
        p(&example("inputs.npz")),
        "--output",
        p(&out),
    ]);
    assert_fails_naming(&o, &["truncated.onnx"]);
    assert!(!out.exists(), "no output on failure");
}

#[test]
fn a_missing_model_is_an_error() {
    let path = scratch("missing").join("nowhere.onnx");
    for cmd in [
        vec!["inspect", p(&path)],
        vec!["compile", p(&path), "--emit", "ir"],
    ] {
        let o = tcc(&cmd);
        assert_fails_naming(&o, &["nowhere.onnx", "does not exist"]);
    }
}

#[test]
fn a_missing_input_is_named() {
    let dir = scratch("missing-input");
    let npz = dir.join("only-ids.npz");
    write_npz(&npz, vec![("input_ids", input("input_ids"))]);
    let out = dir.join("out.npz");
    let o = tcc(&[
        "interpret",
        p(&example("model.onnx")),
        "--inputs",
        p(&npz),
        "--output",
        p(&out),
    ]);
    // The message names the missing input and lists what the archive holds.
    assert_fails_naming(&o, &["attention_mask", "only-ids.npz", "input_ids"]);
    assert!(!out.exists());
}

#[test]
fn a_mistyped_input_is_named() {
    let dir = scratch("mistyped");
    let npz = dir.join("f32-ids.npz");
    let ids = input("input_ids").cast(DType::F32);
    write_npz(
        &npz,
        vec![
            ("input_ids", ids),
            ("attention_mask", input("attention_mask")),
        ],
    );
    let out = dir.join("out.npz");
    let o = tcc(&[
        "interpret",
        p(&example("model.onnx")),
        "--inputs",
        p(&npz),
        "--output",
        p(&out),
    ]);
    assert_fails_naming(&o, &["input_ids", "f32"]);
    assert!(!out.exists());
}

#[test]
fn an_npz_that_is_not_a_zip_is_named() {
    let dir = scratch("not-zip");
    let npz = dir.join("plain.npz");
    std::fs::write(&npz, "input_ids = [1, 2, 3]\n").expect("write");
    let out = dir.join("out.npz");
    let o = tcc(&[
        "interpret",
        p(&example("model.onnx")),
        "--inputs",
        p(&npz),
        "--output",
        p(&out),
    ]);
    assert_fails_naming(&o, &["plain.npz"]);
    assert!(!out.exists());
}

#[test]
fn a_missing_npz_is_named() {
    let dir = scratch("missing-npz");
    let o = tcc(&[
        "interpret",
        p(&example("model.onnx")),
        "--inputs",
        p(&dir.join("absent.npz")),
        "--output",
        p(&dir.join("out.npz")),
    ]);
    assert_fails_naming(&o, &["absent.npz"]);
}

#[test]
fn interpret_and_run_check_against_a_reference() {
    let dir = scratch("expected");
    let model = example("model.onnx");
    let inputs = example("inputs.npz");
    let out = dir.join("out.npz");
    let library = dir.join("model.so");
    let o = tcc(&["compile", p(&model), "-o", p(&library)]);
    assert!(o.status.success(), "the example compiles:\n{}", stderr(&o));
    // `interpret` reads the model, `run` the compiled library; both take
    // `--expected` with the same meaning.
    let check = |command: &str, reference: &Path| {
        let subject = if command == "run" { &library } else { &model };
        tcc(&[
            command,
            p(subject),
            "--inputs",
            p(&inputs),
            "--output",
            p(&out),
            "--expected",
            p(reference),
        ])
    };

    // A reference with one element moved by 0.01 is caught and named.
    let mut reference = tcc_npz::read_npz(&example("expected.npz")).expect("read");
    let (_, hidden) = reference
        .iter_mut()
        .find(|(n, _)| n == "last_hidden_state")
        .expect("the reference has the output");
    let mut values = hidden.as_slice::<f32>().expect("f32").to_vec();
    values[5] += 0.01;
    *hidden = Tensor::from_vec(hidden.shape().to_vec(), values).expect("same shape");
    let bad = dir.join("off-by-a-bit.npz");
    tcc_npz::write_npz(&bad, &reference).expect("write");

    for command in ["interpret", "run"] {
        let o = check(command, &example("expected.npz"));
        assert!(
            o.status.success(),
            "{command}: the example matches:\n{}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("last_hidden_state: max |diff|"));
        let o = check(command, &bad);
        assert_fails_naming(&o, &["last_hidden_state", "off-by-a-bit.npz", "element 5"]);
    }
}

#[test]
fn inspect_of_a_model_with_an_unknown_op_reports_it_and_fails() {
    // Renaming every "Erf" to "Erg" keeps the protobuf valid (same lengths)
    // and gives the model an op type that no importer knows.
    let mut bytes = std::fs::read(example("model.onnx")).expect("read the model");
    let mut renamed = 0;
    for i in 0..bytes.len().saturating_sub(2) {
        if &bytes[i..i + 3] == b"Erf" {
            bytes[i + 2] = b'g';
            renamed += 1;
        }
    }
    assert!(renamed > 0, "the example has an Erf node");
    let path = scratch("unknown-op").join("erg.onnx");
    std::fs::write(&path, &bytes).expect("write");
    let o = tcc(&["inspect", p(&path)]);
    assert_fails_naming(&o, &["Erg"]);
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("Erg "))
        .unwrap_or_else(|| panic!("the histogram lists Erg:\n{out}"));
    assert!(line.contains("(not supported by tcc)"), "{line}");
    assert!(out.contains("producer: tcc-examples 1"), "{out}");
}

#[test]
fn inputs_that_disagree_on_seq_are_named() {
    // attention_mask cut to 5 tokens while input_ids has 7: both are
    // [batch, seq], so the interpreter must refuse and name the input.
    let mask = input("attention_mask");
    let [batch, seq] = [mask.shape()[0], mask.shape()[1]];
    let values = mask.as_slice::<i64>().expect("i64");
    let cut: Vec<i64> = (0..batch)
        .flat_map(|b| values[b * seq..b * seq + 5].to_vec())
        .collect();
    let cut = Tensor::from_vec(vec![batch, 5], cut).expect("shape");
    let dir = scratch("seq");
    let npz = dir.join("short-mask.npz");
    write_npz(
        &npz,
        vec![("input_ids", input("input_ids")), ("attention_mask", cut)],
    );
    let out = dir.join("out.npz");
    let o = tcc(&[
        "interpret",
        p(&example("model.onnx")),
        "--inputs",
        p(&npz),
        "--output",
        p(&out),
    ]);
    assert_fails_naming(&o, &["attention_mask", "seq"]);
    assert!(!out.exists());
}

/// The int8 model of ../shared, made by ONNX Runtime's quantize_dynamic; its
/// references come from ONNX Runtime on an x86 CPU without VNNI.
fn bert_tiny_int8(file: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/bert-tiny-int8");
    assert!(
        dir.is_dir(),
        "{} is missing: the shared models must be checked out beside the workspace",
        dir.display()
    );
    dir.join(file)
}

#[test]
fn int8_matmul_mode_chooses_the_arithmetic() {
    let (model, refs) = (
        bert_tiny_int8("model.onnx"),
        bert_tiny_int8("ref_b2_s17.npz"),
    );
    let out = scratch("int8_matmul_mode").join("out.npz");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "interpret",
            p(&model),
            "--inputs",
            p(&refs),
            "--output",
            p(&out),
            "--expected",
            p(&refs),
        ];
        args.extend_from_slice(extra);
        tcc(&args)
    };
    // The default reproduces ONNX Runtime's x86 pair saturation, and with it
    // the references.
    let default = run(&[]);
    assert!(default.status.success(), "{}", stderr(&default));
    let explicit = run(&["--int8-matmul", "ort-x86"]);
    assert!(explicit.status.success(), "{}", stderr(&explicit));
    // Exact arithmetic differs from those references by far more than the
    // tolerance (about 2e-2 against 4e-4).
    let exact = run(&["--int8-matmul", "exact"]);
    assert_fails_naming(&exact, &["last_hidden_state", "differs"]);
}

/// The number after `key` in `text` (up to the next space), or a panic naming what is missing.
fn number_after(text: &str, key: &str) -> i64 {
    text.split(key)
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{key}` in:\n{text}"))
}

/// Compiles `model` into `so` with `--shape SHAPE` and returns the memory plan's line and its
/// peak activation bytes.
fn peak_at(model: &Path, so: &Path, shape: &str) -> (String, u64) {
    let o = tcc(&["compile", p(model), "-o", p(so), "--shape", shape]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.contains("peak activations"))
        .unwrap_or_else(|| panic!("no memory plan line in:\n{err}"))
        .to_string();
    let bytes = number_after(&line, "peak activations ") as u64;
    (line, bytes)
}

/// linear-attn compiled KV-first: the memory plan's peak activations grow linearly with the
/// sequence (4 times the bytes for 4 times the tokens; an `n x n` buffer would grow 16
/// times), as `--shape` reports them.
#[test]
fn linear_attention_memory_grows_linearly() {
    let model = tcc_tests::shared_dir().join("models/linear-attn/model.onnx");
    let peak = |seq: u32| -> u64 {
        let dir = scratch(&format!("linear-peak-{seq}"));
        peak_at(&model, &dir.join("la.so"), &format!("batch=1,seq={seq}")).1
    };
    let (a, b) = (peak(1024), peak(4096));
    assert!(
        b <= 4 * a + 4 * 1024 * 1024,
        "peak activations {a} bytes at seq=1024 and {b} at seq=4096: more than linear"
    );
}

/// `--explain` says where a choice depends on the sizes: linear-attn's KV-first form against
/// the `n x n` one, by `seq` (the crossover is a number between 4 and 4096, the costs on both
/// sides printed); minilm-l6, whose forms are the same at every size, has no such line.
#[test]
fn explain_reports_size_dependent_choices() {
    let explain = |model: &str| {
        let m = tcc_tests::shared_dir().join(format!("models/{model}/model.onnx"));
        let o = tcc(&["compile", p(&m), "--emit", "ir", "--explain"]);
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    let la = explain("linear-attn");
    let line = la
        .lines()
        .find(|l| l.starts_with("size-dependent choice:"))
        .unwrap_or_else(|| panic!("no size-dependent choice for linear-attn:\n{la}"));
    let from = number_after(line, "from seq = ");
    assert!(
        (4..=4096).contains(&from),
        "crossover at seq = {from}: {line}"
    );
    let minilm = explain("minilm-l6");
    assert!(
        !minilm.contains("size-dependent choice"),
        "minilm-l6 should not depend on the sizes:\n{minilm}"
    );
}

/// Output to a path that is not a regular file: `/dev/null` is written into, never replaced
/// (a rename over it would swap the device for a file, as root), for the IR, an object file
/// and `tcc run`'s outputs; a library, which is two files renamed into place, is refused with
/// an error naming the path.
#[test]
fn output_to_dev_null_writes_into_it_and_a_library_there_is_refused() {
    use std::os::unix::fs::FileTypeExt;
    let null = Path::new("/dev/null");
    let is_device = || {
        std::fs::symlink_metadata(null)
            .map(|m| m.file_type().is_char_device())
            .unwrap_or(false)
    };
    assert!(
        is_device(),
        "/dev/null is not a character device before the test"
    );
    let model = example("model.onnx");
    for emit in ["ir", "obj"] {
        let o = tcc(&["compile", p(&model), "--emit", emit, "-o", "/dev/null"]);
        assert!(o.status.success(), "--emit {emit}: {}", stderr(&o));
        assert!(
            is_device(),
            "--emit {emit} -o /dev/null replaced the device"
        );
    }
    let o = tcc(&["compile", p(&model), "-o", "/dev/null"]);
    assert_fails_naming(&o, &["/dev/null", "not a regular file"]);
    assert!(
        is_device(),
        "a library compile to /dev/null replaced the device"
    );

    let dir = scratch("dev-null");
    let so = dir.join("tiny.so");
    let o = tcc(&["compile", p(&model), "-o", p(&so)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = tcc(&[
        "run",
        p(&so),
        "--inputs",
        p(&example("inputs.npz")),
        "--output",
        "/dev/null",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        is_device(),
        "tcc run --output /dev/null replaced the device"
    );
}

/// linear-attn's library holds both forms, split where `--explain` puts the crossover: the
/// header lists them, `--shape` reports the plan of the form of its size (the `n x n` form's
/// peak grows with the square of `seq`, the KV-first one's linearly), and `--one-form` keeps
/// only the hinted sizes' form. (Their outputs are checked against ONNX Runtime's on both
/// sides of the crossover, `seq` 77 and 128 to 4096, by lower_models.rs.)
#[test]
fn linear_attention_library_holds_both_forms_split_at_the_crossover() {
    let model = tcc_tests::shared_dir().join("models/linear-attn/model.onnx");
    let explained = tcc(&["compile", p(&model), "--emit", "ir", "--explain"]);
    assert!(explained.status.success(), "{}", stderr(&explained));
    let err = stderr(&explained);
    let from = number_after(&err, "from seq = ");
    let dir = scratch("linear-forms");
    let so = dir.join("la.so");
    let peak = |seq: i64| peak_at(&model, &so, &format!("batch=1,seq={seq}"));
    let header = || std::fs::read_to_string(dir.join("la.h")).unwrap();
    let (below, small) = peak(from - 1);
    let h = header();
    assert!(
        h.contains(&format!("form 0: seq < {from}"))
            && h.contains(&format!("form 1: seq >= {from}")),
        "the header does not list the forms split at seq = {from}:\n{h}"
    );
    assert!(below.contains("(form 0)"), "{below}");
    let (above, large) = peak(4 * (from - 1));
    assert!(above.contains("(form 1)"), "{above}");
    // Four times the tokens: the KV-first form needs less than the n x n form's 16 times.
    assert!(
        large < 8 * small,
        "peaks {small} and {large} bytes: {below} / {above}"
    );

    let o = tcc(&["compile", p(&model), "-o", p(&so), "--one-form"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !header().contains("form 0"),
        "--one-form kept several forms"
    );
    assert!(!stderr(&o).contains("holds"), "{}", stderr(&o));
}
