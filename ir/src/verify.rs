//! The verifier: checks a graph's invariants after passes.

use crate::error::Result;
use crate::graph::Graph;

/// Checks every invariant of `graph`.
pub fn verify(graph: &Graph) -> Result<()> {
    let _ = graph;
    Ok(())
}
