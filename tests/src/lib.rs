//! Shared helpers for the end-to-end tests.
//!
//! The tests under `tests/` run real models and the ONNX node tests from the
//! shared data directory (`../shared` beside the workspace root). This library
//! holds what more than one of them needs:
//!
//! - locating the shared data, failing (never skipping) with the path that
//!   was looked at when it is missing ([`shared_dir`], [`discover_models`]);
//! - loading a reference `.npz` and picking the arrays a graph takes as
//!   inputs ([`load_npz`], [`bind_inputs`]);
//! - the two ways outputs are compared: the model tolerance
//!   `max |a - b| <= 1e-4 * max(1, max |ref|)` ([`compare_model_output`]) and
//!   ONNX's `allclose` with `rtol` and `atol` ([`compare_allclose`]);
//! - the end-to-end check of one model case: import, default pass pipeline,
//!   interpreter, comparison ([`check_model_case`]).
//!
//! Helpers return `Result<_, String>` with a message that names the file,
//! array or output at fault, so a test can collect every failure before it
//! asserts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tcc_ir::{Graph, Op, Tensor};

/// The models that the shared data directory is known to hold; discovery
/// must find at least these.
pub const KNOWN_MODELS: [&str; 6] = [
    "bert-tiny",
    "bert-tiny-extdata",
    "bert-tiny-int8",
    "gpt2-tiny",
    "linear-attn",
    "minilm-l6",
];

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shared data directory, `../shared` beside the workspace root.
///
/// Panics with the path it looked at if the directory is missing: the
/// end-to-end tests need it, and a missing directory must fail, not skip.
pub fn shared_dir() -> PathBuf {
    let dir = workspace_root().join("../shared");
    if !dir.is_dir() {
        panic!(
            "the shared data directory is missing: looked for {} \
             (`../shared` beside the workspace root {})",
            dir.display(),
            workspace_root().display()
        );
    }
    dir
}

/// One model directory of the shared data, with its reference cases.
#[derive(Clone, Debug)]
pub struct ModelDir {
    /// The directory's name, e.g. `bert-tiny`.
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
    /// The reference cases: the case name (`b1_s128` for `ref_b1_s128.npz`)
    /// and the file, sorted by name.
    pub cases: Vec<(String, PathBuf)>,
    /// How to import the model: the defaults, or what `import.txt` beside it
    /// says (`int8_matmul = exact` or `ort-x86`).
    pub options: tcc_onnx::ImportOptions,
}

impl ModelDir {
    /// The path of `model.onnx`.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join("model.onnx")
    }
}

/// Every directory of `../shared/models` that holds a `model.onnx`, sorted by
/// name, each with its `ref_*.npz` cases.
///
/// Panics with the path it looked at if the models directory is missing or
/// cannot be read.
pub fn discover_models() -> Vec<ModelDir> {
    discover_models_in(&shared_dir().join("models"))
}

/// Every directory of the workspace's `tests/zoo` that holds a `model.onnx`:
/// small models of more families and exporters, made by
/// `tests/zoo/make_zoo.py`.
pub fn discover_zoo() -> Vec<ModelDir> {
    discover_models_in(&workspace_root().join("tests/zoo"))
}

/// Reads the import options of a model directory from its `import.txt`, if
/// it has one. Panics on a line it does not understand.
fn import_options(dir: &Path) -> tcc_onnx::ImportOptions {
    let mut options = tcc_onnx::ImportOptions::default();
    let path = dir.join("import.txt");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return options;
    };
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("int8_matmul", "exact")) => options.int8_matmul = tcc_onnx::Int8MatMul::Exact,
            Some(("int8_matmul", "ort-x86")) => options.int8_matmul = tcc_onnx::Int8MatMul::OrtX86,
            _ => panic!("{}: cannot read `{line}`", path.display()),
        }
    }
    options
}

/// Every directory of `root` that holds a `model.onnx`, sorted by name.
pub fn discover_models_in(root: &Path) -> Vec<ModelDir> {
    let entries = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("cannot read the models directory {}: {e}", root.display()));
    let mut models = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.join("model.onnx").is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        models.push(ModelDir {
            cases: discover_cases(&dir),
            options: import_options(&dir),
            name,
            dir,
        });
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    models
}

/// The `ref_<case>.npz` files in `dir`, as (case name, path), sorted by name.
pub fn discover_cases(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut cases: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let file = e.file_name().to_string_lossy().into_owned();
                    let case = file.strip_prefix("ref_")?.strip_suffix(".npz")?;
                    Some((case.to_string(), e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    cases.sort();
    cases
}

/// The model directory called `name`, found by [`discover_models`].
///
/// Panics, listing what was found, if there is none.
pub fn model_dir(name: &str) -> ModelDir {
    let models = discover_models();
    let found: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    match models.iter().find(|m| m.name == name) {
        Some(m) => m.clone(),
        None => panic!(
            "model `{name}` not found under {}; found: {found:?}",
            shared_dir().join("models").display()
        ),
    }
}

/// Reads every array of an `.npz` file, in file order.
pub fn load_npz(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    tcc_npz::read_npz(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The names of the graph's inputs, in order.
pub fn input_names(graph: &Graph) -> Vec<String> {
    graph
        .inputs()
        .iter()
        .filter_map(|&id| match graph.op(id) {
            Op::Input { name } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Picks, for every input of `graph`, the array of the same name; fails
/// naming the first input that has no array (and the arrays there are).
pub fn bind_inputs(
    graph: &Graph,
    arrays: &[(String, Tensor)],
) -> Result<HashMap<String, Tensor>, String> {
    let mut bound = HashMap::new();
    for name in input_names(graph) {
        let Some((_, t)) = arrays.iter().find(|(n, _)| *n == name) else {
            let have: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!(
                "graph input `{name}` has no array of that name; arrays: {have:?}"
            ));
        };
        bound.insert(name, t.clone());
    }
    Ok(bound)
}

/// Checks that `got` has the dtype and shape of `want`.
fn check_type(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.dtype() != want.dtype() {
        return Err(format!(
            "dtype {} where {} was expected",
            got.dtype(),
            want.dtype()
        ));
    }
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?} where {:?} was expected",
            got.shape(),
            want.shape()
        ));
    }
    Ok(())
}

/// Integer and bool tensors of equal type must be equal element by element;
/// the message gives the number of differing elements and the first one.
fn compare_exact(got: &Tensor, want: &Tensor) -> Result<(), String> {
    let g = got.data().to_i64_vec();
    let w = want.data().to_i64_vec();
    let bad: Vec<usize> = (0..g.len()).filter(|&i| g[i] != w[i]).collect();
    match bad.first() {
        None => Ok(()),
        Some(&i) => Err(format!(
            "{} of {} elements differ; first at flat index {i}: got {}, expected {}",
            bad.len(),
            g.len(),
            g[i],
            w[i]
        )),
    }
}

/// Compares a model output with its reference by the model tolerance:
/// `max |a - b| <= 1e-4 * max(1, max |ref|)` for floats (a NaN matches only a
/// NaN), exact equality for integers and bools; dtype and shape must match.
///
/// Returns the measured maximum absolute error on success, and a message
/// with the measured error and the bound on failure.
pub fn compare_model_output(got: &Tensor, want: &Tensor) -> Result<f64, String> {
    check_type(got, want)?;
    if !want.dtype().is_float() {
        return compare_exact(got, want).map(|()| 0.0);
    }
    let g = got.data().to_f64_vec();
    let w = want.data().to_f64_vec();
    let max_ref = w
        .iter()
        .filter(|x| x.is_finite())
        .fold(0.0f64, |m, x| m.max(x.abs()));
    let bound = 1e-4 * max_ref.max(1.0);
    let mut max_err = 0.0f64;
    let mut worst = None;
    for i in 0..g.len() {
        let err = if w[i].is_nan() && g[i].is_nan() || g[i] == w[i] {
            0.0
        } else {
            let d = (g[i] - w[i]).abs();
            if d.is_nan() {
                f64::INFINITY
            } else {
                d
            }
        };
        if err > max_err || worst.is_none() && err > 0.0 {
            max_err = err;
            worst = Some(i);
        }
    }
    if max_err <= bound {
        Ok(max_err)
    } else {
        let i = worst.unwrap_or(0);
        Err(format!(
            "max |a - b| = {max_err:.3e} > bound {bound:.3e} (max |ref| = {max_ref:.3e}); \
             worst at flat index {i}: got {}, expected {}",
            g[i], w[i]
        ))
    }
}

/// Compares as ONNX's backend tests do (numpy's `assert_allclose`):
/// `|got - want| <= atol + rtol * |want|` element by element for floats, a
/// NaN matches a NaN and an infinity only itself; integers and bools must be
/// equal; dtype and shape must match.
pub fn compare_allclose(got: &Tensor, want: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    check_type(got, want)?;
    if !want.dtype().is_float() {
        return compare_exact(got, want);
    }
    let g = got.data().to_f64_vec();
    let w = want.data().to_f64_vec();
    let mut bad = 0usize;
    let mut worst: Option<(usize, f64)> = None;
    for i in 0..g.len() {
        let (a, b) = (g[i], w[i]);
        let ok = if b.is_nan() || a.is_nan() {
            a.is_nan() && b.is_nan()
        } else if b.is_infinite() || a.is_infinite() {
            a == b
        } else {
            (a - b).abs() <= atol + rtol * b.abs()
        };
        if !ok {
            bad += 1;
            let excess = if (a - b).is_nan() {
                f64::INFINITY
            } else {
                (a - b).abs() - rtol * b.abs()
            };
            if !matches!(worst, Some((_, e)) if e >= excess) {
                worst = Some((i, excess));
            }
        }
    }
    match worst {
        None => Ok(()),
        Some((i, _)) => {
            let max_abs = g
                .iter()
                .zip(&w)
                .map(|(a, b)| (a - b).abs())
                .filter(|d| !d.is_nan())
                .fold(0.0f64, f64::max);
            Err(format!(
                "{bad} of {} elements beyond rtol {rtol:e}, atol {atol:e} (max |a - b| = {max_abs:.3e}); \
                 worst at flat index {i}: got {}, expected {}",
                g.len(),
                g[i],
                w[i]
            ))
        }
    }
}

/// The result of one model case: what was compared, and every failure.
#[derive(Clone, Debug, Default)]
pub struct CaseReport {
    /// Each output compared successfully, with its measured max |a - b|.
    pub passed: Vec<(String, f64)>,
    /// One message per failing output, or one for a case that could not run.
    pub failures: Vec<String>,
}

/// Runs one reference case of a model: binds the arrays named like the
/// graph's inputs, runs the interpreter on `graph` (already imported and
/// optimised), and compares every graph output with the array of the same
/// name by [`compare_model_output`].
///
/// Every message names the model, the case and the output.
pub fn check_model_case(graph: &Graph, model: &str, case: &str, npz: &Path) -> CaseReport {
    let mut report = CaseReport::default();
    let fail = |msg: String| format!("{model} / {case}: {msg}");
    let arrays = match load_npz(npz) {
        Ok(a) => a,
        Err(e) => {
            report.failures.push(fail(e));
            return report;
        }
    };
    let inputs = match bind_inputs(graph, &arrays) {
        Ok(i) => i,
        Err(e) => {
            report.failures.push(fail(e));
            return report;
        }
    };
    let outputs = match tcc_ir::interp::run(graph, &inputs) {
        Ok(o) => o,
        Err(e) => {
            report.failures.push(fail(format!("interpreter: {e}")));
            return report;
        }
    };
    for (name, got) in &outputs {
        let Some((_, want)) = arrays.iter().find(|(n, _)| n == name) else {
            report.failures.push(fail(format!(
                "output `{name}`: no reference array of that name"
            )));
            continue;
        };
        match compare_model_output(got, want) {
            Ok(err) => report.passed.push((name.clone(), err)),
            Err(e) => report.failures.push(fail(format!("output `{name}`: {e}"))),
        }
    }
    if outputs.is_empty() {
        report
            .failures
            .push(fail("the interpreter returned no outputs".into()));
    }
    report
}

/// A deterministic xorshift generator, for test inputs.
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Key-padding masks of `b` sequences of `s` positions (row-major, 1 for a real token), named:
/// all ones, one real token per sequence, right- and left-padded to the lengths `lens` (one
/// per sequence), and random (about two thirds real, the first token of each real).
pub fn padding_masks(
    b: usize,
    s: usize,
    lens: &[usize],
    seed: u64,
) -> Vec<(&'static str, Vec<i64>)> {
    let mut rng = Rng(seed);
    vec![
        ("all ones", vec![1; b * s]),
        (
            "one real token per sequence",
            (0..b * s).map(|p| i64::from(p % s == 0)).collect(),
        ),
        (
            "right-padded",
            (0..b * s).map(|p| i64::from(p % s < lens[p / s])).collect(),
        ),
        (
            "left-padded",
            (0..b * s)
                .map(|p| i64::from(p % s >= s - lens[p / s]))
                .collect(),
        ),
        (
            "random",
            (0..b * s)
                .map(|p| i64::from(p % s == 0 || !rng.next().is_multiple_of(3)))
                .collect(),
        ),
    ]
}

/// `t` (`[b, s, ..]`) with the rows where `mask` (`[b, s]`) is 0 set to 0.
pub fn zero_padded(t: &Tensor, mask: &Tensor) -> Tensor {
    let m = mask.data().to_i64_vec();
    let row: usize = t.shape()[2..].iter().product();
    let mut v = t.data().to_f64_vec();
    for (p, &keep) in m.iter().enumerate() {
        if keep == 0 {
            v[p * row..(p + 1) * row].iter_mut().for_each(|x| *x = 0.0);
        }
    }
    Tensor::new(
        t.shape().to_vec(),
        tcc_ir::TensorData::from_f64(t.dtype(), v),
    )
    .expect("the same shape")
}

/// Padding elimination's check of an output `got` (`[b, s, ..]`) against `want`: within the
/// model tolerance ([`compare_model_output`]) where `mask` is nonzero, exactly 0 elsewhere.
pub fn compare_unpadded(got: &Tensor, want: &Tensor, mask: &Tensor) -> Result<(), String> {
    let g = zero_padded(got, mask);
    compare_model_output(&g, &zero_padded(want, mask))
        .map_err(|e| format!("at the real positions: {e}"))?;
    if g != *got {
        return Err("not 0 at the padded positions".into());
    }
    Ok(())
}

/// Imports `model.onnx` of a model directory and runs the default pass
/// pipeline on it.
pub fn import_and_optimise(model: &ModelDir) -> Result<Graph, String> {
    let path = model.model_path();
    let mut graph = tcc_onnx::import_file_with(&path, &model.options)
        .map_err(|e| format!("{}: import of {} failed: {e}", model.name, path.display()))?;
    tcc_passes::PassManager::default_pipeline()
        .run(&mut graph)
        .map_err(|e| format!("{}: default pass pipeline failed: {e}", model.name))?;
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, v).expect("sizes match")
    }

    #[test]
    fn model_tolerance_scales_with_the_reference() {
        let want = f32s(vec![2], vec![1000.0, 0.0]);
        // The bound is 1e-4 * 1000 = 0.1.
        assert!(compare_model_output(&f32s(vec![2], vec![1000.05, 0.05]), &want).is_ok());
        let e = compare_model_output(&f32s(vec![2], vec![1000.0, 0.2]), &want).unwrap_err();
        assert!(e.contains("flat index 1"), "{e}");
        // Small references use an absolute bound of 1e-4.
        let small = f32s(vec![1], vec![0.001]);
        assert!(compare_model_output(&f32s(vec![1], vec![0.00105]), &small).is_ok());
        assert!(compare_model_output(&f32s(vec![1], vec![0.0012]), &small).is_err());
    }

    #[test]
    fn dtype_shape_and_nan_are_checked() {
        let want = f32s(vec![2], vec![1.0, f32::NAN]);
        assert!(compare_model_output(&f32s(vec![2], vec![1.0, f32::NAN]), &want).is_ok());
        assert!(compare_model_output(&f32s(vec![2], vec![1.0, 0.0]), &want).is_err());
        assert!(compare_model_output(&f32s(vec![1, 2], vec![1.0, f32::NAN]), &want).is_err());
        let ints = Tensor::from_vec(vec![2], vec![1i64, 2]).expect("sizes match");
        assert!(compare_model_output(&ints, &want).is_err());
        let ints2 = Tensor::from_vec(vec![2], vec![1i64, 3]).expect("sizes match");
        assert!(compare_model_output(&ints, &ints2).is_err());
        assert!(compare_allclose(&ints, &ints2, 1.0, 1.0).is_err());
    }

    #[test]
    fn allclose_follows_numpy() {
        let want = f32s(vec![3], vec![100.0, 0.0, f32::INFINITY]);
        // |a - b| <= atol + rtol * |b|: 0.1 <= 1e-7 + 0.1 passes.
        let ok = f32s(vec![3], vec![100.09, 0.0, f32::INFINITY]);
        assert!(compare_allclose(&ok, &want, 1e-3, 1e-7).is_ok());
        let bad = f32s(vec![3], vec![100.0, 1e-6, f32::INFINITY]);
        assert!(compare_allclose(&bad, &want, 1e-3, 1e-7).is_err());
        assert!(compare_allclose(&bad, &want, 1e-3, 1e-5).is_ok());
        let inf = f32s(vec![3], vec![100.0, 0.0, f32::NEG_INFINITY]);
        assert!(compare_allclose(&inf, &want, 1e-3, 1e-7).is_err());
    }
}
