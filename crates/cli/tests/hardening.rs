//! Hostile files given to the `tcc` binary (issue 15): each must end in a clean error (a
//! non-zero exit code, `error:` naming the file, node or array at fault, no panic) and never
//! in a signal (an abort from a failed allocation, SIGBUS or SIGSEGV inside dlopen). They run
//! the binary in a subprocess, so an abort fails the test instead of killing the runner. And
//! `tcc compile`'s temporaries: removed on failure, removed by the next compile if a killed
//! one left them, the old library and header kept whole when the new ones cannot be
//! installed.

mod support;

#[path = "../../npz/tests/support/deflate_bomb.rs"]
mod deflate_bomb;

use prost::Message;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{compiled_tiny, scratch, stderr, tcc, tiny, PREFIX};
use tcc_onnx::proto::{
    attribute_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TypeProto, ValueInfoProto,
};

/// Asserts a clean failure: no signal, a non-zero exit, `error:` and each of `names` in the
/// message, and no panic.
fn assert_clean_failure(o: &Output, names: &[&str]) {
    let err = stderr(o);
    assert!(
        o.status.signal().is_none(),
        "tcc was killed by signal {:?}:\n{err}",
        o.status.signal()
    );
    assert!(!o.status.success(), "expected a failure; stderr:\n{err}");
    assert!(err.contains("error:"), "no `error:` in stderr:\n{err}");
    assert!(!err.contains("panicked"), "tcc panicked:\n{err}");
    for name in names {
        assert!(err.contains(name), "stderr does not name `{name}`:\n{err}");
    }
}

fn p(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// The files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list the directory")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .into_string()
                .unwrap()
        })
        .collect();
    names.sort();
    names
}

// ------------------------------------------------------------- Range and constant folding

/// A scalar initializer of ONNX element type `elem` (1 f32, 7 i64).
fn scalar(name: &str, elem: i32, value: f64) -> TensorProto {
    let mut t = TensorProto {
        name: Some(name.into()),
        data_type: Some(elem),
        ..Default::default()
    };
    match elem {
        1 => t.float_data = vec![value as f32],
        7 => t.int64_data = vec![value as i64],
        _ => panic!("no test scalars of element type {elem}"),
    }
    t
}

fn node(name: &str, op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        domain: Some(String::new()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

/// A model of `Range(start, limit, delta)` of element type `elem`, optionally followed by
/// `Cast` to f32 and `Mul` by 2 (what constant folding could try to evaluate), saved in `dir`.
fn range_model(dir: &Path, file: &str, elem: i32, range: (f64, f64, f64), arith: bool) -> PathBuf {
    let mut nodes = vec![node("r", "Range", &["s", "l", "d"], "r")];
    let mut inits = vec![
        scalar("s", elem, range.0),
        scalar("l", elem, range.1),
        scalar("d", elem, range.2),
    ];
    let mut out = ("r", elem);
    if arith {
        let mut cast = node("c", "Cast", &["r"], "c");
        cast.attribute = vec![AttributeProto {
            name: Some("to".into()),
            r#type: Some(attribute_proto::AttributeType::Int as i32),
            i: Some(1),
            ..Default::default()
        }];
        nodes.push(cast);
        nodes.push(node("y", "Mul", &["c", "two"], "y"));
        inits.push(scalar("two", 1, 2.0));
        out = ("y", 1);
    }
    let model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: nodes,
            initializer: inits,
            output: vec![ValueInfoProto {
                name: Some(out.0.into()),
                r#type: Some(TypeProto {
                    value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                        elem_type: Some(out.1),
                        shape: None,
                    })),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let path = dir.join(file);
    std::fs::write(&path, model.encode_to_vec()).expect("write the model");
    path
}

/// An empty npz: the inputs of a model without inputs.
fn empty_npz(dir: &Path) -> PathBuf {
    let path = dir.join("empty.npz");
    tcc_npz::write_npz(&path, &[]).expect("write an empty npz");
    path
}

#[test]
fn float_ranges_too_large_to_import_are_clean_errors() {
    // Range(0, 2^31, 1) of f32 aborted with "memory allocation of 8589934592 bytes failed";
    // Range(0, 1, 1e-30) panicked with "capacity overflow".
    let dir = scratch("float-ranges");
    for (file, range) in [
        ("big.onnx", (0.0, 2f64.powi(31), 1.0)),
        ("fine.onnx", (0.0, 1.0, 1e-30)),
    ] {
        let model = range_model(&dir, file, 1, range, false);
        for args in [
            vec!["inspect", p(&model)],
            vec!["compile", p(&model), "--emit", "ir"],
        ] {
            let o = tcc(&args);
            assert_clean_failure(&o, &[file, "Range"]);
        }
    }
}

#[test]
fn huge_integer_ranges_compile_unfolded_and_the_interpreter_refuses_them() {
    // Range(0, 2^31, 1) of i64, then cast to f32 and doubled: 16 GiB and 8 GiB if folded.
    let dir = scratch("int-ranges");
    let inputs = empty_npz(&dir);
    for arith in [false, true] {
        let file = if arith {
            "range_mul.onnx"
        } else {
            "range.onnx"
        };
        let model = range_model(&dir, file, 7, (0.0, 2f64.powi(31), 1.0), arith);
        let o = tcc(&["inspect", p(&model)]);
        assert!(o.status.success(), "inspect failed:\n{}", stderr(&o));
        let o = tcc(&["compile", p(&model), "--emit", "ir"]);
        assert!(o.status.success(), "compile failed:\n{}", stderr(&o));
        let ir = String::from_utf8_lossy(&o.stdout);
        assert!(ir.contains("range<"), "the range was folded:\n{ir}");
        let library = dir.join(format!("lib{}.so", if arith { "mul" } else { "plain" }));
        let o = tcc(&["compile", p(&model), "-o", p(&library)]);
        assert!(o.status.success(), "compile failed:\n{}", stderr(&o));
        // The interpreter would need 16 GiB for the range: an error naming the op.
        let out = dir.join("out.npz");
        let o = tcc(&[
            "interpret",
            p(&model),
            "--inputs",
            p(&inputs),
            "--output",
            p(&out),
        ]);
        assert_clean_failure(&o, &[file, "range", "limit"]);
        assert!(!out.exists(), "a failed run wrote its output");
    }
}

// ------------------------------------------------------------------------------ npz

#[test]
fn run_refuses_an_npz_that_inflates_past_the_limit() {
    // 8 MB on disk, 8 GiB of f32 once inflated: aborted `tcc run`.
    let lib = compiled_tiny(None).join(format!("lib{PREFIX}.so"));
    let dir = scratch("npz-bomb");
    let bomb = dir.join("bomb.npz");
    let size = deflate_bomb::write_bomb(&bomb, "input_ids", "<f4", "(2147483648,)", 8 << 30);
    assert!(size < 16 << 20, "{size} bytes");
    let out = dir.join("out.npz");
    let o = tcc(&["run", p(&lib), "--inputs", p(&bomb), "--output", p(&out)]);
    assert_clean_failure(&o, &["bomb.npz", "input_ids", "4294967296"]);
    assert!(!out.exists(), "a failed run wrote its output");
}

// ------------------------------------------------------------------------- libraries

/// `bytes` with the 16-bit field at `at` set to `value`.
fn with_u16(bytes: &[u8], at: usize, value: u16) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at..at + 2].copy_from_slice(&value.to_le_bytes());
    b
}

#[test]
fn run_and_bench_refuse_truncated_and_foreign_libraries_before_loading_them() {
    let good = std::fs::read(compiled_tiny(None).join(format!("lib{PREFIX}.so")))
        .expect("read the compiled library");
    let dir = scratch("bad-libraries");
    let inputs = tiny("inputs.npz");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "half.so",
            good[..good.len() / 2].to_vec(),
            "past the end of the file",
        ),
        (
            "short.so",
            good[..good.len() - 1].to_vec(),
            "past the end of the file",
        ),
        (
            "header-only.so",
            good[..64].to_vec(),
            "past the end of the file",
        ),
        ("tiny.so", good[..10].to_vec(), "fewer than an ELF header"),
        ("empty.so", Vec::new(), "fewer than an ELF header"),
        ("text.so", b"not a library at all\n".repeat(10), "ELF magic"),
        ("arm.so", with_u16(&good, 18, 183), "not x86-64"),
        ("exec.so", with_u16(&good, 16, 2), "not a shared object"),
    ];
    for (file, bytes, says) in cases {
        let lib = dir.join(file);
        std::fs::write(&lib, bytes).expect("write the library");
        let out = dir.join("out.npz");
        let o = tcc(&["run", p(&lib), "--inputs", p(&inputs), "--output", p(&out)]);
        assert_clean_failure(&o, &[file, says]);
        assert!(!out.exists(), "a failed run wrote its output");
        let o = tcc(&["bench", p(&lib), "--inputs", p(&inputs), "--runs", "1"]);
        assert_clean_failure(&o, &[file, says]);
    }
    // A directory and a FIFO are not libraries either (a FIFO would block a reader).
    let o = tcc(&["run", p(&dir), "--inputs", p(&inputs), "--output", "x.npz"]);
    assert_clean_failure(&o, &["directory"]);
    let fifo = dir.join("fifo.so");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let o = tcc(&["run", p(&fifo), "--inputs", p(&inputs), "--output", "x.npz"]);
        assert_clean_failure(&o, &["fifo.so", "not a regular file"]);
    }
}

// ------------------------------------------------------------------ compile's files

/// A process id that no process can have: one past the kernel's largest.
fn dead_pid() -> u32 {
    let max = std::fs::read_to_string("/proc/sys/kernel/pid_max").expect("read pid_max");
    max.trim().parse::<u32>().expect("pid_max is a number") + 1
}

/// `tcc compile` of the tiny encoder into `dir/libmodel.so`, with `env` set for the process.
fn compile_tiny(dir: &Path, env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcc"));
    cmd.args([
        "compile",
        p(&tiny("model.onnx")),
        "-o",
        p(&dir.join("libmodel.so")),
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tcc")
}

#[test]
fn stale_temporaries_of_a_killed_compile_are_removed_by_the_next() {
    let dir = scratch("stale");
    let tmp = scratch("stale-tmp");
    let dead = dead_pid();
    let me = std::process::id();
    // What a compile killed during linking leaves (this version's names and the previous
    // version's), another output's temporaries, a live process's, and a file of the user's.
    let stale = [
        format!(".libmodel.so.tcc-{dead}.so"),
        format!(".libmodel.so.tcc-{dead}.h"),
        format!("..libmodel.so.tcc-{dead}.so.tcc-{dead}.o"),
        format!("..libmodel.so.tcc-{dead}.so.{dead}.0.tmp"),
        format!(".libmodel.so.tcc-{dead}.o"),
        format!(".libmodel.so.{dead}.0.tmp"),
        format!(".libmodel.h.{dead}.1.tmp"),
    ];
    let kept = [
        format!(".libmodel.so.tcc-{me}.so"),
        format!(".other.so.tcc-{dead}.so"),
        ".libmodel.so.bak".to_string(),
    ];
    for name in stale.iter().chain(&kept) {
        std::fs::write(dir.join(name), vec![0u8; 4096]).expect("write a temporary");
    }
    let scratch_dead = tmp.join(format!("tcc-link-{dead}-0"));
    let scratch_live = tmp.join(format!("tcc-link-{me}-0"));
    for d in [&scratch_dead, &scratch_live] {
        std::fs::create_dir_all(d).expect("make a link scratch directory");
        std::fs::write(d.join("libtcc_runtime.a"), b"!<arch>\n").expect("write into it");
    }
    let o = compile_tiny(&dir, &[("TMPDIR", &tmp)]);
    assert!(o.status.success(), "compile failed:\n{}", stderr(&o));
    let mut want: Vec<String> = kept.to_vec();
    want.extend(["libmodel.h".to_string(), "libmodel.so".to_string()]);
    want.sort();
    assert_eq!(
        listing(&dir),
        want,
        "stale temporaries left, or others removed"
    );
    assert!(
        !scratch_dead.exists(),
        "the dead compile's link scratch is still there"
    );
    assert!(
        scratch_live.exists(),
        "a live process's link scratch was removed"
    );
}

#[test]
fn a_failed_link_leaves_the_old_pair_and_no_temporaries() {
    let dir = scratch("failed-link");
    std::fs::write(dir.join("libmodel.so"), "old library").unwrap();
    std::fs::write(dir.join("libmodel.h"), "old header").unwrap();
    // No `cc` on the PATH: the link fails after code generation.
    let empty = scratch("failed-link-path");
    let o = compile_tiny(&dir, &[("PATH", &empty)]);
    assert_clean_failure(&o, &["libmodel.so", "cc"]);
    assert_eq!(listing(&dir), ["libmodel.h", "libmodel.so"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("libmodel.so")).unwrap(),
        "old library"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("libmodel.h")).unwrap(),
        "old header"
    );
}

#[test]
fn a_header_that_cannot_be_replaced_leaves_the_old_library() {
    let dir = scratch("blocked-header");
    std::fs::write(dir.join("libmodel.so"), "old library").unwrap();
    // A non-empty directory where the header goes: renaming a file over it fails.
    std::fs::create_dir(dir.join("libmodel.h")).unwrap();
    std::fs::write(dir.join("libmodel.h").join("keep"), "x").unwrap();
    let o = compile_tiny(&dir, &[]);
    assert_clean_failure(&o, &["libmodel.h"]);
    assert_eq!(listing(&dir), ["libmodel.h", "libmodel.so"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("libmodel.so")).unwrap(),
        "old library"
    );
}

#[test]
fn a_library_that_cannot_be_replaced_puts_the_old_header_back() {
    let dir = scratch("blocked-library");
    std::fs::write(dir.join("libmodel.h"), "old header").unwrap();
    // The header is renamed into place first; then the library's rename fails.
    std::fs::create_dir(dir.join("libmodel.so")).unwrap();
    std::fs::write(dir.join("libmodel.so").join("keep"), "x").unwrap();
    let o = compile_tiny(&dir, &[]);
    assert_clean_failure(&o, &["libmodel.so"]);
    assert_eq!(listing(&dir), ["libmodel.h", "libmodel.so"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("libmodel.h")).unwrap(),
        "old header"
    );
    // Without an old header, the new one is removed again: no new header beside an old library.
    std::fs::remove_file(dir.join("libmodel.h")).unwrap();
    let o = compile_tiny(&dir, &[]);
    assert_clean_failure(&o, &["libmodel.so"]);
    assert_eq!(listing(&dir), ["libmodel.so"]);
}

#[test]
fn a_successful_compile_replaces_both_and_leaves_no_temporaries() {
    let dir = scratch("replace");
    std::fs::write(dir.join("libmodel.so"), "old library").unwrap();
    std::fs::write(dir.join("libmodel.h"), "old header").unwrap();
    let o = compile_tiny(&dir, &[]);
    assert!(o.status.success(), "compile failed:\n{}", stderr(&o));
    assert_eq!(listing(&dir), ["libmodel.h", "libmodel.so"]);
    let header = std::fs::read_to_string(dir.join("libmodel.h")).unwrap();
    assert!(header.contains("libmodel_run"), "{header}");
    let library = std::fs::read(dir.join("libmodel.so")).unwrap();
    assert_eq!(&library[..4], b"\x7fELF");
}

#[test]
fn outputs_that_cannot_be_written_are_refused_before_compiling() {
    let dir = scratch("bad-outputs");
    // A library named like its header.
    let o = tcc(&["compile", p(&tiny("model.onnx")), "-o", p(&dir.join("m.h"))]);
    assert_clean_failure(&o, &["m.h", "same file"]);
    // A directory that does not exist.
    let missing = dir.join("missing").join("libm.so");
    let o = tcc(&["compile", p(&tiny("model.onnx")), "-o", p(&missing)]);
    assert_clean_failure(&o, &["libm.so", "does not exist"]);
    assert_eq!(listing(&dir), Vec::<String>::new());
}
