//! Fuzz target: ONNX protobuf decoding.
//!
//! The bytes are decoded as a `ModelProto` by `tcc_onnx::load::decode_model`
//! (the framing scan, the decoding-overhead estimate, then prost), and as a
//! `TensorProto` (the node tests' `input_*.pb`) converted to a tensor by
//! `tensor_from_proto` without a model folder, so external data is refused.
//! Errors are expected; a panic, an abort or an allocation over the limit is a
//! finding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use std::path::Path;
use tcc_onnx::proto::TensorProto;

fuzz_target!(|data: &[u8]| {
    let _ = tcc_onnx::load::decode_model(data, Path::new("fuzz.onnx"));
    if let Ok(t) = TensorProto::decode(data) {
        let _ = tcc_onnx::tensor_from_proto(&t, None);
    }
});
