//! The runtime linked into every compiled model: thread pool, activation arena
//! and the C API. It depends on no compiler crate.
