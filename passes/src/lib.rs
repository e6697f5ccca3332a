//! Graph passes over the IR and the pass manager that runs them.

#![warn(missing_docs)]
