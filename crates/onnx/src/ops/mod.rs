//! The op registry: one explicit map from ONNX op type to importer, filled
//! by each op family's `register`.
//!
//! Every node is first checked against its op's signature in [`schema`]
//! (input and output counts, attribute names and types), so an importer sees
//! only nodes of the shape its op defines.
//!
//! An importer lowers one ONNX node into core IR ops and returns one node per
//! ONNX output it computes (it may compute fewer than the node declares:
//! using a missing one is an error that names it).
//!
//! An ONNX op rounds its result once. A lowering into more than one core op
//! that rounds (or that rounds a float attribute to the input's type) builds
//! them inside [`Ctx::widened`], which computes f16 and bf16 in f32 and
//! rounds once at the end; each family's `//!` says which of its lowerings
//! do and why the others need not.

use crate::context::Ctx;
use crate::error::Result;
use std::collections::HashMap;
use tcc_ir::NodeId;

mod activation;
mod attention;
mod conv;
mod conv_integer;
mod einsum;
mod elementwise;
mod matmul;
mod misc;
mod normalization;
mod pad;
mod quant;
mod reduce;
pub mod schema;
mod shape;

/// Lowers one ONNX node; returns one IR node per ONNX output, in order.
pub type ImportFn = fn(&mut Ctx) -> Result<Vec<NodeId>>;

/// A registry entry.
#[derive(Clone, Copy)]
pub struct Importer {
    /// The first opset of the default domain that defines the op.
    pub since: i64,
    /// The lowering.
    pub import: ImportFn,
}

/// The registry being filled by the families' `register` functions.
pub(crate) type Registry = HashMap<&'static str, Importer>;

/// Adds `op` to the registry, defined from opset `since`.
pub(crate) fn reg(r: &mut Registry, op: &'static str, since: i64, import: ImportFn) {
    let old = r.insert(op, Importer { since, import });
    debug_assert!(old.is_none(), "op `{op}` is registered twice");
}

/// The full registry, keyed by the exact ONNX op type.
pub fn registry() -> HashMap<&'static str, Importer> {
    let mut r = Registry::new();
    elementwise::register(&mut r);
    activation::register(&mut r);
    matmul::register(&mut r);
    normalization::register(&mut r);
    reduce::register(&mut r);
    shape::register(&mut r);
    quant::register(&mut r);
    misc::register(&mut r);
    conv::register(&mut r);
    conv_integer::register(&mut r);
    pad::register(&mut r);
    einsum::register(&mut r);
    attention::register(&mut r);
    r
}

/// The ONNX op types the importer supports, sorted.
pub fn supported_ops() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = registry().into_keys().collect();
    v.sort_unstable();
    v
}
