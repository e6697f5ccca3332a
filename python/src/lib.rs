//! `tcc._tcc`: the native module of the Python package, a thin layer over `tcc-model`.
//!
//! It holds a loaded model library and a pool of sessions ([`Library`]) and runs it on numpy
//! arrays: inputs are read in place (the Python layer, `tcc/__init__.py`, has already made
//! each one a C-contiguous array of the model's dtype, converting where it had to), the GIL
//! is released for the whole run, and each output is copied once from the session's buffer
//! into a new numpy array. Errors become the Python exceptions the package documents:
//! `TypeError` for a wrong dtype, `ValueError` for wrong ranks, dims or counts,
//! `FileNotFoundError` for a missing library, `tcc.LoadError` for a file that is not one,
//! `tcc.RunError` for a run the library refused for any other reason, each with the
//! message of `tcc-model` or the C API.

use numpy::{
    dtype, Element as NumpyElement, PyArray1, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use tcc_model::{DType, Dim, Element, Error, Model, OutputRef, Session, Status, TensorRef};

pyo3::create_exception!(
    _tcc,
    LoadError,
    PyOSError,
    "A file that is not a loadable tcc model library (damaged, foreign, or several models)."
);
pyo3::create_exception!(
    _tcc,
    RunError,
    PyRuntimeError,
    "A run that the model library refused or failed for a reason other than its inputs' \
     dtypes and shapes (an index out of range, out of memory, an internal error)."
);

/// The Python exception for a `tcc-model` error.
fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match &error {
        Error::NotFound { .. } => PyFileNotFoundError::new_err(message),
        Error::NotAModel { .. } | Error::SeveralModels { .. } | Error::Inconsistent { .. } => {
            LoadError::new_err(message)
        }
        Error::Dtype { .. } | Error::OutputDtype { .. } => PyTypeError::new_err(message),
        Error::InputCount { .. }
        | Error::MissingInput { .. }
        | Error::UnknownInput { .. }
        | Error::Shape { .. }
        | Error::Layout { .. }
        | Error::Buffers { .. } => PyValueError::new_err(message),
        Error::Run { status, .. } => match status.status {
            Some(Status::Dtype) => PyTypeError::new_err(message),
            Some(Status::Shape) => PyValueError::new_err(message),
            _ => RunError::new_err(message),
        },
        Error::Session { .. } => RunError::new_err(message),
    }
}

/// The numpy dtype of each tcc dtype the package takes and gives (bf16 has none in numpy:
/// such tensors travel as their raw uint16 bits).
fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::F16 => "float16",
        DType::BF16 => "uint16",
        DType::I64 => "int64",
        DType::I32 => "int32",
        DType::I8 => "int8",
        DType::U8 => "uint8",
        DType::Bool => "bool",
    }
}

/// Whether `array`'s dtype is the numpy dtype of `d`.
fn numpy_dtype_is(py: Python<'_>, array: &Bound<'_, PyUntypedArray>, d: DType) -> bool {
    let have = array.dtype();
    let want = match d {
        DType::F32 => dtype::<f32>(py),
        DType::F64 => dtype::<f64>(py),
        DType::F16 => dtype::<half::f16>(py),
        DType::BF16 => dtype::<u16>(py),
        DType::I64 => dtype::<i64>(py),
        DType::I32 => dtype::<i32>(py),
        DType::I8 => dtype::<i8>(py),
        DType::U8 => dtype::<u8>(py),
        DType::Bool => dtype::<bool>(py),
    };
    have.is_equiv_to(&want)
}

/// An output of a run, described by plain values so it can leave the GIL-free section: the
/// session it points into is kept out of the pool until the arrays are made.
struct RawOutput {
    dtype: DType,
    dims: Vec<usize>,
    data: *const u8,
    len: usize,
}

// SAFETY: the pointer is only read, under the GIL, while the session that owns the bytes is
// held out of the pool by the reading thread (see `Library::run`).
unsafe impl Send for RawOutput {}

impl RawOutput {
    fn of(o: &OutputRef<'_>) -> RawOutput {
        RawOutput {
            dtype: o.dtype(),
            dims: o.dims().to_vec(),
            data: o.bytes().as_ptr(),
            len: o.bytes().len(),
        }
    }

    /// A new numpy array holding a copy of the output.
    ///
    /// # Safety
    /// The `len` bytes at `data` must be live and hold elements of `dtype`, aligned.
    unsafe fn to_numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        /// Copies `len` bytes of `T`s at `data` into a new array of `dims`.
        ///
        /// # Safety
        /// As for `to_numpy`, with `T` the element type.
        unsafe fn copy<'py, T: NumpyElement + Copy>(
            py: Python<'py>,
            out: &RawOutput,
        ) -> PyResult<Bound<'py, PyAny>> {
            let n = out.len / std::mem::size_of::<T>();
            let slice: &[T] = if n == 0 {
                &[]
            } else {
                // SAFETY: the caller promises live, aligned elements of T.
                unsafe { std::slice::from_raw_parts(out.data.cast::<T>(), n) }
            };
            let flat = PyArray1::from_slice(py, slice);
            Ok(flat.reshape(out.dims.as_slice())?.into_any())
        }
        // SAFETY (each): the caller's promise, with the Rust type of the dtype.
        unsafe {
            match self.dtype {
                DType::F32 => copy::<f32>(py, self),
                DType::F64 => copy::<f64>(py, self),
                DType::F16 => copy::<half::f16>(py, self),
                DType::BF16 => copy::<u16>(py, self),
                DType::I64 => copy::<i64>(py, self),
                DType::I32 => copy::<i32>(py, self),
                DType::I8 => copy::<i8>(py, self),
                DType::U8 => copy::<u8>(py, self),
                DType::Bool => copy::<bool>(py, self),
            }
        }
    }
}

/// A loaded model library and its sessions. Any number of Python threads may call `run` at
/// once: each call takes a free session from the pool (waiting, without the GIL, while all
/// are busy), so up to `sessions` runs go at the same time and the rest queue.
#[pyclass(frozen, module = "tcc._tcc")]
struct Library {
    model: Model,
    pool: Mutex<Vec<Session>>,
    freed: Condvar,
    sessions: usize,
    threads: usize,
}

/// Gives a session back to the pool when dropped, so an error or a panic between taking and
/// returning it cannot lose it.
struct Taken<'l> {
    library: &'l Library,
    session: Option<Session>,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.library.lock().push(session);
            self.library.freed.notify_one();
        }
    }
}

impl Library {
    fn lock(&self) -> MutexGuard<'_, Vec<Session>> {
        // A panic while holding the lock leaves the vector itself intact.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a free session, waiting for one.
    fn take(&self) -> Taken<'_> {
        let mut pool = self.lock();
        loop {
            if let Some(session) = pool.pop() {
                return Taken {
                    library: self,
                    session: Some(session),
                };
            }
            pool = self.freed.wait(pool).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The interface of a tensor for Python: name, numpy dtype name, tcc dtype name, and per axis
/// the fixed size (or -1) and the symbol (or None; None with -1 is a computed size).
type Interface = (
    String,
    &'static str,
    &'static str,
    Vec<(i64, Option<String>)>,
);

fn interface(name: &str, dtype: DType, dims: &[Dim]) -> Interface {
    let dims = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => (*n as i64, None),
            Dim::Symbol(s) => (-1, Some(s.clone())),
            _ => (-1, None),
        })
        .collect();
    (name.to_owned(), dtype_name(dtype), dtype.name(), dims)
}

#[pymethods]
impl Library {
    /// Loads the library at `path` and creates `sessions` sessions of `threads` threads each
    /// (0: the library's default, TCC_NUM_THREADS or the physical cores).
    #[new]
    #[pyo3(signature = (path, threads = 0, sessions = 1, prefix = None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        threads: usize,
        sessions: usize,
        prefix: Option<String>,
    ) -> PyResult<Library> {
        if sessions == 0 {
            return Err(PyValueError::new_err("sessions must be at least 1"));
        }
        py.detach(|| {
            let model = Model::load_with_prefix(&path, prefix.as_deref())?;
            let pool = (0..sessions)
                .map(|_| model.session(threads))
                .collect::<Result<Vec<_>, _>>()?;
            let threads = pool[0].num_threads();
            Ok(Library {
                model,
                pool: Mutex::new(pool),
                freed: Condvar::new(),
                sessions,
                threads,
            })
        })
        .map_err(to_py)
    }

    /// The library's path.
    #[getter]
    fn path(&self) -> PathBuf {
        self.model.path().to_path_buf()
    }

    /// The prefix of the library's C functions.
    #[getter]
    fn prefix(&self) -> &str {
        self.model.prefix()
    }

    /// The threads each session runs on.
    #[getter]
    fn threads(&self) -> usize {
        self.threads
    }

    /// The number of sessions (runs that can go at once).
    #[getter]
    fn sessions(&self) -> usize {
        self.sessions
    }

    /// The inputs, in order: `(name, numpy dtype, tcc dtype, [(size or -1, symbol or None)])`.
    fn inputs(&self) -> Vec<Interface> {
        let inputs = self.model.inputs();
        inputs
            .iter()
            .map(|i| interface(&i.name, i.dtype, &i.dims))
            .collect()
    }

    /// The outputs, in order, as `inputs` describes them.
    fn outputs(&self) -> Vec<Interface> {
        let outputs = self.model.outputs();
        outputs
            .iter()
            .map(|o| interface(&o.name, o.dtype, &o.dims))
            .collect()
    }

    /// Runs the model on `arrays`, its inputs in order, each C-contiguous with the model's
    /// dtype (read in place); returns the outputs in order as new arrays. The GIL is released
    /// from the moment the inputs are described until the outputs are copied.
    fn run<'py>(
        &self,
        py: Python<'py>,
        arrays: Vec<Bound<'py, PyUntypedArray>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let infos = self.model.inputs();
        let mut tensors = Vec::with_capacity(arrays.len());
        for (i, array) in arrays.iter().enumerate() {
            let name = infos.get(i).map_or("?", |info| info.name.as_str());
            let dtype = infos
                .get(i)
                .map(|info| info.dtype)
                .filter(|&d| numpy_dtype_is(py, array, d))
                .or_else(|| {
                    DType::ALL
                        .into_iter()
                        .find(|&d| d != DType::BF16 && numpy_dtype_is(py, array, d))
                })
                .ok_or_else(|| {
                    PyTypeError::new_err(format!(
                        "input `{name}` has numpy dtype {}, which no model takes",
                        array.dtype()
                    ))
                })?;
            if !array.is_c_contiguous() {
                return Err(PyValueError::new_err(format!(
                    "input `{name}` is not C-contiguous"
                )));
            }
            let dims = array.shape().to_vec();
            let elements: usize = dims.iter().product();
            let len = elements * dtype.size() as usize;
            let bytes: &[u8] = if len == 0 {
                &[]
            } else {
                // SAFETY: a C-contiguous array holds `len` bytes at its data pointer; `arrays`
                // keeps it alive for this call. (Python code that writes to it from another
                // thread during the run races with the run, as with any library that reads
                // numpy buffers without the GIL.)
                unsafe {
                    std::slice::from_raw_parts(
                        (*array.as_array_ptr()).fields.data as *const u8,
                        len,
                    )
                }
            };
            tensors.push(TensorRef::from_bytes(dtype, &dims, bytes).map_err(to_py)?);
        }
        let (taken, raw) = py.detach(|| {
            let mut taken = self.take();
            let session = taken.session.as_mut().expect("a taken session");
            let raw = session
                .run(&tensors)
                .map(|outputs| outputs.iter().map(RawOutput::of).collect::<Vec<_>>());
            (taken, raw)
        });
        let raw = raw.map_err(to_py)?;
        // SAFETY: `taken` holds the session whose buffers the outputs point into, out of the
        // pool, until the copies are made.
        let result = raw
            .iter()
            .map(|o| unsafe { o.to_numpy(py) })
            .collect::<PyResult<Vec<_>>>();
        drop(taken);
        result
    }
}

/// Checks at compile time that the types the module hands across threads may go.
#[allow(dead_code)]
fn assert_send() {
    fn send<T: Send>() {}
    send::<Session>();
    send::<TensorRef<'static>>();
    send::<RawOutput>();
    let _ = <f32 as Element>::DTYPE;
}

/// The native module.
#[pymodule]
fn _tcc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Library>()?;
    m.add("LoadError", m.py().get_type::<LoadError>())?;
    m.add("RunError", m.py().get_type::<RunError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Where this checkout's compiler is built, for `tcc.compile` to find it.
    m.add("SOURCE_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/.."))?;
    Ok(())
}
