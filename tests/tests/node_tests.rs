//! The ONNX backend node tests, run through the importer and the interpreter.
//!
//! Each case of `../shared/onnx-node-tests/node.tar.gz` is a `model.onnx` and
//! one or more `test_data_set_N/` with `input_K.pb` and `output_K.pb`
//! (serialised TensorProto). A case is *accepted* when its model imports and
//! its data decodes; every accepted case must then run and match ONNX's
//! outputs within ONNX's tolerances (rtol 1e-3, atol 1e-7, or atol 1e-5 when
//! the model uses an op with transcendental functions). The test prints a
//! table per op type, the top reasons for not accepting a case, every
//! failure, and the totals; the same report is written to
//! `$CARGO_TARGET_TMPDIR/onnx-node-tests-report.txt`.
//!
//! `tests/node_tests_divergent.txt` lists the few cases whose expected outputs
//! tcc knowingly does not reproduce, each with its reason. Such a case must
//! still differ under ONNX's tolerances (else it must leave the list) and may
//! differ by at most two units in the last place of its 16-bit output dtype;
//! it is reported as divergent, never as passed.

use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tcc_ir::{DType, Tensor};
use tcc_onnx::proto::{ModelProto, TensorProto};
use tcc_tests::{compare_allclose, shared_dir};

/// ONNX's default relative tolerance.
const RTOL: f64 = 1e-3;
/// ONNX's default absolute tolerance.
const ATOL: f64 = 1e-7;
/// The absolute tolerance for float ops with transcendental functions.
const ATOL_TRANSCENDENTAL: f64 = 1e-5;
/// The fewest cases that must be accepted.
const MIN_ACCEPTED: usize = 300;

/// Op types whose results involve transcendental functions (exp, log, erf,
/// roots, trigonometry), compared with [`ATOL_TRANSCENDENTAL`].
const TRANSCENDENTAL_OPS: &[&str] = &[
    "Exp",
    "Log",
    "Erf",
    "Tanh",
    "Sigmoid",
    "Softmax",
    "LogSoftmax",
    "SoftmaxCrossEntropyLoss",
    "NegativeLogLikelihoodLoss",
    "Pow",
    "Sqrt",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Asinh",
    "Acosh",
    "Atanh",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Softplus",
    "Softsign",
    "Mish",
    "HardSwish",
    "LayerNormalization",
    "RMSNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "BatchNormalization",
    "MeanVarianceNormalization",
    "LpNormalization",
    "LRN",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceL2",
    "DynamicQuantizeLinear",
    "Attention",
    "RotaryEmbedding",
];

/// Extracts the archive into `$CARGO_TARGET_TMPDIR/onnx-node-tests`, or
/// reuses an earlier extraction of the same archive, and returns the
/// directory holding the case folders.
fn extracted_cases() -> PathBuf {
    let archive = shared_dir().join("onnx-node-tests/node.tar.gz");
    let size = std::fs::metadata(&archive)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", archive.display()))
        .len();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("onnx-node-tests");
    // The marker records which archive (by size) was extracted completely.
    let marker = dir.join(".extracted");
    let stamp = format!("{} {size}\n", archive.display());
    if std::fs::read_to_string(&marker).is_ok_and(|s| s == stamp) {
        return dir;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot clear {}: {e}", dir.display()));
    }
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let file = std::fs::File::open(&archive)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", archive.display()));
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "cannot extract {} into {}: {e}",
                archive.display(),
                dir.display()
            )
        });
    std::fs::write(&marker, stamp)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", marker.display()));
    dir
}

/// The case folders (those holding a `model.onnx`), sorted by name.
fn case_dirs(root: &Path) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    cases.sort();
    cases
}

/// What happened to one case.
enum Outcome {
    /// Every output of every data set matched.
    Passed,
    /// Listed in the divergence manifest, and differing as it says.
    Divergent(String),
    /// Accepted, but a run failed or an output did not match.
    Failed(String),
    /// The model did not import, or its data did not decode.
    NotAccepted(String),
}

/// The result of one case, with the op type it is filed under.
struct CaseResult {
    name: String,
    op: String,
    outcome: Outcome,
}

/// Decodes a serialised TensorProto file into a tensor.
fn read_tensor(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", file_name(path)))?;
    let proto = TensorProto::decode(bytes.as_slice())
        .map_err(|e| format!("{} is not a TensorProto: {e}", file_name(path)))?;
    tcc_onnx::tensor_from_proto(&proto, None).map_err(|e| format!("{}: {e}", file_name(path)))
}

/// The last two components of `path`, for messages.
fn file_name(path: &Path) -> String {
    let mut parts: Vec<String> = path
        .iter()
        .rev()
        .take(2)
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    parts.reverse();
    parts.join("/")
}

/// The `test_data_set_N` folders of a case, in order of N.
fn data_sets(case: &Path) -> Vec<PathBuf> {
    let mut sets: Vec<(u32, PathBuf)> = std::fs::read_dir(case)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e
                        .file_name()
                        .to_str()?
                        .strip_prefix("test_data_set_")?
                        .parse()
                        .ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    sets.sort();
    sets.into_iter().map(|(_, p)| p).collect()
}

/// The `<prefix>_K.pb` files of a data set, in order of K.
fn numbered(set: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(set)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name();
                    let k = name
                        .to_str()?
                        .strip_prefix(prefix)?
                        .strip_prefix('_')?
                        .strip_suffix(".pb")?
                        .parse()
                        .ok()?;
                    Some((k, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

/// The op types of a model's main graph, in node order, without repeats.
fn op_types(model: &ModelProto) -> Vec<String> {
    let mut seen = Vec::new();
    for node in model.graph.iter().flat_map(|g| &g.node) {
        if !seen.contains(&node.op_type().to_string()) {
            seen.push(node.op_type().to_string());
        }
    }
    seen
}

/// The op type a case is filed under: the only op type of its graph; for
/// an expanded case (`test_mvn_expanded`), the op of the case it expands
/// (`test_mvn`); else the longest op type seen whose lower-case name the case
/// name starts with, token by token (`test_softmax_axis_0` is `Softmax`);
/// else `(several)`.
fn case_op(
    case: &str,
    ops: &[String],
    single: &HashMap<String, String>,
    known: &BTreeSet<String>,
) -> String {
    if ops.len() == 1 {
        return ops[0].clone();
    }
    if let Some(op) = case.find("_expanded").and_then(|i| single.get(&case[..i])) {
        return op.clone();
    }
    let tokens: Vec<&str> = case.trim_start_matches("test_").split('_').collect();
    let mut best = None;
    for k in 1..=tokens.len() {
        let joined = tokens[..k].concat();
        if let Some(op) = known.iter().find(|op| op.to_lowercase() == joined) {
            best = Some(op);
        }
    }
    best.cloned().unwrap_or_else(|| "(several)".to_string())
}

/// Imports and runs one case. Panics inside the importer or the interpreter
/// are caught by the caller.
/// The cases of `tests/node_tests_divergent.txt`, with their reasons.
fn divergent_cases() -> HashMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("node_tests_divergent.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, reason) = l.split_once('#').unwrap_or((l, ""));
            (name.trim().to_string(), reason.trim().to_string())
        })
        .collect()
}

/// One unit in the last place of `v` in a 16-bit float dtype: the gap between
/// `|v|` and the next representable magnitude (subnormal spacing near zero).
fn ulp16(v: f64, dtype: DType) -> Option<f64> {
    let (mantissa_bits, min_exp) = match dtype {
        DType::F16 => (10, -14),
        DType::BF16 => (7, -126),
        _ => return None,
    };
    let e = if v == 0.0 {
        min_exp
    } else {
        (v.abs().log2().floor() as i32).max(min_exp)
    };
    Some(2f64.powi(e - mantissa_bits))
}

/// How many ulps a documented divergence may reach.
const DIVERGENT_ULPS: f64 = 2.0;

/// Checks that `got` is within [`DIVERGENT_ULPS`] ulps of `want` element by
/// element, for a 16-bit float output.
fn within_ulps(got: &Tensor, want: &Tensor) -> Result<(), String> {
    let dtype = want.dtype();
    let (g, w) = (got.data().to_f64_vec(), want.data().to_f64_vec());
    if got.dtype() != dtype || got.shape() != want.shape() {
        return Err("dtype or shape differs".into());
    }
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let ulp = ulp16(b, dtype).ok_or_else(|| format!("dtype {dtype} is not a 16-bit float"))?;
        if !(a == b || (a - b).abs() <= DIVERGENT_ULPS * ulp || (a.is_nan() && b.is_nan())) {
            return Err(format!(
                "element {i}: got {a}, expected {b}, more than {DIVERGENT_ULPS} ulps ({ulp:e} each) apart"
            ));
        }
    }
    Ok(())
}

fn run_case(case: &Path, model: &ModelProto, divergent: Option<&str>) -> Outcome {
    let graph = match tcc_onnx::import_model(model, case) {
        Ok(g) => g,
        Err(e) => return Outcome::NotAccepted(format!("import: {e}")),
    };
    let init: BTreeSet<&str> = model
        .graph
        .iter()
        .flat_map(|g| &g.initializer)
        .map(|t| t.name())
        .collect();
    let input_names: Vec<&str> = model
        .graph
        .iter()
        .flat_map(|g| &g.input)
        .map(|v| v.name())
        .filter(|n| !init.contains(n))
        .collect();
    let output_names: Vec<&str> = model
        .graph
        .iter()
        .flat_map(|g| &g.output)
        .map(|v| v.name())
        .collect();
    let atol = if op_types(model)
        .iter()
        .any(|op| TRANSCENDENTAL_OPS.contains(&op.as_str()))
    {
        ATOL_TRANSCENDENTAL
    } else {
        ATOL
    };
    let sets = data_sets(case);
    if sets.is_empty() {
        return Outcome::NotAccepted("data: no test_data_set_N folder".into());
    }
    // Decode every data set first: a case whose data cannot be decoded is
    // not accepted.
    let mut decoded = Vec::new();
    for set in &sets {
        let ins = numbered(set, "input");
        let outs = numbered(set, "output");
        if ins.len() != input_names.len() || outs.len() != output_names.len() {
            return Outcome::NotAccepted(format!(
                "data: {} holds {} inputs and {} outputs; the graph has {} and {}",
                file_name(set),
                ins.len(),
                outs.len(),
                input_names.len(),
                output_names.len()
            ));
        }
        let mut inputs = HashMap::new();
        for (name, path) in input_names.iter().zip(&ins) {
            match read_tensor(path) {
                Ok(t) => inputs.insert(name.to_string(), t),
                Err(e) => return Outcome::NotAccepted(format!("data: {e}")),
            };
        }
        let mut expected = Vec::new();
        for (name, path) in output_names.iter().zip(&outs) {
            match read_tensor(path) {
                Ok(t) => expected.push((name.to_string(), t)),
                Err(e) => return Outcome::NotAccepted(format!("data: {e}")),
            }
        }
        decoded.push((file_name(set), inputs, expected));
    }
    let mut errors = Vec::new();
    let mut diverged = Vec::new();
    for (set, inputs, expected) in &decoded {
        let got = match tcc_ir::interp::run(&graph, inputs) {
            Ok(o) => o,
            Err(e) => {
                errors.push(format!("{set}: run: {e}"));
                continue;
            }
        };
        if got.len() != expected.len() {
            errors.push(format!(
                "{set}: {} outputs where {} were expected",
                got.len(),
                expected.len()
            ));
            continue;
        }
        for ((name, want), (got_name, got)) in expected.iter().zip(&got) {
            if name != got_name {
                errors.push(format!(
                    "{set}: output `{got_name}` where `{name}` was expected"
                ));
            } else if let Err(e) = compare_allclose(got, want, RTOL, atol) {
                match divergent.map(|_| within_ulps(got, want)) {
                    Some(Ok(())) => diverged.push(format!("{set}: output `{name}`: {e}")),
                    Some(Err(u)) => errors.push(format!("{set}: output `{name}`: {e}; {u}")),
                    None => errors.push(format!("{set}: output `{name}`: {e}")),
                }
            }
        }
    }
    match (divergent, errors.is_empty(), diverged.is_empty()) {
        (_, false, _) => Outcome::Failed(errors.join("; ")),
        (Some(reason), true, false) => {
            Outcome::Divergent(format!("{reason}: {}", diverged.join("; ")))
        }
        (Some(_), true, true) => Outcome::Failed(
            "listed in tests/node_tests_divergent.txt but now matches: take it off the list".into(),
        ),
        (None, true, _) => Outcome::Passed,
    }
}

/// Loads, imports and runs one case; a panic anywhere is a failure.
fn check_case(case: &Path, divergent: Option<&str>) -> (Vec<String>, Outcome) {
    let model = match std::fs::read(case.join("model.onnx")) {
        Ok(bytes) => match ModelProto::decode(bytes.as_slice()) {
            Ok(m) => m,
            Err(e) => {
                return (
                    vec![],
                    Outcome::NotAccepted(format!("model: not a ModelProto: {e}")),
                )
            }
        },
        Err(e) => {
            return (
                vec![],
                Outcome::NotAccepted(format!("model: cannot read: {e}")),
            )
        }
    };
    let ops = op_types(&model);
    let outcome = match catch_unwind(AssertUnwindSafe(|| run_case(case, &model, divergent))) {
        Ok(o) => o,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".into());
            Outcome::Failed(format!("panicked: {msg}"))
        }
    };
    (ops, outcome)
}

/// Reduces a reason to its kind, for grouping: names of nodes, inputs,
/// outputs and tensors become `…`, opset numbers are dropped, and long
/// reasons are cut to 120 characters.
fn reason_key(reason: &str) -> String {
    let mut out = String::new();
    let mut rest = reason;
    while let Some(open) = rest.find('`') {
        let (before, after) = rest.split_at(open);
        let Some(close) = after[1..].find('`') else {
            break;
        };
        out.push_str(before);
        let named = ["node ", "input ", "output ", "tensor ", "graph "]
            .iter()
            .any(|w| before.ends_with(w));
        if named {
            out.push_str("`…`");
        } else {
            out.push_str(&after[..close + 2]);
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    let mut key = String::new();
    let mut words = out.split(' ').peekable();
    while let Some(w) = words.next() {
        if !key.is_empty() {
            key.push(' ');
        }
        key.push_str(w);
        if w == "opset" {
            // Drop the number: "opset 23)" keeps only its punctuation.
            if let Some(n) = words.next() {
                key.push_str(n.trim_start_matches(|c: char| c.is_ascii_digit()));
            }
        }
    }
    if key.chars().count() > 120 {
        let cut: String = key.chars().take(120).collect();
        format!("{cut}…")
    } else {
        key
    }
}

/// Builds the printed report: a table per op type, the top reasons for not
/// accepting, the failures and the totals.
fn report(results: &[CaseResult]) -> (String, usize, usize) {
    #[derive(Default)]
    struct Row {
        accepted: usize,
        passed: usize,
        failed: usize,
        divergent: usize,
        not_accepted: usize,
    }
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let mut failures = Vec::new();
    let mut divergences = Vec::new();
    for r in results {
        let row = rows.entry(&r.op).or_default();
        match &r.outcome {
            Outcome::Passed => {
                row.accepted += 1;
                row.passed += 1;
            }
            Outcome::Failed(e) => {
                row.accepted += 1;
                row.failed += 1;
                failures.push(format!("{} [{}]: {e}", r.name, r.op));
            }
            Outcome::Divergent(e) => {
                row.accepted += 1;
                row.divergent += 1;
                divergences.push(format!("{} [{}]: {e}", r.name, r.op));
            }
            Outcome::NotAccepted(e) => {
                row.not_accepted += 1;
                *reasons.entry(reason_key(e)).or_default() += 1;
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "ONNX node tests: {} cases", results.len());
    let _ = writeln!(
        out,
        "{:<34} {:>8} {:>7} {:>7} {:>9} {:>13}",
        "op", "accepted", "passed", "failed", "divergent", "not accepted"
    );
    for (op, row) in &rows {
        let _ = writeln!(
            out,
            "{op:<34} {:>8} {:>7} {:>7} {:>9} {:>13}",
            row.accepted, row.passed, row.failed, row.divergent, row.not_accepted
        );
    }
    let mut reasons: Vec<(String, usize)> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let _ = writeln!(out, "\ntop reasons for not accepting a case:");
    for (reason, n) in reasons.iter().take(25) {
        let _ = writeln!(out, "{n:>5}  {reason}");
    }
    let _ = writeln!(out, "\nfailures of accepted cases ({}):", failures.len());
    for f in &failures {
        let _ = writeln!(out, "  {f}");
    }
    let _ = writeln!(
        out,
        "\ndocumented divergences, each within {DIVERGENT_ULPS} ulps (tests/node_tests_divergent.txt) ({}):",
        divergences.len()
    );
    for d in &divergences {
        let _ = writeln!(out, "  {d}");
    }
    let passed: usize = rows.values().map(|r| r.passed).sum();
    let failed: usize = rows.values().map(|r| r.failed).sum();
    let divergent: usize = rows.values().map(|r| r.divergent).sum();
    let not_accepted: usize = rows.values().map(|r| r.not_accepted).sum();
    let accepted = passed + failed + divergent;
    let _ = writeln!(
        out,
        "\ntotals: {} cases, {accepted} accepted, {passed} passed, {failed} failed, \
         {divergent} divergent, {not_accepted} not accepted",
        results.len(),
    );
    let _ = writeln!(out, "node tests: {passed} passed, {failed} failed");
    (out, failed, accepted)
}

#[test]
fn onnx_node_tests() {
    let start = std::time::Instant::now();
    let root = extracted_cases();
    let cases = case_dirs(&root);
    let divergent = divergent_cases();
    let names: BTreeSet<String> = cases
        .iter()
        .filter_map(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for name in divergent.keys() {
        assert!(
            names.contains(name),
            "tests/node_tests_divergent.txt lists `{name}`, which is not a case of the archive"
        );
    }
    assert!(
        cases.len() >= 1000,
        "only {} cases found in {}",
        cases.len(),
        root.display()
    );

    // Panics are caught and reported per case; keep the default hook from
    // printing each one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::with_capacity(cases.len()));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                let name = case
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let (ops, outcome) = check_case(case, divergent.get(&name).map(String::as_str));
                if let Ok(mut d) = done.lock() {
                    d.push((name, ops, outcome));
                }
            });
        }
    });
    std::panic::set_hook(hook);
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());

    // File each case under an op type, using the single-node cases and every
    // op type seen to name the multi-node (expanded) cases.
    let known: BTreeSet<String> = done.iter().flat_map(|(_, ops, _)| ops.clone()).collect();
    let single: HashMap<String, String> = done
        .iter()
        .filter(|(_, ops, _)| ops.len() == 1)
        .map(|(name, ops, _)| (name.clone(), ops[0].clone()))
        .collect();
    let mut results: Vec<CaseResult> = done
        .into_iter()
        .map(|(name, ops, outcome)| CaseResult {
            op: case_op(&name, &ops, &single, &known),
            name,
            outcome,
        })
        .collect();
    results.sort_by(|a, b| a.name.cmp(&b.name));

    let (text, failed, accepted) = report(&results);
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("onnx-node-tests-report.txt");
    if let Err(e) = std::fs::write(&path, &text) {
        eprintln!("cannot write the report to {}: {e}", path.display());
    }
    println!(
        "(report written to {}; {:.1?})",
        path.display(),
        start.elapsed()
    );
    println!("{text}");
    assert!(
        failed == 0 && accepted >= MIN_ACCEPTED,
        "{failed} accepted case(s) failed (0 allowed) and {accepted} cases were accepted \
         (at least {MIN_ACCEPTED} must be); see the report above or {}",
        path.display()
    );
}
