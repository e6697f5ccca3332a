//! The `tcc` binary.

fn main() {}
