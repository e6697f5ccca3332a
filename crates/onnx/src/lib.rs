//! ONNX import: decodes a `ModelProto` and lowers its graph into the IR.
//!
//! [`load_model`] reads and decodes a file, [`import_model`] lowers a decoded
//! model into a [`tcc_ir::Graph`], and [`import_file`] does both. Each ONNX op
//! is lowered by an importer found in one explicit registry ([`ops`]), one
//! file per op family; ops that core IR ops can express (Gemm, Split, Clip,
//! Gelu, the quantisation ops, ...) are expanded at import time. Shape
//! arithmetic that exporters write (`Shape`, `Gather`, `Concat` feeding a
//! `Reshape`) is folded through the IR's known values, so the imported graph
//! has explicit, possibly symbolic, shapes.
//!
//! A model file is untrusted: [`load_model`] bounds what decoding it may
//! allocate ([`footprint`]), external data must stay in the model's folder,
//! constants are held to [`MAX_TENSOR_BYTES`] each and [`MAX_TOTAL_BYTES`] in
//! all, and every node is checked against its op's signature
//! ([`ops::schema`]) before it is lowered.

pub mod context;
pub mod error;
pub mod footprint;
pub mod import;
pub mod load;
pub mod ops;

/// The ONNX protobuf types, generated from `proto/onnx.proto` by `prost-build`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use context::Ctx;
pub use error::{Error, Result};
pub use import::{
    import_file, import_file_with, import_model, import_model_with, ImportOptions, Int8MatMul,
};
pub use load::{load_model, tensor_from_proto, MAX_TENSOR_BYTES, MAX_TOTAL_BYTES};
pub use ops::supported_ops;
