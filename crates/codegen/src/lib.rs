//! Code generation: IR to LLVM IR to object code.
