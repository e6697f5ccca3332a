//! `include/tcc_model.h` and `src/abi.rs` agree: the C compiler's sizes, offsets and constants
//! match Rust's, and the header compiles as strict C99, included twice.

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use tcc_runtime::abi::{
    Dtype, ModelDesc, Output, Status, Tensor, TensorDesc, ABI_VERSION, CHECK_VALUES, MAX_RANK,
    MAX_THREADS,
};

const PROGRAM: &str = r#"
#include <stddef.h>
#include <stdio.h>
#include "tcc_model.h"
#include "tcc_model.h" /* twice: the include guards hold */
#define P(e) printf("%s %lld\n", #e, (long long)(e))
int main(void) {
  P(sizeof(tcc_tensor)); P(offsetof(tcc_tensor, dtype)); P(offsetof(tcc_tensor, rank));
  P(offsetof(tcc_tensor, dims)); P(offsetof(tcc_tensor, data));
  P(sizeof(tcc_output)); P(offsetof(tcc_output, buffer)); P(offsetof(tcc_output, capacity));
  P(offsetof(tcc_output, data)); P(offsetof(tcc_output, size)); P(offsetof(tcc_output, dtype));
  P(offsetof(tcc_output, rank)); P(offsetof(tcc_output, dims));
  P(sizeof(tcc_tensor_desc)); P(offsetof(tcc_tensor_desc, name));
  P(offsetof(tcc_tensor_desc, dtype)); P(offsetof(tcc_tensor_desc, rank));
  P(offsetof(tcc_tensor_desc, dims));
  P(sizeof(tcc_model_desc)); P(offsetof(tcc_model_desc, abi_version));
  P(offsetof(tcc_model_desc, n_inputs)); P(offsetof(tcc_model_desc, n_outputs));
  P(offsetof(tcc_model_desc, n_symbols)); P(offsetof(tcc_model_desc, inputs));
  P(offsetof(tcc_model_desc, outputs)); P(offsetof(tcc_model_desc, symbol_names));
  P(offsetof(tcc_model_desc, output_dims)); P(offsetof(tcc_model_desc, arena_bytes));
  P(offsetof(tcc_model_desc, run)); P(offsetof(tcc_model_desc, n_size_checks));
  P(offsetof(tcc_model_desc, size_checks)); P(offsetof(tcc_model_desc, check_sizes));
  P(TCC_CHECK_VALUES);
  P(TCC_ABI_VERSION); P(TCC_MAX_RANK); P(TCC_MAX_THREADS); P(TCC_DIM_COMPUTED == INT64_MIN);
  P(TCC_OK); P(TCC_ERR_INVALID_ARGUMENT); P(TCC_ERR_DTYPE); P(TCC_ERR_SHAPE);
  P(TCC_ERR_OUT_OF_MEMORY); P(TCC_ERR_INTERNAL); P(TCC_ERR_CAPACITY);
  P(TCC_F32); P(TCC_F64); P(TCC_F16); P(TCC_BF16); P(TCC_I64); P(TCC_I32); P(TCC_I8);
  P(TCC_U8); P(TCC_BOOL);
  return 0;
}
"#;

fn include_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/include"))
}

#[test]
fn the_header_matches_the_rust_mirrors() {
    let dir = std::env::temp_dir().join(format!("tcc-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&source, PROGRAM).unwrap();
    let status = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-I"])
        .arg(include_dir())
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("cc runs (a C compiler is installed)");
    assert!(status.success(), "the layout program does not compile");
    let output = Command::new(&exe).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let got: Vec<i64> = text
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    let want: Vec<i64> = [
        size_of::<Tensor>(),
        offset_of!(Tensor, dtype),
        offset_of!(Tensor, rank),
        offset_of!(Tensor, dims),
        offset_of!(Tensor, data),
        size_of::<Output>(),
        offset_of!(Output, buffer),
        offset_of!(Output, capacity),
        offset_of!(Output, data),
        offset_of!(Output, size),
        offset_of!(Output, dtype),
        offset_of!(Output, rank),
        offset_of!(Output, dims),
        size_of::<TensorDesc>(),
        offset_of!(TensorDesc, name),
        offset_of!(TensorDesc, dtype),
        offset_of!(TensorDesc, rank),
        offset_of!(TensorDesc, dims),
        size_of::<ModelDesc>(),
        offset_of!(ModelDesc, abi_version),
        offset_of!(ModelDesc, n_inputs),
        offset_of!(ModelDesc, n_outputs),
        offset_of!(ModelDesc, n_symbols),
        offset_of!(ModelDesc, inputs),
        offset_of!(ModelDesc, outputs),
        offset_of!(ModelDesc, symbol_names),
        offset_of!(ModelDesc, output_dims),
        offset_of!(ModelDesc, arena_bytes),
        offset_of!(ModelDesc, run),
        offset_of!(ModelDesc, n_size_checks),
        offset_of!(ModelDesc, size_checks),
        offset_of!(ModelDesc, check_sizes),
        CHECK_VALUES,
        ABI_VERSION as usize,
        MAX_RANK,
        MAX_THREADS,
        1,
    ]
    .into_iter()
    .map(|v| v as i64)
    .chain(Status::ALL.into_iter().map(|s| s as i64))
    .chain(Dtype::ALL.into_iter().map(|d| d as i64))
    .collect();
    assert_eq!(got, want, "C says:\n{text}");
}
