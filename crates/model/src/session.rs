//! A session: the library's thread pool, arena and output buffers, and runs on it.

use crate::library::{c_string, RawSession};
use crate::{DType, Element, Error, Model, Result, TensorRef};
use tcc_runtime::abi::{Output as RawOutput, Status};

/// A session of a loaded model: its threads, activation arena and session-owned outputs. One
/// run at a time (`&mut self`); `Send`, so it can move to another thread between runs.
pub struct Session {
    model: Model,
    raw: *mut RawSession,
    outputs: Vec<RawOutput>,
}

// SAFETY: the C API allows a session to be used by any one thread at a time and freed by any
// thread; `&mut self` on every call keeps calls from overlapping.
unsafe impl Send for Session {}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("model", &self.model.path())
            .field("threads", &self.num_threads())
            .finish()
    }
}

impl Session {
    pub(crate) fn create(model: Model, threads: usize) -> Result<Session> {
        let inner = &model.inner;
        let threads = i32::try_from(threads).unwrap_or(i32::MAX);
        let mut raw = std::ptr::null_mut();
        // SAFETY: a valid out-pointer.
        let code = unsafe { (inner.api.session_create)(threads, &mut raw) };
        if code != 0 || raw.is_null() {
            // SAFETY: last_error(NULL) returns the calling thread's message.
            let message =
                unsafe { c_string((inner.api.last_error)(std::ptr::null())) }.unwrap_or_default();
            return Err(Error::Session {
                path: inner.path.clone(),
                threads,
                status: inner.status(code),
                message,
            });
        }
        let outputs = vec![RawOutput::SESSION_OWNED; inner.outputs.len()];
        Ok(Session {
            model,
            raw,
            outputs,
        })
    }

    /// The model this session runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The number of threads the session runs on.
    pub fn num_threads(&self) -> usize {
        // SAFETY: a live session.
        let n = unsafe { (self.model.inner.api.session_num_threads)(self.raw) };
        n.max(1) as usize
    }

    /// Runs the model once on `inputs` (in the model's input order; see [`Model::order`] for
    /// named ones) into session-owned buffers: no copy. The outputs are borrowed until the
    /// next run on this session.
    pub fn run(&mut self, inputs: &[TensorRef<'_>]) -> Result<Outputs<'_>> {
        for out in &mut self.outputs {
            *out = RawOutput::SESSION_OWNED;
        }
        self.call(inputs)?;
        self.outputs()
    }

    /// Runs the model once on `inputs` into the caller's buffers, one per output, each at
    /// least the output's size in bytes and aligned to its element size; returns each output's
    /// dims. A buffer too small is an [`Error::Buffers`] that gives every output's size, so
    /// the caller can grow them and retry.
    pub fn run_into(
        &mut self,
        inputs: &[TensorRef<'_>],
        buffers: &mut [&mut [u8]],
    ) -> Result<Vec<Vec<usize>>> {
        if buffers.len() != self.outputs.len() {
            return Err(Error::Buffers {
                what: format!(
                    "the model has {} outputs, but {} buffers were given",
                    self.outputs.len(),
                    buffers.len()
                ),
                needed: Vec::new(),
            });
        }
        for (out, buffer) in self.outputs.iter_mut().zip(buffers.iter_mut()) {
            *out = RawOutput::caller_owned(buffer.as_mut_ptr().cast(), buffer.len() as u64);
        }
        match self.call(inputs) {
            Err(Error::Run {
                status, message, ..
            }) if status.status == Some(Status::Capacity) => {
                return Err(Error::Buffers {
                    what: message,
                    needed: self.outputs.iter().map(|o| o.size).collect(),
                })
            }
            result => result?,
        }
        let outputs = self.outputs()?;
        Ok(outputs.iter().map(|o| o.dims().to_vec()).collect())
    }

    /// Checks `inputs` and calls the library's run.
    fn call(&mut self, inputs: &[TensorRef<'_>]) -> Result<()> {
        self.model.check(inputs)?;
        let inner = &self.model.inner;
        let raw: Vec<_> = inputs.iter().map(TensorRef::raw).collect();
        // SAFETY: a live session, used by this thread only (`&mut self`); the input
        // descriptions point to live tensors of the sizes they state; every output asks for a
        // session-owned buffer or points to a caller's buffer of the capacity it states.
        let code = unsafe {
            (inner.api.run)(
                self.raw,
                raw.as_ptr(),
                raw.len() as i32,
                self.outputs.as_mut_ptr(),
                self.outputs.len() as i32,
            )
        };
        if code != 0 {
            // SAFETY: a live session; the message is NUL-terminated.
            let message = unsafe { c_string((inner.api.last_error)(self.raw)) };
            return Err(Error::Run {
                path: inner.path.clone(),
                status: inner.status(code),
                message: message.unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// The outputs of the run that just succeeded, checked against the interface.
    fn outputs(&self) -> Result<Outputs<'_>> {
        let inner = &self.model.inner;
        let mut result = Vec::with_capacity(self.outputs.len());
        for (info, out) in inner.outputs.iter().zip(&self.outputs) {
            let name = &info.name;
            let dtype = DType::from_code(out.dtype).filter(|&d| d == info.dtype);
            let rank = usize::try_from(out.rank)
                .ok()
                .filter(|&r| r == info.dims.len());
            let (Some(dtype), Some(rank)) = (dtype, rank) else {
                return Err(inner.inconsistent(format!(
                    "output `{name}` came back with dtype code {} and rank {}",
                    out.dtype, out.rank
                )));
            };
            let dims: Vec<usize> = out.dims[..rank]
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
                .collect();
            let bytes = dims
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .and_then(|n| n.checked_mul(dtype.size() as usize));
            if bytes != Some(out.size as usize)
                || (out.data.is_null() && out.size > 0)
                || !(out.data as usize).is_multiple_of(dtype.size() as usize)
            {
                return Err(inner.inconsistent(format!(
                    "output `{name}` has dims {dims:?} but {} bytes at {:p}",
                    out.size, out.data
                )));
            }
            let bytes = if out.size == 0 {
                &[][..]
            } else {
                // SAFETY: a successful run leaves `size` bytes at `data`, valid until the next
                // run on this session (which needs `&mut self`) or, for a caller's buffer,
                // borrowed from it by the caller's call.
                unsafe { std::slice::from_raw_parts(out.data as *const u8, out.size as usize) }
            };
            result.push(OutputRef {
                name,
                dtype,
                dims,
                bytes,
            });
        }
        Ok(Outputs { outputs: result })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: a live session, freed once; no call on it is in progress (`&mut self`).
        unsafe { (self.model.inner.api.session_free)(self.raw) };
    }
}

/// The outputs of a run, in the model's output order, borrowed from the session.
#[derive(Debug)]
pub struct Outputs<'s> {
    outputs: Vec<OutputRef<'s>>,
}

impl<'s> Outputs<'s> {
    /// The number of outputs.
    pub fn len(&self) -> usize {
        self.outputs.len()
    }

    /// Whether the model has no outputs.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Output `i`.
    pub fn get(&self, i: usize) -> Option<&OutputRef<'s>> {
        self.outputs.get(i)
    }

    /// The output named `name`.
    pub fn by_name(&self, name: &str) -> Option<&OutputRef<'s>> {
        self.outputs.iter().find(|o| o.name == name)
    }

    /// Every output, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, OutputRef<'s>> {
        self.outputs.iter()
    }
}

/// One output of a run: its name, dtype, dims and bytes.
#[derive(Clone, Debug)]
pub struct OutputRef<'s> {
    name: &'s str,
    dtype: DType,
    dims: Vec<usize>,
    bytes: &'s [u8],
}

impl<'s> OutputRef<'s> {
    /// The ONNX output name.
    pub fn name(&self) -> &'s str {
        self.name
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dims.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The elements' bytes (little-endian, row-major).
    pub fn bytes(&self) -> &'s [u8] {
        self.bytes
    }

    /// The elements as `T`, which must be the output's dtype.
    pub fn as_slice<T: Element>(&self) -> Result<&'s [T]> {
        if T::DTYPE != self.dtype {
            return Err(Error::OutputDtype {
                name: self.name.to_owned(),
                actual: self.dtype,
                asked: T::DTYPE,
            });
        }
        let len = self.bytes.len() / std::mem::size_of::<T>();
        if len == 0 {
            return Ok(&[]);
        }
        // SAFETY: the dtype matches `T` (same size, valid bit patterns), `outputs()` checked
        // the size and the alignment, and the bytes are borrowed for 's.
        Ok(unsafe { std::slice::from_raw_parts(self.bytes.as_ptr().cast::<T>(), len) })
    }

    /// The elements as an ndarray view of the output's dims.
    #[cfg(feature = "ndarray")]
    pub fn view<T: Element>(&self) -> Result<ndarray::ArrayViewD<'s, T>> {
        let data = self.as_slice::<T>()?;
        ndarray::ArrayViewD::from_shape(self.dims.as_slice(), data).map_err(|e| Error::Layout {
            what: format!("output `{}`: {e}", self.name),
        })
    }
}
