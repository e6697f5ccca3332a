//! Load and run a model library compiled by tcc (`tcc compile model.onnx -o model.so`) from
//! Rust, through the library's public C API only (runtime/include/tcc_model.h).
//!
//! ```no_run
//! # fn main() -> tcc_model::Result<()> {
//! let model = tcc_model::Model::load("model.so")?;
//! for input in model.inputs() {
//!     println!("{} {input}", input.name); // input_ids i64[batch, seq]
//! }
//! let mut session = model.session(2)?; // two threads
//! let ids = vec![101i64, 2023, 2003, 102];
//! let mask = vec![1i64; 4];
//! let inputs = [
//!     tcc_model::TensorRef::new(&ids, &[1, 4])?,
//!     tcc_model::TensorRef::new(&mask, &[1, 4])?,
//! ];
//! let outputs = session.run(&inputs)?;
//! let hidden = outputs.get(0).expect("one output");
//! println!("{} {:?}: {:?}", hidden.name(), hidden.dims(), &hidden.as_slice::<f32>()?[..4]);
//! # Ok(())
//! # }
//! ```
//!
//! - [`Model::load`] checks the file's ELF headers before `dlopen` (a truncated or damaged
//!   library is an [`Error::NotAModel`] naming it, not a crash inside the dynamic loader), finds
//!   the prefix of its functions (exactly one model API must be exported, or give it with
//!   [`Model::load_with_prefix`]) and reads the interface: inputs with names, dtypes and
//!   symbolic dims ([`InputInfo`]), outputs with names, dtypes and ranks ([`OutputInfo`]).
//! - A [`Session`] owns the library's thread pool, arena and output buffers. [`Session::run`]
//!   takes the inputs in the model's order as [`TensorRef`]s (borrowed slices, or ndarray views
//!   with the `ndarray` feature; [`Model::order`] sorts named ones) and returns the outputs in
//!   session-owned buffers, borrowed until the next run; [`Session::run_into`] writes them into
//!   the caller's buffers instead.
//! - Inputs are checked against the interface before the call (count, dtype, rank, fixed dims,
//!   each symbol's size agreeing across inputs), so a mismatch is a typed [`Error`] naming the
//!   input; the runtime checks them again, and a refusal of its own comes back as
//!   [`Error::Run`] with its status and message.
//!
//! Threads: a [`Model`] is `Send + Sync` and cheap to clone (the library stays loaded while a
//! clone or a session lives). A [`Session`] is `Send` but not `Sync`: one run at a time, as
//! the C API requires; run several sessions for concurrent calls.

mod elf;
mod error;
mod library;
mod session;
mod tensor;

pub use error::{Error, Result, Status, StatusText};
pub use library::{Dim, InputInfo, Model, OutputInfo};
pub use session::{OutputRef, Outputs, Session};
pub use tcc_runtime::abi::Dtype as DType;
pub use tensor::{Element, TensorRef};
