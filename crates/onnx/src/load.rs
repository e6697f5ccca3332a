//! Reading ONNX files: `ModelProto` decoding with clear errors for missing,
//! truncated and foreign files, and `TensorProto` to [`Tensor`] conversion for
//! every storage form, external data files included.

use crate::error::{Error, Result};
use crate::proto;
use crate::proto::tensor_proto::{DataLocation, DataType};
use prost::Message;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use tcc_ir::{DType, Tensor, TensorData};

/// Reads and decodes the ONNX model at `path`.
///
/// Fails with [`Error::Io`] if the file cannot be read, [`Error::Truncated`]
/// if it ends inside a protobuf field, and [`Error::NotOnnx`] if it does not
/// decode as a `ModelProto` or has no graph. External data is not read here;
/// [`tensor_from_proto`] reads it when the tensor is converted.
pub fn load_model(path: &Path) -> Result<proto::ModelProto> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
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

/// Converts a `TensorProto` into a tensor.
///
/// Reads every storage form: `raw_data`, the typed fields (`float_data`,
/// `double_data`, `int64_data`, and `int32_data`, which also holds the bit
/// patterns of int8, uint8, bool, float16 and bfloat16), and external data,
/// whose `location` is resolved against `base_dir` (the model's directory).
/// Fails, naming the tensor, on an unsupported data type, an element count
/// that does not match the dims, or missing or short external data.
pub fn tensor_from_proto(t: &proto::TensorProto, base_dir: Option<&Path>) -> Result<Tensor> {
    let name = t.name().to_string();
    let err = |message: String| Error::Tensor {
        tensor: name.clone(),
        message,
    };
    let dtype = dtype_from_onnx(t.data_type()).map_err(&err)?;
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        shape.push(
            usize::try_from(d).map_err(|_| err(format!("negative dim {d} in {:?}", t.dims)))?,
        );
    }
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("dims {:?} overflow", t.dims)))?;
    if t.segment.is_some() {
        return Err(err("segmented tensors are not supported".into()));
    }
    let data = if t.data_location() == DataLocation::External {
        let bytes = read_external(t, base_dir, count * dtype.size_bytes())?;
        decode_raw(dtype, &bytes).map_err(&err)?
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

/// Reads the bytes of an externally stored tensor.
fn read_external(
    t: &proto::TensorProto,
    base_dir: Option<&Path>,
    expected: usize,
) -> Result<Vec<u8>> {
    let tensor = t.name().to_string();
    let mut location = None;
    let (mut offset, mut length) = (0u64, None);
    for e in &t.external_data {
        let parse = |v: &str| {
            v.parse::<u64>().map_err(|_| Error::Tensor {
                tensor: tensor.clone(),
                message: format!("external data `{}` has bad value `{v}`", e.key()),
            })
        };
        match e.key() {
            "location" => location = Some(e.value().to_string()),
            "offset" => offset = parse(e.value())?,
            "length" => length = Some(parse(e.value())?),
            _ => {}
        }
    }
    let location = location.ok_or_else(|| Error::Tensor {
        tensor: tensor.clone(),
        message: "data_location is EXTERNAL but external_data has no `location`".into(),
    })?;
    let base = base_dir.ok_or_else(|| Error::Tensor {
        tensor: tensor.clone(),
        message: format!(
            "its data is in the external file `{location}`, but no model directory was given"
        ),
    })?;
    let file: PathBuf = base.join(&location);
    let ext = |message: String| Error::ExternalData {
        tensor: tensor.clone(),
        file: file.clone(),
        message,
    };
    if Path::new(&location).is_absolute() {
        return Err(ext(
            "the location must be relative to the model's directory".into(),
        ));
    }
    let length = length.unwrap_or(expected as u64);
    let mut f = std::fs::File::open(&file).map_err(|e| ext(format!("cannot open: {e}")))?;
    let size = f
        .metadata()
        .map_err(|e| ext(format!("cannot read: {e}")))?
        .len();
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(ext(format!(
            "the tensor needs bytes {offset}..{} but the file has {size} bytes",
            offset.saturating_add(length)
        )));
    }
    if length != expected as u64 {
        return Err(ext(format!(
            "length {length} does not match the {expected} bytes its dims and type need"
        )));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| ext(format!("cannot seek to {offset}: {e}")))?;
    let mut bytes = vec![0u8; expected];
    f.read_exact(&mut bytes)
        .map_err(|e| ext(format!("cannot read {length} bytes at {offset}: {e}")))?;
    Ok(bytes)
}
