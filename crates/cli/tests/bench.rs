//! `tcc bench` end to end: the tiny-encoder example is compiled with the built `tcc` into a
//! model library, which `tcc bench` loads, binds npz inputs to by name and times; and the
//! error paths, each a clean failure naming what is at fault.

mod support;

use std::path::Path;
use support::{compiled_tiny, scratch, stderr, stdout, tcc, tiny, PREFIX};
use tcc_ir::Tensor;

/// The numbers of the last line, `tcc bench: runs=N threads=T min=A median=B max=C ms`.
#[derive(Debug)]
struct Summary {
    runs: usize,
    threads: usize,
    min: f64,
    median: f64,
    max: f64,
}

/// Parses the last line of `tcc bench`'s output, insisting on its exact form.
fn summary(out: &str) -> Summary {
    let last = out.lines().last().expect("tcc bench printed something");
    let rest = last
        .strip_prefix("tcc bench: ")
        .and_then(|r| r.strip_suffix(" ms"))
        .unwrap_or_else(|| panic!("last line is not a summary: {last:?}"));
    let fields: Vec<(&str, &str)> = rest
        .split(' ')
        .map(|f| f.split_once('=').unwrap_or_else(|| panic!("{last:?}")))
        .collect();
    let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        ["runs", "threads", "min", "median", "max"],
        "{last:?}"
    );
    for (_, v) in &fields[2..] {
        let decimals = v.split_once('.').map(|(_, d)| d.len());
        assert_eq!(decimals, Some(3), "times have three decimals: {last:?}");
    }
    Summary {
        runs: fields[0].1.parse().expect("runs"),
        threads: fields[1].1.parse().expect("threads"),
        min: fields[2].1.parse().expect("min"),
        median: fields[3].1.parse().expect("median"),
        max: fields[4].1.parse().expect("max"),
    }
}

fn library() -> std::path::PathBuf {
    compiled_tiny(None).join(format!("lib{PREFIX}.so"))
}

fn p(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Asserts a clean failure: non-zero exit, `error:`, every name in the message, no panic.
fn assert_fails_naming(o: &std::process::Output, names: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected a failure; stderr:\n{err}");
    assert!(err.contains("error:"), "no `error:` in stderr:\n{err}");
    assert!(!err.contains("panicked"), "tcc panicked:\n{err}");
    for name in names {
        assert!(err.contains(name), "stderr does not name `{name}`:\n{err}");
    }
}

fn example_inputs() -> Vec<(String, Tensor)> {
    tcc_npz::read_npz(&tiny("inputs.npz")).expect("read the example inputs")
}

#[test]
fn bench_times_the_compiled_tiny_encoder() {
    let so = library();
    let o = tcc(&[
        "bench",
        p(&so),
        "--inputs",
        p(&tiny("inputs.npz")),
        "--runs",
        "7",
        "--warmup",
        "2",
        "--threads",
        "2",
    ]);
    assert!(o.status.success(), "tcc bench failed:\n{}", stderr(&o));
    let out = stdout(&o);
    let s = summary(&out);
    assert_eq!((s.runs, s.threads), (7, 2), "{out}");
    assert!(
        0.0 < s.min && s.min <= s.median && s.median <= s.max,
        "{s:?}"
    );
    // The prefix was found in the library, the inputs bound by name, and the output has the
    // inputs' batch and sequence length.
    assert!(out.contains(&format!("(prefix `{PREFIX}`)")), "{out}");
    assert!(
        out.contains("input_ids i64[batch, seq]") && out.contains("attention_mask i64[batch, seq]"),
        "{out}"
    );
    assert!(out.contains("last_hidden_state f32[2, 7, 32]"), "{out}");
}

#[test]
fn bench_takes_a_reference_archive_and_an_explicit_prefix() {
    // expected.npz also holds last_hidden_state, which is not an input and is ignored.
    let o = tcc(&[
        "bench",
        p(&library()),
        "--inputs",
        p(&tiny("expected.npz")),
        "--runs",
        "20",
        "--prefix",
        PREFIX,
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "tcc bench failed:\n{}", stderr(&o));
    let s = summary(&stdout(&o));
    assert_eq!((s.runs, s.threads), (20, 1));
}

#[test]
fn bench_without_threads_lets_the_library_choose() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tcc"))
        .args(["bench", p(&library()), "--inputs", p(&tiny("inputs.npz"))])
        .env("TCC_NUM_THREADS", "1")
        .output()
        .expect("run tcc");
    assert!(o.status.success(), "tcc bench failed:\n{}", stderr(&o));
    let s = summary(&stdout(&o));
    // The defaults: 20 runs; TCC_NUM_THREADS decides the threads.
    assert_eq!((s.runs, s.threads), (20, 1));
}

#[test]
fn bench_refuses_inputs_that_do_not_fit_naming_them() {
    let dir = scratch("bad-inputs");
    let so = library();
    let inputs = example_inputs();
    let get = |name: &str| {
        inputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .expect("an example input")
    };
    let write = |file: &str, arrays: Vec<(&str, Tensor)>| {
        let path = dir.join(file);
        let arrays: Vec<(String, Tensor)> = arrays
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        tcc_npz::write_npz(&path, &arrays).expect("write a test npz");
        path
    };
    let bench = |npz: &Path| tcc(&["bench", p(&so), "--inputs", p(npz), "--runs", "1"]);

    let missing = write("missing.npz", vec![("input_ids", get("input_ids"))]);
    assert_fails_naming(
        &bench(&missing),
        &["attention_mask", "missing.npz", "input_ids"],
    );

    let wrong_dtype = write(
        "dtype.npz",
        vec![
            ("input_ids", get("input_ids").cast(tcc_ir::DType::I32)),
            ("attention_mask", get("attention_mask")),
        ],
    );
    assert_fails_naming(
        &bench(&wrong_dtype),
        &["input_ids", "i32", "i64[batch, seq]"],
    );

    let short_mask = Tensor::from_vec(vec![2, 6], vec![1i64; 12]).expect("a mask");
    let disagree = write(
        "seq.npz",
        vec![
            ("input_ids", get("input_ids")),
            ("attention_mask", short_mask),
        ],
    );
    assert_fails_naming(&bench(&disagree), &["attention_mask", "`seq`", "6", "7"]);

    let rank = write(
        "rank.npz",
        vec![
            (
                "input_ids",
                Tensor::from_vec(vec![7], vec![1i64; 7]).expect("ids"),
            ),
            ("attention_mask", get("attention_mask")),
        ],
    );
    assert_fails_naming(&bench(&rank), &["input_ids", "[7]"]);
}

#[test]
fn bench_refuses_what_is_not_a_model_library() {
    let npz = tiny("inputs.npz");
    // A file that is not a shared library.
    assert_fails_naming(
        &tcc(&["bench", p(&npz), "--inputs", p(&npz)]),
        &["inputs.npz", "cannot load"],
    );
    // A file that does not exist.
    assert_fails_naming(
        &tcc(&["bench", "/nonexistent/model.so", "--inputs", p(&npz)]),
        &["/nonexistent/model.so", "does not exist"],
    );
    // A shared library that is not a tcc model: the C library.
    let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    if libc.exists() {
        assert_fails_naming(
            &tcc(&["bench", p(libc), "--inputs", p(&npz)]),
            &["libc.so.6", "not a tcc model library"],
        );
    }
}

#[test]
fn bench_refuses_bad_options() {
    let so = library();
    let npz = tiny("inputs.npz");
    assert_fails_naming(
        &tcc(&["bench", p(&so), "--inputs", p(&npz), "--runs", "0"]),
        &["--runs"],
    );
    assert_fails_naming(
        &tcc(&["bench", p(&so), "--inputs", p(&npz), "--prefix", "other"]),
        &["other_session_create", "prefix `other`"],
    );
    assert_fails_naming(
        &tcc(&["bench", p(&so), "--inputs", "/nonexistent/in.npz"]),
        &["/nonexistent/in.npz"],
    );
}
