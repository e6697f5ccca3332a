//! tcc's typed tensor IR.
//!
//! A model is a [`Graph`] of [`Op`]s on a petgraph, one result per node, each
//! with a [`TensorType`] whose [`Shape`] may be symbolic (`[batch, seq, 384]`).
//! Types are inferred as nodes are added ([`infer`]), the [`verify`] module
//! re-checks a graph after passes, [`text`] prints and parses the stable text
//! form, and [`interp`] is the reference interpreter: the oracle that every
//! rewrite and kernel is tested against.
//!
//! This crate knows nothing of ONNX, egg or LLVM.

#![warn(missing_docs)]

pub mod dim;
pub mod dtype;
pub mod error;
pub mod fused;
pub mod graph;
pub mod infer;
pub mod op;
pub mod shape;
pub mod tensor;

pub use dim::Dim;
pub use dtype::DType;
pub use error::{Error, Result};
pub use fused::{Activation, AttentionMask, Body, ScoreScale};
pub use graph::{Graph, Node, NodeId};
pub use infer::Known;
pub use op::{BinaryOp, Constant, Op, PadMode, ReduceKind, UnaryOp};
pub use shape::{Shape, TensorType};
pub use tensor::{Element, Tensor, TensorData};
pub mod interp;
pub mod text;
pub mod verify;
pub mod zero;
