//! A fake model written by hand in Rust, the way generated code will look to the runtime:
//! `extern "C"` functions and a static `tcc_model_desc`.
//!
//! [`DESC`] has inputs `x: f32[batch, seq, 2]` and `ids: i64[batch]`, and outputs
//! `y: f32[batch, seq, 2] = 2 * x + 1` (staged through the arena) and
//! `s: i64[batch, 2 * seq]` with `s[b, j] = ids[b] + j`, whose second dim only `output_dims`
//! knows. Rows are computed with `tcc_rt_parallel_for`. An `ids[0]` of [`FAIL_ID`] makes `run`
//! return an error code. Its one size check refuses a `seq` of [`REFUSED_SEQ`].
//!
//! [`EMPTY_DESC`] has one input `e: f32[n, 0]`, always empty, and one output `count: i64[1]`
//! holding `n`.

#![allow(dead_code)] // Each test file uses a different subset.

use std::ffi::{c_char, c_void, CStr};

use tcc_runtime::abi::{
    Dtype, ModelDesc, Output, RtPool, SyncPtrs, Tensor, TensorDesc, ABI_VERSION, DIM_COMPUTED,
};
use tcc_runtime::api::*;

/// `ids[0]` that makes the fake model's run fail.
pub const FAIL_ID: i64 = -999;
/// An `ids[0]` that makes `run` report an index out of range (`TCC_RUN_INDEX_OUT_OF_RANGE`).
pub const INDEX_ID: i64 = -998;
/// An `ids[0]` that makes `run` report sizes that disagree (`TCC_RUN_SIZES_DISAGREE`).
pub const SIZES_ID: i64 = -997;
/// The code the fake model's run returns then.
pub const FAIL_CODE: i32 = 42;
/// The `seq` that the fake model's size check refuses.
pub const REFUSED_SEQ: i64 = 99;

const BATCH: i64 = -1;
const SEQ: i64 = -2;

static X_DIMS: [i64; 3] = [BATCH, SEQ, 2];
static IDS_DIMS: [i64; 1] = [BATCH];
static Y_DIMS: [i64; 3] = [BATCH, SEQ, 2];
static S_DIMS: [i64; 2] = [BATCH, DIM_COMPUTED];
static SYMBOLS: SyncPtrs<2> = SyncPtrs([c"batch".as_ptr(), c"seq".as_ptr()]);

static INPUTS: [TensorDesc; 2] = [
    TensorDesc {
        name: c"x".as_ptr(),
        dtype: Dtype::F32 as i32,
        rank: 3,
        dims: X_DIMS.as_ptr(),
    },
    TensorDesc {
        name: c"ids".as_ptr(),
        dtype: Dtype::I64 as i32,
        rank: 1,
        dims: IDS_DIMS.as_ptr(),
    },
];
static OUTPUTS: [TensorDesc; 2] = [
    TensorDesc {
        name: c"y".as_ptr(),
        dtype: Dtype::F32 as i32,
        rank: 3,
        dims: Y_DIMS.as_ptr(),
    },
    TensorDesc {
        name: c"s".as_ptr(),
        dtype: Dtype::I64 as i32,
        rank: 2,
        dims: S_DIMS.as_ptr(),
    },
];

/// The fake model.
pub static DESC: ModelDesc = ModelDesc {
    abi_version: ABI_VERSION,
    n_inputs: 2,
    n_outputs: 2,
    n_symbols: 2,
    inputs: INPUTS.as_ptr(),
    outputs: OUTPUTS.as_ptr(),
    symbol_names: SYMBOLS.0.as_ptr(),
    output_dims: Some(fake_output_dims),
    arena_bytes: Some(fake_arena_bytes),
    run: Some(fake_run),
    n_size_checks: 2,
    size_checks: CHECKS.0.as_ptr(),
    check_sizes: Some(fake_check_sizes),
};

static CHECKS: SyncPtrs<2> = SyncPtrs([
    c"never fails".as_ptr(),
    c"fake check: seq is {0}, which the model refuses ({{{1}}} {2}; {x} {99} stay)".as_ptr(),
]);

unsafe extern "C" fn fake_check_sizes(symbols: *const i64, values: *mut i64) -> i32 {
    // SAFETY: the runtime passes 2 symbols and room for CHECK_VALUES values.
    unsafe {
        let seq = *symbols.add(1);
        if seq == REFUSED_SEQ {
            *values = seq;
            *values.add(1) = i64::MAX;
            *values.add(2) = -7;
            return 1;
        }
    }
    -1
}

unsafe extern "C" fn fake_output_dims(symbols: *const i64, dims: *mut i64) {
    // SAFETY: the runtime passes 2 symbols and room for 3 + 2 dims.
    unsafe {
        let (batch, seq) = (*symbols, *symbols.add(1));
        for (i, d) in [batch, seq, 2, batch, 2 * seq].into_iter().enumerate() {
            *dims.add(i) = d;
        }
    }
}

unsafe extern "C" fn fake_arena_bytes(symbols: *const i64) -> u64 {
    // SAFETY: the runtime passes 2 symbols.
    let (batch, seq) = unsafe { (*symbols, *symbols.add(1)) };
    (batch * seq * 2 * 4) as u64
}

/// What the row task needs.
struct Ctx {
    x: *const f32,
    ids: *const i64,
    y: *mut f32,
    s: *mut i64,
    arena: *mut f32,
    seq: i64,
}

unsafe extern "C" fn fake_row(ctx: *mut c_void, b: i64) {
    // SAFETY: `ctx` is the `Ctx` of the running `fake_run`; row `b` of every buffer is touched
    // by this call only, and every buffer holds `batch` rows.
    unsafe {
        let c = &*(ctx as *const Ctx);
        let row = (b * c.seq * 2) as usize;
        for j in 0..(c.seq * 2) as usize {
            *c.arena.add(row + j) = 2.0 * *c.x.add(row + j);
        }
        for j in 0..(c.seq * 2) as usize {
            *c.y.add(row + j) = *c.arena.add(row + j) + 1.0;
        }
        let id = *c.ids.add(b as usize);
        for j in 0..c.seq * 2 {
            *c.s.add(b as usize * (c.seq * 2) as usize + j as usize) = id + j;
        }
    }
}

unsafe extern "C" fn fake_run(
    pool: *mut RtPool,
    symbols: *const i64,
    inputs: *const *const c_void,
    outputs: *const *mut c_void,
    arena: *mut u8,
) -> i32 {
    if arena as usize & 63 != 0 {
        return 7;
    }
    // SAFETY: the runtime passes 2 symbols, 2 validated inputs and 2 sized outputs.
    unsafe {
        let (batch, seq) = (*symbols, *symbols.add(1));
        let ids = *inputs.add(1) as *const i64;
        // The special ids are read from a batch of at least one row (an empty one may have NULL
        // data).
        let first = if batch > 0 { *ids } else { 0 };
        if first == FAIL_ID {
            return FAIL_CODE;
        }
        if first == INDEX_ID {
            return 1;
        }
        if first == SIZES_ID {
            return 2;
        }
        let ctx = Ctx {
            x: *inputs as *const f32,
            ids,
            y: *outputs as *mut f32,
            s: *outputs.add(1) as *mut i64,
            arena: arena as *mut f32,
            seq,
        };
        tcc_rt_parallel_for(
            pool,
            batch,
            Some(fake_row),
            &ctx as *const Ctx as *mut c_void,
        );
    }
    0
}

static E_DIMS: [i64; 2] = [-1, 0];
static COUNT_DIMS: [i64; 1] = [1];
static EMPTY_SYMBOLS: SyncPtrs<1> = SyncPtrs([c"n".as_ptr()]);
static EMPTY_INPUTS: [TensorDesc; 1] = [TensorDesc {
    name: c"e".as_ptr(),
    dtype: Dtype::F32 as i32,
    rank: 2,
    dims: E_DIMS.as_ptr(),
}];
static EMPTY_OUTPUTS: [TensorDesc; 1] = [TensorDesc {
    name: c"count".as_ptr(),
    dtype: Dtype::I64 as i32,
    rank: 1,
    dims: COUNT_DIMS.as_ptr(),
}];

/// A model whose only input is always empty.
pub static EMPTY_DESC: ModelDesc = ModelDesc {
    abi_version: ABI_VERSION,
    n_inputs: 1,
    n_outputs: 1,
    n_symbols: 1,
    inputs: EMPTY_INPUTS.as_ptr(),
    outputs: EMPTY_OUTPUTS.as_ptr(),
    symbol_names: EMPTY_SYMBOLS.0.as_ptr(),
    output_dims: Some(empty_output_dims),
    arena_bytes: Some(empty_arena_bytes),
    run: Some(empty_run),
    n_size_checks: 0,
    size_checks: std::ptr::null(),
    check_sizes: None,
};

unsafe extern "C" fn empty_output_dims(_symbols: *const i64, dims: *mut i64) {
    // SAFETY: room for one dim.
    unsafe { *dims = 1 };
}

unsafe extern "C" fn empty_arena_bytes(_symbols: *const i64) -> u64 {
    0
}

unsafe extern "C" fn empty_run(
    _pool: *mut RtPool,
    symbols: *const i64,
    _inputs: *const *const c_void,
    outputs: *const *mut c_void,
    _arena: *mut u8,
) -> i32 {
    // SAFETY: one symbol, one output of one i64.
    unsafe { *(*outputs as *mut i64) = *symbols };
    0
}

/// Deterministic inputs for `x`.
pub fn x_values(batch: i64, seq: i64, seed: u32) -> Vec<f32> {
    (0..batch * seq * 2)
        .map(|i| (i as f32 * 0.37 + seed as f32).sin() * 10.0)
        .collect()
}

/// Deterministic inputs for `ids`.
pub fn ids_values(batch: i64, seed: u32) -> Vec<i64> {
    (0..batch).map(|b| b * 1000 + i64::from(seed)).collect()
}

/// The two input tensors over these buffers and dims.
pub fn tensors(x: &[f32], x_dims: &[i64], ids: &[i64], ids_dims: &[i64]) -> [Tensor; 2] {
    [
        Tensor {
            dtype: Dtype::F32 as i32,
            rank: x_dims.len() as i32,
            dims: x_dims.as_ptr(),
            data: x.as_ptr().cast(),
        },
        Tensor {
            dtype: Dtype::I64 as i32,
            rank: ids_dims.len() as i32,
            dims: ids_dims.as_ptr(),
            data: ids.as_ptr().cast(),
        },
    ]
}

/// Checks the fake model's outputs for these inputs, independently of its code.
pub fn check_outputs(batch: i64, seq: i64, x: &[f32], ids: &[i64], outputs: &[Output; 2]) {
    let [y, s] = outputs;
    assert_eq!(y.shape(), [batch, seq, 2]);
    assert_eq!((y.dtype, y.rank), (Dtype::F32 as i32, 3));
    assert_eq!(y.size, (batch * seq * 2 * 4) as u64);
    assert_eq!(s.shape(), [batch, 2 * seq]);
    assert_eq!((s.dtype, s.rank), (Dtype::I64 as i32, 2));
    assert_eq!(s.size, (batch * seq * 2 * 8) as u64);
    assert!(!y.data.is_null() && !s.data.is_null());
    // SAFETY: a successful run leaves `size` bytes of results at `data`.
    let (y_data, s_data) = unsafe {
        (
            std::slice::from_raw_parts(y.data as *const f32, x.len()),
            std::slice::from_raw_parts(s.data as *const i64, x.len()),
        )
    };
    for (i, (&got, &xi)) in y_data.iter().zip(x).enumerate() {
        assert_eq!(got, 2.0 * xi + 1.0, "y[{i}] at batch {batch}, seq {seq}");
    }
    for b in 0..batch {
        for j in 0..2 * seq {
            let got = s_data[(b * 2 * seq + j) as usize];
            assert_eq!(got, ids[b as usize] + j, "s[{b}, {j}]");
        }
    }
}

/// Creates a session of `desc` with `threads`, asserting success.
pub fn session(desc: &ModelDesc, threads: i32) -> *mut Session {
    let mut session = std::ptr::null_mut();
    // SAFETY: a valid descriptor and a writable out-pointer.
    let status = unsafe { tcc_rt_session_create(desc, threads, &mut session) };
    assert_eq!(status, 0, "session_create: {}", thread_error());
    assert!(!session.is_null());
    session
}

/// The thread-local error message.
pub fn thread_error() -> String {
    // SAFETY: `last_error` never returns NULL and the message is NUL-terminated.
    unsafe { c_string(tcc_rt_last_error(&DESC, std::ptr::null())) }
}

/// The session's error message.
pub fn session_error(desc: &ModelDesc, session: *mut Session) -> String {
    // SAFETY: a live session; the message is NUL-terminated.
    unsafe { c_string(tcc_rt_last_error(desc, session)) }
}

/// A C string as a Rust string; NULL is `"<null>"`.
///
/// # Safety
///
/// `s` must be NULL or NUL-terminated.
pub unsafe fn c_string(s: *const c_char) -> String {
    if s.is_null() {
        return "<null>".to_owned();
    }
    // SAFETY: the caller promises a NUL-terminated string.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}
