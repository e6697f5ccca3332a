//! Inputs as the caller lends them: a dtype, dims and borrowed bytes, read in place.

use crate::{DType, Error, Result};

/// An element type that a model's tensors can hold, with its C API dtype.
///
/// # Safety
/// `DTYPE.size()` must be `size_of::<Self>()`, and every bit pattern the runtime writes for
/// `DTYPE` must be a valid `Self`.
pub unsafe trait Element: Copy + 'static {
    /// The dtype of this element type.
    const DTYPE: DType;
}

// SAFETY (each): the sizes agree, and every bit pattern of the size is a valid value, except
// for bool, whose outputs the runtime writes as 0 or 1 only.
unsafe impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
unsafe impl Element for f64 {
    const DTYPE: DType = DType::F64;
}
unsafe impl Element for i64 {
    const DTYPE: DType = DType::I64;
}
unsafe impl Element for i32 {
    const DTYPE: DType = DType::I32;
}
unsafe impl Element for i8 {
    const DTYPE: DType = DType::I8;
}
unsafe impl Element for u8 {
    const DTYPE: DType = DType::U8;
}
unsafe impl Element for bool {
    const DTYPE: DType = DType::Bool;
}

/// A dense, row-major (C order) tensor borrowed from the caller: what [`crate::Session::run`]
/// takes, read in place (no copy).
#[derive(Clone, Debug)]
pub struct TensorRef<'a> {
    dtype: DType,
    dims: Vec<i64>,
    bytes: &'a [u8],
}

/// The element count of `dims`, if it does not overflow.
fn elements(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

impl<'a> TensorRef<'a> {
    /// The elements `data` with dims `dims`; their product must be `data.len()`.
    pub fn new<T: Element>(data: &'a [T], dims: &[usize]) -> Result<TensorRef<'a>> {
        if elements(dims) != Some(data.len()) {
            return Err(Error::Layout {
                what: format!(
                    "dims {dims:?} do not hold the {} elements given",
                    data.len()
                ),
            });
        }
        // SAFETY: `T: Element` is plain data of `size_of::<T>()` bytes; the slice covers
        // exactly `data`, and borrows it for 'a.
        let bytes = unsafe {
            std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data))
        };
        Ok(TensorRef {
            dtype: T::DTYPE,
            dims: dims.iter().map(|&d| d as i64).collect(),
            bytes,
        })
    }

    /// A tensor of `dtype` (any, f16 and bf16 included) from its little-endian bytes, which
    /// must be exactly the elements of `dims` and (unless empty) aligned to the element size.
    pub fn from_bytes(dtype: DType, dims: &[usize], bytes: &'a [u8]) -> Result<TensorRef<'a>> {
        let size = dtype.size() as usize;
        if elements(dims).and_then(|n| n.checked_mul(size)) != Some(bytes.len()) {
            return Err(Error::Layout {
                what: format!(
                    "{} bytes are not the {} elements of dims {dims:?}",
                    bytes.len(),
                    dtype.name()
                ),
            });
        }
        if !bytes.is_empty() && !(bytes.as_ptr() as usize).is_multiple_of(size) {
            return Err(Error::Layout {
                what: format!(
                    "the data of a {} tensor must be aligned to {size} bytes",
                    dtype.name()
                ),
            });
        }
        Ok(TensorRef {
            dtype,
            dims: dims.iter().map(|&d| d as i64).collect(),
            bytes,
        })
    }

    /// An ndarray view in standard (C) layout, read in place; other layouts are refused
    /// (make one with `as_standard_layout()`).
    #[cfg(feature = "ndarray")]
    pub fn from_array<T: Element, D: ndarray::Dimension>(
        view: ndarray::ArrayView<'a, T, D>,
    ) -> Result<TensorRef<'a>> {
        let dims = view.shape().to_vec();
        let data = view.to_slice().ok_or_else(|| Error::Layout {
            what: format!(
                "an array of shape {dims:?} is not in standard (C) layout; use as_standard_layout()"
            ),
        })?;
        TensorRef::new(data, &dims)
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dims.
    pub fn dims(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.dims.iter().map(|&d| d as usize)
    }

    /// The C API's description of this tensor, valid while `self` lives.
    pub(crate) fn raw(&self) -> tcc_runtime::abi::Tensor {
        tcc_runtime::abi::Tensor {
            dtype: self.dtype as i32,
            rank: self.dims.len() as i32,
            dims: self.dims.as_ptr(),
            // An empty tensor has no data to point to (the C API takes NULL for it).
            data: if self.bytes.is_empty() {
                std::ptr::null()
            } else {
                self.bytes.as_ptr().cast()
            },
        }
    }
}
