//! The errors of the IR crate.

use thiserror::Error;

/// Everything that can go wrong in the IR: building, parsing, verifying and
/// interpreting a graph.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// An op was given operands it cannot take: wrong count, dtype or shape.
    #[error("{op}: {message}")]
    Invalid {
        /// The op's text name.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// The text form could not be parsed.
    #[error("line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A graph broke an invariant that the verifier checks.
    #[error("verifier: {0}")]
    Verify(String),
    /// A run was given a missing or malformed input.
    #[error("input `{name}`: {message}")]
    Input {
        /// The input's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Evaluating a node failed at run time.
    #[error("{op} (node {node}): {message}")]
    Eval {
        /// The node's index.
        node: usize,
        /// The op's text name.
        op: String,
        /// What is wrong.
        message: String,
    },
}

/// The result type of the IR crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for an [`Error::Invalid`].
pub(crate) fn invalid(op: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        op: op.to_string(),
        message: message.into(),
    }
}
