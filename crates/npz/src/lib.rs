//! Numpy `.npz` archives as tcc tensors: the format of the CLI's inputs and
//! outputs and of the ONNX Runtime references under `../shared`.
//!
//! An `.npz` is a zip archive with one `.npy` file per array. [`read_npz`]
//! returns the arrays in archive order, named without the `.npy` suffix;
//! [`write_npz`] writes an archive that `numpy.load` reads, whole or not at all
//! (it writes a temporary file beside the target and renames it).
//!
//! The `.npy` layer is the `npyz` crate; the zip layer is the `zip` crate,
//! used directly rather than through `npyz`'s `npz` feature, because that
//! feature pins an old `zip` with C compression libraries and lists entries in
//! hash order, where archive order is what callers see.
//!
//! Supported dtypes: `f32`, `f64`, `f16`, `i64`, `i32`, `i8`, `u8` and `bool`,
//! little- or big-endian. `bf16` has no numpy dtype and cannot be written.
//! Fortran-order arrays are read and transposed to row-major order.

use half::f16;
use npyz::{TypeChar, WriterBuilder};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use tcc_ir::{DType, Element, Tensor, TensorData};
use thiserror::Error;

/// Everything that can go wrong reading or writing an `.npz`. Each message
/// names the file, and the array where there is one; underlying IO and zip
/// errors are part of the message rather than a separate `source`.
#[derive(Debug, Error)]
pub enum Error {
    /// The file could not be opened, created, read, written or renamed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
    /// The file is not a zip archive, or the archive is damaged.
    #[error("{}: not a valid .npz (zip) archive: {error}", path.display())]
    Zip {
        /// The file at fault.
        path: PathBuf,
        /// What the zip reader or writer said.
        error: zip::result::ZipError,
    },
    /// An array's `.npy` data is malformed: a bad header, too few bytes, a
    /// shape that does not fit the data.
    #[error("{}: array `{array}`: {message}", path.display())]
    Npy {
        /// The file at fault.
        path: PathBuf,
        /// The array's name.
        array: String,
        /// What is wrong.
        message: String,
    },
    /// An array has a dtype that tcc has no tensor type for (or, on writing,
    /// one that numpy has no dtype for, such as `bf16`).
    #[error("{}: array `{array}`: unsupported dtype {dtype} (supported: f32, f64, f16, i64, i32, i8, u8, bool)", path.display())]
    UnsupportedDType {
        /// The file at fault.
        path: PathBuf,
        /// The array's name.
        array: String,
        /// The dtype, as numpy writes it (`<i2`) or as tcc names it (`bf16`).
        dtype: String,
    },
    /// Two arrays given to [`write_npz`] share a name.
    #[error("{}: array `{array}` is given twice", path.display())]
    DuplicateName {
        /// The file that was to be written.
        path: PathBuf,
        /// The repeated name.
        array: String,
    },
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn zip_err(path: &Path) -> impl FnOnce(zip::result::ZipError) -> Error + '_ {
    move |error| match error {
        zip::result::ZipError::Io(error) => Error::Io {
            path: path.to_path_buf(),
            error,
        },
        error => Error::Zip {
            path: path.to_path_buf(),
            error,
        },
    }
}

/// Reads every array of the `.npz` at `path`, in archive order, named without
/// the `.npy` suffix.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let file = File::open(path).map_err(io_err(path))?;
    read_npz_from(path, BufReader::new(file))
}

/// Reads an `.npz` from any seekable reader; `path` is only used in messages.
pub fn read_npz_from<R: Read + Seek>(path: &Path, reader: R) -> Result<Vec<(String, Tensor)>> {
    let mut archive = zip::ZipArchive::new(reader).map_err(zip_err(path))?;
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(zip_err(path))?;
        if entry.is_dir() {
            continue;
        }
        let file_name = entry.name().to_string();
        let name = file_name
            .strip_suffix(".npy")
            .unwrap_or(&file_name)
            .to_string();
        let declared = entry.size();
        let tensor = read_npy(path, &name, BufReader::new(entry), declared)?;
        out.push((name, tensor));
    }
    Ok(out)
}

/// Reads one `.npy` stream whose uncompressed size the archive declares as
/// `declared` bytes.
fn read_npy<R: Read>(path: &Path, name: &str, reader: R, declared: u64) -> Result<Tensor> {
    let npy_err = |message: String| Error::Npy {
        path: path.to_path_buf(),
        array: name.to_string(),
        message,
    };
    let npy = npyz::NpyFile::new(reader).map_err(|e| npy_err(format!("bad .npy header: {e}")))?;
    let unsupported = |dtype: String| Error::UnsupportedDType {
        path: path.to_path_buf(),
        array: name.to_string(),
        dtype,
    };
    let dtype = match npy.dtype() {
        npyz::DType::Plain(ts) => match (ts.type_char(), ts.size_field()) {
            (TypeChar::Float, 4) => DType::F32,
            (TypeChar::Float, 8) => DType::F64,
            (TypeChar::Float, 2) => DType::F16,
            (TypeChar::Int, 8) => DType::I64,
            (TypeChar::Int, 4) => DType::I32,
            (TypeChar::Int, 1) => DType::I8,
            (TypeChar::Uint, 1) => DType::U8,
            (TypeChar::Bool, 1) => DType::Bool,
            _ => return Err(unsupported(ts.to_string())),
        },
        other => return Err(unsupported(format!("{other:?}"))),
    };
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| npy_err(format!("shape {:?} does not fit in memory", npy.shape())))?;
    // Check the claimed size against the archive before reading, so that a
    // corrupt header cannot make us allocate without bound.
    let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let bytes = numel.and_then(|n| n.checked_mul(dtype.size_bytes()));
    match bytes {
        Some(b) if (b as u64) <= declared => {}
        _ => {
            return Err(npy_err(format!(
            "shape {shape:?} of {dtype} needs more bytes than the archive entry holds ({declared})"
        )))
        }
    }
    let fortran = npy.order() == npyz::Order::Fortran;
    let read_err = |e: io::Error| npy_err(format!("cannot read the elements: {e}"));
    let data = match dtype {
        DType::F32 => TensorData::F32(npy.into_vec::<f32>().map_err(read_err)?),
        DType::F64 => TensorData::F64(npy.into_vec::<f64>().map_err(read_err)?),
        DType::F16 => TensorData::F16(npy.into_vec::<f16>().map_err(read_err)?),
        DType::I64 => TensorData::I64(npy.into_vec::<i64>().map_err(read_err)?),
        DType::I32 => TensorData::I32(npy.into_vec::<i32>().map_err(read_err)?),
        DType::I8 => TensorData::I8(npy.into_vec::<i8>().map_err(read_err)?),
        DType::U8 => TensorData::U8(npy.into_vec::<u8>().map_err(read_err)?),
        DType::Bool => TensorData::Bool(npy.into_vec::<bool>().map_err(read_err)?),
        DType::BF16 => return Err(unsupported("bf16".into())),
    };
    let data = if fortran && shape.len() > 1 {
        data.gather(&fortran_to_c_indices(&shape))
    } else {
        data
    };
    Tensor::new(shape, data).map_err(npy_err)
}

/// For each row-major position of an array of `shape`, the index of that
/// element in column-major (Fortran) storage.
fn fortran_to_c_indices(shape: &[usize]) -> Vec<usize> {
    let n: usize = shape.iter().product();
    // Column-major strides: the first axis moves fastest.
    let mut strides = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        strides[k] = strides[k - 1] * shape[k - 1];
    }
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        out.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum());
        // Advance the row-major multi-index: the last axis moves fastest.
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

/// Writes `arrays` to `path` as an uncompressed `.npz` (as `numpy.savez` does),
/// each as `<name>.npy`. The file is written whole or not at all: the archive
/// goes to a temporary file beside `path`, which is renamed over it at the end.
pub fn write_npz(path: &Path, arrays: &[(String, Tensor)]) -> Result<()> {
    for (i, (name, t)) in arrays.iter().enumerate() {
        if arrays[..i].iter().any(|(n, _)| n == name) {
            return Err(Error::DuplicateName {
                path: path.to_path_buf(),
                array: name.clone(),
            });
        }
        if t.dtype() == DType::BF16 {
            return Err(Error::UnsupportedDType {
                path: path.to_path_buf(),
                array: name.clone(),
                dtype: "bf16".into(),
            });
        }
    }
    let tmp = temp_path(path);
    let result = write_to(path, &tmp, arrays).and_then(|()| {
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        Ok(())
    });
    if result.is_err() {
        // The temporary file is ours; a failure to remove it changes nothing
        // about the error the caller needs to see.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A temporary file name in the same directory as `path`, so that the final
/// rename stays on one file system.
fn temp_path(path: &Path) -> PathBuf {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out.npz".into());
    path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()))
}

fn write_to(path: &Path, tmp: &Path, arrays: &[(String, Tensor)]) -> Result<()> {
    let file = File::create(tmp).map_err(io_err(path))?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(file));
    for (name, t) in arrays {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(t.size_bytes() as u64 + 1024 >= u32::MAX as u64);
        zip.start_file(format!("{name}.npy"), options)
            .map_err(zip_err(path))?;
        let npy_err = |e: io::Error| Error::Npy {
            path: path.to_path_buf(),
            array: name.clone(),
            message: format!("cannot write: {e}"),
        };
        let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
        match t.data() {
            TensorData::F32(v) => write_npy(&mut zip, &shape, v),
            TensorData::F64(v) => write_npy(&mut zip, &shape, v),
            TensorData::F16(v) => write_npy(&mut zip, &shape, v),
            TensorData::I64(v) => write_npy(&mut zip, &shape, v),
            TensorData::I32(v) => write_npy(&mut zip, &shape, v),
            TensorData::I8(v) => write_npy(&mut zip, &shape, v),
            TensorData::U8(v) => write_npy(&mut zip, &shape, v),
            TensorData::Bool(v) => write_npy(&mut zip, &shape, v),
            // Rejected before any file was created.
            TensorData::BF16(_) => Err(io::Error::other("bf16 has no numpy dtype")),
        }
        .map_err(npy_err)?;
    }
    let buffered = zip.finish().map_err(zip_err(path))?;
    let file = buffered
        .into_inner()
        .map_err(|e| io_err(path)(e.into_error()))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(())
}

fn write_npy<T, W>(w: &mut W, shape: &[u64], values: &[T]) -> io::Result<()>
where
    T: npyz::AutoSerialize + Element,
    W: Write,
{
    let mut writer = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(w)
        .begin_nd()?;
    writer.extend(values.iter().copied())?;
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_indices_transpose_a_matrix() {
        // A 2x3 array stored column-major holds a00 a10 a01 a11 a02 a12.
        assert_eq!(fortran_to_c_indices(&[2, 3]), vec![0, 2, 4, 1, 3, 5]);
    }
}
