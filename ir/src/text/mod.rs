//! The text form of a graph: a stable, readable printer and its parser.
//!
//! ```text
//! graph(%input_ids: i64[batch, seq], %"attention.mask": i64[batch, seq]) {
//!   %0 = const @"embeddings.word_embeddings.weight" : f32[8192, 128]
//!   %1 = const [0.5, 2.0] : f32[2]
//!   %2 = gather<axis=0>(%0, %input_ids) : f32[batch, seq, 128]
//!   %3 = add(%2, %1) : f32[batch, seq, 128]
//!   return %last_hidden_state = %3
//! }
//! ```
//!
//! - The header lists the inputs in order, by name. A name that is not an
//!   identifier (`[A-Za-z_][A-Za-z0-9_]*`) is quoted: `%"input.1"`.
//! - Every other node is one line, numbered `%0, %1, ...` in
//!   [`Graph::topo_order`] (a number that an input's name already uses is
//!   skipped). Attributes come from [`crate::Op::attrs`] between `<` and `>`,
//!   operands follow in parentheses (omitted for ops that take none), and the
//!   line ends with the result type.
//! - A constant of at most [`INLINE_LIMIT`] elements is printed inline, flat and
//!   row-major, its shape given by the type: floats so that they parse back to
//!   the same bits (f16 and bf16 through f32; a NaN other than the canonical
//!   one as `NaN:0x<bits>`), bools as `true`/`false`, a scalar as `[x]` of type
//!   `f32[]`. A larger constant is elided as `@"name"`: its own name, or for an
//!   unnamed constant `c.` and a hash of its dtype, shape and bytes. Two
//!   different tensors that would get the same name are told apart by `#2`,
//!   `#3`, ... in print order. [`elided_weights`] returns those tensors, keyed
//!   by the printed name.
//! - One `return %name = %value` line per output, in order, then `}`.
//! - Blank lines and lines starting with `#` are ignored by the parser.
//!
//! Origins are not printed. The parser builds the graph with [`Graph::add`],
//! so every type is inferred again and checked against the one stated.

mod dot;
mod parse;
mod print;

#[cfg(test)]
mod tests;

use crate::graph::{Graph, NodeId};
use crate::op::Op;
use crate::tensor::Tensor;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use dot::dot_cluster;
pub use parse::parse;
pub use print::print;

/// Constants with at most this many elements are printed inline.
pub const INLINE_LIMIT: usize = 16;

/// The tensors that [`print()`] elides as `@"name"`, keyed by the printed name,
/// so that `parse(&print(g), &|n| elided_weights(g).get(n).cloned())`
/// rebuilds the graph.
pub fn elided_weights(graph: &Graph) -> HashMap<String, Tensor> {
    let labels = const_labels(graph, &graph.topo_order());
    let mut out = HashMap::new();
    for (id, label) in labels {
        if let Op::Const(c) = graph.op(id) {
            out.entry(label).or_insert_with(|| (*c.value).clone());
        }
    }
    out
}

/// The printed name of every elided constant, assigned in `order`.
pub(crate) fn const_labels(graph: &Graph, order: &[NodeId]) -> BTreeMap<NodeId, String> {
    let mut used: BTreeMap<String, Arc<Tensor>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for &id in order {
        let c = match graph.op(id) {
            Op::Const(c) if c.value.len() > INLINE_LIMIT => c,
            _ => continue,
        };
        let base = match &c.name {
            Some(n) => n.clone(),
            None => format!("c.{:016x}", content_hash(&c.value)),
        };
        let mut label = base.clone();
        let mut k = 1;
        loop {
            match used.get(&label) {
                None => {
                    used.insert(label.clone(), c.value.clone());
                    break;
                }
                Some(t) if Arc::ptr_eq(t, &c.value) || **t == *c.value => break,
                Some(_) => {
                    k += 1;
                    label = format!("{base}#{k}");
                }
            }
        }
        out.insert(id, label);
    }
    out
}

/// A 64-bit FNV-1a hash of a tensor's dtype, shape and bytes: stable across
/// runs and platforms.
fn content_hash(t: &Tensor) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(t.dtype().name().as_bytes());
    feed(&(t.shape().len() as u64).to_le_bytes());
    for &d in t.shape() {
        feed(&(d as u64).to_le_bytes());
    }
    feed(&t.data().to_le_bytes());
    h
}

/// True for names printed without quotes: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_ident(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Writes `s` as a quoted string with `\"`, `\\`, `\n`, `\r`, `\t` and
/// `\u{..}` escapes.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A name as written after `%`: bare if it is an identifier, quoted otherwise.
pub(crate) fn name_token(s: &str) -> String {
    if is_ident(s) {
        s.to_string()
    } else {
        quote(s)
    }
}
