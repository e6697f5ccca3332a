//! Helpers for the tests that compile the tiny-encoder example into a model library with the
//! built `tcc` and then use it (`bench.rs`, `examples.rs`).

#![allow(dead_code)] // Each test file uses its own subset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The prefix the tests compile the example with: `libmodel.so`, functions `model_*`.
pub const PREFIX: &str = "model";

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of examples/tiny-encoder.
pub fn tiny(file: &str) -> PathBuf {
    workspace().join("examples/tiny-encoder").join(file)
}

/// Runs the built `tcc` with `args`.
pub fn tcc<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcc"))
        .args(args)
        .output()
        .expect("run the tcc binary")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh directory under the target dir, emptied first, one set per test binary.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(concat!("cli-", env!("CARGO_CRATE_NAME")))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Compiles the tiny-encoder into `DIR/libmodel.so` (and its header beside it) once per test
/// binary and per target CPU (`None`: the host), and returns DIR. Fails the test with tcc's
/// message if `tcc compile` fails.
pub fn compiled_tiny(target_cpu: Option<&'static str>) -> &'static Path {
    static HOST: OnceLock<PathBuf> = OnceLock::new();
    static V3: OnceLock<PathBuf> = OnceLock::new();
    let cell = match target_cpu {
        None => &HOST,
        Some("x86-64-v3") => &V3,
        Some(other) => panic!("no cache for target CPU {other}"),
    };
    cell.get_or_init(|| {
        let dir = scratch(&format!("tiny-{}", target_cpu.unwrap_or("host")));
        let so = dir.join(format!("lib{PREFIX}.so"));
        let mut args = vec![
            "compile".into(),
            tiny("model.onnx").into_os_string(),
            "-o".into(),
            so.clone().into_os_string(),
            "--prefix".into(),
            PREFIX.into(),
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
        assert!(so.is_file(), "tcc compile did not write {}", so.display());
        dir
    })
}

/// The C header tcc wrote beside the library in `dir`: its only `.h` file.
pub fn header_in(dir: &Path) -> PathBuf {
    let headers: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the library's directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "h"))
        .collect();
    assert_eq!(
        headers.len(),
        1,
        "expected one header beside the library in {}, found {headers:?}",
        dir.display()
    );
    headers[0].clone()
}
