//! The errors of the passes crate.

use thiserror::Error;

/// What can go wrong when building a pipeline or running passes.
#[derive(Debug, Error)]
pub enum Error {
    /// An IR operation failed inside a pass (adding a node, replacing one).
    #[error(transparent)]
    Ir(#[from] tcc_ir::Error),
    /// A pass name that no pass has, in a pipeline, disable or dump list.
    #[error("unknown pass `{name}`; valid passes are: {}", valid.join(", "))]
    UnknownPass {
        /// The name asked for.
        name: String,
        /// The names that would have been accepted.
        valid: Vec<&'static str>,
    },
    /// Evaluating a constant node failed while folding it.
    #[error("cannot fold node {node} ({op}): {error}")]
    Fold {
        /// The node's index.
        node: usize,
        /// The op's text name.
        op: &'static str,
        /// What the interpreter said.
        error: tcc_ir::Error,
    },
    /// A pass returned an error.
    #[error("pass `{pass}` failed: {error}")]
    PassFailed {
        /// The pass's name.
        pass: &'static str,
        /// Its error.
        error: Box<Error>,
    },
    /// The verifier rejected the graph after a pass: the pass broke it.
    #[error("the graph is invalid after pass `{pass}`: {error}")]
    BrokenBy {
        /// The pass's name.
        pass: &'static str,
        /// The verifier's report.
        error: tcc_ir::Error,
    },
    /// Int8 quantisation cannot go on (calibration inputs that do not run, say).
    #[error("cannot quantise: {why}")]
    Quantize {
        /// What went wrong.
        why: String,
    },
    /// The verifier rejected the graph before any pass ran.
    #[error("the graph is invalid before the passes: {0}")]
    InvalidInput(tcc_ir::Error),
    /// Padding elimination was asked for a model where it cannot be shown exact.
    #[error("cannot remove padding: {why}")]
    Padding {
        /// Why: the mask not found, or the node whose attention mask is not a key-padding
        /// mask.
        why: String,
    },
    /// Writing an IR dump to the dump writer failed.
    #[error("cannot write the IR dump of pass `{pass}`: {error}")]
    Dump {
        /// The pass whose dump was being written.
        pass: &'static str,
        /// The IO error.
        error: std::io::Error,
    },
}

/// The result type of the passes crate.
pub type Result<T> = std::result::Result<T, Error>;
