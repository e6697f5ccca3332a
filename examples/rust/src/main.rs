//! A Rust program that uses a tcc-compiled model through its public C API only, loading the
//! library at run time with dlopen (libloading). It does what examples/c/main.c does and
//! prints the same lines, so the two can be compared:
//!
//! 1. lists the model's inputs and outputs with the interface queries;
//! 2. creates a session (default threads: `TCC_NUM_THREADS`, else the physical cores);
//! 3. fills every input, found by name, from a small batch of token ids (`BATCH` sequences of
//!    `SEQ` tokens, the second one padded; see [`fill_input`]);
//! 4. runs the model into session-owned outputs and prints each output's shape and checksums;
//! 5. runs it again into its own buffers, sized from the first run, and checks that both runs
//!    agree bit for bit;
//! 6. writes the outputs' raw bytes to `OUT` if given, then frees everything.
//!
//! Usage: `tcc-example-rust MODEL.so [PREFIX [OUT]]`; the prefix defaults to `model`.

use std::ffi::{c_char, c_void, CStr};
use std::path::Path;
use std::process::ExitCode;

/// `tcc_tensor`, as the generated header declares it.
#[repr(C)]
struct Tensor {
    dtype: i32,
    rank: i32,
    dims: *const i64,
    data: *const c_void,
}

/// `tcc_output`, as the generated header declares it.
#[repr(C)]
#[derive(Clone, Copy)]
struct Output {
    buffer: *mut c_void,
    capacity: u64,
    data: *mut c_void,
    size: u64,
    dtype: i32,
    rank: i32,
    dims: [i64; 8],
}

impl Output {
    /// An output that goes to the caller's `buffer`, or to a session-owned one if it is NULL.
    fn into_buffer(buffer: *mut c_void, capacity: u64) -> Output {
        Output {
            buffer,
            capacity,
            data: std::ptr::null_mut(),
            size: 0,
            dtype: 0,
            rank: 0,
            dims: [0; 8],
        }
    }
}

/// The opaque `tcc_session`.
#[repr(C)]
struct Session {
    _private: [u8; 0],
}

/// `TCC_OK` and the dtype codes this program uses (`tcc_status`, `tcc_dtype`).
const TCC_OK: i32 = 0;
const TCC_F32: i32 = 1;
const TCC_F64: i32 = 2;
const TCC_I64: i32 = 5;
const TCC_I32: i32 = 6;

/// The batch: `BATCH` sequences of `SEQ` tokens, as in examples/c/main.c.
const BATCH: i64 = 2;
const SEQ: i64 = 8;

/// Sequence `b` holds `SEQ - 3 b` real tokens (at least one); the rest is padding.
fn sequence_length(b: i64) -> i64 {
    (SEQ - 3 * b).max(1)
}

/// Token `s` of sequence `b`: `1 + (7 s + 13 b) % 97`, or 0 in the padding.
fn token_id(b: i64, s: i64) -> i64 {
    if s < sequence_length(b) {
        1 + (7 * s + 13 * b) % 97
    } else {
        0
    }
}

fn dtype_name(dtype: i32) -> &'static str {
    const NAMES: [&str; 10] = [
        "?", "f32", "f64", "f16", "bf16", "i64", "i32", "i8", "u8", "bool",
    ];
    usize::try_from(dtype)
        .ok()
        .and_then(|d| NAMES.get(d))
        .copied()
        .unwrap_or("?")
}

fn dtype_size(dtype: i32) -> usize {
    match dtype {
        2 | 5 => 8,
        1 | 6 => 4,
        3 | 4 => 2,
        _ => 1,
    }
}

/// The model's API, resolved from the library once.
struct Model {
    session_create: unsafe extern "C" fn(i32, *mut *mut Session) -> i32,
    session_free: unsafe extern "C" fn(*mut Session),
    session_num_threads: unsafe extern "C" fn(*const Session) -> i32,
    num_inputs: unsafe extern "C" fn() -> i32,
    num_outputs: unsafe extern "C" fn() -> i32,
    input_name: unsafe extern "C" fn(i32) -> *const c_char,
    output_name: unsafe extern "C" fn(i32) -> *const c_char,
    input_dtype: unsafe extern "C" fn(i32) -> i32,
    input_rank: unsafe extern "C" fn(i32) -> i32,
    input_dim: unsafe extern "C" fn(i32, i32) -> i64,
    input_dim_symbol: unsafe extern "C" fn(i32, i32) -> *const c_char,
    run: unsafe extern "C" fn(*mut Session, *const Tensor, i32, *mut Output, i32) -> i32,
    last_error: unsafe extern "C" fn(*const Session) -> *const c_char,
    status_string: unsafe extern "C" fn(i32) -> *const c_char,
    // Dropped last: the function pointers above point into it.
    _library: libloading::Library,
}

/// A string the API returned (names and messages are NUL-terminated and never freed).
fn text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: the API returns NULL or a NUL-terminated string that outlives this call.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

impl Model {
    fn load(path: &Path, prefix: &str) -> Result<Model, String> {
        // SAFETY: a tcc model library has no initialisers besides the C runtime's.
        let library = unsafe { libloading::Library::new(path) }
            .map_err(|e| format!("cannot load `{}`: {e}", path.display()))?;
        macro_rules! get {
            ($name:literal) => {{
                let symbol = format!("{prefix}_{}", $name);
                // SAFETY: each field's type is the signature the generated header declares.
                *unsafe { library.get(symbol.as_bytes()) }
                    .map_err(|e| format!("`{}` lacks `{symbol}`: {e}", path.display()))?
            }};
        }
        Ok(Model {
            session_create: get!("session_create"),
            session_free: get!("session_free"),
            session_num_threads: get!("session_num_threads"),
            num_inputs: get!("num_inputs"),
            num_outputs: get!("num_outputs"),
            input_name: get!("input_name"),
            output_name: get!("output_name"),
            input_dtype: get!("input_dtype"),
            input_rank: get!("input_rank"),
            input_dim: get!("input_dim"),
            input_dim_symbol: get!("input_dim_symbol"),
            run: get!("run"),
            last_error: get!("last_error"),
            status_string: get!("status_string"),
            _library: library,
        })
    }

    /// `Err` with the API's message if `status` is not `TCC_OK`.
    fn check(&self, status: i32, session: *const Session, what: &str) -> Result<(), String> {
        if status == TCC_OK {
            return Ok(());
        }
        // SAFETY: status_string takes any code; last_error takes a live session or NULL.
        let (name, message) = unsafe {
            (
                text((self.status_string)(status)),
                text((self.last_error)(session)),
            )
        };
        Err(format!("{what}: {name}: {message}"))
    }
}

/// A session, freed when dropped.
struct SessionGuard<'m> {
    model: &'m Model,
    raw: *mut Session,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: a live session, freed once, with no call on it in progress.
        unsafe { (self.model.session_free)(self.raw) }
    }
}

/// Input `i`'s dims and data: an i64 `[batch, seq]` tensor of token ids, attention mask or
/// token types, chosen by its name.
fn fill_input(model: &Model, i: i32) -> Result<([i64; 2], Vec<i64>), String> {
    // SAFETY (for the queries here): interface queries take any index.
    let (name, dtype, rank) = unsafe {
        (
            text((model.input_name)(i)),
            (model.input_dtype)(i),
            (model.input_rank)(i),
        )
    };
    if dtype != TCC_I64 || rank != 2 {
        return Err(format!(
            "input `{name}` is {} with rank {rank}; this example feeds only i64 [batch, seq] \
             inputs (token ids, attention mask, token types)",
            dtype_name(dtype)
        ));
    }
    let dim = |axis, default| {
        // SAFETY: as above.
        let fixed = unsafe { (model.input_dim)(i, axis) };
        if fixed < 0 {
            default
        } else {
            fixed
        }
    };
    let dims = [dim(0, BATCH), dim(1, SEQ)];
    let mut data = Vec::with_capacity((dims[0] * dims[1]) as usize);
    for b in 0..dims[0] {
        for s in 0..dims[1] {
            data.push(if name.contains("mask") {
                i64::from(s < sequence_length(b))
            } else if name.contains("type") {
                0
            } else {
                token_id(b, s)
            });
        }
    }
    Ok((dims, data))
}

/// The sum and the sum of magnitudes of an output's elements, in f64, in order.
fn checksums(dtype: i32, bytes: &[u8]) -> (f64, f64) {
    let size = dtype_size(dtype);
    let mut sum = 0.0;
    let mut abs_sum = 0.0;
    for chunk in bytes.chunks_exact(size) {
        let v = match dtype {
            TCC_F32 => f64::from(f32::from_le_bytes(chunk.try_into().unwrap_or_default())),
            TCC_F64 => f64::from_le_bytes(chunk.try_into().unwrap_or_default()),
            TCC_I64 => i64::from_le_bytes(chunk.try_into().unwrap_or_default()) as f64,
            TCC_I32 => f64::from(i32::from_le_bytes(chunk.try_into().unwrap_or_default())),
            _ => f64::from(chunk[0]),
        };
        sum += v;
        abs_sum += v.abs();
    }
    (sum, abs_sum)
}

/// The bytes of a successful run's output.
fn output_bytes(out: &Output) -> &[u8] {
    if out.size == 0 {
        return &[];
    }
    // SAFETY: a successful run leaves `size` bytes at `data`, valid until the next run.
    unsafe { std::slice::from_raw_parts(out.data as *const u8, out.size as usize) }
}

fn run(path: &Path, prefix: &str, dump: Option<&Path>) -> Result<(), String> {
    let model = Model::load(path, prefix)?;
    // SAFETY (for every interface query below): they take any index.
    let (n_inputs, n_outputs) = unsafe { ((model.num_inputs)(), (model.num_outputs)()) };
    println!("model: {n_inputs} inputs, {n_outputs} outputs");
    for i in 0..n_inputs {
        let axes: Vec<String> = (0..unsafe { (model.input_rank)(i) })
            .map(|axis| {
                let symbol = unsafe { (model.input_dim_symbol)(i, axis) };
                if symbol.is_null() {
                    unsafe { (model.input_dim)(i, axis) }.to_string()
                } else {
                    text(symbol)
                }
            })
            .collect();
        println!(
            "input {i}: {} {} [{}]",
            text(unsafe { (model.input_name)(i) }),
            dtype_name(unsafe { (model.input_dtype)(i) }),
            axes.join(", ")
        );
    }

    let mut raw = std::ptr::null_mut();
    // SAFETY: a valid out-pointer.
    let status = unsafe { (model.session_create)(0, &mut raw) };
    model.check(status, std::ptr::null(), "session_create")?;
    let session = SessionGuard { model: &model, raw };
    // SAFETY: a live session.
    println!("session: {} threads", unsafe {
        (model.session_num_threads)(session.raw)
    });

    let filled = (0..n_inputs)
        .map(|i| fill_input(&model, i))
        .collect::<Result<Vec<_>, _>>()?;
    let inputs: Vec<Tensor> = filled
        .iter()
        .map(|(dims, data)| Tensor {
            dtype: TCC_I64,
            rank: 2,
            dims: dims.as_ptr(),
            data: data.as_ptr().cast(),
        })
        .collect();

    // Run 1: session-owned outputs, valid until the next run; copied out at once.
    let mut owned = vec![Output::into_buffer(std::ptr::null_mut(), 0); n_outputs as usize];
    // SAFETY: a live session used by this thread only; inputs point to live buffers of the
    // sizes they state.
    let status = unsafe {
        (model.run)(
            session.raw,
            inputs.as_ptr(),
            n_inputs,
            owned.as_mut_ptr(),
            n_outputs,
        )
    };
    model.check(status, session.raw, "run")?;
    let first: Vec<Vec<u8>> = owned.iter().map(|o| output_bytes(o).to_vec()).collect();

    // Run 2: into our own buffers (u64 words, so aligned for any dtype), sized from run 1.
    let mut buffers: Vec<Vec<u64>> = owned
        .iter()
        .map(|o| vec![0u64; (o.size as usize).div_ceil(8)])
        .collect();
    let mut mine: Vec<Output> = buffers
        .iter_mut()
        .zip(&owned)
        .map(|(b, o)| Output::into_buffer(b.as_mut_ptr().cast(), o.size))
        .collect();
    // SAFETY: as above; each buffer holds `capacity` bytes and outlives the run.
    let status = unsafe {
        (model.run)(
            session.raw,
            inputs.as_ptr(),
            n_inputs,
            mine.as_mut_ptr(),
            n_outputs,
        )
    };
    model.check(status, session.raw, "run into own buffers")?;

    let mut dumped = Vec::new();
    let mut mismatches = Vec::new();
    for (o, out) in mine.iter().enumerate() {
        let name = text(unsafe { (model.output_name)(o as i32) });
        let bytes = output_bytes(out);
        if out.data != out.buffer || bytes != first[o].as_slice() {
            mismatches.push(name.clone());
        }
        let (sum, abs_sum) = checksums(out.dtype, bytes);
        let dims: Vec<String> = out.dims[..out.rank.clamp(0, 8) as usize]
            .iter()
            .map(i64::to_string)
            .collect();
        println!(
            "output {o}: {name} {} [{}] sum={sum:.6} abs_sum={abs_sum:.6}",
            dtype_name(out.dtype),
            dims.join(", ")
        );
        dumped.extend_from_slice(bytes);
    }
    if let Some(dump) = dump {
        std::fs::write(dump, &dumped).map_err(|e| format!("{}: {e}", dump.display()))?;
    }
    drop(session);
    if !mismatches.is_empty() {
        return Err(format!(
            "outputs differ between the two runs: {}",
            mismatches.join(", ")
        ));
    }
    println!("ok");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if !(2..=4).contains(&args.len()) {
        eprintln!("usage: {} MODEL.so [PREFIX [OUT]]", args[0]);
        return ExitCode::from(2);
    }
    let prefix = args.get(2).map_or("model", String::as_str);
    match run(Path::new(&args[1]), prefix, args.get(3).map(Path::new)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
