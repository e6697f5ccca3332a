//! The text form of a graph: a stable, readable printer and its parser.

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::tensor::Tensor;

/// Prints `graph` in the text form.
pub fn print(graph: &Graph) -> String {
    let _ = graph;
    String::new()
}

/// Parses the text form. `weights` supplies the values of constants that the
/// printer elided by name (large weights).
pub fn parse(text: &str, weights: &dyn Fn(&str) -> Option<Tensor>) -> Result<Graph> {
    let _ = (text, weights);
    Err(Error::Parse {
        line: 0,
        message: "the parser is not written yet".into(),
    })
}
