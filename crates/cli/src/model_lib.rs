//! A compiled model library (`tcc compile model.onnx -o model.so`), loaded with libloading and
//! used through its public C API only (runtime/include/tcc_model.h): the interface queries,
//! sessions, and runs on inputs bound by name from npz arrays. `tcc run` and `tcc bench` share
//! it.
//!
//! Before `dlopen`, the file's ELF headers are checked (`elf.rs`): a truncated or damaged
//! library is an error naming it, not a crash inside the dynamic loader.
//!
//! The library's prefix (its functions are `PREFIX_run` and so on) is given, or found: the
//! exported `*_session_create` symbols are read from the file's dynamic string table and each
//! candidate is confirmed with `dlsym`, so exactly one model API must be exported.
//!
//! Inputs are checked against the library's own interface before any run (name, dtype, rank,
//! fixed dims, and sizes of a symbol agreeing across axes), so a mismatch is an error naming
//! the npz file and the input; the runtime validates them again and its message, should it
//! refuse, is reported as it is.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};
use tcc_codegen::abi::dtype_code;
use tcc_ir::{with_data, DType, Tensor, TensorData};

// The C API's structs, as the runtime defines them (runtime/src/abi.rs mirrors
// runtime/include/tcc_model.h): one definition for the library, its tests and this loader.
use tcc_runtime::abi::{Output as RawOutput, Tensor as RawTensor, MAX_RANK};

/// The opaque `tcc_session`.
#[repr(C)]
struct RawSession {
    _private: [u8; 0],
}

type CreateFn = unsafe extern "C" fn(i32, *mut *mut RawSession) -> i32;
type FreeFn = unsafe extern "C" fn(*mut RawSession);
type NumThreadsFn = unsafe extern "C" fn(*const RawSession) -> i32;
type CountFn = unsafe extern "C" fn() -> i32;
type NameFn = unsafe extern "C" fn(i32) -> *const c_char;
type IndexFn = unsafe extern "C" fn(i32) -> i32;
type DimFn = unsafe extern "C" fn(i32, i32) -> i64;
type DimSymbolFn = unsafe extern "C" fn(i32, i32) -> *const c_char;
type RunFn =
    unsafe extern "C" fn(*mut RawSession, *const RawTensor, i32, *mut RawOutput, i32) -> i32;
type LastErrorFn = unsafe extern "C" fn(*const RawSession) -> *const c_char;
type StatusStringFn = unsafe extern "C" fn(i32) -> *const c_char;

/// The API functions a model library exports, resolved once.
struct Api {
    session_create: CreateFn,
    session_free: FreeFn,
    session_num_threads: NumThreadsFn,
    num_inputs: CountFn,
    num_outputs: CountFn,
    input_name: NameFn,
    output_name: NameFn,
    input_dtype: IndexFn,
    output_dtype: IndexFn,
    input_rank: IndexFn,
    output_rank: IndexFn,
    input_dim: DimFn,
    input_dim_symbol: DimSymbolFn,
    run: RunFn,
    last_error: LastErrorFn,
    status_string: StatusStringFn,
}

/// One axis of a model input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputDim {
    /// A size fixed at compile time.
    Fixed(usize),
    /// A symbol (such as `batch`), bound by the sizes of each run's inputs.
    Symbol(String),
}

/// A model input, as the library describes it.
#[derive(Clone, Debug)]
pub struct InputInfo {
    /// The ONNX input name.
    pub name: String,
    /// The element type.
    pub dtype: DType,
    /// One entry per axis.
    pub dims: Vec<InputDim>,
}

impl std::fmt::Display for InputInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|d| match d {
                InputDim::Fixed(n) => n.to_string(),
                InputDim::Symbol(s) => s.clone(),
            })
            .collect();
        write!(f, "{}[{}]", self.dtype, dims.join(", "))
    }
}

/// A model output, as the library describes it (its dims are known only after a run).
#[derive(Clone, Debug)]
pub struct OutputInfo {
    /// The ONNX output name.
    pub name: String,
    /// The element type.
    pub dtype: DType,
    /// The number of axes.
    pub rank: usize,
}

/// A loaded model library and its interface.
pub struct ModelLib {
    api: Api,
    path: PathBuf,
    prefix: String,
    inputs: Vec<InputInfo>,
    outputs: Vec<OutputInfo>,
    // Dropped last: every function pointer above points into it.
    _library: libloading::Library,
}

/// The dtype of a C API dtype code, if it is one.
fn dtype_of_code(code: i32) -> Option<DType> {
    DType::ALL.into_iter().find(|&d| dtype_code(d) == code)
}

/// A NUL-terminated string from the library, or `None` for NULL or text that is not UTF-8.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string that outlives the returned copy's
/// creation.
unsafe fn c_string(ptr: *const c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the caller promises a live NUL-terminated string.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .ok()
        .map(str::to_owned)
}

/// The prefixes `P` for which `bytes` (the library's dynamic string table) hold the string
/// `P_session_create`.
fn prefix_candidates(bytes: &[u8]) -> Vec<String> {
    const SUFFIX: &[u8] = b"_session_create\0";
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = bytes[from..]
        .windows(SUFFIX.len())
        .position(|w| w == SUFFIX)
        .map(|p| p + from)
    {
        let start = bytes[..at]
            .iter()
            .rposition(|&b| b == 0)
            .map_or(0, |p| p + 1);
        if let Ok(prefix) = std::str::from_utf8(&bytes[start..at]) {
            let plausible = !prefix.is_empty()
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if plausible && !found.iter().any(|f: &String| f == prefix) {
                found.push(prefix.to_owned());
            }
        }
        from = at + SUFFIX.len();
    }
    found
}

/// Resolves `PREFIX_name` as a function of type `T`.
///
/// # Safety
/// `T` must be the function type the library's `PREFIX_name` has.
unsafe fn symbol<T: Copy>(library: &libloading::Library, prefix: &str, name: &str) -> Result<T> {
    let full = format!("{prefix}_{name}");
    // SAFETY: the caller promises the type.
    let f = unsafe { library.get::<T>(full.as_bytes()) }
        .with_context(|| format!("the library does not export `{full}`"))?;
    Ok(*f)
}

impl ModelLib {
    /// Loads the model library at `path`. With `prefix` None, the prefix is found in the file
    /// (exactly one `PREFIX_session_create` must be exported).
    pub fn load(path: &Path, prefix: Option<&str>) -> Result<ModelLib> {
        if !path.exists() {
            bail!("model library `{}` does not exist", path.display());
        }
        if path.is_dir() {
            bail!("`{}` is a directory, not a model library", path.display());
        }
        // dlopen trusts the file: a truncated or damaged library would crash it (SIGBUS,
        // SIGSEGV) instead of failing. The headers are checked first.
        let checked = crate::elf::check(path)?;
        // A bare file name would make dlopen search the library path instead of this file.
        let path_for_dlopen = if path.components().count() == 1 {
            Path::new(".").join(path)
        } else {
            path.to_path_buf()
        };
        // SAFETY: loading runs the library's initialisers. A tcc model library has none besides
        // the C runtime's; loading some other library is the user's request.
        let library = unsafe { libloading::Library::new(&path_for_dlopen) }
            .with_context(|| format!("cannot load the model library `{}`", path.display()))?;
        let prefix = match prefix {
            Some(p) => p.to_owned(),
            None => find_prefix(&library, path, &checked.dynstr)?,
        };
        let api = (|| -> Result<Api> {
            // SAFETY: every symbol is resolved with the type tcc_model.h declares for it.
            unsafe {
                Ok(Api {
                    session_create: symbol(&library, &prefix, "session_create")?,
                    session_free: symbol(&library, &prefix, "session_free")?,
                    session_num_threads: symbol(&library, &prefix, "session_num_threads")?,
                    num_inputs: symbol(&library, &prefix, "num_inputs")?,
                    num_outputs: symbol(&library, &prefix, "num_outputs")?,
                    input_name: symbol(&library, &prefix, "input_name")?,
                    output_name: symbol(&library, &prefix, "output_name")?,
                    input_dtype: symbol(&library, &prefix, "input_dtype")?,
                    output_dtype: symbol(&library, &prefix, "output_dtype")?,
                    input_rank: symbol(&library, &prefix, "input_rank")?,
                    output_rank: symbol(&library, &prefix, "output_rank")?,
                    input_dim: symbol(&library, &prefix, "input_dim")?,
                    input_dim_symbol: symbol(&library, &prefix, "input_dim_symbol")?,
                    run: symbol(&library, &prefix, "run")?,
                    last_error: symbol(&library, &prefix, "last_error")?,
                    status_string: symbol(&library, &prefix, "status_string")?,
                })
            }
        })()
        .with_context(|| {
            format!(
                "`{}` is not a tcc model library with prefix `{prefix}`",
                path.display()
            )
        })?;
        let mut lib = ModelLib {
            api,
            path: path.to_path_buf(),
            prefix,
            inputs: Vec::new(),
            outputs: Vec::new(),
            _library: library,
        };
        lib.inputs = lib.query_inputs()?;
        lib.outputs = lib.query_outputs()?;
        Ok(lib)
    }

    /// The prefix of the library's API functions.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The model's inputs, in the order `run` takes them.
    pub fn inputs(&self) -> &[InputInfo] {
        &self.inputs
    }

    /// An error about the library's own answers (a corrupt or foreign library).
    fn corrupt(&self, what: String) -> anyhow::Error {
        anyhow!(
            "the model library `{}` (prefix `{}`) is inconsistent: {what}",
            self.path.display(),
            self.prefix
        )
    }

    fn query_inputs(&self) -> Result<Vec<InputInfo>> {
        // SAFETY (for every call below): the API's queries take any index and have no
        // preconditions; returned names live as long as the library.
        let n = unsafe { (self.api.num_inputs)() };
        let mut inputs = Vec::new();
        for i in 0..n.max(0) {
            let name = unsafe { c_string((self.api.input_name)(i)) }
                .ok_or_else(|| self.corrupt(format!("input {i} has no name")))?;
            let code = unsafe { (self.api.input_dtype)(i) };
            let dtype = dtype_of_code(code)
                .ok_or_else(|| self.corrupt(format!("input `{name}` has dtype code {code}")))?;
            let rank = unsafe { (self.api.input_rank)(i) };
            if rank < 0 {
                return Err(self.corrupt(format!("input `{name}` has rank {rank}")));
            }
            let mut dims = Vec::new();
            for axis in 0..rank {
                let size = unsafe { (self.api.input_dim)(i, axis) };
                dims.push(if size >= 0 {
                    InputDim::Fixed(size as usize)
                } else {
                    let symbol = unsafe { c_string((self.api.input_dim_symbol)(i, axis)) }
                        .ok_or_else(|| {
                            self.corrupt(format!("input `{name}` axis {axis} has no size"))
                        })?;
                    InputDim::Symbol(symbol)
                });
            }
            inputs.push(InputInfo { name, dtype, dims });
        }
        Ok(inputs)
    }

    fn query_outputs(&self) -> Result<Vec<OutputInfo>> {
        // SAFETY: as in query_inputs.
        let n = unsafe { (self.api.num_outputs)() };
        let mut outputs = Vec::new();
        for i in 0..n.max(0) {
            let name = unsafe { c_string((self.api.output_name)(i)) }
                .ok_or_else(|| self.corrupt(format!("output {i} has no name")))?;
            let code = unsafe { (self.api.output_dtype)(i) };
            let dtype = dtype_of_code(code)
                .ok_or_else(|| self.corrupt(format!("output `{name}` has dtype code {code}")))?;
            let rank = unsafe { (self.api.output_rank)(i) };
            if !(0..=MAX_RANK as i32).contains(&rank) {
                return Err(self.corrupt(format!("output `{name}` has rank {rank}")));
            }
            outputs.push(OutputInfo {
                name,
                dtype,
                rank: rank as usize,
            });
        }
        Ok(outputs)
    }

    /// The API's text for a status code.
    fn status_text(&self, status: i32) -> String {
        // SAFETY: status_string takes any code and returns a constant string.
        unsafe { c_string((self.api.status_string)(status)) }.unwrap_or_default()
    }

    /// Picks the model's inputs out of an npz's arrays by name and checks them against the
    /// library's interface. Arrays that are not inputs are ignored (a reference archive that
    /// also holds expected outputs can be passed as it is). `npz` names the archive in errors.
    pub fn bind(&self, arrays: Vec<(String, Tensor)>, npz: &Path) -> Result<Inputs> {
        let held: Vec<String> = arrays
            .iter()
            .map(|(n, t)| format!("{n} {}{:?}", t.dtype(), t.shape()))
            .collect();
        let mut by_name: HashMap<String, Tensor> = arrays.into_iter().collect();
        let mut symbols: HashMap<&str, (usize, &str)> = HashMap::new();
        let mut tensors = Vec::new();
        for info in &self.inputs {
            let name = &info.name;
            let Some(t) = by_name.remove(name) else {
                bail!(
                    "the model's input `{name}` ({info}) is not in `{}`; it holds: {}",
                    npz.display(),
                    if held.is_empty() {
                        "no arrays".to_string()
                    } else {
                        held.join(", ")
                    }
                );
            };
            let mismatch = || {
                format!(
                    "input `{name}` in `{}` is {}{:?}, but the model takes {info}",
                    npz.display(),
                    t.dtype(),
                    t.shape()
                )
            };
            if t.dtype() != info.dtype || t.shape().len() != info.dims.len() {
                bail!("{}", mismatch());
            }
            for (&size, dim) in t.shape().iter().zip(&info.dims) {
                match dim {
                    InputDim::Fixed(fixed) if size != *fixed => bail!("{}", mismatch()),
                    InputDim::Fixed(_) => {}
                    InputDim::Symbol(symbol) => {
                        let (bound, by) = *symbols.entry(symbol).or_insert((size, name));
                        if bound != size {
                            bail!(
                                "{}: `{symbol}` is {size} here but {bound} in input `{by}`",
                                mismatch()
                            );
                        }
                    }
                }
            }
            tensors.push(t);
        }
        let dims: Vec<Vec<i64>> = tensors
            .iter()
            .map(|t| t.shape().iter().map(|&d| d as i64).collect())
            .collect();
        let raw = tensors
            .iter()
            .zip(&dims)
            .map(|(t, d)| RawTensor {
                dtype: dtype_code(t.dtype()),
                rank: d.len() as i32,
                dims: d.as_ptr(),
                data: data_ptr(t.data()),
            })
            .collect();
        Ok(Inputs {
            _tensors: tensors,
            _dims: dims,
            raw,
            prefix: self.prefix.clone(),
        })
    }

    /// Creates a session on `threads` threads (0 or less: the library's default, which
    /// `TCC_NUM_THREADS` overrides).
    pub fn session(&self, threads: i32) -> Result<Session<'_>> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: a valid out-pointer.
        let status = unsafe { (self.api.session_create)(threads, &mut raw) };
        if status != 0 || raw.is_null() {
            // SAFETY: last_error(NULL) returns the calling thread's message.
            let message =
                unsafe { c_string((self.api.last_error)(std::ptr::null())) }.unwrap_or_default();
            bail!(
                "cannot create a session of `{}` on {threads} threads: {} ({message})",
                self.path.display(),
                self.status_text(status)
            );
        }
        Ok(Session {
            lib: self,
            raw,
            outputs: vec![RawOutput::SESSION_OWNED; self.outputs.len()],
            ran: false,
        })
    }
}

/// The address of a tensor's elements, which the C API reads in place.
fn data_ptr(data: &TensorData) -> *const c_void {
    with_data!(data, v => v.as_ptr().cast::<c_void>())
}

/// Finds the one prefix whose `PREFIX_session_create` the library exports, among the names of
/// its dynamic string table `dynstr`.
fn find_prefix(library: &libloading::Library, path: &Path, dynstr: &[u8]) -> Result<String> {
    let exported: Vec<String> = prefix_candidates(dynstr)
        .into_iter()
        .filter(|p| {
            let name = format!("{p}_session_create");
            // SAFETY: only the symbol's presence is checked; it is not called.
            unsafe { library.get::<*const c_void>(name.as_bytes()) }.is_ok()
        })
        .collect();
    match exported.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "`{}` exports no `PREFIX_session_create`: it is not a tcc model library",
            path.display()
        ),
        many => bail!(
            "`{}` exports the API of several models ({}); choose one with --prefix",
            path.display(),
            many.join(", ")
        ),
    }
}

/// Inputs bound to a model: the tensors, and the C descriptions of them that `run` takes.
pub struct Inputs {
    // The raw descriptions point into these; they are never moved out or changed.
    _tensors: Vec<Tensor>,
    _dims: Vec<Vec<i64>>,
    raw: Vec<RawTensor>,
    prefix: String,
}

/// A session of a loaded model library: its threads, arena and output buffers.
pub struct Session<'lib> {
    lib: &'lib ModelLib,
    raw: *mut RawSession,
    outputs: Vec<RawOutput>,
    ran: bool,
}

impl Session<'_> {
    /// The number of threads the session runs on.
    pub fn num_threads(&self) -> i32 {
        // SAFETY: a live session.
        unsafe { (self.lib.api.session_num_threads)(self.raw) }
    }

    /// Runs the model once on `inputs`, into session-owned output buffers (no copies: this is
    /// what `tcc bench` times). The outputs are read with [`Session::outputs`].
    pub fn run(&mut self, inputs: &Inputs) -> Result<()> {
        if inputs.prefix != self.lib.prefix || inputs.raw.len() != self.lib.inputs.len() {
            bail!("these inputs were bound to another model");
        }
        self.ran = false;
        for out in &mut self.outputs {
            *out = RawOutput::SESSION_OWNED;
        }
        // SAFETY: a live session used by this thread only; the input descriptions point to
        // live tensors of the sizes they state; every output asks for a session-owned buffer.
        let status = unsafe {
            (self.lib.api.run)(
                self.raw,
                inputs.raw.as_ptr(),
                inputs.raw.len() as i32,
                self.outputs.as_mut_ptr(),
                self.outputs.len() as i32,
            )
        };
        if status != 0 {
            // SAFETY: a live session; the message is NUL-terminated.
            let message = unsafe { c_string((self.lib.api.last_error)(self.raw)) };
            bail!(
                "running `{}` failed: {}: {}",
                self.lib.path.display(),
                self.lib.status_text(status),
                message.unwrap_or_default()
            );
        }
        self.ran = true;
        Ok(())
    }

    /// Copies the outputs of the last successful run into tensors, keyed by output name.
    pub fn outputs(&self) -> Result<Vec<(String, Tensor)>> {
        if !self.ran {
            bail!("no successful run yet: there are no outputs");
        }
        let mut result = Vec::new();
        for (info, out) in self.lib.outputs.iter().zip(&self.outputs) {
            let name = &info.name;
            let dtype = dtype_of_code(out.dtype).filter(|&d| d == info.dtype);
            let rank = usize::try_from(out.rank).ok().filter(|&r| r == info.rank);
            let (Some(dtype), Some(rank)) = (dtype, rank) else {
                return Err(self.lib.corrupt(format!(
                    "output `{name}` came back with dtype code {} and rank {}",
                    out.dtype, out.rank
                )));
            };
            let shape: Vec<usize> = out.dims[..rank]
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
                .collect();
            let elements = shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .filter(|n| n.checked_mul(dtype.size_bytes()) == Some(out.size as usize));
            if elements.is_none() || (out.data.is_null() && out.size > 0) {
                return Err(self.lib.corrupt(format!(
                    "output `{name}` has dims {shape:?} but {} bytes",
                    out.size
                )));
            }
            let bytes = if out.size == 0 {
                &[][..]
            } else {
                // SAFETY: a successful run leaves `size` bytes at `data`, valid until the next
                // run on this session, which needs `&mut self`.
                unsafe { std::slice::from_raw_parts(out.data as *const u8, out.size as usize) }
            };
            let data = TensorData::from_le_bytes(dtype, bytes)
                .ok_or_else(|| self.lib.corrupt(format!("output `{name}` is cut short")))?;
            let tensor = Tensor::new(shape, data).map_err(|e| self.lib.corrupt(e))?;
            result.push((name.clone(), tensor));
        }
        Ok(result)
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // SAFETY: a live session, freed once; no call on it is in progress.
        unsafe { (self.lib.api.session_free)(self.raw) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_read_from_string_tables() {
        let bytes = b"\0libc.so.6\0enc_session_create\0enc_run\0tcc_rt_session_create\0\
                      enc_session_create\0x\0";
        assert_eq!(prefix_candidates(bytes), vec!["enc", "tcc_rt"]);
        assert!(prefix_candidates(b"nothing here").is_empty());
        // A string that is not a C identifier is no candidate.
        assert!(prefix_candidates(b"\0a b_session_create\0").is_empty());
    }

    #[test]
    fn dtype_codes_round_trip() {
        for dtype in DType::ALL {
            assert_eq!(dtype_of_code(dtype_code(dtype)), Some(dtype));
        }
        assert_eq!(dtype_code(DType::F32), 1);
        assert_eq!(dtype_code(DType::Bool), 9);
        assert_eq!(dtype_of_code(0), None);
        assert_eq!(dtype_of_code(10), None);
    }
}
