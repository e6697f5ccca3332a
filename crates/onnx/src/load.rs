//! Reading ONNX files: `ModelProto` decoding with clear errors for missing,
//! truncated and foreign files, and `TensorProto` to [`Tensor`] conversion for
//! every storage form, external data files included.

use crate::error::{Error, Result};
use crate::footprint::MAX_DECODE_OVERHEAD;
use crate::proto;
use crate::proto::tensor_proto::{DataLocation, DataType};
use prost::Message;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use tcc_ir::{DType, Tensor, TensorData};

/// The largest model file tcc reads: 2 GiB, the most a protobuf message can
/// hold. Larger models keep their weights in external data files.
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

/// Reads and decodes the ONNX model at `path`.
///
/// Fails with [`Error::Io`] if the file cannot be read, [`Error::NotOnnx`] if
/// it is not a regular file (checked before opening, so a FIFO cannot block)
/// or is larger than [`MAX_MODEL_BYTES`], [`Error::Truncated`] if it ends
/// inside a protobuf field, and [`Error::NotOnnx`] if it does not decode as a
/// `ModelProto` or has no graph. External data is not read here;
/// [`tensor_from_proto`] reads it when the tensor is converted.
pub fn load_model(path: &Path) -> Result<proto::ModelProto> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_onnx = |message: String| Error::NotOnnx {
        path: path.to_path_buf(),
        message,
    };
    let check = |meta: &std::fs::Metadata| {
        if !meta.is_file() {
            return Err(not_onnx(format!(
                "it is {}; a model must be a regular file",
                file_kind(meta)
            )));
        }
        if meta.len() > MAX_MODEL_BYTES {
            return Err(not_onnx(format!(
                "it holds {}, more than the {} a protobuf message can (larger models keep \
                 their weights in external data files)",
                human_bytes(meta.len()),
                human_bytes(MAX_MODEL_BYTES)
            )));
        }
        Ok(meta.len())
    };
    check(&std::fs::metadata(path).map_err(io)?)?;
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = check(&f.metadata().map_err(io)?)?;
    // One buffer of the size just checked, filled by a streaming read.
    let mut bytes = vec![0u8; len as usize];
    f.read_exact(&mut bytes).map_err(io)?;
    decode_model(&bytes, path)
}

/// Decodes a `ModelProto` from `bytes`, read from `path` (used in messages).
pub fn decode_model(bytes: &[u8], path: &Path) -> Result<proto::ModelProto> {
    let not_onnx = |message: String| Error::NotOnnx {
        path: path.to_path_buf(),
        message,
    };
    if bytes.is_empty() {
        return Err(not_onnx("the file is empty".into()));
    }
    // Walk the top-level fields first: a file cut short is reported as such
    // rather than as whatever decode error the cut happens to cause.
    scan_top_level(bytes, path)?;
    let overhead = crate::footprint::overhead(bytes);
    if overhead > MAX_DECODE_OVERHEAD {
        return Err(not_onnx(format!(
            "decoding its {} would take about {} more for its structure (nodes, tensors, \
             lists), more than tcc's limit of {}",
            human_bytes(bytes.len() as u64),
            human_bytes(overhead),
            human_bytes(MAX_DECODE_OVERHEAD)
        )));
    }
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| not_onnx(format!("it does not decode as an ONNX ModelProto ({e})")))?;
    if model.graph.is_none() {
        return Err(not_onnx(
            "it decodes as a protobuf message but holds no ONNX graph".into(),
        ));
    }
    Ok(model)
}

/// The ModelProto field numbers and names, for the top-level scan.
const MODEL_FIELDS: &[(u64, &str)] = &[
    (1, "ir_version"),
    (2, "producer_name"),
    (3, "producer_version"),
    (4, "domain"),
    (5, "model_version"),
    (6, "doc_string"),
    (7, "graph"),
    (8, "opset_import"),
    (14, "metadata_props"),
    (20, "training_info"),
    (25, "functions"),
    (26, "configuration"),
];

/// Checks the top-level protobuf framing of a ModelProto: every field has a
/// known number and fits in the file.
fn scan_top_level(bytes: &[u8], path: &Path) -> Result<()> {
    let truncated = |message: String| Error::Truncated {
        path: path.to_path_buf(),
        message,
    };
    let not_onnx = |message: String| Error::NotOnnx {
        path: path.to_path_buf(),
        message,
    };
    let mut pos = 0usize;
    while pos < bytes.len() {
        let start = pos;
        let tag = read_varint(bytes, &mut pos).ok_or_else(|| {
            truncated(format!(
                "the file ends inside a field tag at byte {start} of {}",
                bytes.len()
            ))
        })?;
        let (field, wire) = (tag >> 3, tag & 7);
        let name = MODEL_FIELDS
            .iter()
            .find(|(n, _)| *n == field)
            .map(|(_, s)| *s)
            .ok_or_else(|| {
                not_onnx(format!(
                    "byte {start} starts protobuf field {field}, which a ModelProto does not have"
                ))
            })?;
        let need = match wire {
            0 => {
                read_varint(bytes, &mut pos).ok_or_else(|| {
                    truncated(format!(
                        "the file ends inside field `{name}` at byte {start} of {}",
                        bytes.len()
                    ))
                })?;
                0
            }
            1 => 8,
            5 => 4,
            2 => {
                let len = read_varint(bytes, &mut pos).ok_or_else(|| {
                    truncated(format!(
                        "the file ends inside the length of field `{name}` at byte {start} of {}",
                        bytes.len()
                    ))
                })?;
                usize::try_from(len).unwrap_or(usize::MAX)
            }
            _ => {
                return Err(not_onnx(format!(
                "byte {start} starts field {field} with wire type {wire}, which ONNX does not use"
            )))
            }
        };
        if need > bytes.len() - pos {
            return Err(truncated(format!(
                "field `{name}` at byte {start} needs {need} bytes from byte {pos}, \
                 but the file has only {} bytes",
                bytes.len()
            )));
        }
        pos += need;
    }
    Ok(())
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The IR dtype of an ONNX `TensorProto.DataType` code, or a message naming
/// the type if tcc does not support it.
pub fn dtype_from_onnx(code: i32) -> std::result::Result<DType, String> {
    let dt = DataType::try_from(code).map_err(|_| format!("unknown data type {code}"))?;
    Ok(match dt {
        DataType::Float => DType::F32,
        DataType::Double => DType::F64,
        DataType::Float16 => DType::F16,
        DataType::Bfloat16 => DType::BF16,
        DataType::Int64 => DType::I64,
        DataType::Int32 => DType::I32,
        DataType::Int8 => DType::I8,
        DataType::Uint8 => DType::U8,
        DataType::Bool => DType::Bool,
        other => {
            return Err(format!(
                "data type {} is not supported (tcc supports FLOAT, DOUBLE, FLOAT16, \
                 BFLOAT16, INT64, INT32, INT8, UINT8 and BOOL)",
                other.as_str_name()
            ))
        }
    })
}

/// The ONNX `TensorProto.DataType` code of an IR dtype.
pub fn dtype_to_onnx(dtype: DType) -> i32 {
    (match dtype {
        DType::F32 => DataType::Float,
        DType::F64 => DataType::Double,
        DType::F16 => DataType::Float16,
        DType::BF16 => DataType::Bfloat16,
        DType::I64 => DataType::Int64,
        DType::I32 => DataType::Int32,
        DType::I8 => DataType::Int8,
        DType::U8 => DataType::Uint8,
        DType::Bool => DataType::Bool,
    }) as i32
}

/// The most bytes one constant tensor (an initializer, the value of a
/// `Constant` node, a constant the importer makes) may hold: 4 GiB.
///
/// A tensor's declared size (dims times element size) is checked against it
/// before any of its data is read or allocated, so a file cannot make tcc
/// allocate more than this for one tensor, whatever its dims, `length` or
/// external file (a sparse 100 GiB file included) say.
pub const MAX_TENSOR_BYTES: u64 = 4 << 30;

/// The most bytes all constant tensors of one model may hold together: 16 GiB.
///
/// The initializers' declared sizes are added up before the first one is
/// read; `Constant` nodes and the constants the importer makes are added as
/// they are imported.
pub const MAX_TOTAL_BYTES: u64 = 16 << 30;

/// A byte count as people read it: `4 GiB`, `1.5 MiB`, `12 bytes`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (unit, name) in UNITS {
        if bytes >= unit {
            let v = bytes as f64 / unit as f64;
            return if bytes.is_multiple_of(unit) {
                format!("{} {name}", bytes / unit)
            } else {
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{bytes} bytes")
}

/// What the constants of one model have claimed of [`MAX_TOTAL_BYTES`].
#[derive(Debug, Default)]
pub(crate) struct Budget {
    used: std::cell::Cell<u64>,
}

impl Budget {
    /// Claims `bytes` for `tensor`; fails, naming it, if the model's constants
    /// would then hold more than [`MAX_TOTAL_BYTES`].
    pub(crate) fn claim(&self, tensor: &str, bytes: u64) -> Result<()> {
        let total = self.used.get().saturating_add(bytes);
        if total > MAX_TOTAL_BYTES {
            return Err(Error::TooLarge {
                tensor: tensor.to_string(),
                message: format!(
                    "with its {} the model's constants hold {}, more than tcc's limit of {} \
                     for all constants of a model together",
                    human_bytes(bytes),
                    human_bytes(total),
                    human_bytes(MAX_TOTAL_BYTES)
                ),
            });
        }
        self.used.set(total);
        Ok(())
    }
}

/// Checks that a tensor of `count` elements of `dtype` fits in
/// [`MAX_TENSOR_BYTES`] and returns its size in bytes; `what` describes the
/// tensor's shape in the error.
pub(crate) fn check_tensor_bytes(
    tensor: &str,
    what: &str,
    count: u64,
    dtype: DType,
) -> Result<u64> {
    let bytes = count.checked_mul(dtype.size_bytes() as u64);
    match bytes {
        Some(b) if b <= MAX_TENSOR_BYTES => Ok(b),
        _ => Err(Error::TooLarge {
            tensor: tensor.to_string(),
            message: format!(
                "{what} of {dtype} need {}, more than tcc's limit of {} for one tensor",
                bytes.map_or_else(
                    || "more bytes than a 64-bit count holds".to_string(),
                    human_bytes
                ),
                human_bytes(MAX_TENSOR_BYTES)
            ),
        }),
    }
}

/// What a `TensorProto` declares: its dtype, shape, element count and size
/// in bytes, checked (non-negative dims, a size within [`MAX_TENSOR_BYTES`])
/// before any of its data is looked at.
/// `name` is the tensor's name in errors.
pub(crate) fn declared(
    t: &proto::TensorProto,
    name: &str,
) -> Result<(DType, Vec<usize>, usize, u64)> {
    let err = |message: String| Error::Tensor {
        tensor: name.to_string(),
        message,
    };
    let dtype = dtype_from_onnx(t.data_type()).map_err(err)?;
    let mut shape = Vec::with_capacity(t.dims.len());
    // The product of the non-zero dims is held to the limit too, so that an
    // empty tensor cannot carry a dim that overflows whatever it meets.
    let mut span = 1u64;
    for &d in &t.dims {
        let u = u64::try_from(d).map_err(|_| err(format!("negative dim {d} in {:?}", t.dims)))?;
        // Saturating: an overflowing product is over the limit all the same.
        span = span.saturating_mul(u.max(1));
        shape.push(usize::try_from(u).unwrap_or(usize::MAX));
    }
    check_tensor_bytes(name, &format!("dims {:?}", t.dims), span, dtype)?;
    let count = if t.dims.contains(&0) { 0 } else { span };
    let bytes = count * dtype.size_bytes() as u64;
    // Within the limit, the count fits in usize on every 64-bit host.
    let count = usize::try_from(count).map_err(|_| err(format!("dims {:?} overflow", t.dims)))?;
    Ok((dtype, shape, count, bytes))
}

/// Converts a `TensorProto` into a tensor.
///
/// Reads every storage form: `raw_data`, the typed fields (`float_data`,
/// `double_data`, `int64_data`, and `int32_data`, which also holds the bit
/// patterns of int8, uint8, bool, float16 and bfloat16), and external data,
/// whose `location` is resolved against `base_dir` (the model's directory)
/// and must stay inside it. Fails, naming the tensor, on an unsupported data
/// type, a declared size over [`MAX_TENSOR_BYTES`], an element count that
/// does not match the dims, or external data that is missing, short, outside
/// the model's directory or not a regular file.
pub fn tensor_from_proto(t: &proto::TensorProto, base_dir: Option<&Path>) -> Result<Tensor> {
    tensor_from_proto_as(t, t.name(), base_dir)
}

/// [`tensor_from_proto`] with `name` for the tensor in errors (the value of a
/// `Constant` node often has no name of its own).
pub(crate) fn tensor_from_proto_as(
    t: &proto::TensorProto,
    name: &str,
    base_dir: Option<&Path>,
) -> Result<Tensor> {
    let err = |message: String| Error::Tensor {
        tensor: name.to_string(),
        message,
    };
    let (dtype, shape, count, bytes) = declared(t, name)?;
    if t.segment.is_some() {
        return Err(err("segmented tensors are not supported".into()));
    }
    let data = if t.data_location() == DataLocation::External {
        let raw = read_external(t, name, base_dir, bytes)?;
        decode_raw(dtype, &raw).map_err(&err)?
    } else if let Some(raw) = &t.raw_data {
        decode_raw(dtype, raw).map_err(&err)?
    } else {
        typed_data(t, dtype, count).map_err(&err)?
    };
    if data.len() != count {
        return Err(err(format!(
            "dims {:?} hold {count} elements but the data has {}",
            t.dims,
            data.len()
        )));
    }
    Tensor::new(shape, data).map_err(err)
}

fn decode_raw(dtype: DType, raw: &[u8]) -> std::result::Result<TensorData, String> {
    TensorData::from_le_bytes(dtype, raw).ok_or_else(|| {
        format!(
            "raw data of {} bytes is not a whole number of {dtype} elements",
            raw.len()
        )
    })
}

/// Reads the typed storage field that holds elements of `dtype`.
fn typed_data(
    t: &proto::TensorProto,
    dtype: DType,
    count: usize,
) -> std::result::Result<TensorData, String> {
    let ints = &t.int32_data;
    Ok(match dtype {
        DType::F32 => TensorData::F32(t.float_data.clone()),
        DType::F64 => TensorData::F64(t.double_data.clone()),
        DType::I64 => TensorData::I64(t.int64_data.clone()),
        DType::I32 => TensorData::I32(ints.clone()),
        // Narrow types keep their value (or bit pattern) in the low bits of an int32.
        DType::I8 => TensorData::I8(ints.iter().map(|&v| v as i8).collect()),
        DType::U8 => TensorData::U8(ints.iter().map(|&v| v as u8).collect()),
        DType::Bool => TensorData::Bool(ints.iter().map(|&v| v != 0).collect()),
        DType::F16 => TensorData::F16(
            ints.iter()
                .map(|&v| half::f16::from_bits(v as u16))
                .collect(),
        ),
        DType::BF16 => TensorData::BF16(
            ints.iter()
                .map(|&v| half::bf16::from_bits(v as u16))
                .collect(),
        ),
    })
    .and_then(|d: TensorData| {
        if d.is_empty() && count > 0 {
            Err(format!(
                "holds {count} elements of {dtype} but has no data in raw_data or the field for {dtype}"
            ))
        } else {
            Ok(d)
        }
    })
}

/// What kind of file system object `meta` describes, for messages.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_block_device() || ft.is_char_device() {
            return "a device";
        }
    }
    "not a regular file"
}

/// Reads the `expected` bytes of an externally stored tensor.
///
/// The file must stay inside the model's directory `base_dir`: a `location`
/// that is absolute or has a `..` component is refused, and so is one whose
/// canonical path (symbolic links resolved) is not under the directory's
/// canonical path. Only a regular file is opened; its type is checked before
/// opening, so a FIFO or a device cannot make the import block. The
/// `length` (if given) must be the tensor's declared size and the file must
/// hold `offset + length` bytes, all checked before the one buffer of
/// `expected` bytes (already within [`MAX_TENSOR_BYTES`]) is allocated and
/// filled by a streaming read.
fn read_external(
    t: &proto::TensorProto,
    tensor: &str,
    base_dir: Option<&Path>,
    expected: u64,
) -> Result<Vec<u8>> {
    let bad = |message: String| Error::Tensor {
        tensor: tensor.to_string(),
        message,
    };
    let (mut location, mut offset, mut length) = (None, None, None);
    for e in &t.external_data {
        let key = e.key();
        let parse = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| bad(format!("external data `{key}` has bad value `{v}`")))
        };
        let slot_taken = match key {
            "location" => location.replace(e.value().to_string()).is_some(),
            "offset" => offset.replace(parse(e.value())?).is_some(),
            "length" => length.replace(parse(e.value())?).is_some(),
            _ => false,
        };
        if slot_taken {
            return Err(bad(format!(
                "external data `{key}` is given more than once"
            )));
        }
    }
    let location = location.filter(|l| !l.is_empty()).ok_or_else(|| {
        bad("data_location is EXTERNAL but external_data has no `location`".into())
    })?;
    let base = base_dir.ok_or_else(|| {
        bad(format!(
            "its data is in the external file `{location}`, but no model directory was given"
        ))
    })?;
    let file: PathBuf = base.join(&location);
    let ext = |message: String| Error::ExternalData {
        tensor: tensor.to_string(),
        file: file.clone(),
        message,
    };
    for c in Path::new(&location).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(ext(format!(
                    "the location `{location}` has a `..` component; external data must be \
                     inside the model's directory"
                )))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ext(format!(
                    "the location `{location}` is absolute; it must be relative to the \
                     model's directory"
                )))
            }
        }
    }
    let offset = offset.unwrap_or(0);
    let length = length.unwrap_or(expected);
    if length != expected {
        return Err(ext(format!(
            "length {length} does not match the {expected} bytes its dims and type need"
        )));
    }
    let end = offset
        .checked_add(length)
        .ok_or_else(|| ext(format!("offset {offset} plus length {length} overflows")))?;

    // Confine the file to the model's directory, symbolic links resolved.
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let root = base.canonicalize().map_err(|e| {
        ext(format!(
            "cannot resolve the model's directory `{}`: {e}",
            base.display()
        ))
    })?;
    let real = file
        .canonicalize()
        .map_err(|e| ext(format!("cannot open: {e}")))?;
    if !real.starts_with(&root) {
        return Err(ext(format!(
            "it resolves to `{}`, outside the model's directory `{}`",
            real.display(),
            root.display()
        )));
    }
    // Only regular files: look before opening, since opening a FIFO blocks.
    let meta = std::fs::metadata(&real).map_err(|e| ext(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(ext(format!(
            "it is {}; external data must be a regular file",
            file_kind(&meta)
        )));
    }
    let mut f = std::fs::File::open(&real).map_err(|e| ext(format!("cannot open: {e}")))?;
    // The same checks on what was opened, in case the path changed meanwhile.
    let meta = f.metadata().map_err(|e| ext(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(ext(format!(
            "it is {}; external data must be a regular file",
            file_kind(&meta)
        )));
    }
    let size = meta.len();
    if end > size {
        return Err(ext(format!(
            "the tensor needs bytes {offset}..{end} but the file has {size} bytes"
        )));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| ext(format!("cannot seek to {offset}: {e}")))?;
    let len = usize::try_from(expected)
        .map_err(|_| ext(format!("{expected} bytes do not fit in memory")))?;
    let mut bytes = vec![0u8; len];
    f.read_exact(&mut bytes)
        .map_err(|e| ext(format!("cannot read {length} bytes at {offset}: {e}")))?;
    Ok(bytes)
}
