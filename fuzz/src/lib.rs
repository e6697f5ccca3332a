//! Helpers shared by tcc's fuzz targets (`fuzz_targets/`) and their seed
//! generator (`examples/seeds.rs`).
//!
//! Every target feeds untrusted bytes to one of tcc's parsers and treats an
//! `Err` as the right answer; only a panic, an abort, a sanitizer report, an
//! allocation over libFuzzer's `-malloc_limit_mb` or a timeout is a finding.
//! `scripts/fuzz.sh` runs them; the closing section of ARCHITECTURE.md's
//! "Untrusted input" part says what each covers.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tcc_ir::{DType, Tensor};

/// The most elements one elided weight of the `ir_text` target may have.
pub const WEIGHT_LIMIT: usize = 1 << 16;

/// The most elements all the elided weights of one `ir_text` input may have
/// together.
pub const WEIGHTS_PER_INPUT: usize = 1 << 20;

/// The size of `data.bin` in [`import_dir`].
pub const DATA_BIN_BYTES: usize = 64 << 10;

/// Parses a type written as a weight name, `f32[2, 3]` (the form the seed
/// generator gives elided constants), into a dtype and concrete dims.
pub fn parse_weight_name(name: &str) -> Option<(DType, Vec<usize>)> {
    let (dtype, rest) = name.split_once('[')?;
    let dtype = DType::from_name(dtype.trim())?;
    let inner = rest.trim_end().strip_suffix(']')?;
    let dims = if inner.trim().is_empty() {
        Vec::new()
    } else {
        inner
            .split(',')
            .map(|d| d.trim().parse::<usize>().ok())
            .collect::<Option<Vec<_>>>()?
    };
    Some((dtype, dims))
}

/// The weights callback of `tcc_ir::text::parse` for fuzzing: a weight named
/// by its own type (`@"f32[4, 8]"`) is that many zeros, up to
/// [`WEIGHT_LIMIT`] elements each and [`WEIGHTS_PER_INPUT`] in all (counted in
/// `used`); any other name is a missing weight.
pub fn zero_weight(name: &str, used: &Cell<usize>) -> Option<Tensor> {
    let (dtype, dims) = parse_weight_name(name)?;
    let n = tcc_ir::shape::checked_numel(&dims)?;
    let total = used.get().checked_add(n)?;
    if n > WEIGHT_LIMIT || total > WEIGHTS_PER_INPUT {
        return None;
    }
    used.set(total);
    Some(Tensor::zeros(dtype, dims))
}

/// The model folder of the `onnx_import` target: a fresh directory under the
/// temporary directory (`TMPDIR`, which `scripts/fuzz.sh` points at a scratch
/// folder it removes) holding `data.bin`, [`DATA_BIN_BYTES`] of a byte
/// pattern, so that external data in range is read and anything else is
/// refused. Created once per process.
pub fn import_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tcc-fuzz-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create the fuzz model folder");
        std::fs::write(dir.join("data.bin"), data_bin()).expect("cannot write data.bin");
        dir
    })
}

/// The bytes of `data.bin`: [`DATA_BIN_BYTES`] of a pattern that is no
/// constant, so tensors read from it are not all alike.
pub fn data_bin() -> Vec<u8> {
    (0..DATA_BIN_BYTES).map(|i| (i * 7 + 3) as u8).collect()
}
