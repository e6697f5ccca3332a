//! The public C API, implemented once for every model: `tcc_rt_xxx(desc, ...)` is what a
//! model's exported `PREFIX_xxx(...)` calls with its descriptor.
//!
//! Every function checks its pointers and sizes and reports failures as a status code and a
//! message, never a panic: each body runs inside `catch_unwind` as a last line of defence (in
//! the model library the runtime is built with `panic=abort`, where this catches nothing, but
//! it keeps the rlib used by tests and any unwinding build from unwinding into C).
//!
//! A run validates everything before calling the model: counts, each input's dtype, rank, dims
//! (against the fixed size or the symbol it binds), data pointer and alignment; then the
//! model's size checks (`check_sizes`: the relations between sizes that its operations need and
//! its types leave to run time, such as a reshape's element counts), then the outputs' sizes,
//! capacities, alignment and overlaps. Only then does it size the arena and call the generated
//! `run`.

use std::ffi::{c_char, c_void};
use std::mem::align_of;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr;

use crate::abi::{
    Dtype, ModelDesc, Output, RtPool, Status, Tensor, TensorDesc, ABI_VERSION, CHECK_VALUES,
    DIM_COMPUTED, MAX_RANK, RUN_INDEX_OUT_OF_RANGE, RUN_OK, RUN_SIZES_DISAGREE,
};
use crate::arena::Arena;
use crate::pool::{default_num_threads, resolve_num_threads, Pool, ENV_NUM_THREADS};

/// Marks a live session, so that a stray or freed pointer is likely caught (best effort).
const SESSION_MAGIC: u64 = 0x7463_635f_7365_7373; // "tcc_sess"

/// The longest thread-local message kept, in bytes (longer ones are cut at a char boundary).
const THREAD_MESSAGE_BYTES: usize = 512;

/// A failure: the status code and its message.
#[derive(Debug)]
struct Failure {
    status: Status,
    message: String,
}

type Outcome<T = ()> = Result<T, Failure>;

fn fail<T>(status: Status, message: impl Into<String>) -> Outcome<T> {
    Err(Failure {
        status,
        message: message.into(),
    })
}

thread_local! {
    /// The message of the last failure on this thread that had no session to record it.
    /// A plain byte array needs no destructor, so the runtime registers none per thread.
    static THREAD_MESSAGE: std::cell::RefCell<[u8; THREAD_MESSAGE_BYTES]> =
        const { std::cell::RefCell::new([0; THREAD_MESSAGE_BYTES]) };
}

/// Records `message` as this thread's last message, truncated and NUL-terminated.
fn set_thread_message(message: &str) {
    let mut end = message.len().min(THREAD_MESSAGE_BYTES - 1);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    THREAD_MESSAGE.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        buffer[..end].copy_from_slice(&message.as_bytes()[..end]);
        buffer[end] = 0;
    });
}

/// This thread's last message, NUL-terminated, valid for the thread's lifetime.
fn thread_message() -> *const c_char {
    THREAD_MESSAGE.with(|buffer| buffer.as_ptr().cast::<c_char>().cast_const())
}

/// Runs `body`, turning a panic into `on_panic` (and a thread message).
fn guard<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        set_thread_message("tcc runtime: internal error (a panic was caught)");
        on_panic
    })
}

/// Runs a status-returning `body`; a failure is recorded as this thread's message.
fn guard_status(body: impl FnOnce() -> Outcome) -> i32 {
    guard(Status::Internal as i32, || match body() {
        Ok(()) => Status::Ok as i32,
        Err(failure) => {
            set_thread_message(&failure.message);
            failure.status as i32
        }
    })
}

/// A session: the model it belongs to, its pool, arena, session-owned outputs, and the
/// buffers a run fills, allocated once so that runs at known sizes allocate nothing.
pub struct Session {
    magic: u64,
    desc: *const ModelDesc,
    pool: Pool,
    arena: Arena,
    outputs: Vec<Arena>,
    symbols: Vec<i64>,
    /// For each symbol, the (input, axis) that bound it in the current run.
    binders: Vec<(usize, usize)>,
    input_ptrs: Vec<*const c_void>,
    /// The size in bytes of each input of the current run.
    input_bytes: Vec<u64>,
    output_ptrs: Vec<*mut c_void>,
    output_dims: Vec<i64>,
    /// The last failure's message, NUL-terminated (just the NUL if none).
    message: Vec<u8>,
}

impl Session {
    /// The session's thread count.
    pub fn num_threads(&self) -> usize {
        self.pool.num_threads()
    }

    /// The session's activation arena (for tests of its growth).
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    fn set_message(&mut self, message: &str) {
        self.message.clear();
        self.message.extend(message.bytes().filter(|&b| b != 0));
        self.message.push(0);
    }
}

/// Reads the NUL-terminated string at `name` for messages.
///
/// # Safety
///
/// `name` must be NULL or a valid NUL-terminated string.
unsafe fn c_str<'a>(name: *const c_char) -> std::borrow::Cow<'a, str> {
    if name.is_null() {
        return "?".into();
    }
    // SAFETY: the caller promises a valid NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy()
}

/// `slice::from_raw_parts` that accepts NULL for an empty slice.
///
/// # Safety
///
/// If `len > 0`, `ptr` must point to `len` valid, initialised `T`s that live for `'a`.
unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if len == 0 {
        return &[];
    }
    // SAFETY: non-empty, so the caller promised `len` valid elements at `ptr`.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// The model's inputs and outputs as slices.
///
/// # Safety
///
/// `desc` must be a descriptor whose counts and pointers agree (generated ones do;
/// [`check_desc`] verifies what can be verified).
unsafe fn tensors(desc: &ModelDesc) -> (&[TensorDesc], &[TensorDesc]) {
    let n_in = usize::try_from(desc.n_inputs).unwrap_or(0);
    let n_out = usize::try_from(desc.n_outputs).unwrap_or(0);
    // SAFETY: the descriptor holds `n_inputs` and `n_outputs` tensor descriptions.
    unsafe { (slice(desc.inputs, n_in), slice(desc.outputs, n_out)) }
}

/// The dims of a described tensor.
///
/// # Safety
///
/// `t` must come from a valid descriptor.
unsafe fn desc_dims(t: &TensorDesc) -> &[i64] {
    // SAFETY: a tensor description has `rank` dims.
    unsafe { slice(t.dims, usize::try_from(t.rank).unwrap_or(0)) }
}

/// Checks what can be checked of a descriptor before a session relies on it.
///
/// # Safety
///
/// `desc` must point to a descriptor whose pointers are valid for the counts it states.
unsafe fn check_desc(desc: *const ModelDesc) -> Outcome<&'static ModelDesc> {
    if desc.is_null() {
        return fail(Status::InvalidArgument, "the model descriptor is NULL");
    }
    // SAFETY: non-NULL, and model descriptors are immutable constants of the library.
    let d: &'static ModelDesc = unsafe { &*desc };
    let corrupt = |what: String| {
        fail(
            Status::Internal,
            format!("corrupt model descriptor: {what}"),
        )
    };
    if d.abi_version != ABI_VERSION {
        return corrupt(format!(
            "ABI version {} (this runtime speaks {ABI_VERSION})",
            d.abi_version
        ));
    }
    if d.n_inputs < 0 || d.n_outputs < 0 || d.n_symbols < 0 || d.n_size_checks < 0 {
        return corrupt("a negative count".into());
    }
    if (d.n_inputs > 0 && d.inputs.is_null())
        || (d.n_outputs > 0 && d.outputs.is_null())
        || (d.n_symbols > 0 && d.symbol_names.is_null())
        || (d.n_size_checks > 0 && d.size_checks.is_null())
    {
        return corrupt("a NULL table".into());
    }
    if d.output_dims.is_none()
        || d.arena_bytes.is_none()
        || d.run.is_none()
        || (d.n_size_checks > 0 && d.check_sizes.is_none())
    {
        return corrupt("a NULL function".into());
    }
    let n_symbols = d.n_symbols as usize;
    let mut bound = vec![false; n_symbols];
    // SAFETY: the counts were checked non-negative and the tables non-NULL.
    let (inputs, outputs) = unsafe { tensors(d) };
    for (kind, list) in [("input", inputs), ("output", outputs)] {
        for (i, t) in list.iter().enumerate() {
            if t.name.is_null() || Dtype::from_code(t.dtype).is_none() || t.rank < 0 {
                return corrupt(format!("{kind} {i} has no name, a bad dtype or a bad rank"));
            }
            if t.rank > 0 && t.dims.is_null() {
                return corrupt(format!("{kind} {i} has NULL dims"));
            }
            if kind == "output" && t.rank as usize > MAX_RANK {
                return corrupt(format!("output {i} has rank {} > {MAX_RANK}", t.rank));
            }
            // SAFETY: checked just above.
            for &dim in unsafe { desc_dims(t) } {
                if dim >= 0 || (kind == "output" && dim == DIM_COMPUTED) {
                    continue;
                }
                let symbol = usize::try_from(-(dim + 1)).unwrap_or(usize::MAX);
                if symbol >= n_symbols {
                    return corrupt(format!("{kind} {i} uses symbol {symbol} of {n_symbols}"));
                }
                if kind == "input" {
                    bound[symbol] = true;
                }
            }
        }
    }
    if let Some(symbol) = bound.iter().position(|b| !b) {
        return corrupt(format!("symbol {symbol} is not a dim of any input"));
    }
    Ok(d)
}

/// The session behind `session`, if it is a live session of `desc`.
///
/// # Safety
///
/// `session` must be NULL or a pointer returned by `tcc_rt_session_create` (of any model),
/// not yet freed. Stray pointers are caught on a best-effort basis only.
unsafe fn session_of<'a>(desc: *const ModelDesc, session: *const Session) -> Outcome<&'a Session> {
    if session.is_null() {
        return fail(Status::InvalidArgument, "the session is NULL");
    }
    // SAFETY: the caller promises a live session; the magic check catches some violations.
    let s = unsafe { &*session };
    if s.magic != SESSION_MAGIC {
        return fail(
            Status::InvalidArgument,
            "the pointer is not a live tcc session (freed, or never created)",
        );
    }
    if !ptr::eq(s.desc, desc) {
        return fail(
            Status::InvalidArgument,
            "the session belongs to another model (check the PREFIX_ of the call)",
        );
    }
    Ok(s)
}

/// Creates a session for the model `desc`; see `PREFIX_session_create` in the header.
///
/// # Safety
///
/// `desc` must be a valid model descriptor; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_session_create(
    desc: *const ModelDesc,
    num_threads: i32,
    out: *mut *mut Session,
) -> i32 {
    guard_status(|| {
        if out.is_null() {
            return fail(Status::InvalidArgument, "the session out-pointer is NULL");
        }
        // SAFETY: non-NULL, and the caller promises it is writable.
        unsafe { out.write(ptr::null_mut()) };
        // SAFETY: the caller promises a valid descriptor.
        let d = unsafe { check_desc(desc) }?;
        let env = std::env::var(ENV_NUM_THREADS).ok();
        let threads = resolve_num_threads(num_threads, env.as_deref(), || {
            default_num_threads(Path::new("/sys/devices/system/cpu"))
        })
        .map_err(|message| Failure {
            status: Status::InvalidArgument,
            message,
        })?;
        let pool = Pool::new(threads).map_err(|e| Failure {
            status: Status::OutOfMemory,
            message: format!("could not start {threads} threads: {e}"),
        })?;
        let n_symbols = d.n_symbols as usize;
        // SAFETY: `check_desc` accepted the descriptor.
        let (_, outputs) = unsafe { tensors(d) };
        let total_output_rank = outputs.iter().map(|t| t.rank as usize).sum();
        let session = Box::new(Session {
            magic: SESSION_MAGIC,
            desc,
            pool,
            arena: Arena::new(),
            outputs: (0..outputs.len()).map(|_| Arena::new()).collect(),
            symbols: vec![0; n_symbols],
            binders: vec![(0, 0); n_symbols],
            input_ptrs: vec![ptr::null(); d.n_inputs as usize],
            input_bytes: vec![0; d.n_inputs as usize],
            output_ptrs: vec![ptr::null_mut(); outputs.len()],
            output_dims: vec![0; total_output_rank],
            message: vec![0],
        });
        // SAFETY: checked non-NULL and writable above.
        unsafe { out.write(Box::into_raw(session)) };
        Ok(())
    })
}

/// Frees a session; see `PREFIX_session_free` in the header.
///
/// # Safety
///
/// `session` must be NULL or a live session, with no call on it in progress.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_session_free(desc: *const ModelDesc, session: *mut Session) {
    guard((), || {
        if session.is_null() {
            return;
        }
        // SAFETY: the caller promises a live session.
        match unsafe { session_of(desc, session) } {
            Ok(_) => {
                // SAFETY: the session came from `Box::into_raw` in `tcc_rt_session_create` and
                // is freed once: the magic is cleared first, so a second free is refused.
                let mut boxed = unsafe { Box::from_raw(session) };
                boxed.magic = 0;
                drop(boxed);
            }
            Err(failure) => set_thread_message(&failure.message),
        }
    })
}

/// The session's thread count, or -1.
///
/// # Safety
///
/// `session` must be NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_session_num_threads(
    desc: *const ModelDesc,
    session: *const Session,
) -> i32 {
    guard(-1, || {
        // SAFETY: the caller promises NULL or a live session.
        match unsafe { session_of(desc, session) } {
            Ok(s) => s.num_threads() as i32,
            Err(failure) => {
                set_thread_message(&failure.message);
                -1
            }
        }
    })
}

/// Looks up input or output `i` of `desc` for the interface queries.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
unsafe fn tensor_at<'a>(desc: *const ModelDesc, output: bool, i: i32) -> Option<&'a TensorDesc> {
    // SAFETY: the caller promises NULL or a valid descriptor.
    let d = unsafe { desc.as_ref() }?;
    // SAFETY: as above.
    let (inputs, outputs) = unsafe { tensors(d) };
    let list = if output { outputs } else { inputs };
    let found = usize::try_from(i).ok().and_then(|i| list.get(i));
    if found.is_none() {
        let kind = if output { "output" } else { "input" };
        set_thread_message(&format!(
            "{kind} index {i} is out of range 0..{}",
            list.len()
        ));
    }
    found
}

/// The number of inputs of the model.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_num_inputs(desc: *const ModelDesc) -> i32 {
    // SAFETY: the caller promises NULL or a valid descriptor.
    guard(-1, || unsafe { desc.as_ref() }.map_or(-1, |d| d.n_inputs))
}

/// The number of outputs of the model.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_num_outputs(desc: *const ModelDesc) -> i32 {
    // SAFETY: the caller promises NULL or a valid descriptor.
    guard(-1, || unsafe { desc.as_ref() }.map_or(-1, |d| d.n_outputs))
}

/// The name of input `i`, or NULL.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_input_name(desc: *const ModelDesc, i: i32) -> *const c_char {
    // SAFETY: the caller promises NULL or a valid descriptor.
    guard(ptr::null(), || {
        unsafe { tensor_at(desc, false, i) }.map_or(ptr::null(), |t| t.name)
    })
}

/// The name of output `i`, or NULL.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_output_name(desc: *const ModelDesc, i: i32) -> *const c_char {
    // SAFETY: the caller promises NULL or a valid descriptor.
    guard(ptr::null(), || {
        unsafe { tensor_at(desc, true, i) }.map_or(ptr::null(), |t| t.name)
    })
}

/// The dtype of input `i`, or 0.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_input_dtype(desc: *const ModelDesc, i: i32) -> i32 {
    // SAFETY: the caller promises NULL or a valid descriptor.
    guard(0, || {
        unsafe { tensor_at(desc, false, i) }.map_or(0, |t| t.dtype)
    })
}

/// The dtype of output `i`, or 0.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_output_dtype(desc: *const ModelDesc, i: i32) -> i32 {
    // SAFETY: the caller promises NULL or a valid descriptor.
    guard(0, || {
        unsafe { tensor_at(desc, true, i) }.map_or(0, |t| t.dtype)
    })
}

/// The rank of input `i`, or -1.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_input_rank(desc: *const ModelDesc, i: i32) -> i32 {
    // SAFETY: the caller promises NULL or a valid descriptor.
    guard(-1, || {
        unsafe { tensor_at(desc, false, i) }.map_or(-1, |t| t.rank)
    })
}

/// The rank of output `i`, or -1.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_output_rank(desc: *const ModelDesc, i: i32) -> i32 {
    // SAFETY: the caller promises NULL or a valid descriptor.
    guard(-1, || {
        unsafe { tensor_at(desc, true, i) }.map_or(-1, |t| t.rank)
    })
}

/// The encoded dim of input (or, with `output`, output) `i` at `axis`, as in the descriptor,
/// if in range.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
unsafe fn dim_code(desc: *const ModelDesc, output: bool, i: i32, axis: i32) -> Option<i64> {
    // SAFETY: the caller promises NULL or a valid descriptor.
    let t = unsafe { tensor_at(desc, output, i) }?;
    // SAFETY: `t` comes from a valid descriptor.
    let dims = unsafe { desc_dims(t) };
    let found = usize::try_from(axis)
        .ok()
        .and_then(|a| dims.get(a))
        .copied();
    if found.is_none() {
        set_thread_message(&format!(
            "axis {axis} of {} {i} is out of range 0..{}",
            if output { "output" } else { "input" },
            dims.len()
        ));
    }
    found
}

/// The public size of an encoded dim: the fixed size, -1 if it is not fixed, -2 if out of
/// range.
fn public_dim(code: Option<i64>) -> i64 {
    match code {
        Some(dim) if dim >= 0 => dim,
        Some(_) => -1,
        None => -2,
    }
}

/// The name of the symbol an encoded dim stands for, or NULL if it is fixed, computed or out
/// of range.
///
/// # Safety
///
/// `desc` must be a valid descriptor when `code` is `Some`.
unsafe fn dim_symbol(desc: *const ModelDesc, code: Option<i64>) -> *const c_char {
    match code {
        Some(dim) if dim < 0 && dim != DIM_COMPUTED => {
            let symbol = (-(dim + 1)) as usize;
            // SAFETY: `desc` is valid (the caller found the dim in it) and its symbol table
            // holds `n_symbols` names; a symbol number beyond it is refused.
            let d = unsafe { &*desc };
            if symbol < d.n_symbols.max(0) as usize {
                // SAFETY: in range of the table, as just checked.
                unsafe { *d.symbol_names.add(symbol) }
            } else {
                ptr::null()
            }
        }
        _ => ptr::null(),
    }
}

/// The fixed size of input `i` at `axis`, -1 if symbolic, -2 if out of range.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_input_dim(desc: *const ModelDesc, i: i32, axis: i32) -> i64 {
    // SAFETY: the caller promises NULL or a valid descriptor.
    guard(-2, || public_dim(unsafe { dim_code(desc, false, i, axis) }))
}

/// The symbol name of input `i` at `axis`, or NULL if fixed or out of range.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_input_dim_symbol(
    desc: *const ModelDesc,
    i: i32,
    axis: i32,
) -> *const c_char {
    guard(ptr::null(), || {
        // SAFETY: the caller promises NULL or a valid descriptor; dim_code found the dim in it.
        unsafe { dim_symbol(desc, dim_code(desc, false, i, axis)) }
    })
}

/// The fixed size of output `i` at `axis`, -1 if it depends on the inputs' sizes (a symbol,
/// or a size computed from symbols), -2 if out of range.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_output_dim(desc: *const ModelDesc, i: i32, axis: i32) -> i64 {
    // SAFETY: the caller promises NULL or a valid descriptor.
    guard(-2, || public_dim(unsafe { dim_code(desc, true, i, axis) }))
}

/// The symbol name of output `i` at `axis`, or NULL if fixed, computed from symbols (such as
/// `past + seq`) or out of range.
///
/// # Safety
///
/// `desc` must be NULL or a valid descriptor.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_output_dim_symbol(
    desc: *const ModelDesc,
    i: i32,
    axis: i32,
) -> *const c_char {
    guard(ptr::null(), || {
        // SAFETY: the caller promises NULL or a valid descriptor; dim_code found the dim in it.
        unsafe { dim_symbol(desc, dim_code(desc, true, i, axis)) }
    })
}

/// The message of the last failure on `session`, or this thread's if `session` is NULL.
///
/// # Safety
///
/// `session` must be NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_last_error(
    desc: *const ModelDesc,
    session: *const Session,
) -> *const c_char {
    guard(thread_message(), || {
        if session.is_null() {
            return thread_message();
        }
        // SAFETY: the caller promises a live session.
        match unsafe { session_of(desc, session) } {
            Ok(s) => s.message.as_ptr().cast(),
            Err(failure) => {
                set_thread_message(&failure.message);
                thread_message()
            }
        }
    })
}

/// A short constant description of a status code.
#[no_mangle]
pub extern "C" fn tcc_rt_status_string(_desc: *const ModelDesc, status: i32) -> *const c_char {
    const UNKNOWN: &[u8] = b"unknown status\0";
    guard(UNKNOWN.as_ptr().cast(), || {
        let text = Status::from_code(status).map_or(UNKNOWN, Status::c_description);
        text.as_ptr().cast()
    })
}

/// Runs the model; see `PREFIX_run` in the header.
///
/// # Safety
///
/// `session` must be NULL or a live session of `desc` used by no other thread; `inputs` and
/// `outputs` must be NULL or point to `n_inputs` and `n_outputs` elements; each input's
/// `dims` must hold `rank` values and its `data` the elements its dims say; each caller-owned
/// output's `buffer` must be writable for `capacity` bytes.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_run(
    desc: *const ModelDesc,
    session: *mut Session,
    inputs: *const Tensor,
    n_inputs: i32,
    outputs: *mut Output,
    n_outputs: i32,
) -> i32 {
    guard(Status::Internal as i32, || {
        // SAFETY: the caller promises NULL or a live session.
        if let Err(failure) = unsafe { session_of(desc, session) } {
            set_thread_message(&failure.message);
            return failure.status as i32;
        }
        // SAFETY: `session_of` accepted it, and the caller promises exclusive use.
        let s = unsafe { &mut *session };
        // SAFETY: the caller's promises, passed on.
        match unsafe { run_checked(s, inputs, n_inputs, outputs, n_outputs) } {
            Ok(()) => Status::Ok as i32,
            Err(failure) => {
                s.set_message(&failure.message);
                failure.status as i32
            }
        }
    })
}

/// The body of [`tcc_rt_run`] once the session is known good.
///
/// # Safety
///
/// As [`tcc_rt_run`].
unsafe fn run_checked(
    s: &mut Session,
    inputs: *const Tensor,
    n_inputs: i32,
    outputs: *mut Output,
    n_outputs: i32,
) -> Outcome {
    // SAFETY: a live session's descriptor passed `check_desc` when it was created.
    let d = unsafe { &*s.desc };
    // SAFETY: as above.
    let (in_desc, out_desc) = unsafe { tensors(d) };
    if n_inputs != d.n_inputs || n_outputs != d.n_outputs {
        return fail(
            Status::InvalidArgument,
            format!(
                "the model has {} inputs and {} outputs, the call gives {n_inputs} and {n_outputs}",
                d.n_inputs, d.n_outputs
            ),
        );
    }
    if (inputs.is_null() && n_inputs > 0) || (outputs.is_null() && n_outputs > 0) {
        return fail(
            Status::InvalidArgument,
            "the inputs or outputs array is NULL",
        );
    }
    if !is_aligned(inputs as usize, align_of::<Tensor>() as u64)
        || !is_aligned(outputs as usize, align_of::<Output>() as u64)
    {
        return fail(
            Status::InvalidArgument,
            "the inputs or outputs array is misaligned",
        );
    }
    // SAFETY: non-NULL (or empty) and the caller promises the counts, checked equal above.
    let inputs = unsafe { slice(inputs, in_desc.len()) };
    let outputs: &mut [Output] = if out_desc.is_empty() {
        &mut []
    } else {
        // SAFETY: as for the inputs; the caller gives exclusive access to the outputs.
        unsafe { std::slice::from_raw_parts_mut(outputs, out_desc.len()) }
    };
    for out in outputs.iter_mut() {
        out.data = ptr::null_mut();
        out.size = 0;
    }

    // Inputs: dtype, rank, dims against fixed sizes and symbols, data.
    s.symbols.fill(-1);
    // SAFETY: the caller's promises about `inputs`, passed on.
    unsafe { check_inputs(s, d, in_desc, inputs) }?;

    // The relations between sizes that the model's operations need, before anything is sized
    // from the symbols.
    // SAFETY: the symbols are bound; a valid descriptor's checks and messages agree.
    unsafe { check_sizes(d, &s.symbols) }?;

    // Outputs: their dims for these symbols, sizes, then capacities and overlaps.
    let output_dims = d.output_dims.ok_or_else(|| internal("no output_dims"))?;
    // SAFETY: the symbol table holds n_symbols values and the dims buffer the sum of the
    // outputs' ranks, which is what the generated function writes.
    unsafe { output_dims(s.symbols.as_ptr(), s.output_dims.as_mut_ptr()) };
    let mut offset = 0;
    for (i, (out, t)) in outputs.iter_mut().zip(out_desc).enumerate() {
        let rank = t.rank as usize;
        let dims = &s.output_dims[offset..offset + rank];
        offset += rank;
        let dtype = Dtype::from_code(t.dtype).ok_or_else(|| internal("bad output dtype"))?;
        if let Some(&dim) = dims.iter().find(|&&d| d < 0) {
            return fail(
                Status::Internal,
                format!(
                    "the model computed dim {dim} for output {i} (`{}`)",
                    // SAFETY: descriptor names are valid C strings.
                    unsafe { c_str(t.name) }
                ),
            );
        }
        let bytes = byte_size(dims, dtype).ok_or_else(|| Failure {
            status: Status::Shape,
            message: format!(
                "output {i} (`{}`) would have dims {dims:?}, which is too large",
                // SAFETY: descriptor names are valid C strings.
                unsafe { c_str(t.name) }
            ),
        })?;
        out.dtype = t.dtype;
        out.rank = t.rank;
        out.dims = [0; MAX_RANK];
        out.dims[..rank].copy_from_slice(dims);
        out.size = bytes;
    }
    for (i, (out, t)) in outputs.iter().zip(out_desc).enumerate() {
        if out.buffer.is_null() {
            continue;
        }
        // SAFETY: descriptor names are valid C strings.
        let name = unsafe { c_str(t.name) };
        if out.capacity < out.size {
            return fail(
                Status::Capacity,
                format!(
                    "output {i} (`{name}`) needs {} bytes; its buffer holds {}",
                    out.size, out.capacity
                ),
            );
        }
        let align = Dtype::from_code(t.dtype).map_or(1, Dtype::size);
        if !is_aligned(out.buffer as usize, align) {
            return fail(
                Status::InvalidArgument,
                format!("output {i} (`{name}`): the buffer is not aligned to {align} bytes"),
            );
        }
        let range = (out.buffer as usize, out.size);
        for (j, input) in inputs.iter().enumerate() {
            if overlap(range, (input.data as usize, s.input_bytes[j])) {
                return fail(
                    Status::InvalidArgument,
                    format!("output {i} (`{name}`): the buffer overlaps input {j}"),
                );
            }
        }
        for (j, other) in outputs.iter().enumerate().take(i) {
            if !other.buffer.is_null() && overlap(range, (other.buffer as usize, other.size)) {
                return fail(
                    Status::InvalidArgument,
                    format!("output {i} (`{name}`): the buffer overlaps output {j}"),
                );
            }
        }
    }

    // Memory: session-owned outputs and the arena.
    for (i, out) in outputs.iter().enumerate() {
        let ptr = if out.buffer.is_null() {
            s.outputs[i]
                .reserve(out.size)
                .map_err(|e| out_of_memory(e.bytes, "a session-owned output"))?
                .as_ptr()
                .cast()
        } else {
            out.buffer
        };
        s.output_ptrs[i] = ptr;
    }
    let arena_bytes = d.arena_bytes.ok_or_else(|| internal("no arena_bytes"))?;
    // SAFETY: the symbol table holds n_symbols bound values.
    let needed = unsafe { arena_bytes(s.symbols.as_ptr()) };
    let arena = s
        .arena
        .reserve(needed)
        .map_err(|e| out_of_memory(e.bytes, "the activation arena"))?;

    for (slot, input) in s.input_ptrs.iter_mut().zip(inputs) {
        *slot = input.data;
    }
    let run = d.run.ok_or_else(|| internal("no run"))?;
    let pool = ptr::from_ref(&s.pool).cast_mut().cast::<RtPool>();
    // SAFETY: every pointer was validated above: the symbols are bound, the inputs hold the
    // elements their checked dims say, each output pointer holds the bytes its dims need, and
    // the arena holds `needed` bytes, 64-byte aligned.
    let code = unsafe {
        run(
            pool,
            s.symbols.as_ptr(),
            s.input_ptrs.as_ptr(),
            s.output_ptrs.as_ptr(),
            arena.as_ptr(),
        )
    };
    match code {
        RUN_OK => {}
        RUN_INDEX_OUT_OF_RANGE => {
            return fail(
                Status::InvalidArgument,
                "an index read from the inputs (a token id or a position) is out of range for \
                 the model"
                    .to_string(),
            )
        }
        RUN_SIZES_DISAGREE => {
            return fail(
                Status::Shape,
                "the inputs' sizes do not fit together: sizes that the model's operations need \
                 to agree (broadcasting, a matrix product, a concatenation) differ"
                    .to_string(),
            )
        }
        _ => {
            return fail(
                Status::Internal,
                format!("the model's run function failed with code {code}"),
            )
        }
    }
    for (out, &ptr) in outputs.iter_mut().zip(&s.output_ptrs) {
        out.data = ptr;
    }
    Ok(())
}

/// Runs the model's size checks for the bound `symbols`: a failure is [`Status::Shape`] with
/// the check's message, its values filled in, and the symbols' values.
///
/// # Safety
///
/// `d` must be a descriptor that passed [`check_desc`], and `symbols` hold its `n_symbols`
/// values.
unsafe fn check_sizes(d: &ModelDesc, symbols: &[i64]) -> Outcome {
    let (n, Some(check)) = (d.n_size_checks, d.check_sizes) else {
        return Ok(());
    };
    if n <= 0 {
        return Ok(());
    }
    let mut values = [0i64; CHECK_VALUES];
    // SAFETY: `symbols` holds the bound symbols; `values` has the room the ABI promises.
    let k = unsafe { check(symbols.as_ptr(), values.as_mut_ptr()) };
    if k < 0 {
        return Ok(());
    }
    if k >= n {
        return fail(
            Status::Internal,
            format!("the model's size check {k} failed, but it has {n} checks"),
        );
    }
    // SAFETY: `check_desc` verified the table is not NULL; it holds `n` strings.
    let template = unsafe { c_str(*d.size_checks.add(k as usize)) };
    let mut message = fill_template(&template, &values);
    if !symbols.is_empty() {
        message.push_str(" (with ");
        for (i, v) in symbols.iter().enumerate() {
            if i > 0 {
                message.push_str(", ");
            }
            // SAFETY: `check_desc` verified the table holds `n_symbols` names.
            let name = unsafe { c_str(*d.symbol_names.add(i)) };
            message.push_str(&format!("{name} = {v}"));
        }
        message.push(')');
    }
    fail(Status::Shape, message)
}

/// A size check's message: `{k}` replaced by `values[k]` (the saturated extremes of `i64`,
/// which mark an overflow, in words), `{{` and `}}` by braces, anything else kept.
fn fill_template(template: &str, values: &[i64]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        let placeholder = tail.strip_prefix('{').and_then(|t| {
            let end = t.find('}')?;
            let k: usize = t[..end].parse().ok()?;
            Some((values.get(k)?, &t[end + 1..]))
        });
        match placeholder {
            Some((&v, after)) => {
                match v {
                    i64::MAX => out.push_str("2^63 or more"),
                    i64::MIN => out.push_str("-2^63 or less"),
                    v => out.push_str(&v.to_string()),
                }
                rest = after;
            }
            None => {
                out.push_str(&tail[..1]);
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Validates the inputs, binding the session's symbols and recording each input's size in
/// bytes.
///
/// # Safety
///
/// Each input's `dims` must be NULL or hold `rank` values.
unsafe fn check_inputs(
    s: &mut Session,
    d: &ModelDesc,
    in_desc: &[TensorDesc],
    inputs: &[Tensor],
) -> Outcome {
    for (i, (input, t)) in inputs.iter().zip(in_desc).enumerate() {
        // SAFETY: descriptor names are valid C strings.
        let name = unsafe { c_str(t.name) };
        let want = Dtype::from_code(t.dtype).ok_or_else(|| internal("bad input dtype"))?;
        if input.dtype != t.dtype {
            let got = Dtype::from_code(input.dtype)
                .map_or_else(|| format!("code {}", input.dtype), |d| d.name().to_owned());
            return fail(
                Status::Dtype,
                format!("input {i} (`{name}`) must be {}, got {got}", want.name()),
            );
        }
        if input.rank != t.rank {
            return fail(
                Status::Shape,
                format!(
                    "input {i} (`{name}`) must have rank {}, got {}",
                    t.rank, input.rank
                ),
            );
        }
        if input.rank > 0 && input.dims.is_null() {
            return fail(
                Status::InvalidArgument,
                format!("input {i} (`{name}`) has rank {} but NULL dims", input.rank),
            );
        }
        if !is_aligned(input.dims as usize, 8) {
            return fail(
                Status::InvalidArgument,
                format!("input {i} (`{name}`): the dims pointer is not aligned to 8 bytes"),
            );
        }
        // SAFETY: non-NULL when the rank is positive, aligned; the caller promises `rank`
        // values.
        let dims = unsafe { slice(input.dims, input.rank as usize) };
        // SAFETY: from the valid descriptor.
        let wanted = unsafe { desc_dims(t) };
        for (axis, (&got, &code)) in dims.iter().zip(wanted).enumerate() {
            if got < 0 {
                return fail(
                    Status::Shape,
                    format!("input {i} (`{name}`) axis {axis} is negative ({got})"),
                );
            }
            if code >= 0 {
                if got != code {
                    return fail(
                        Status::Shape,
                        format!("input {i} (`{name}`) axis {axis} must be {code}, got {got}"),
                    );
                }
                continue;
            }
            let symbol = (-(code + 1)) as usize;
            // SAFETY: `check_desc` verified every input symbol is below n_symbols.
            let symbol_name = unsafe { c_str(*d.symbol_names.add(symbol)) };
            match s.symbols[symbol] {
                -1 => {
                    s.symbols[symbol] = got;
                    s.binders[symbol] = (i, axis);
                }
                bound if bound == got => {}
                bound => {
                    let (j, binder_axis) = s.binders[symbol];
                    // SAFETY: descriptor names are valid C strings.
                    let binder = unsafe { c_str(in_desc[j].name) };
                    return fail(
                        Status::Shape,
                        format!(
                            "input {i} (`{name}`) axis {axis} is {got}, but symbol \
                             `{symbol_name}` is {bound} from input {j} (`{binder}`) axis \
                             {binder_axis}"
                        ),
                    );
                }
            }
        }
        let bytes = byte_size(dims, want).ok_or_else(|| Failure {
            status: Status::Shape,
            message: format!("input {i} (`{name}`) with dims {dims:?} is too large"),
        })?;
        if input.data.is_null() && bytes > 0 {
            return fail(
                Status::InvalidArgument,
                format!("input {i} (`{name}`) has {bytes} bytes of data but a NULL pointer"),
            );
        }
        if !is_aligned(input.data as usize, want.size()) {
            return fail(
                Status::InvalidArgument,
                format!(
                    "input {i} (`{name}`): the data is not aligned to {} bytes",
                    want.size()
                ),
            );
        }
        s.input_bytes[i] = bytes;
    }
    Ok(())
}

/// The bytes of a dense tensor of these dims, if every dim is non-negative and the size fits
/// the address space.
fn byte_size(dims: &[i64], dtype: Dtype) -> Option<u64> {
    let mut bytes = dtype.size();
    for &dim in dims {
        bytes = bytes.checked_mul(u64::try_from(dim).ok()?)?;
    }
    (bytes <= isize::MAX as u64).then_some(bytes)
}

/// Whether `address` is a multiple of `align`, a power of two.
fn is_aligned(address: usize, align: u64) -> bool {
    address as u64 & (align - 1) == 0
}

/// Whether two byte ranges `(start, len)` share a byte (empty ranges share none).
fn overlap(a: (usize, u64), b: (usize, u64)) -> bool {
    let (a0, a1) = (a.0 as u64, a.0 as u64 + a.1);
    let (b0, b1) = (b.0 as u64, b.0 as u64 + b.1);
    a.1 > 0 && b.1 > 0 && a0 < b1 && b0 < a1
}

fn internal(what: &str) -> Failure {
    Failure {
        status: Status::Internal,
        message: format!("corrupt model descriptor: {what}"),
    }
}

fn out_of_memory(bytes: u64, what: &str) -> Failure {
    Failure {
        status: Status::OutOfMemory,
        message: format!("could not allocate {bytes} bytes for {what}"),
    }
}

/// Runs `task(ctx, i)` for every `i` in `[0, n)` on the session's threads; see the header.
///
/// # Safety
///
/// `pool` must be NULL or the pool a running model was given; `task(ctx, i)` must be safe to
/// call for every `i` in `[0, n)`, from any thread, concurrently. A NULL pool runs serially.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_parallel_for(
    pool: *mut RtPool,
    n: i64,
    task: Option<crate::abi::TaskFn>,
    ctx: *mut c_void,
) {
    guard((), || {
        // SAFETY: the caller promises NULL or the session's pool, alive during the run.
        match unsafe { pool.cast::<Pool>().as_ref() } {
            // SAFETY: the caller's promise about `task`, passed on.
            Some(pool) => unsafe { pool.parallel_for(n, task, ctx) },
            None => {
                if let Some(task) = task {
                    for i in 0..n.max(0) {
                        // SAFETY: as above.
                        unsafe { task(ctx, i) };
                    }
                }
            }
        }
    })
}

/// The number of threads of `pool` (1 for NULL).
///
/// # Safety
///
/// `pool` must be NULL or the pool a running model was given.
#[no_mangle]
pub unsafe extern "C" fn tcc_rt_num_threads(pool: *const RtPool) -> i32 {
    // SAFETY: the caller promises NULL or a live pool.
    guard(1, || {
        unsafe { pool.cast::<Pool>().as_ref() }.map_or(1, |p| p.num_threads() as i32)
    })
}
