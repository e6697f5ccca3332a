//! `--expected REF.npz [--tolerance TOL]`, shared by `interpret` and `run`:
//! compares a model's outputs with a reference archive.

use crate::files;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tcc_ir::Tensor;

/// The reference-check flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ExpectedArgs {
    /// Compare the outputs with the arrays of the same names in REF.npz.
    #[arg(long, value_name = "REF.npz")]
    pub expected: Option<PathBuf>,

    /// The tolerance of --expected, relative to max(1, max|ref|) per output.
    #[arg(
        long,
        value_name = "TOL",
        default_value_t = 1e-4,
        requires = "expected"
    )]
    pub tolerance: f64,
}

impl ExpectedArgs {
    /// Checks the tolerance and reads the reference, if one was given, so that
    /// a bad path or value fails before the run.
    pub fn read(&self) -> Result<Option<Vec<(String, Tensor)>>> {
        if self.tolerance.is_nan() || self.tolerance < 0.0 {
            bail!(
                "--tolerance must be a non-negative number, not {}",
                self.tolerance
            );
        }
        match &self.expected {
            Some(path) => Ok(Some(files::read_npz(path, "the expected outputs")?)),
            None => Ok(None),
        }
    }

    /// Compares `outputs` with the reference read by [`ExpectedArgs::read`], if any.
    pub fn check(
        &self,
        outputs: &[(String, Tensor)],
        reference: Option<Vec<(String, Tensor)>>,
    ) -> Result<()> {
        match (&self.expected, reference) {
            (Some(path), Some(reference)) => check(outputs, reference, path, self.tolerance),
            _ => Ok(()),
        }
    }
}

/// Compares outputs with a reference: a line per output on stderr, and an
/// error naming every output that differs.
pub fn check(
    outputs: &[(String, Tensor)],
    reference: Vec<(String, Tensor)>,
    path: &Path,
    tolerance: f64,
) -> Result<()> {
    let reference: HashMap<String, Tensor> = reference.into_iter().collect();
    let mut compared = 0;
    let mut failures = Vec::new();
    for (name, got) in outputs {
        let Some(want) = reference.get(name) else {
            eprintln!("tcc: {name}: not in `{}`, not checked", path.display());
            continue;
        };
        compared += 1;
        if got.dtype() != want.dtype() || got.shape() != want.shape() {
            failures.push(format!(
                "output `{name}` is {}{:?} but `{}` has {}{:?}",
                got.dtype(),
                got.shape(),
                path.display(),
                want.dtype(),
                want.shape()
            ));
            continue;
        }
        let (g, w) = (got.data().to_f64_vec(), want.data().to_f64_vec());
        let scale = w
            .iter()
            .filter(|x| x.is_finite())
            .fold(1.0f64, |m, x| m.max(x.abs()));
        let tol = tolerance * scale;
        // The worst element; NaN where exactly one side is NaN counts as infinitely far.
        let (mut at, mut diff) = (0usize, 0.0f64);
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            let d = if (a.is_nan() && b.is_nan()) || a == b {
                0.0
            } else if a.is_nan() || b.is_nan() {
                f64::INFINITY
            } else {
                (a - b).abs()
            };
            if d > diff {
                (at, diff) = (i, d);
            }
        }
        let ok = diff <= tol;
        eprintln!(
            "tcc: {name}: max |diff| {diff:.3e} (tolerance {tol:.3e}): {}",
            if ok { "ok" } else { "MISMATCH" }
        );
        if !ok {
            failures.push(format!(
                "output `{name}` differs from `{}`: element {at} is {} but should be {} (|diff| {diff:.3e} > {tol:.3e})",
                path.display(),
                g[at],
                w[at]
            ));
        }
    }
    if compared == 0 {
        bail!(
            "no output of the model is in `{}`: nothing was checked",
            path.display()
        );
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}
