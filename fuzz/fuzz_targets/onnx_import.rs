//! Fuzz target: the whole ONNX import, bytes to IR graph.
//!
//! The bytes are decoded as `tcc_onnx::load::load_model` does and imported by
//! `tcc_onnx::import_model` from a model folder holding only `data.bin`
//! (`tcc_fuzz::import_dir`), so external data in range is read and anything
//! else is refused. A graph that imports is then checked by the verifier, whose
//! errors are not findings either (a failed check is reported, not a crash).
//! Errors are expected; a panic, an abort, an allocation over the limit or a
//! timeout is a finding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = tcc_onnx::load::decode_model(data, Path::new("fuzz.onnx")) else {
        return;
    };
    if let Ok(graph) = tcc_onnx::import_model(&model, tcc_fuzz::import_dir()) {
        let _ = tcc_ir::verify::verify(&graph);
    }
});
