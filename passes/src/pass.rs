//! The `Pass` trait: one rewrite of a graph in place.

use crate::error::Result;
use tcc_ir::Graph;

/// A transformation of a graph in place.
///
/// A pass keeps the graph valid: the [`crate::PassManager`] runs the verifier
/// after it (unless verification is turned off) and blames the pass if an invariant
/// breaks. Passes neither verify nor print; the manager does both.
pub trait Pass {
    /// The pass's name: unique, kebab-case (`fold-shapes`), as the CLI and
    /// logs accept it.
    fn name(&self) -> &'static str;

    /// One line saying what the pass does, for `--help` style listings.
    fn description(&self) -> &'static str;

    /// Runs the pass on `graph`. Returns whether it changed anything: `false`
    /// promises that the graph is exactly as it was.
    fn run(&self, graph: &mut Graph) -> Result<bool>;
}
