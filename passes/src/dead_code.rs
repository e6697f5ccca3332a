//! `dead-code`: removes every node that no output needs.

use crate::error::Result;
use crate::pass::Pass;
use tcc_ir::Graph;

/// Removes the nodes that no graph output depends on (inputs always stay),
/// with [`Graph::remove_dead`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DeadCode;

impl Pass for DeadCode {
    fn name(&self) -> &'static str {
        "dead-code"
    }

    fn description(&self) -> &'static str {
        "removes nodes that no output depends on"
    }

    fn run(&self, graph: &mut Graph) -> Result<bool> {
        Ok(graph.remove_dead() > 0)
    }
}
