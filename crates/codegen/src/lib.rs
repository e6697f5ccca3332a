//! Code generation: IR to LLVM IR to object code.
//!
//! The pieces, in the order a compilation uses them:
//! - [`target`]: the machine to compile for (host or a named x86-64 level) and its vector width;
//! - [`kernels`]: LLVM functions that do the work of IR ops, vectorised for the target;
//! - [`mod@emit`]: verify and optimise a module at -O3, write object code, assembly or LLVM IR,
//!   and link objects into a shared library with the system C compiler.
//!
//! LLVM comes from inkwell (LLVM 19, linked dynamically); the workspace's `.cargo/config.toml`
//! tells llvm-sys where LLVM is installed.
//!
//! # LLVM and inkwell pitfalls this crate works around
//!
//! - LLVM accepts an unknown CPU name with a warning on standard error and generic code, so
//!   [`Target::named`] accepts only the names it knows.
//! - A vector load or store gets the vector's ABI alignment (32 or 64 bytes) unless told
//!   otherwise, and then compiles to `vmovaps`, which faults on element-aligned buffers:
//!   kernels set the alignment to the element's ([`kernels::F32_ALIGN`]).
//! - The target machine's optimisation level governs only instruction selection; the IR
//!   optimisation pipeline is run separately ([`emit::PIPELINE`]).
//! - AVX-512 CPUs such as `x86-64-v4` prefer 256-bit vectors for LLVM's own vectoriser unless
//!   functions say `prefer-vector-width` ([`Target::annotate_function`]).
//! - inkwell's `TargetMachine::write_to_file` panics on a path that is not UTF-8, and
//!   `TargetTriple`'s `Display` prints `TargetTriple("...")`; [`emit()`] writes from memory and
//!   [`Target::triple`] reads the C string.

pub mod abi;
pub mod emit;
pub mod error;
pub mod kernels;
pub mod link;
pub mod lower;
pub mod target;

pub use emit::{emit, emit_to_file, link_shared, EmitKind};
pub use error::{Error, Result};
pub use target::Target;

/// The LLVM context type, re-exported so callers need not depend on inkwell for it.
pub use inkwell::context::Context;
