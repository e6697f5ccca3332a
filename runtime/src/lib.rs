//! The runtime linked into every compiled model: the public C API, the thread pool and the
//! activation arena. It depends on no compiler crate and on nothing but `std`.
//!
//! A model library holds generated code, one constant model descriptor and this runtime. Its
//! exported functions `PREFIX_xxx` call the generic `tcc_rt_xxx(&desc, ...)` of [`api`], which
//! validates every argument, binds the symbolic dims, sizes the outputs and the arena, and
//! calls the descriptor's `run` with the session's [`pool::Pool`] for `tcc_rt_parallel_for`.
//!
//! - [`abi`]: `#[repr(C)]` mirrors of `include/tcc_model.h`, the source of truth of the ABI;
//! - [`api`]: the `tcc_rt_*` functions (sessions, interface queries, run, errors);
//! - [`pool`]: a persistent thread pool per session and `parallel_for`;
//! - [`arena`]: 64-byte-aligned buffers that grow only when a run needs more.
//!
//! The crate is built twice: as an rlib for its own tests, and by `crates/codegen/build.rs`
//! with plain `rustc` as a `panic=abort` staticlib that `tcc compile` links into each model.
//! No panic crosses the C boundary: the API reports every failure as a status code and a
//! message, and each entry point also catches panics as a last line of defence.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod abi;
pub mod api;
pub mod arena;
pub mod pool;

/// The C header of the ABI and the public API, `include/tcc_model.h`.
pub const HEADER: &str = include_str!("../include/tcc_model.h");
