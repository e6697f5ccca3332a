//! The example programs end to end: the tiny-encoder is compiled with the built `tcc`, then
//! examples/c (linked against the library at link time) and examples/rust (loading it with
//! dlopen) are built and run on it. Their outputs are compared with tcc's reference
//! interpreter on the same inputs and with each other, and the C program runs clean under
//! valgrind (on a library compiled for x86-64-v3, since valgrind cannot run AVX-512).
//! examples/generate decodes greedily with the zoo's GPT-2s exported with their key/value
//! cache, and must generate the tokens their references record.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use support::{compiled_tiny, header_in, scratch, stderr, stdout, tcc, tiny, workspace, PREFIX};
use tcc_ir::DType;
use tcc_ir::Tensor;

/// The examples' batch (examples/c/README.md): two sequences of eight tokens, sequence `b`
/// holding `8 - 3 b` real tokens, token `s` being `1 + (7 s + 13 b) % 97`, padding 0.
fn example_batch() -> Vec<(String, Tensor)> {
    let (batch, seq) = (2usize, 8usize);
    let len = |b: usize| (seq - 3 * b).max(1);
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for b in 0..batch {
        for s in 0..seq {
            let real = s < len(b);
            ids.push(if real {
                1 + (7 * s + 13 * b) as i64 % 97
            } else {
                0
            });
            mask.push(i64::from(real));
        }
    }
    vec![
        (
            "input_ids".into(),
            Tensor::from_vec(vec![batch, seq], ids).expect("ids"),
        ),
        (
            "attention_mask".into(),
            Tensor::from_vec(vec![batch, seq], mask).expect("mask"),
        ),
    ]
}

/// `last_hidden_state` from tcc's reference interpreter on the examples' batch.
fn interpreter_reference() -> &'static Tensor {
    static REF: OnceLock<Tensor> = OnceLock::new();
    REF.get_or_init(|| {
        let dir = scratch("reference");
        let inputs = dir.join("inputs.npz");
        tcc_npz::write_npz(&inputs, &example_batch()).expect("write the inputs");
        let output = dir.join("reference.npz");
        let o = tcc(&[
            "interpret".as_ref(),
            tiny("model.onnx").as_os_str(),
            "--inputs".as_ref(),
            inputs.as_os_str(),
            "--output".as_ref(),
            output.as_os_str(),
        ]);
        assert!(o.status.success(), "tcc interpret failed:\n{}", stderr(&o));
        let mut arrays = tcc_npz::read_npz(&output).expect("read the reference");
        let (name, tensor) = arrays.remove(0);
        assert_eq!(name, "last_hidden_state");
        tensor
    })
}

/// Builds examples/c against the library in `lib_dir` into `lib_dir/main`.
fn build_c_example(lib_dir: &Path) -> PathBuf {
    make_example("c", lib_dir, PREFIX, &lib_dir.join("main"))
}

/// Builds `examples/EXAMPLE` with its Makefile against the library of `prefix` in `lib_dir`
/// (and the header tcc wrote beside it) into `exe`, and returns `exe`.
fn make_example(example: &str, lib_dir: &Path, prefix: &str, exe: &Path) -> PathBuf {
    let header = header_in(lib_dir);
    let o = Command::new("make")
        .arg("-s")
        .arg("-B")
        .arg("-C")
        .arg(workspace().join("examples").join(example))
        .arg(format!("MODEL_DIR={}", lib_dir.display()))
        .arg(format!("PREFIX={prefix}"))
        .arg(format!(
            "HEADER={}",
            header.file_name().expect("a file name").to_string_lossy()
        ))
        .arg(format!("OUT={}", exe.display()))
        .output()
        .expect("run make (install make and a C compiler)");
    assert!(
        o.status.success(),
        "examples/{example} does not build against {}:\n{}{}",
        lib_dir.display(),
        stdout(&o),
        stderr(&o)
    );
    exe.to_path_buf()
}

/// Builds examples/rust (a workspace member) with cargo, into its own target directory so
/// that it does not wait for the lock of the build running these tests.
fn rust_example() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("example-rust-target");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let o = Command::new(cargo)
            .current_dir(workspace())
            .args(["build", "--quiet", "-p", "tcc-example-rust", "--target-dir"])
            .arg(&target)
            .output()
            .expect("run cargo");
        assert!(
            o.status.success(),
            "examples/rust does not build:\n{}",
            stderr(&o)
        );
        target.join("debug/tcc-example-rust")
    })
}

/// Runs a program with the library's default threads pinned to 2, so runs are comparable.
fn run(program: &Path, args: &[&Path]) -> Output {
    Command::new(program)
        .args(args)
        .env("TCC_NUM_THREADS", "2")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// Reads raw little-endian f32s.
fn read_f32s(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("read the dumped outputs");
    assert_eq!(bytes.len() % 4, 0, "{} is not f32s", path.display());
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Checks an example's stdout and dumped outputs against the interpreter's result.
fn check_against_reference(out: &str, dump: &Path) {
    let reference = interpreter_reference();
    let want = reference.as_slice::<f32>().expect("an f32 output");
    let got = read_f32s(dump);
    assert_eq!(got.len(), want.len(), "{out}");
    let scale = want.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    let tolerance = 1e-4 * scale;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance,
            "element {i}: the example computed {g}, the interpreter {w}"
        );
    }
    // The printed checksums are those of the dumped outputs, summed in order in f64.
    let sum: f64 = got.iter().map(|&x| f64::from(x)).sum();
    let abs_sum: f64 = got.iter().map(|&x| f64::from(x).abs()).sum();
    let line = format!(
        "output 0: last_hidden_state f32 [{}] sum={sum:.6} abs_sum={abs_sum:.6}",
        reference
            .shape()
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let expected_start = "model: 2 inputs, 1 outputs\n\
                          input 0: input_ids i64 [batch, seq]\n\
                          input 1: attention_mask i64 [batch, seq]\n\
                          session: 2 threads\n";
    assert_eq!(out, format!("{expected_start}{line}\nok\n"));
}

#[test]
fn the_c_example_matches_the_interpreter() {
    let dir = compiled_tiny(None);
    let exe = build_c_example(dir);
    let dump = dir.join("c-out.f32");
    let o = run(&exe, &[&dump]);
    assert!(o.status.success(), "the C example failed:\n{}", stderr(&o));
    check_against_reference(&stdout(&o), &dump);
}

#[test]
fn the_rust_example_matches_the_interpreter_and_the_c_example() {
    let dir = compiled_tiny(None);
    let so = dir.join(format!("lib{PREFIX}.so"));
    let rust_dump = dir.join("rust-out.f32");
    let o = run(rust_example(), &[&so, Path::new(PREFIX), &rust_dump]);
    assert!(
        o.status.success(),
        "the Rust example failed:\n{}",
        stderr(&o)
    );
    let rust_out = stdout(&o);
    check_against_reference(&rust_out, &rust_dump);

    // The same library on the same inputs: the same lines and the same bits.
    let c_dump = dir.join("c-out-2.f32");
    let c = run(&build_c_example(dir), &[&c_dump]);
    assert!(c.status.success(), "the C example failed:\n{}", stderr(&c));
    assert_eq!(rust_out, stdout(&c));
    assert_eq!(
        std::fs::read(&rust_dump).expect("rust dump"),
        std::fs::read(&c_dump).expect("c dump")
    );
}

#[test]
fn the_rust_example_reports_a_wrong_prefix() {
    let so = compiled_tiny(None).join(format!("lib{PREFIX}.so"));
    let o = run(rust_example(), &[&so, Path::new("nosuch")]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("nosuch_session_create") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn the_c_example_runs_clean_under_valgrind() {
    let dir = compiled_tiny(Some("x86-64-v3"));
    let exe = build_c_example(dir);
    let dump = dir.join("valgrind-out.f32");
    let o = Command::new("valgrind")
        .args(["--error-exitcode=1", "--leak-check=full", "--quiet"])
        .arg(&exe)
        .arg(&dump)
        .env("TCC_NUM_THREADS", "2")
        .output()
        .unwrap_or_else(|e| {
            panic!("valgrind could not run ({e}); install it (scripts/setup.sh does)")
        });
    assert!(o.status.success(), "valgrind reports:\n{}", stderr(&o));
    check_against_reference(&stdout(&o), &dump);
}

/// The prefix the tests compile the cached GPT-2s with (examples/generate's default).
const GPT2_PREFIX: &str = "gpt2";

/// A file of the zoo's `model` (such as `gpt2-cache-ts17`).
fn zoo(model: &str, file: &str) -> PathBuf {
    workspace().join("tests/zoo").join(model).join(file)
}

/// Compiles the zoo's `model` into `DIR/libgpt2.so` (for the target CPU, or the host), builds
/// examples/generate against it into `DIR/generate`, and returns that program; once per test
/// binary and per model and CPU, since tests running at the same time share them.
fn build_generate(model: &str, target_cpu: Option<&str>) -> PathBuf {
    type Cache = Mutex<HashMap<String, Arc<OnceLock<PathBuf>>>>;
    static BUILT: OnceLock<Cache> = OnceLock::new();
    let name = format!("generate-{model}-{}", target_cpu.unwrap_or("host"));
    let cell = BUILT
        .get_or_init(Cache::default)
        .lock()
        .expect("the cache's lock")
        .entry(name.clone())
        .or_default()
        .clone();
    cell.get_or_init(|| compile_and_build_generate(&name, model, target_cpu))
        .clone()
}

fn compile_and_build_generate(name: &str, model: &str, target_cpu: Option<&str>) -> PathBuf {
    let dir = scratch(name);
    let so = dir.join(format!("lib{GPT2_PREFIX}.so"));
    let mut args = vec![
        "compile".into(),
        zoo(model, "model.onnx").into_os_string(),
        "-o".into(),
        so.clone().into_os_string(),
        "--prefix".into(),
        GPT2_PREFIX.into(),
    ];
    if let Some(cpu) = target_cpu {
        args.extend(["--target-cpu".into(), cpu.into()]);
    }
    let o = tcc(&args);
    assert!(
        o.status.success(),
        "tcc compile {args:?} failed:\n{}",
        stderr(&o)
    );
    make_example("generate", &dir, GPT2_PREFIX, &dir.join("generate"))
}

/// One array of a zoo reference.
fn reference_array(model: &str, case: &str, name: &str) -> Tensor {
    let path = zoo(model, &format!("ref_{case}.npz"));
    tcc_npz::read_npz(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{} has no `{name}`", path.display()))
        .1
}

fn i64s(t: &Tensor) -> Vec<i64> {
    assert_eq!(t.dtype(), DType::I64);
    t.as_slice::<i64>().expect("i64 elements").to_vec()
}

/// The prompt of the references' greedy generation (`ref_prefill`'s input_ids, batch 1) and
/// the four tokens that follow it: the one token each of `ref_step1..3` feeds, then the argmax
/// of `ref_step3`'s last logits row (ties to the lowest id).
fn reference_generation(model: &str) -> (Vec<i64>, Vec<i64>) {
    let prompt = reference_array(model, "prefill", "input_ids");
    assert_eq!(prompt.shape()[0], 1, "{model}: a prompt of batch 1");
    let mut tokens = Vec::new();
    for step in ["step1", "step2", "step3"] {
        let ids = i64s(&reference_array(model, step, "input_ids"));
        assert_eq!(ids.len(), 1, "{model} {step}: one token per step");
        tokens.push(ids[0]);
    }
    let logits = reference_array(model, "step3", "logits");
    let vocab = *logits
        .shape()
        .last()
        .expect("logits have a vocabulary axis");
    let all = logits.as_slice::<f32>().expect("f32 logits");
    let last = &all[all.len() - vocab..];
    let next = (1..vocab).fold(0, |best, k| if last[k] > last[best] { k } else { best });
    tokens.push(i64::try_from(next).expect("a token id"));
    (i64s(&prompt), tokens)
}

fn joined(tokens: &[i64]) -> Vec<String> {
    tokens.iter().map(i64::to_string).collect()
}

/// Checks examples/generate's output: the generated tokens on the first line, the timings on
/// the second (milliseconds, non-negative: the prefill's and the decoding steps' mean).
fn check_generation(model: &str, o: &Output, prompt_len: usize, want: &[i64]) {
    assert!(
        o.status.success(),
        "examples/generate failed on {model}:\n{}",
        stderr(o)
    );
    let out = stdout(o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{model}: {out}");
    assert_eq!(
        lines[0],
        format!("generated: {}", joined(want).join(" ")),
        "{model}: the tokens differ from the references' greedy generation"
    );
    // time: prefill P ms (T tokens), decode D ms/step (mean of S steps), N threads
    let ms = |number: &str| {
        let v: f64 = number
            .parse()
            .unwrap_or_else(|e| panic!("`{number}`: {e}: {out}"));
        assert!(v >= 0.0 && v.is_finite(), "{out}");
    };
    let rest = lines[1].strip_prefix("time: prefill ").expect(&out);
    let (prefill, rest) = rest.split_once(" ms (").expect(&out);
    ms(prefill);
    let rest = rest
        .strip_prefix(&format!("{prompt_len} tokens), decode "))
        .expect(&out);
    let (decode, rest) = rest.split_once(" ms/step (").expect(&out);
    ms(decode);
    assert_eq!(
        rest,
        format!("mean of {} steps), 2 threads", want.len() - 1),
        "{out}"
    );
}

/// Runs examples/generate on a prompt of `prompt` for `-n new` tokens.
fn run_generate(exe: &Path, new: usize, prompt: &[i64]) -> Output {
    Command::new(exe)
        .arg("-n")
        .arg(new.to_string())
        .args(joined(prompt))
        .env("TCC_NUM_THREADS", "2")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
}

#[test]
fn the_generate_example_follows_the_references_greedy_generation() {
    for model in ["gpt2-cache-ts17", "gpt2-cache-dynamo18"] {
        let (prompt, want) = reference_generation(model);
        let exe = build_generate(model, None);
        let o = run_generate(&exe, want.len(), &prompt);
        check_generation(model, &o, prompt.len(), &want);
    }
}

#[test]
fn the_generate_example_runs_clean_under_valgrind() {
    let model = "gpt2-cache-ts17";
    let (prompt, want) = reference_generation(model);
    let exe = build_generate(model, Some("x86-64-v3"));
    let o = Command::new("valgrind")
        .args(["--error-exitcode=1", "--leak-check=full", "--quiet"])
        .arg(&exe)
        .arg("-n")
        .arg(want.len().to_string())
        .args(joined(&prompt))
        .env("TCC_NUM_THREADS", "2")
        .output()
        .unwrap_or_else(|e| {
            panic!("valgrind could not run ({e}); install it (scripts/setup.sh does)")
        });
    check_generation(model, &o, prompt.len(), &want);
}

/// A token id beyond the vocabulary passes the program (it leaves the range to the model) and
/// the library's interface checks (they see dims, not values); the gather of the token
/// embedding refuses it at run time, and the program exits 1 with the API's message.
#[test]
fn the_generate_example_reports_a_token_beyond_the_vocabulary() {
    let model = "gpt2-cache-dynamo18";
    let (mut prompt, _) = reference_generation(model);
    prompt[2] = 100_000;
    let o = run_generate(&build_generate(model, None), 4, &prompt);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    assert!(
        err.starts_with("error: prefill (7 tokens): invalid argument: ")
            && err.contains("out of range")
            && err.contains("token id"),
        "{err}"
    );
}
