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
//!
//! **Limits.** Only regular files are read (opening a FIFO would block). An
//! archive is untrusted input: a few megabytes of deflated zeros inflate to
//! gigabytes. Before an array is inflated, the sizes its archive entry and its
//! `.npy` header declare are checked: the entry may declare at most
//! [`MAX_ARRAY_BYTES`] (4 GiB) of elements plus [`MAX_HEADER_BYTES`] of header,
//! the header itself at most [`MAX_HEADER_BYTES`], and the elements the
//! header's shape and dtype need must fit in both the entry and
//! [`MAX_ARRAY_BYTES`]. Every count is checked arithmetic. The entry is then
//! read through a reader bounded by its declared size, so a stream that
//! inflates past what its entry declares is cut off there, and the elements go
//! into a buffer reserved with `try_reserve`, so memory the system will not
//! give is an error naming the array, not an abort.

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

/// The most bytes of elements one array may hold: 4 GiB. A larger array (by
/// its `.npy` header or by its archive entry's declared size) is refused with
/// an [`Error::Npy`] naming it, before any of it is inflated.
pub const MAX_ARRAY_BYTES: u64 = 1 << 32;

/// The most bytes a `.npy` header may have: 64 KiB (numpy writes a few
/// hundred, and refuses more than 10,000 by default).
pub const MAX_HEADER_BYTES: u64 = 1 << 16;

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
    // Only regular files: opening a FIFO would block until someone writes to it.
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(io_err(path)(io::Error::other("not a regular file")));
    }
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
        if declared > MAX_ARRAY_BYTES + MAX_HEADER_BYTES {
            return Err(Error::Npy {
                path: path.to_path_buf(),
                array: name,
                message: format!(
                    "its archive entry declares {declared} bytes, more than the limit of \
                     {MAX_ARRAY_BYTES} bytes per array (plus {MAX_HEADER_BYTES} of header)"
                ),
            });
        }
        // Never more than the entry declares, however far its data inflates.
        let bounded = BufReader::new(entry).take(declared);
        let tensor = read_npy(path, &name, bounded, declared)?;
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
    let reader = check_header_size(reader).map_err(npy_err)?;
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
    let (numel, bytes) = match numel.zip(bytes) {
        Some((n, b)) if (b as u64) <= MAX_ARRAY_BYTES => (n, b as u64),
        _ => {
            return Err(npy_err(format!(
                "shape {shape:?} of {dtype} needs more than the limit of {MAX_ARRAY_BYTES} \
                 bytes per array"
            )))
        }
    };
    if bytes > declared {
        return Err(npy_err(format!(
            "shape {shape:?} of {dtype} needs more bytes than the archive entry holds ({declared})"
        )));
    }
    let fortran = npy.order() == npyz::Order::Fortran;
    macro_rules! read {
        ($variant:ident) => {
            TensorData::$variant(read_elements(npy, numel, &shape, fortran).map_err(npy_err)?)
        };
    }
    let data = match dtype {
        DType::F32 => read!(F32),
        DType::F64 => read!(F64),
        DType::F16 => read!(F16),
        DType::I64 => read!(I64),
        DType::I32 => read!(I32),
        DType::I8 => read!(I8),
        DType::U8 => read!(U8),
        DType::Bool => read!(Bool),
        DType::BF16 => return Err(unsupported("bf16".into())),
    };
    Tensor::new(shape, data).map_err(npy_err)
}

/// Reads the `.npy` magic, version and header length from `reader` and checks
/// the length against [`MAX_HEADER_BYTES`] before the `.npy` reader allocates
/// a buffer of that size; returns a reader that yields those bytes again.
fn check_header_size<R: Read>(mut reader: R) -> std::result::Result<impl Read, String> {
    // Magic (6 bytes), version (2), and a header length of 2 bytes (version 1)
    // or 4 (versions 2 and 3).
    let mut pre = [0u8; 12];
    let mut got = 0;
    while got < pre.len() {
        match reader.read(&mut pre[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the .npy header: {e}")),
        }
    }
    let len = match (&pre[..6], pre[6], got) {
        (b"\x93NUMPY", 1, 10..) => u64::from(u16::from_le_bytes([pre[8], pre[9]])),
        (b"\x93NUMPY", 2 | 3, 12) => {
            u64::from(u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]))
        }
        // Not a header this check understands; the .npy reader says why.
        _ => 0,
    };
    if len > MAX_HEADER_BYTES {
        return Err(format!(
            "its .npy header declares {len} bytes, more than the limit of {MAX_HEADER_BYTES}"
        ));
    }
    Ok(io::Cursor::new(pre[..got].to_vec()).chain(reader))
}

/// The `numel` elements of an array of `shape`, in row-major order (transposed
/// from Fortran order if `fortran`), read into a buffer reserved up front.
fn read_elements<T, R>(
    npy: npyz::NpyFile<R>,
    numel: usize,
    shape: &[usize],
    fortran: bool,
) -> std::result::Result<Vec<T>, String>
where
    T: npyz::Deserialize + Copy,
    R: Read,
{
    let reserve = |v: &mut Vec<T>| {
        v.try_reserve_exact(numel).map_err(|_| {
            format!(
                "cannot allocate {numel} elements of {} bytes",
                std::mem::size_of::<T>()
            )
        })
    };
    let mut values = Vec::new();
    reserve(&mut values)?;
    let reader = npy
        .data::<T>()
        .map_err(|e| format!("cannot read the elements: {e}"))?;
    for value in reader.take(numel) {
        values.push(value.map_err(|e| format!("cannot read the elements: {e}"))?);
    }
    if values.len() != numel {
        return Err(format!(
            "the data ends after {} of {numel} elements",
            values.len()
        ));
    }
    if !fortran || shape.len() < 2 {
        return Ok(values);
    }
    let mut row_major = Vec::new();
    reserve(&mut row_major)?;
    row_major.extend(fortran_to_c_order(shape).map(|i| values[i]));
    Ok(row_major)
}

/// For each row-major position of an array of `shape`, in order, the index of
/// that element in column-major (Fortran) storage; computed as it goes, so a
/// large array needs no table of indices.
fn fortran_to_c_order(shape: &[usize]) -> impl Iterator<Item = usize> + '_ {
    let n: usize = shape.iter().product();
    // Column-major strides: the first axis moves fastest.
    let mut strides = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        strides[k] = strides[k - 1] * shape[k - 1];
    }
    let mut idx = vec![0usize; shape.len()];
    let mut offset = 0usize;
    (0..n).map(move |_| {
        let at = offset;
        // Advance the row-major multi-index: the last axis moves fastest.
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            offset += strides[k];
            if idx[k] < shape[k] {
                break;
            }
            offset -= strides[k] * shape[k];
            idx[k] = 0;
        }
        at
    })
}

/// Writes `arrays` to `path` as an uncompressed `.npz` (as `numpy.savez` does),
/// each as `<name>.npy`. The file is written whole or not at all: the archive
/// goes to a temporary file beside `path`, which is renamed over it at the end.
/// A `path` that exists and is not a regular file (`/dev/null`, a FIFO, a
/// terminal) is written in place instead, from an archive built in memory: a
/// rename would replace the device or pipe itself.
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
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        let archive = write_zip(path, io::Cursor::new(Vec::new()), arrays)?.into_inner();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        return file.write_all(&archive).map_err(io_err(path));
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
    let buffered = write_zip(path, BufWriter::new(file), arrays)?;
    let file = buffered
        .into_inner()
        .map_err(|e| io_err(path)(e.into_error()))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(())
}

/// Writes the archive of `arrays` into `w` and returns it; `path` names the file in errors.
fn write_zip<W: Write + io::Seek>(path: &Path, w: W, arrays: &[(String, Tensor)]) -> Result<W> {
    let mut zip = zip::ZipWriter::new(w);
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
    zip.finish().map_err(zip_err(path))
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
        let order: Vec<usize> = fortran_to_c_order(&[2, 3]).collect();
        assert_eq!(order, vec![0, 2, 4, 1, 3, 5]);
        // Three axes: row-major (i, j, k) sits at i + 2j + 6k in column-major storage.
        let order: Vec<usize> = fortran_to_c_order(&[2, 3, 2]).collect();
        assert_eq!(order, vec![0, 6, 2, 8, 4, 10, 1, 7, 3, 9, 5, 11]);
    }
}
