//! A loaded model library: its API functions resolved once, and its interface.

use crate::error::StatusText;
use crate::{DType, Error, Result, Session, Status, TensorRef};
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tcc_runtime::abi::{Output as RawOutput, Tensor as RawTensor, MAX_RANK};

/// The opaque `tcc_session`.
#[repr(C)]
pub(crate) struct RawSession {
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
pub(crate) struct Api {
    pub(crate) session_create: CreateFn,
    pub(crate) session_free: FreeFn,
    pub(crate) session_num_threads: NumThreadsFn,
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
    output_dim: DimFn,
    output_dim_symbol: DimSymbolFn,
    pub(crate) run: RunFn,
    pub(crate) last_error: LastErrorFn,
    status_string: StatusStringFn,
}

/// One axis of a model input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A size fixed at compile time.
    Fixed(usize),
    /// A symbol (such as `batch`), bound by the sizes of each run's inputs; it may be 0 where
    /// the model's ops allow it.
    Symbol(String),
    /// An output size computed from several symbols (such as `past + seq`); a run gives its
    /// value. Inputs have none.
    Computed,
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbol(s) => f.write_str(s),
            Dim::Computed => f.write_str("?"),
        }
    }
}

/// A model input, as the library describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputInfo {
    /// The ONNX input name.
    pub name: String,
    /// The element type.
    pub dtype: DType,
    /// One entry per axis.
    pub dims: Vec<Dim>,
}

impl std::fmt::Display for InputInfo {
    /// `i64[batch, seq]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims: Vec<String> = self.dims.iter().map(Dim::to_string).collect();
        write!(f, "{}[{}]", self.dtype.name(), dims.join(", "))
    }
}

/// A model output, as the library describes it (a run gives the values of its dims).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputInfo {
    /// The ONNX output name.
    pub name: String,
    /// The element type.
    pub dtype: DType,
    /// One entry per axis.
    pub dims: Vec<Dim>,
}

impl std::fmt::Display for OutputInfo {
    /// `f32[batch, seq, 384]`, with `?` for a size computed from several symbols.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims: Vec<String> = self.dims.iter().map(Dim::to_string).collect();
        write!(f, "{}[{}]", self.dtype.name(), dims.join(", "))
    }
}

/// What a [`Model`] shares with its clones and sessions.
pub(crate) struct Inner {
    pub(crate) api: Api,
    pub(crate) path: PathBuf,
    pub(crate) prefix: String,
    pub(crate) inputs: Vec<InputInfo>,
    pub(crate) outputs: Vec<OutputInfo>,
    // Dropped last: every function pointer above points into it.
    _library: libloading::Library,
}

/// A loaded model library and its interface. Cheap to clone; `Send + Sync` (the C API's
/// interface queries may be called from any thread, and sessions are separate objects).
#[derive(Clone)]
pub struct Model {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.inner.path)
            .field("prefix", &self.inner.prefix)
            .field("inputs", &self.inner.inputs)
            .field("outputs", &self.inner.outputs)
            .finish()
    }
}

/// A NUL-terminated string from the library, or `None` for NULL or text that is not UTF-8.
///
/// # Safety
/// `ptr` must be NULL or point to a live NUL-terminated string.
pub(crate) unsafe fn c_string(ptr: *const c_char) -> Option<String> {
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

/// Resolves `PREFIX_name` as a function of type `T`, or says which is missing.
///
/// # Safety
/// `T` must be the function type the library's `PREFIX_name` has.
unsafe fn symbol<T: Copy>(
    library: &libloading::Library,
    prefix: &str,
    name: &str,
) -> Result<T, String> {
    let full = format!("{prefix}_{name}");
    // SAFETY: the caller promises the type.
    let f = unsafe { library.get::<T>(full.as_bytes()) }
        .map_err(|_| format!("it does not export `{full}`"))?;
    Ok(*f)
}

impl Model {
    /// Loads the model library at `path`, finding the prefix of its functions in the file
    /// (it must export exactly one model API).
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with_prefix(path, None)
    }

    /// Loads the model library at `path`; `prefix` names the model's functions
    /// (`PREFIX_run`, ...), needed only for a library with several models linked in.
    pub fn load_with_prefix(path: impl AsRef<Path>, prefix: Option<&str>) -> Result<Model> {
        let path = path.as_ref();
        let not_a_model = |reason: String| Error::NotAModel {
            path: path.to_path_buf(),
            reason,
        };
        if !path.exists() {
            return Err(Error::NotFound {
                path: path.to_path_buf(),
            });
        }
        if path.is_dir() {
            return Err(not_a_model("it is a directory".to_owned()));
        }
        // dlopen trusts the file: a truncated or damaged library would crash it (SIGBUS,
        // SIGSEGV) instead of failing. The headers are checked first.
        let checked = crate::elf::check(path).map_err(not_a_model)?;
        // A bare file name would make dlopen search the library path instead of this file.
        let path_for_dlopen = if path.components().count() == 1 {
            Path::new(".").join(path)
        } else {
            path.to_path_buf()
        };
        // SAFETY: loading runs the library's initialisers. A tcc model library has none besides
        // the C runtime's; loading some other library is the caller's request.
        let library = unsafe { libloading::Library::new(&path_for_dlopen) }
            .map_err(|e| not_a_model(format!("dlopen refused it: {e}")))?;
        let prefix = match prefix {
            Some(p) => p.to_owned(),
            None => find_prefix(&library, path, &checked.dynstr)?,
        };
        // SAFETY: every symbol is resolved with the type tcc_model.h declares for it.
        let api = (|| unsafe {
            Ok::<_, String>(Api {
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
                output_dim: symbol(&library, &prefix, "output_dim")?,
                output_dim_symbol: symbol(&library, &prefix, "output_dim_symbol")?,
                run: symbol(&library, &prefix, "run")?,
                last_error: symbol(&library, &prefix, "last_error")?,
                status_string: symbol(&library, &prefix, "status_string")?,
            })
        })()
        .map_err(|e| {
            not_a_model(format!(
                "it is not a tcc model library with prefix `{prefix}`: {e}"
            ))
        })?;
        let mut inner = Inner {
            api,
            path: path.to_path_buf(),
            prefix,
            inputs: Vec::new(),
            outputs: Vec::new(),
            _library: library,
        };
        inner.inputs = inner.query_inputs()?;
        inner.outputs = inner.query_outputs()?;
        Ok(Model {
            inner: Arc::new(inner),
        })
    }

    /// The library's path, as given to [`Model::load`].
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The prefix of the library's API functions.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The model's inputs, in the order [`Session::run`] takes them.
    pub fn inputs(&self) -> &[InputInfo] {
        &self.inner.inputs
    }

    /// The model's outputs, in the order runs return them.
    pub fn outputs(&self) -> &[OutputInfo] {
        &self.inner.outputs
    }

    /// Creates a session on `threads` threads (the caller's included); 0 means the library's
    /// default: `TCC_NUM_THREADS` if set, else the physical cores.
    pub fn session(&self, threads: usize) -> Result<Session> {
        Session::create(self.clone(), threads)
    }

    /// Puts named tensors in the model's input order. Every input must be there; a name that
    /// is not an input is an [`Error::UnknownInput`] unless `ignore_unknown` (an archive that
    /// also holds reference outputs can then be passed as it is).
    pub fn order<'a>(
        &self,
        named: impl IntoIterator<Item = (&'a str, TensorRef<'a>)>,
        ignore_unknown: bool,
    ) -> Result<Vec<TensorRef<'a>>> {
        let mut by_name: HashMap<&str, TensorRef<'a>> = HashMap::new();
        let mut given = Vec::new();
        for (name, tensor) in named {
            if !ignore_unknown && !self.inner.inputs.iter().any(|i| i.name == name) {
                return Err(Error::UnknownInput {
                    name: name.to_owned(),
                    inputs: self.inner.input_names(),
                });
            }
            given.push(format!("{name} {}{:?}", tensor.dtype().name(), {
                tensor.dims().collect::<Vec<_>>()
            }));
            by_name.insert(name, tensor);
        }
        self.inner
            .inputs
            .iter()
            .map(|info| {
                by_name
                    .remove(info.name.as_str())
                    .ok_or_else(|| Error::MissingInput {
                        name: info.name.clone(),
                        expected: info.to_string(),
                        given: if given.is_empty() {
                            "nothing".to_owned()
                        } else {
                            given.join(", ")
                        },
                    })
            })
            .collect()
    }

    /// Checks `inputs` (in model order) against the interface: their count, and each one's
    /// dtype, rank, fixed dims and symbols (a symbol's sizes must agree across inputs).
    pub fn check(&self, inputs: &[TensorRef<'_>]) -> Result<()> {
        let model = &self.inner.inputs;
        if inputs.len() != model.len() {
            return Err(Error::InputCount {
                expected: model.len(),
                got: inputs.len(),
                names: self.inner.input_names(),
            });
        }
        let mut symbols: HashMap<&str, (usize, &str)> = HashMap::new();
        for (info, t) in model.iter().zip(inputs) {
            let dims: Vec<usize> = t.dims().collect();
            let shape_error = |detail: String| Error::Shape {
                name: info.name.clone(),
                expected: info.to_string(),
                dims: dims.clone(),
                detail,
            };
            if t.dtype() != info.dtype {
                return Err(Error::Dtype {
                    name: info.name.clone(),
                    expected: info.to_string(),
                    got: t.dtype(),
                });
            }
            if dims.len() != info.dims.len() {
                return Err(shape_error(String::new()));
            }
            for (&size, dim) in dims.iter().zip(&info.dims) {
                match dim {
                    Dim::Fixed(fixed) if size != *fixed => return Err(shape_error(String::new())),
                    Dim::Fixed(_) | Dim::Computed => {}
                    Dim::Symbol(symbol) => {
                        let (bound, by) = *symbols.entry(symbol).or_insert((size, &info.name));
                        if bound != size {
                            return Err(shape_error(format!(
                                ": `{symbol}` is {size} here but {bound} in input `{by}`"
                            )));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Inner {
    /// The input names, comma-separated.
    fn input_names(&self) -> String {
        let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        names.join(", ")
    }

    /// An error about the library's own answers.
    pub(crate) fn inconsistent(&self, what: String) -> Error {
        Error::Inconsistent {
            path: self.path.clone(),
            prefix: self.prefix.clone(),
            what,
        }
    }

    /// The API's text for a status code.
    pub(crate) fn status(&self, code: i32) -> StatusText {
        // SAFETY: status_string takes any code and returns a constant string.
        let text = unsafe { c_string((self.api.status_string)(code)) }.unwrap_or_default();
        StatusText {
            status: Status::from_code(code),
            code,
            text,
        }
    }

    fn query_inputs(&self) -> Result<Vec<InputInfo>> {
        // SAFETY (for every call below): the API's queries take any index and have no
        // preconditions; returned names live as long as the library.
        let n = unsafe { (self.api.num_inputs)() };
        let mut inputs = Vec::new();
        for i in 0..n.max(0) {
            let name = unsafe { c_string((self.api.input_name)(i)) }
                .ok_or_else(|| self.inconsistent(format!("input {i} has no name")))?;
            let code = unsafe { (self.api.input_dtype)(i) };
            let dtype = DType::from_code(code).ok_or_else(|| {
                self.inconsistent(format!("input `{name}` has dtype code {code}"))
            })?;
            let rank = unsafe { (self.api.input_rank)(i) };
            if rank < 0 {
                return Err(self.inconsistent(format!("input `{name}` has rank {rank}")));
            }
            let mut dims = Vec::new();
            for axis in 0..rank {
                let size = unsafe { (self.api.input_dim)(i, axis) };
                dims.push(if size >= 0 {
                    Dim::Fixed(size as usize)
                } else {
                    let symbol = unsafe { c_string((self.api.input_dim_symbol)(i, axis)) }
                        .ok_or_else(|| {
                            self.inconsistent(format!("input `{name}` axis {axis} has no size"))
                        })?;
                    Dim::Symbol(symbol)
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
                .ok_or_else(|| self.inconsistent(format!("output {i} has no name")))?;
            let code = unsafe { (self.api.output_dtype)(i) };
            let dtype = DType::from_code(code).ok_or_else(|| {
                self.inconsistent(format!("output `{name}` has dtype code {code}"))
            })?;
            let rank = unsafe { (self.api.output_rank)(i) };
            if !(0..=MAX_RANK as i32).contains(&rank) {
                return Err(self.inconsistent(format!("output `{name}` has rank {rank}")));
            }
            let mut dims = Vec::new();
            for axis in 0..rank {
                let size = unsafe { (self.api.output_dim)(i, axis) };
                dims.push(if size >= 0 {
                    Dim::Fixed(size as usize)
                } else {
                    match unsafe { c_string((self.api.output_dim_symbol)(i, axis)) } {
                        Some(symbol) => Dim::Symbol(symbol),
                        None => Dim::Computed,
                    }
                });
            }
            outputs.push(OutputInfo { name, dtype, dims });
        }
        Ok(outputs)
    }
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
        [] => Err(Error::NotAModel {
            path: path.to_path_buf(),
            reason: "it exports no `PREFIX_session_create`: it is not a tcc model library"
                .to_owned(),
        }),
        many => Err(Error::SeveralModels {
            path: path.to_path_buf(),
            prefixes: many.to_vec(),
        }),
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
    fn inputs_print_as_the_ir_spells_them() {
        let info = InputInfo {
            name: "input_ids".into(),
            dtype: DType::I64,
            dims: vec![Dim::Symbol("batch".into()), Dim::Fixed(128)],
        };
        assert_eq!(info.to_string(), "i64[batch, 128]");
    }
}
