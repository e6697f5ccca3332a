//! Concrete tensors: the values of constants and of the interpreter.

use crate::dtype::DType;
use half::{bf16, f16};
use std::fmt;

/// The elements of a tensor, in row-major order, one variant per [`DType`].
#[derive(Clone, PartialEq)]
pub enum TensorData {
    /// `f32` elements.
    F32(Vec<f32>),
    /// `f64` elements.
    F64(Vec<f64>),
    /// `f16` elements.
    F16(Vec<f16>),
    /// `bf16` elements.
    BF16(Vec<bf16>),
    /// `i64` elements.
    I64(Vec<i64>),
    /// `i32` elements.
    I32(Vec<i32>),
    /// `i8` elements.
    I8(Vec<i8>),
    /// `u8` elements.
    U8(Vec<u8>),
    /// `bool` elements.
    Bool(Vec<bool>),
}

/// Applies `$body` to the vector inside any [`TensorData`] variant.
#[macro_export]
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::TensorData::F32($v) => $body,
            $crate::TensorData::F64($v) => $body,
            $crate::TensorData::F16($v) => $body,
            $crate::TensorData::BF16($v) => $body,
            $crate::TensorData::I64($v) => $body,
            $crate::TensorData::I32($v) => $body,
            $crate::TensorData::I8($v) => $body,
            $crate::TensorData::U8($v) => $body,
            $crate::TensorData::Bool($v) => $body,
        }
    };
}

/// A scalar element type that a [`TensorData`] can hold.
pub trait Element: Copy + PartialEq + fmt::Debug + Send + Sync + 'static {
    /// The dtype of this element type.
    const DTYPE: DType;
    /// Converts to f64 (bool is 0 or 1).
    fn to_f64(self) -> f64;
    /// Converts to i64: floats truncate toward zero, bool is 0 or 1.
    fn to_i64(self) -> i64;
    /// Converts from f64 as ONNX `Cast` does: floats round to nearest,
    /// integers truncate toward zero and wrap, bool is `v != 0`.
    fn from_f64(v: f64) -> Self;
    /// Converts from i64: integers wrap, floats round to nearest, bool is `v != 0`.
    fn from_i64(v: i64) -> Self;
    /// Wraps a vector of this element type.
    fn wrap(v: Vec<Self>) -> TensorData;
    /// Borrows the vector if `data` holds this element type.
    fn slice(data: &TensorData) -> Option<&[Self]>;
}

macro_rules! float_element {
    ($t:ty, $dt:ident, $to:expr, $from:expr) => {
        impl Element for $t {
            const DTYPE: DType = DType::$dt;
            fn to_f64(self) -> f64 {
                $to(self)
            }
            fn to_i64(self) -> i64 {
                $to(self) as i64
            }
            fn from_f64(v: f64) -> Self {
                $from(v)
            }
            fn from_i64(v: i64) -> Self {
                $from(v as f64)
            }
            fn wrap(v: Vec<Self>) -> TensorData {
                TensorData::$dt(v)
            }
            fn slice(data: &TensorData) -> Option<&[Self]> {
                match data {
                    TensorData::$dt(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}

float_element!(f32, F32, |x: f32| x as f64, |v: f64| v as f32);
float_element!(f64, F64, |x: f64| x, |v: f64| v);
float_element!(f16, F16, |x: f16| x.to_f64(), f16_from_f64);
float_element!(bf16, BF16, |x: bf16| x.to_f64(), bf16_from_f64);

/// `v` rounded to f32 *to odd*: toward zero, then with the last bit set if
/// that lost anything. Rounding the result to nearest even at 11 (f16) or 8
/// (bf16) bits then gives the same value as rounding `v` itself once, since
/// f32 keeps more than two extra bits; rounding `v` to nearest f32 first
/// would not (a value just above a 16-bit tie would land on the tie).
fn f32_round_to_odd(v: f64) -> f32 {
    let r = v as f32;
    if r.is_nan() || r as f64 == v {
        return r;
    }
    // `r` is inexact: step it back toward zero if it rounded away (from f32
    // `MAX` to infinity included), then mark the loss in the last bit.
    let toward_zero = if (r as f64).abs() > v.abs() {
        f32::from_bits(r.to_bits() - 1)
    } else {
        r
    };
    f32::from_bits(toward_zero.to_bits() | 1)
}

/// `v` rounded once to nearest even f16. (`half`'s own `f16::from_f64` goes
/// through a nearest f32, or drops the low 32 bits of `v`: both can round a
/// value just above a tie down.)
pub(crate) fn f16_from_f64(v: f64) -> f16 {
    f16::from_f32(f32_round_to_odd(v))
}

/// `v` rounded once to nearest even bf16 (see [`f16_from_f64`]).
pub(crate) fn bf16_from_f64(v: f64) -> bf16 {
    bf16::from_f32(f32_round_to_odd(v))
}

macro_rules! int_element {
    ($t:ty, $dt:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$dt;
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn to_i64(self) -> i64 {
                self as i64
            }
            fn from_f64(v: f64) -> Self {
                // Truncate toward zero, then wrap: what C casts and ONNX Runtime do
                // for in-range values; NaN becomes 0.
                (v as i64) as $t
            }
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            fn wrap(v: Vec<Self>) -> TensorData {
                TensorData::$dt(v)
            }
            fn slice(data: &TensorData) -> Option<&[Self]> {
                match data {
                    TensorData::$dt(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}

int_element!(i64, I64);
int_element!(i32, I32);
int_element!(i8, I8);
int_element!(u8, U8);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn to_f64(self) -> f64 {
        self as u8 as f64
    }
    fn to_i64(self) -> i64 {
        self as i64
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn from_i64(v: i64) -> Self {
        v != 0
    }
    fn wrap(v: Vec<Self>) -> TensorData {
        TensorData::Bool(v)
    }
    fn slice(data: &TensorData) -> Option<&[Self]> {
        match data {
            TensorData::Bool(v) => Some(v),
            _ => None,
        }
    }
}

impl TensorData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All elements as f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        with_data!(self, v => v.iter().map(|x| x.to_f64()).collect())
    }

    /// All elements as i64 (floats truncate toward zero).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        with_data!(self, v => v.iter().map(|x| x.to_i64()).collect())
    }

    /// Builds data of `dtype` from f64 values, converting as ONNX `Cast` does.
    pub fn from_f64(dtype: DType, values: impl IntoIterator<Item = f64>) -> TensorData {
        let it = values.into_iter();
        match dtype {
            DType::F32 => TensorData::F32(it.map(f32::from_f64).collect()),
            DType::F64 => TensorData::F64(it.collect()),
            DType::F16 => TensorData::F16(it.map(f16_from_f64).collect()),
            DType::BF16 => TensorData::BF16(it.map(bf16_from_f64).collect()),
            DType::I64 => TensorData::I64(it.map(i64::from_f64).collect()),
            DType::I32 => TensorData::I32(it.map(i32::from_f64).collect()),
            DType::I8 => TensorData::I8(it.map(i8::from_f64).collect()),
            DType::U8 => TensorData::U8(it.map(u8::from_f64).collect()),
            DType::Bool => TensorData::Bool(it.map(bool::from_f64).collect()),
        }
    }

    /// Builds data of `dtype` from i64 values (integers wrap).
    pub fn from_i64(dtype: DType, values: impl IntoIterator<Item = i64>) -> TensorData {
        let it = values.into_iter();
        match dtype {
            DType::F32 => TensorData::F32(it.map(f32::from_i64).collect()),
            DType::F64 => TensorData::F64(it.map(f64::from_i64).collect()),
            DType::F16 => TensorData::F16(it.map(f16::from_i64).collect()),
            DType::BF16 => TensorData::BF16(it.map(bf16::from_i64).collect()),
            DType::I64 => TensorData::I64(it.collect()),
            DType::I32 => TensorData::I32(it.map(i32::from_i64).collect()),
            DType::I8 => TensorData::I8(it.map(i8::from_i64).collect()),
            DType::U8 => TensorData::U8(it.map(u8::from_i64).collect()),
            DType::Bool => TensorData::Bool(it.map(bool::from_i64).collect()),
        }
    }

    /// `len` zero elements of `dtype`.
    pub fn zeros(dtype: DType, len: usize) -> TensorData {
        TensorData::from_i64(dtype, std::iter::repeat_n(0, len))
    }

    /// Converts to `dtype` as ONNX `Cast` does.
    pub fn cast(&self, dtype: DType) -> TensorData {
        if self.dtype() == dtype {
            return self.clone();
        }
        if self.dtype().is_float() || dtype.is_float() {
            TensorData::from_f64(dtype, self.to_f64_vec())
        } else {
            TensorData::from_i64(dtype, self.to_i64_vec())
        }
    }

    /// The elements picked by `indices`, in that order.
    pub fn gather(&self, indices: &[usize]) -> TensorData {
        with_data!(self, v => Element::wrap(indices.iter().map(|&i| v[i]).collect()))
    }

    /// The raw little-endian bytes of the elements (bool as 0 or 1).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::BF16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I8(v) => v.iter().map(|x| *x as u8).collect(),
            TensorData::U8(v) => v.clone(),
            TensorData::Bool(v) => v.iter().map(|x| *x as u8).collect(),
        }
    }

    /// Decodes little-endian bytes of `dtype`; `None` if the length is not a
    /// multiple of the element size.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Option<TensorData> {
        let n = dtype.size_bytes();
        if !bytes.len().is_multiple_of(n) {
            return None;
        }
        /// Decodes fixed-size little-endian elements.
        fn le<T, const N: usize>(bytes: &[u8], decode: fn([u8; N]) -> T) -> Vec<T> {
            bytes
                .chunks_exact(N)
                .map(|c| decode(c.try_into().unwrap_or([0; N])))
                .collect()
        }
        Some(match dtype {
            DType::F32 => TensorData::F32(le(bytes, f32::from_le_bytes)),
            DType::F64 => TensorData::F64(le(bytes, f64::from_le_bytes)),
            DType::F16 => TensorData::F16(le(bytes, f16::from_le_bytes)),
            DType::BF16 => TensorData::BF16(le(bytes, bf16::from_le_bytes)),
            DType::I64 => TensorData::I64(le(bytes, i64::from_le_bytes)),
            DType::I32 => TensorData::I32(le(bytes, i32::from_le_bytes)),
            DType::I8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DType::U8 => TensorData::U8(bytes.to_vec()),
            DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        })
    }
}

/// A tensor with concrete sizes and elements.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// A tensor; fails if the number of elements does not match the shape.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor, String> {
        let Some(n) = crate::shape::checked_numel(&shape) else {
            return Err(format!(
                "shape {shape:?} holds more elements than memory can"
            ));
        };
        if n != data.len() {
            return Err(format!(
                "shape {shape:?} holds {n} elements but {} were given",
                data.len()
            ));
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor from a typed vector; fails if the length does not match.
    pub fn from_vec<T: Element>(shape: Vec<usize>, values: Vec<T>) -> Result<Tensor, String> {
        Tensor::new(shape, T::wrap(values))
    }

    /// A rank-0 tensor.
    pub fn scalar<T: Element>(value: T) -> Tensor {
        Tensor {
            shape: Vec::new(),
            data: T::wrap(vec![value]),
        }
    }

    /// A tensor of zeros.
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            shape,
            data: TensorData::zeros(dtype, n),
        }
    }

    /// The sizes.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Takes the elements out.
    pub fn into_data(self) -> TensorData {
        self.data
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Borrows the elements as `T`, if that is the dtype.
    pub fn as_slice<T: Element>(&self) -> Option<&[T]> {
        T::slice(&self.data)
    }

    /// The same elements with another shape of equal size.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Tensor, String> {
        Tensor::new(shape, self.data)
    }

    /// Converts to `dtype` as ONNX `Cast` does.
    pub fn cast(&self, dtype: DType) -> Tensor {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.cast(dtype),
        }
    }

    /// Bytes taken by the elements.
    pub fn size_bytes(&self) -> usize {
        self.len() * self.dtype().size_bytes()
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}{:?}>", self.dtype(), self.shape)?;
        if self.len() <= 16 {
            with_data!(&self.data, v => write!(f, "{v:?}"))?;
        }
        Ok(())
    }
}
