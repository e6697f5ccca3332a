//! `#[repr(C)]` mirrors of the structs, enums and constants of `runtime/include/tcc_model.h`.
//!
//! The header is the source of truth; `tests/header.rs` compiles it with the system C compiler
//! and checks that every size and field offset here matches.

use std::ffi::{c_char, c_void};

/// `TCC_ABI_VERSION`: the descriptor layout this runtime understands.
pub const ABI_VERSION: u32 = 2;

/// `TCC_MAX_RANK`: the largest rank of an output.
pub const MAX_RANK: usize = 8;

/// `TCC_MAX_THREADS`: the most threads a session runs on.
pub const MAX_THREADS: usize = 1024;

/// `TCC_DIM_COMPUTED`: an output dim that only `output_dims` knows.
pub const DIM_COMPUTED: i64 = i64::MIN;

/// `TCC_CHECK_VALUES`: how many values a failed size check reports (`check_sizes`).
pub const CHECK_VALUES: usize = 16;

/// `TCC_RUN_OK`: a run function's return code for success.
pub const RUN_OK: i32 = 0;
/// `TCC_RUN_INDEX_OUT_OF_RANGE`: an index read from an input is out of range.
pub const RUN_INDEX_OUT_OF_RANGE: i32 = 1;
/// `TCC_RUN_SIZES_DISAGREE`: input sizes that the model's operations need to agree do not.
pub const RUN_SIZES_DISAGREE: i32 = 2;

/// `tcc_status`: what every fallible API call returns.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// `TCC_OK`.
    Ok = 0,
    /// `TCC_ERR_INVALID_ARGUMENT`: a NULL, foreign or misaligned pointer, or a wrong count.
    InvalidArgument = 1,
    /// `TCC_ERR_DTYPE`: an input's dtype is not the model's.
    Dtype = 2,
    /// `TCC_ERR_SHAPE`: an input's rank or dims do not fit the model or each other.
    Shape = 3,
    /// `TCC_ERR_OUT_OF_MEMORY`: a buffer or a thread could not be allocated.
    OutOfMemory = 4,
    /// `TCC_ERR_INTERNAL`: a bug in tcc or a corrupt model library.
    Internal = 5,
    /// `TCC_ERR_CAPACITY`: a caller's output buffer is smaller than the output.
    Capacity = 6,
}

impl Status {
    /// Every status, in code order.
    pub const ALL: [Status; 7] = [
        Status::Ok,
        Status::InvalidArgument,
        Status::Dtype,
        Status::Shape,
        Status::OutOfMemory,
        Status::Internal,
        Status::Capacity,
    ];

    /// The status with this code, if any.
    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL.into_iter().find(|s| *s as i32 == code)
    }

    /// A short description, NUL-terminated for C.
    pub fn c_description(self) -> &'static [u8] {
        match self {
            Status::Ok => b"ok\0",
            Status::InvalidArgument => b"invalid argument\0",
            Status::Dtype => b"wrong dtype\0",
            Status::Shape => b"wrong shape\0",
            Status::OutOfMemory => b"out of memory\0",
            Status::Internal => b"internal error\0",
            Status::Capacity => b"output buffer too small\0",
        }
    }
}

/// `tcc_dtype`: element types, numbered from 1 in the order of tcc's IR.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// `TCC_F32`.
    F32 = 1,
    /// `TCC_F64`.
    F64 = 2,
    /// `TCC_F16`.
    F16 = 3,
    /// `TCC_BF16`.
    BF16 = 4,
    /// `TCC_I64`.
    I64 = 5,
    /// `TCC_I32`.
    I32 = 6,
    /// `TCC_I8`.
    I8 = 7,
    /// `TCC_U8`.
    U8 = 8,
    /// `TCC_BOOL`.
    Bool = 9,
}

impl Dtype {
    /// Every dtype, in code order.
    pub const ALL: [Dtype; 9] = [
        Dtype::F32,
        Dtype::F64,
        Dtype::F16,
        Dtype::BF16,
        Dtype::I64,
        Dtype::I32,
        Dtype::I8,
        Dtype::U8,
        Dtype::Bool,
    ];

    /// The dtype with this code, if any.
    pub fn from_code(code: i32) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| *d as i32 == code)
    }

    /// The size of one element in bytes.
    pub fn size(self) -> u64 {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    /// The name used in messages (`f32`, `i64`, ...), as tcc's IR spells it.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
            Dtype::F16 => "f16",
            Dtype::BF16 => "bf16",
            Dtype::I64 => "i64",
            Dtype::I32 => "i32",
            Dtype::I8 => "i8",
            Dtype::U8 => "u8",
            Dtype::Bool => "bool",
        }
    }
}

impl std::fmt::Display for Dtype {
    /// The name tcc's IR uses (`f32`, `i64`, ...).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `tcc_tensor`: an input tensor described by the caller.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Tensor {
    /// A `tcc_dtype` code.
    pub dtype: i32,
    /// The number of axes.
    pub rank: i32,
    /// `rank` sizes; may be NULL when `rank` is 0.
    pub dims: *const i64,
    /// The elements; may be NULL when the tensor is empty.
    pub data: *const c_void,
}

/// `tcc_output`: where an output goes (set by the caller) and what it is (set by run).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// In: the caller's buffer, or NULL for a session-owned one.
    pub buffer: *mut c_void,
    /// In: the bytes available at `buffer`.
    pub capacity: u64,
    /// Out: the result, in `buffer` or session-owned; NULL on failure.
    pub data: *mut c_void,
    /// Out: the result's size in bytes.
    pub size: u64,
    /// Out: a `tcc_dtype` code.
    pub dtype: i32,
    /// Out: the number of axes.
    pub rank: i32,
    /// Out: the first `rank` entries are the sizes.
    pub dims: [i64; MAX_RANK],
}

impl Output {
    /// An output asking for a session-owned buffer.
    pub const SESSION_OWNED: Output = Output {
        buffer: std::ptr::null_mut(),
        capacity: 0,
        data: std::ptr::null_mut(),
        size: 0,
        dtype: 0,
        rank: 0,
        dims: [0; MAX_RANK],
    };

    /// An output into the caller's `capacity` bytes at `buffer`.
    pub fn caller_owned(buffer: *mut c_void, capacity: u64) -> Output {
        Output {
            buffer,
            capacity,
            ..Output::SESSION_OWNED
        }
    }

    /// The dims run filled in: the first `rank` entries (none if `rank` is out of range).
    pub fn shape(&self) -> &[i64] {
        let rank = usize::try_from(self.rank).unwrap_or(0).min(MAX_RANK);
        &self.dims[..rank]
    }
}

/// `tcc_rt_pool`: the opaque pool type as generated code sees it (the runtime's is
/// [`crate::pool::Pool`]).
#[repr(C)]
pub struct RtPool {
    _private: [u8; 0],
}

/// `void (*fn)(void *ctx, int64_t i)`: one task of `tcc_rt_parallel_for`.
pub type TaskFn = unsafe extern "C" fn(ctx: *mut c_void, i: i64);

/// `output_dims`: writes all outputs' dims, concatenated, for these symbol values.
pub type OutputDimsFn = unsafe extern "C" fn(symbols: *const i64, dims: *mut i64);

/// `arena_bytes`: the arena a run with these symbol values needs.
pub type ArenaBytesFn = unsafe extern "C" fn(symbols: *const i64) -> u64;

/// `run`: computes the outputs; 0 is success.
pub type RunFn = unsafe extern "C" fn(
    pool: *mut RtPool,
    symbols: *const i64,
    inputs: *const *const c_void,
    outputs: *const *mut c_void,
    arena: *mut u8,
) -> i32;

/// `check_sizes`: evaluates the model's size checks in order for these symbol values; -1 if
/// all hold, else the index of the first that fails, with the values its message shows in
/// `values[..CHECK_VALUES]`.
pub type CheckSizesFn = unsafe extern "C" fn(symbols: *const i64, values: *mut i64) -> i32;

/// `tcc_tensor_desc`: a tensor of the model's interface.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TensorDesc {
    /// NUL-terminated name.
    pub name: *const c_char,
    /// A `tcc_dtype` code.
    pub dtype: i32,
    /// The number of axes.
    pub rank: i32,
    /// Per axis: `>= 0` fixed, `< 0` symbol `-(d + 1)`, or [`DIM_COMPUTED`] (outputs only).
    pub dims: *const i64,
}

// SAFETY: a descriptor is immutable data (generated constants, or statics in tests) that is
// only ever read; its pointers point to more such data.
unsafe impl Sync for TensorDesc {}

/// `tcc_model_desc`: a model, as generated code describes it to the runtime.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModelDesc {
    /// [`ABI_VERSION`].
    pub abi_version: u32,
    /// The number of inputs.
    pub n_inputs: i32,
    /// The number of outputs.
    pub n_outputs: i32,
    /// The number of symbols.
    pub n_symbols: i32,
    /// `n_inputs` input descriptions.
    pub inputs: *const TensorDesc,
    /// `n_outputs` output descriptions.
    pub outputs: *const TensorDesc,
    /// `n_symbols` NUL-terminated names.
    pub symbol_names: *const *const c_char,
    /// Computes the outputs' dims.
    pub output_dims: Option<OutputDimsFn>,
    /// Computes the arena size.
    pub arena_bytes: Option<ArenaBytesFn>,
    /// Runs the model.
    pub run: Option<RunFn>,
    /// The number of size checks.
    pub n_size_checks: i32,
    /// `n_size_checks` NUL-terminated message templates: `{k}` stands for `values[k]` of
    /// [`CheckSizesFn`], `{{` and `}}` for braces.
    pub size_checks: *const *const c_char,
    /// Evaluates the size checks; may be NULL when there are none.
    pub check_sizes: Option<CheckSizesFn>,
}

// SAFETY: as for `TensorDesc`: immutable data, only read.
unsafe impl Sync for ModelDesc {}

/// A pointer table that may live in a `static` (symbol names in tests and fake models).
#[repr(transparent)]
pub struct SyncPtrs<const N: usize>(pub [*const c_char; N]);

// SAFETY: the pointers point to immutable string constants.
unsafe impl<const N: usize> Sync for SyncPtrs<N> {}
