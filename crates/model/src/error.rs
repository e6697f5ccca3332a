//! The errors of loading and running a model library: one variant per kind of failure, each
//! naming the file, input or output at fault.

use crate::DType;
use std::path::PathBuf;
pub use tcc_runtime::abi::Status;

/// A failure of [`crate::Model`] or [`crate::Session`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The library file does not exist.
    #[error("model library `{}` does not exist", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },

    /// The file is not a loadable tcc model library: not a whole x86-64 shared object, a
    /// shared object that `dlopen` refuses, or one that does not export a model's C API.
    #[error("cannot load the model library `{}`: {reason}", path.display())]
    NotAModel {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The library exports the API of several models and no prefix chose one.
    #[error(
        "`{}` exports the API of several models ({}); choose one by its prefix",
        path.display(),
        prefixes.join(", ")
    )]
    SeveralModels {
        /// The path given.
        path: PathBuf,
        /// The prefixes found.
        prefixes: Vec<String>,
    },

    /// The library's answers about its own interface contradict each other (a corrupt or
    /// foreign library).
    #[error("the model library `{}` (prefix `{prefix}`) is inconsistent: {what}", path.display())]
    Inconsistent {
        /// The library.
        path: PathBuf,
        /// Its prefix.
        prefix: String,
        /// What it said.
        what: String,
    },

    /// A session could not be created (threads or memory).
    #[error("cannot create a session of `{}` on {threads} threads: {status} ({message})", path.display())]
    Session {
        /// The library.
        path: PathBuf,
        /// The threads asked for.
        threads: i32,
        /// The C API's status.
        status: StatusText,
        /// The C API's message.
        message: String,
    },

    /// Not as many inputs as the model takes.
    #[error("the model takes {expected} inputs ({names}), not {got}")]
    InputCount {
        /// The model's input count.
        expected: usize,
        /// The inputs given.
        got: usize,
        /// The model's input names, comma-separated.
        names: String,
    },

    /// A model input was not given.
    #[error("the model's input `{name}` ({expected}) is missing; given: {given}")]
    MissingInput {
        /// The input's name.
        name: String,
        /// What the model takes, such as `i64[batch, seq]`.
        expected: String,
        /// The names given, comma-separated.
        given: String,
    },

    /// A name given is not one of the model's inputs.
    #[error("`{name}` is not an input of the model; its inputs are {inputs}")]
    UnknownInput {
        /// The name given.
        name: String,
        /// The model's input names, comma-separated.
        inputs: String,
    },

    /// An input's element type is not the model's.
    #[error("input `{name}` is {got}, but the model takes {expected}")]
    Dtype {
        /// The input's name.
        name: String,
        /// What the model takes, such as `i64[batch, seq]`.
        expected: String,
        /// The dtype given.
        got: DType,
    },

    /// An input's rank or dims do not fit the model or the other inputs.
    #[error("input `{name}` has shape {dims:?}, but the model takes {expected}{detail}")]
    Shape {
        /// The input's name.
        name: String,
        /// What the model takes, such as `i64[batch, seq]`.
        expected: String,
        /// The dims given.
        dims: Vec<usize>,
        /// More on the mismatch (a symbol bound differently by another input), or empty.
        detail: String,
    },

    /// A tensor's bytes do not hold its dims' elements, or its data is not aligned.
    #[error("{what}")]
    Layout {
        /// What is wrong.
        what: String,
    },

    /// An output read as the wrong element type.
    #[error("output `{name}` is {actual}, not {asked}")]
    OutputDtype {
        /// The output's name.
        name: String,
        /// Its dtype.
        actual: DType,
        /// The dtype asked for.
        asked: DType,
    },

    /// Caller-owned output buffers: not one per output, or one too small (the sizes needed are
    /// given, so the caller can grow them and retry).
    #[error("output buffers: {what}")]
    Buffers {
        /// What is wrong.
        what: String,
        /// The bytes each output needs, when the library said (TCC_ERR_CAPACITY).
        needed: Vec<u64>,
    },

    /// The library refused or failed the run; its status and message as it gave them.
    #[error("running `{}` failed: {status}: {message}", path.display())]
    Run {
        /// The library.
        path: PathBuf,
        /// The C API's status.
        status: StatusText,
        /// The C API's message.
        message: String,
    },
}

/// A C API status with the library's own words for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusText {
    /// The status code, if it is one the API defines.
    pub status: Option<Status>,
    /// The code as returned.
    pub code: i32,
    /// The library's `PREFIX_status_string` of it.
    pub text: String,
}

impl std::fmt::Display for StatusText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
