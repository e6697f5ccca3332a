//! The error type of code generation, one variant per kind of failure.

use std::path::PathBuf;

/// The result type of every fallible function of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between an LLVM module and a shared library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// LLVM has no backend for the target triple (it was not compiled in or not initialised).
    #[error("LLVM has no target for triple `{triple}`: {message}")]
    NoTarget {
        /// The target triple that was asked for.
        triple: String,
        /// LLVM's explanation.
        message: String,
    },

    /// A CPU name that tcc does not know; LLVM itself would silently ignore it.
    #[error("unknown target CPU `{name}` (known: host, {})", known.join(", "))]
    UnknownCpu {
        /// The name that was asked for.
        name: String,
        /// The CPU names tcc accepts besides `host`.
        known: Vec<&'static str>,
    },

    /// LLVM refused to create a target machine for a valid target.
    #[error("LLVM could not create a target machine for triple `{triple}`, CPU `{cpu}`")]
    TargetMachine {
        /// The target triple.
        triple: String,
        /// The CPU name.
        cpu: String,
    },

    /// An LLVM module failed LLVM's verifier; this is a bug in the code generator.
    #[error("LLVM module `{module}` is invalid: {message}")]
    Verify {
        /// The module's name.
        module: String,
        /// The verifier's report.
        message: String,
    },

    /// The LLVM optimisation pipeline failed.
    #[error("LLVM pass pipeline `{pipeline}` failed on module `{module}`: {message}")]
    Passes {
        /// The module's name.
        module: String,
        /// The pipeline text, as `opt -passes=` takes it.
        pipeline: String,
        /// LLVM's explanation.
        message: String,
    },

    /// LLVM could not write object code or assembly for a module.
    #[error("LLVM could not emit {kind} for module `{module}`: {message}")]
    Emit {
        /// What was being emitted (`obj`, `asm`, `llvm`).
        kind: &'static str,
        /// The module's name.
        module: String,
        /// LLVM's explanation.
        message: String,
    },

    /// An LLVM IR builder call failed; this is a bug in the code generator.
    #[error("LLVM IR builder failed in `{function}`: {source}")]
    Builder {
        /// The function being built.
        function: String,
        /// inkwell's error.
        source: inkwell::builder::BuilderError,
    },

    /// A kernel emitter broke one of its own invariants; this is a bug in the code generator.
    #[error("internal error while building `{function}`: {message}")]
    Internal {
        /// The function being built.
        function: String,
        /// What went wrong.
        message: &'static str,
    },

    /// An LLVM intrinsic could not be declared for the given types.
    #[error("LLVM intrinsic `{name}` is not available for types {types}")]
    Intrinsic {
        /// The intrinsic's base name, such as `llvm.masked.load`.
        name: &'static str,
        /// The overload types, as LLVM prints them.
        types: String,
    },

    /// An IR node that the code generator cannot lower (an op, dtype or shape it has no
    /// kernel for).
    #[error("cannot compile node `{node}` ({op}): {why}")]
    Unsupported {
        /// The node: its origin (the ONNX node name) if known, else its IR index.
        node: String,
        /// The op's text-form name.
        op: String,
        /// Why it cannot be lowered.
        why: String,
    },

    /// The forms of a model given to one library do not fit together.
    #[error("cannot compile the forms of the model into one library: {why}")]
    Forms {
        /// What does not fit.
        why: String,
    },

    /// Reading or writing a file failed.
    #[error("I/O error on `{}`: {source}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The system C compiler used as linker could not be started.
    #[error(
        "could not run the linker `{linker}` (is a C compiler installed and on PATH?): {source}"
    )]
    LinkerNotFound {
        /// The linker command.
        linker: String,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The linker ran and failed.
    #[error("linking `{}` with `{linker}` failed ({status}):\n{stderr}", out.display())]
    LinkFailed {
        /// The linker command.
        linker: String,
        /// The shared library that was to be written.
        out: PathBuf,
        /// The linker's exit status.
        status: std::process::ExitStatus,
        /// What the linker wrote to standard error.
        stderr: String,
    },
}

impl Error {
    /// Wraps an inkwell builder error with the name of the function being built.
    pub(crate) fn builder(
        function: &str,
    ) -> impl FnOnce(inkwell::builder::BuilderError) -> Self + '_ {
        move |source| Error::Builder {
            function: function.to_owned(),
            source,
        }
    }

    /// Wraps an I/O error with the path at fault.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
