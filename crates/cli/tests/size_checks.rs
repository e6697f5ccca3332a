//! Sizes a compiled model cannot prove at compile time are checked at run time (issue 15):
//! each Reshape case of the issue is compiled with `tcc compile`, run through the library's C
//! API on inputs whose element count does not fit (the run must fail with `TCC_ERR_SHAPE` and
//! a message naming the reshape and the sizes, before any kernel runs) and on inputs that fit
//! (the run must give the reshaped values). Then the same libraries, and the shared
//! bert-tiny, run under valgrind through `tcc run`, which must report no error.
//!
//! The cases, all on `x: f32[batch, seq, 8]` followed by a Relu: a constant target
//! `[4096, 4096]` (crashed with SIGSEGV on `[2, 5, 8]`), `[0, 100]` (returned 120 floats of
//! neighbouring heap memory), `[-1, 3]` (returned `[26, 3]` of 80 elements), a target built
//! at run time by `Shape`, `Gather` and `Concat` (`[batch, -1, 16]`), and two reshapes in a
//! row whose middle shape does not fit (the optimiser merges such chains).
//!
//! The libraries are built for `x86-64-v3` (AVX2), since valgrind cannot run AVX-512.

mod support;

use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use prost::Message;
use support::{scratch, stderr, tcc};
use tcc_ir::{DType, Tensor, TensorData};
use tcc_onnx::proto::{
    tensor_shape_proto, type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use tcc_runtime::abi::{Output, Status, Tensor as CTensor};

fn p(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
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

fn i64s(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        data_type: Some(7),
        dims: vec![values.len() as i64],
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// An f32 value of the graph; `dims` are sizes or symbol names, `None` an unknown shape.
fn f32_value(name: &str, dims: Option<&[&str]>) -> ValueInfoProto {
    let shape = dims.map(|dims| TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| tensor_shape_proto::Dimension {
                value: Some(match d.parse::<i64>() {
                    Ok(v) => tensor_shape_proto::dimension::Value::DimValue(v),
                    Err(_) => tensor_shape_proto::dimension::Value::DimParam(d.to_string()),
                }),
                ..Default::default()
            })
            .collect(),
    });
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `x: f32[batch, seq, 8]`, `nodes` (which make `t`), then `y = Relu(t)`.
fn model(nodes: Vec<NodeProto>, initializers: Vec<TensorProto>) -> ModelProto {
    let mut nodes = nodes;
    nodes.push(node("relu", "Relu", &["t"], "y"));
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: nodes,
            initializer: initializers,
            input: vec![f32_value("x", Some(&["batch", "seq", "8"]))],
            output: vec![f32_value("y", None)],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `Reshape(x, target)` as the node `r`.
fn reshape_to(target: &[i64]) -> ModelProto {
    model(
        vec![node("r", "Reshape", &["x", "shape"], "t")],
        vec![i64s("shape", target)],
    )
}

/// One case: a model, inputs that do not fit with what the message must say, inputs that fit
/// with the output's shape.
struct Case {
    name: &'static str,
    model: ModelProto,
    bad: Vec<([i64; 3], Vec<&'static str>)>,
    good: Vec<([i64; 3], Vec<usize>)>,
}

fn cases() -> Vec<Case> {
    // Shape(x) -> Gather [0] -> Concat with [-1, 16]: [batch, floordiv(8*batch*seq, 16*batch),
    // 16], known at import as dims of the symbols.
    let runtime_target = model(
        vec![
            node("shape", "Shape", &["x"], "s"),
            node("gather", "Gather", &["s", "zero"], "b"),
            {
                let mut n = node("concat", "Concat", &["b", "rest"], "target");
                n.attribute = vec![tcc_onnx::proto::AttributeProto {
                    name: Some("axis".into()),
                    r#type: Some(tcc_onnx::proto::attribute_proto::AttributeType::Int as i32),
                    i: Some(0),
                    ..Default::default()
                }];
                n
            },
            node("r", "Reshape", &["x", "target"], "t"),
        ],
        vec![i64s("zero", &[0]), i64s("rest", &[-1, 16])],
    );
    // [4096, 4096] in the middle, then back to x's shape: the optimiser must not drop the two
    // reshapes (which together do nothing) with the middle count.
    let chain = model(
        vec![
            node("r", "Reshape", &["x", "square"], "m"),
            node("shape", "Shape", &["x"], "s"),
            node("back", "Reshape", &["m", "s"], "t"),
        ],
        vec![i64s("square", &[4096, 4096])],
    );
    vec![
        Case {
            name: "square",
            model: reshape_to(&[4096, 4096]),
            bad: vec![(
                [2, 5, 8],
                vec![
                    "80 elements ([batch, seq, 8]) cannot make [4096, 4096], which holds 16777216",
                    "batch = 2, seq = 5",
                ],
            )],
            good: vec![([2048, 1024, 8], vec![4096, 4096])],
        },
        Case {
            name: "copy_zero",
            model: reshape_to(&[0, 100]),
            bad: vec![
                (
                    [2, 5, 8],
                    vec!["80 elements ([batch, seq, 8]) cannot make [2, 100] ([batch, 100]), which holds 200"],
                ),
                (
                    [1, 12, 8],
                    vec!["96 elements ([batch, seq, 8]) cannot make [1, 100] ([batch, 100]), which holds 100"],
                ),
            ],
            good: vec![],
        },
        Case {
            name: "infer",
            model: reshape_to(&[-1, 3]),
            bad: vec![(
                [2, 5, 8],
                vec![
                    "80 elements ([batch, seq, 8]) cannot make [26, 3] \
                     ([floordiv(8*batch*seq, 3), 3]), which holds 78",
                ],
            )],
            good: vec![([3, 1, 8], vec![8, 3]), ([1, 6, 8], vec![16, 3])],
        },
        Case {
            name: "runtime_target",
            model: runtime_target,
            bad: vec![(
                [2, 5, 8],
                vec!["80 elements ([batch, seq, 8]) cannot make [2, 2, 16]", "which holds 64"],
            )],
            good: vec![([2, 4, 8], vec![2, 2, 16]), ([3, 6, 8], vec![3, 3, 16])],
        },
        Case {
            name: "chain",
            model: chain,
            bad: vec![(
                [2, 5, 8],
                vec!["80 elements ([batch, seq, 8]) cannot make [4096, 4096]"],
            )],
            good: vec![([2048, 1024, 8], vec![2048, 1024, 8])],
        },
    ]
}

/// The cases' libraries, compiled once per test binary: `(case, model dir, library)`.
fn libraries() -> &'static [(Case, PathBuf)] {
    static LIBS: OnceLock<Vec<(Case, PathBuf)>> = OnceLock::new();
    LIBS.get_or_init(|| {
        let dir = scratch("libraries");
        cases()
            .into_iter()
            .map(|case| {
                let onnx = dir.join(format!("{}.onnx", case.name));
                std::fs::write(&onnx, case.model.encode_to_vec()).expect("write the model");
                let lib = dir.join(format!("lib{}.so", case.name));
                let o = tcc(&[
                    "compile",
                    p(&onnx),
                    "-o",
                    p(&lib),
                    "--prefix",
                    "m",
                    "--target-cpu",
                    "x86-64-v3",
                ]);
                assert!(
                    o.status.success(),
                    "{}: compile failed:\n{}",
                    case.name,
                    stderr(&o)
                );
                (case, lib)
            })
            .collect()
    })
}

type CreateFn = unsafe extern "C" fn(i32, *mut *mut c_void) -> i32;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type RunFn = unsafe extern "C" fn(*mut c_void, *const CTensor, i32, *mut Output, i32) -> i32;
type ErrorFn = unsafe extern "C" fn(*const c_void) -> *const c_char;

/// Runs the library at `lib` once on `x` (f32, of these dims, holding `0, 1, ..`): the status,
/// the message, and the output's dims and values on success.
fn run_library(lib: &Path, dims: [i64; 3]) -> (i32, String, Vec<i64>, Vec<f32>) {
    let n = dims.iter().product::<i64>() as usize;
    let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 - 500.0).collect();
    // SAFETY: a library just built by tcc; its initialisers are the runtime's.
    let library = unsafe { libloading::Library::new(lib) }.expect("load the library");
    // SAFETY: the API functions of tcc_model.h, with these signatures.
    let (create, free, run, last_error) = unsafe {
        (
            *library.get::<CreateFn>(b"m_session_create").unwrap(),
            *library.get::<FreeFn>(b"m_session_free").unwrap(),
            *library.get::<RunFn>(b"m_run").unwrap(),
            *library.get::<ErrorFn>(b"m_last_error").unwrap(),
        )
    };
    let mut session = std::ptr::null_mut();
    // SAFETY: a writable out-pointer.
    assert_eq!(unsafe { create(2, &mut session) }, 0, "session_create");
    let input = CTensor {
        dtype: 1,
        rank: 3,
        dims: dims.as_ptr(),
        data: x.as_ptr().cast(),
    };
    let mut output = Output::SESSION_OWNED;
    // SAFETY: a live session; one input and one output, as the model has.
    let status = unsafe { run(session, &input, 1, &mut output, 1) };
    // SAFETY: a NUL-terminated message that lives until the next failing call.
    let message = unsafe { CStr::from_ptr(last_error(session)) }
        .to_string_lossy()
        .into_owned();
    let (shape, values) = if status == 0 {
        let count = output.shape().iter().product::<i64>() as usize;
        // SAFETY: a successful run leaves `count` f32 at `data`, valid until the next run.
        let values = unsafe { std::slice::from_raw_parts(output.data as *const f32, count) };
        (output.shape().to_vec(), values.to_vec())
    } else {
        assert!(output.data.is_null(), "a failed run gave an output");
        (Vec::new(), Vec::new())
    };
    // SAFETY: a live session, freed once.
    unsafe { free(session) };
    (status, message, shape, values)
}

#[test]
fn reshapes_whose_sizes_do_not_fit_fail_the_run_with_a_shape_error_naming_them() {
    for (case, lib) in libraries() {
        for (dims, says) in &case.bad {
            let (status, message, _, _) = run_library(lib, *dims);
            assert_eq!(
                status,
                Status::Shape as i32,
                "{}: {dims:?}: status {status}: {message}",
                case.name
            );
            assert!(
                message.starts_with("reshape node"),
                "{}: the message does not name the reshape: {message}",
                case.name
            );
            for s in says {
                assert!(
                    message.contains(s),
                    "{}: {dims:?}: the message does not say `{s}`: {message}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn reshapes_whose_sizes_fit_still_run_and_give_the_reshaped_values() {
    for (case, lib) in libraries() {
        for (dims, shape) in &case.good {
            let (status, message, got_shape, got) = run_library(lib, *dims);
            assert_eq!(status, 0, "{}: {dims:?}: {message}", case.name);
            let want_shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            assert_eq!(got_shape, want_shape, "{}: {dims:?}", case.name);
            let n = dims.iter().product::<i64>() as usize;
            let want: Vec<f32> = (0..n)
                .map(|i| ((i % 1000) as f32 - 500.0).max(0.0))
                .collect();
            assert!(got == want, "{}: {dims:?}: the values differ", case.name);
        }
    }
}

/// Runs `args` under valgrind (memcheck), panicking with a clear message if valgrind is
/// missing: the process's output, and the exit code valgrind gives its errors (99).
fn valgrind(args: &[&str]) -> std::process::Output {
    Command::new("valgrind")
        .args(["--error-exitcode=99", "--quiet"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "valgrind could not run ({e}); install it (`apt-get install valgrind`, or run \
                 scripts/setup.sh as root)"
            )
        })
}

fn npz_of(path: &Path, dims: [i64; 3]) {
    let n = dims.iter().product::<i64>() as usize;
    let x = Tensor::new(
        dims.iter().map(|&d| d as usize).collect(),
        TensorData::from_f64(DType::F32, (0..n).map(|i| (i % 1000) as f64 - 500.0)),
    )
    .expect("a consistent tensor");
    tcc_npz::write_npz(path, &[("x".to_string(), x)]).expect("write the inputs");
}

#[test]
fn runs_of_the_reshape_cases_are_valgrind_clean() {
    let tcc_bin = env!("CARGO_BIN_EXE_tcc");
    let dir = scratch("valgrind-reshapes");
    for (case, lib) in libraries() {
        let runs = case
            .bad
            .iter()
            .map(|(dims, _)| (*dims, false))
            // Small valid runs only: valgrind is slow.
            .chain(
                case.good
                    .iter()
                    .filter(|(d, _)| d.iter().product::<i64>() < 1 << 16)
                    .map(|(dims, _)| (*dims, true)),
            );
        for (dims, fits) in runs {
            let inputs = dir.join(format!("{}_{}_{}.npz", case.name, dims[0], dims[1]));
            npz_of(&inputs, dims);
            let out = dir.join("out.npz");
            let _ = std::fs::remove_file(&out);
            let o = valgrind(&[
                tcc_bin,
                "run",
                p(lib),
                "--inputs",
                p(&inputs),
                "--output",
                p(&out),
                "--threads",
                "2",
            ]);
            let err = stderr(&o);
            assert_ne!(
                o.status.code(),
                Some(99),
                "{}: {dims:?}: valgrind reports errors:\n{err}",
                case.name
            );
            if fits {
                assert!(o.status.success(), "{}: {dims:?}: {err}", case.name);
                assert!(out.is_file(), "{}: {dims:?}: no output", case.name);
            } else {
                assert_eq!(o.status.code(), Some(1), "{}: {dims:?}: {err}", case.name);
                assert!(
                    err.contains("wrong shape: reshape node"),
                    "{}: {dims:?}: {err}",
                    case.name
                );
                assert!(
                    !out.exists(),
                    "{}: a failed run wrote its output",
                    case.name
                );
            }
        }
    }
}

#[test]
fn bert_tiny_runs_valgrind_clean() {
    let models = tcc_tests::discover_models();
    let model = models
        .iter()
        .find(|m| m.name == "bert-tiny")
        .expect("the shared model bert-tiny (../shared/models/bert-tiny)");
    // The smallest reference (b2_s17): valgrind runs about 50 times slower.
    let reference = model
        .cases
        .iter()
        .map(|(_, r)| r)
        .min_by_key(|r| std::fs::metadata(r).map_or(u64::MAX, |m| m.len()))
        .expect("bert-tiny has references");
    let dir = scratch("valgrind-bert-tiny");
    let lib = dir.join("libbert.so");
    let onnx = model.dir.join("model.onnx");
    let o = tcc(&[
        "compile",
        p(&onnx),
        "-o",
        p(&lib),
        "--target-cpu",
        "x86-64-v3",
    ]);
    assert!(o.status.success(), "compile failed:\n{}", stderr(&o));
    let out = dir.join("out.npz");
    let o = valgrind(&[
        env!("CARGO_BIN_EXE_tcc"),
        "run",
        p(&lib),
        "--inputs",
        p(reference),
        "--output",
        p(&out),
        "--expected",
        p(reference),
        "--threads",
        "2",
    ]);
    assert!(
        o.status.success(),
        "bert-tiny under valgrind (exit {:?}):\n{}",
        o.status.code(),
        stderr(&o)
    );
}
