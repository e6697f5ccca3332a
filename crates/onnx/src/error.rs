//! The errors of the ONNX importer.
//!
//! Every variant names what is at fault: the file, the tensor, the input, or
//! the ONNX node with its op type, so that a failure in a model of thousands
//! of nodes can be found without a debugger.

use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong while loading or importing an ONNX model.
#[derive(Debug, Error)]
pub enum Error {
    /// A file could not be read (missing, unreadable).
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file ends in the middle of a protobuf field: it was cut short.
    #[error("`{path}` is truncated: {message}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where it ends and what was expected there.
        message: String,
    },
    /// The file does not hold an ONNX model (it does not decode as a
    /// ModelProto, or the ModelProto has no graph).
    #[error("`{path}` is not an ONNX model: {message}")]
    NotOnnx {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A tensor's external data file is missing or too short, lies outside
    /// the model's directory (an absolute location, a `..` component, a
    /// symbolic link leading out), is not a regular file, or its `length`
    /// does not match the tensor's declared size.
    #[error("tensor `{tensor}`: external data `{file}`: {message}")]
    ExternalData {
        /// The tensor's name.
        tensor: String,
        /// The data file, resolved against the model's directory.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A constant tensor is larger than the import budget allows: over
    /// [`MAX_TENSOR_BYTES`](crate::load::MAX_TENSOR_BYTES) by itself, or
    /// taking the model's constants over
    /// [`MAX_TOTAL_BYTES`](crate::load::MAX_TOTAL_BYTES). Checked from the
    /// declared dims, before anything is read or allocated.
    #[error("tensor `{tensor}`: {message}")]
    TooLarge {
        /// The tensor's name.
        tensor: String,
        /// Its size, the limit it exceeds and which one.
        message: String,
    },
    /// A TensorProto cannot be turned into a tensor: unsupported element
    /// type, element count that does not match its dims, malformed storage.
    #[error("tensor `{tensor}`: {message}")]
    Tensor {
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// The model's opset imports cannot be handled.
    #[error("opset: {0}")]
    Opset(String),
    /// A graph input cannot be turned into an IR input (not a tensor, or an
    /// unsupported element type).
    #[error("graph input `{name}`: {message}")]
    Input {
        /// The input's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A node whose op type is not in the registry, or is in another domain.
    #[error("unsupported op `{op}` (domain `{domain}`, opset {opset}) at node `{node}`")]
    UnsupportedOp {
        /// The ONNX op type.
        op: String,
        /// The op's domain (`ai.onnx` for the default domain).
        domain: String,
        /// The opset version imported for that domain.
        opset: i64,
        /// The node's name.
        node: String,
    },
    /// An attribute is missing, has the wrong type, or a value the op cannot take.
    #[error("node `{node}` ({op}): attribute `{attr}`: {message}")]
    Attribute {
        /// The node's name.
        node: String,
        /// The ONNX op type.
        op: String,
        /// The attribute's name.
        attr: String,
        /// What is wrong.
        message: String,
    },
    /// A shape-like input (a Reshape target, Slice bounds, axes, ...) is
    /// computed from data at run time, but tcc needs its value at compile time.
    #[error(
        "node `{node}` ({op}): input {index} ({what}) is computed from data at run time, \
         but tcc needs its value at compile time"
    )]
    NotKnown {
        /// The node's name.
        node: String,
        /// The ONNX op type.
        op: String,
        /// The input's position.
        index: usize,
        /// What the input means to the op (`shape`, `axes`, ...).
        what: String,
    },
    /// The IR rejected a node the importer built: operands whose dtypes or
    /// shapes cannot agree.
    #[error("node `{node}` ({op}): {source}")]
    Ir {
        /// The node's name.
        node: String,
        /// The ONNX op type.
        op: String,
        /// The IR's error.
        source: tcc_ir::Error,
    },
    /// Any other problem with a node: a missing input, an unsupported
    /// attribute value, an output tcc does not compute.
    #[error("node `{node}` ({op}): {message}")]
    Node {
        /// The node's name.
        node: String,
        /// The ONNX op type.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// The graph's wiring is broken: a value used before any node makes it,
    /// a graph output nobody produces.
    #[error("graph: {0}")]
    Graph(String),
}

/// The result type of the ONNX importer.
pub type Result<T> = std::result::Result<T, Error>;
