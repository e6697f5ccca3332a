//! Writes the seed corpora of the fuzz targets (`scripts/fuzz.sh` runs it; the
//! seeds are made, not committed):
//!
//! ```text
//! cargo run --release --manifest-path fuzz/Cargo.toml --example seeds -- SHARED EXAMPLES OUT
//! ```
//!
//! - `OUT/onnx_import` and `OUT/onnx_decode`: every `SHARED/models/*/model.onnx`
//!   and `EXAMPLES/tiny-encoder/model.onnx`, and every node test model of
//!   `SHARED/onnx-node-tests/node.tar.gz`, each made small: an initializer or
//!   `Constant` of more than [`INLINE`] elements becomes a graph input of its
//!   type (the graph's structure is what the importer reads; megabytes of
//!   weights would only slow the fuzzer down), and small external data points
//!   at the fuzz model folder's `data.bin` (`tcc_fuzz::import_dir`).
//!   `onnx_decode` also gets every 8th node test `input_*.pb` (`TensorProto`s).
//! - `OUT/ir_models`: the models whose IR `scripts/fuzz.sh` prints with
//!   `tcc compile MODEL --emit ir` into `OUT/ir_text`: the small forms of the
//!   shared models and of every 4th node test, the tiny encoder as it is (its
//!   weights are small), and the `data.bin` their external data points at.
//! - `OUT/npz`: the references `SHARED/models/*/ref_*.npz` of at most 64 KiB,
//!   `EXAMPLES/tiny-encoder/*.npz`, and one archive of every dtype tcc reads.
//! - `OUT/infer`: empty (its input is a recipe for `arbitrary`, not a file).
//! - `OUT/onnx.dict`: a libFuzzer dictionary of the op types tcc imports.
//!
//! It prints how many seeds each target got.

use flate2::read::GzDecoder;
use prost::Message;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use tcc_ir::{Tensor, TensorData};
use tcc_onnx::proto::{self, tensor_proto::DataLocation, type_proto};

/// Initializers and constants with more elements than this become graph inputs.
const INLINE: i64 = 256;

/// npz references larger than this are left out.
const NPZ_MAX_BYTES: u64 = 64 << 10;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [shared, examples, out] = args.as_slice() else {
        return Err("usage: seeds SHARED EXAMPLES OUT".into());
    };
    let mut seeds = Seeds::new(out)?;

    // The models: the shared ones and the tiny encoder.
    let mut models: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(shared.join("models"))? {
        let dir = entry?.path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if dir.join("model.onnx").is_file() {
            models.push((name, dir.join("model.onnx")));
        }
    }
    models.sort();
    let tiny = examples.join("tiny-encoder/model.onnx");
    models.push(("tiny-encoder".into(), tiny.clone()));
    for (name, path) in &models {
        let model = proto::ModelProto::decode(std::fs::read(path)?.as_slice())?;
        seeds.model(name, &shrink(model), true)?;
    }
    // The tiny encoder's weights are small enough to print whole.
    seeds.write(
        "ir_models",
        "tiny-encoder.weights.onnx",
        &std::fs::read(&tiny)?,
    )?;

    // The node tests: every model, every 8th input.
    let tar = std::fs::File::open(shared.join("onnx-node-tests/node.tar.gz"))?;
    let mut archive = tar::Archive::new(GzDecoder::new(tar));
    let (mut cases, mut inputs) = (0usize, 0usize);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let case = path
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
        let Some(file) = file else { continue };
        if file == "model.onnx" {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            if let Ok(model) = proto::ModelProto::decode(bytes.as_slice()) {
                cases += 1;
                seeds.model(&case, &shrink(model), cases % 4 == 0)?;
            }
        } else if file.starts_with("input_") && file.ends_with(".pb") {
            inputs += 1;
            if inputs % 8 == 0 {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes)?;
                let set = path
                    .parent()
                    .and_then(|p| p.file_name())
                    .unwrap_or_default();
                let name = format!("{case}.{}.{file}", set.to_string_lossy());
                seeds.write("onnx_decode", &name, &bytes)?;
            }
        }
    }

    // npz: the small references, the example's archives, and every dtype.
    for (name, _) in &models {
        let dir = shared.join("models").join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let p = entry?.path();
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            if file.ends_with(".npz") && std::fs::metadata(&p)?.len() <= NPZ_MAX_BYTES {
                seeds.write("npz", &format!("{name}.{file}"), &std::fs::read(&p)?)?;
            }
        }
    }
    for file in ["inputs.npz", "expected.npz"] {
        let p = examples.join("tiny-encoder").join(file);
        if p.is_file() {
            seeds.write("npz", &format!("tiny-encoder.{file}"), &std::fs::read(&p)?)?;
        }
    }
    let every_dtype = out.join("npz/every-dtype.npz");
    tcc_npz::write_npz(&every_dtype, &every_dtype_arrays())?;
    *seeds.counts.entry("npz").or_default() += 1;

    std::fs::write(out.join("ir_models/data.bin"), tcc_fuzz::data_bin())?;

    // A dictionary for the ONNX targets: the op types tcc imports and the
    // strings of external data.
    let mut dict = String::from("# The op types tcc imports, and external data's keys.\n");
    let words = [
        "ai.onnx",
        "com.microsoft",
        "location",
        "offset",
        "length",
        "data.bin",
        "..",
    ];
    for w in tcc_onnx::supported_ops().into_iter().chain(words) {
        dict.push_str(&format!("\"{w}\"\n"));
    }
    std::fs::write(out.join("onnx.dict"), dict)?;
    for (target, n) in &seeds.counts {
        println!("seeds: {target}: {n}");
    }
    Ok(())
}

/// The seed folders, and how many seeds each holds.
struct Seeds {
    out: PathBuf,
    counts: BTreeMap<&'static str, usize>,
}

impl Seeds {
    fn new(out: &Path) -> Result<Seeds, Error> {
        let mut counts = BTreeMap::new();
        for target in [
            "onnx_decode",
            "onnx_import",
            "ir_text",
            "ir_models",
            "npz",
            "infer",
        ] {
            std::fs::create_dir_all(out.join(target))?;
            counts.insert(target, 0);
        }
        Ok(Seeds {
            out: out.to_path_buf(),
            counts,
        })
    }

    fn write(&mut self, target: &'static str, name: &str, bytes: &[u8]) -> Result<(), Error> {
        std::fs::write(self.out.join(target).join(name), bytes)?;
        *self.counts.entry(target).or_default() += 1;
        Ok(())
    }

    /// A small model: a seed of both ONNX targets and, with `ir`, a model
    /// to print the IR of.
    fn model(&mut self, name: &str, model: &proto::ModelProto, ir: bool) -> Result<(), Error> {
        let bytes = model.encode_to_vec();
        let file = format!("{name}.onnx");
        self.write("onnx_import", &file, &bytes)?;
        self.write("onnx_decode", &file, &bytes)?;
        if ir {
            self.write("ir_models", &file, &bytes)?;
        }
        Ok(())
    }
}

/// The number of elements of a tensor proto's dims, if they are sizes.
fn numel(dims: &[i64]) -> Option<i64> {
    dims.iter()
        .try_fold(1i64, |n, &d| if d < 0 { None } else { n.checked_mul(d) })
}

/// A graph input standing for a tensor of `dims` and `elem_type`.
fn input_for(name: &str, elem_type: i32, dims: &[i64]) -> proto::ValueInfoProto {
    use proto::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            denotation: None,
            value: Some(Value::DimValue(d)),
        })
        .collect();
    proto::ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(proto::TypeProto {
            denotation: None,
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type),
                shape: Some(proto::TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

/// `model` with its large initializers and `Constant` values made graph
/// inputs and its small external data pointed at `data.bin`.
fn shrink(mut model: proto::ModelProto) -> proto::ModelProto {
    let Some(g) = model.graph.as_mut() else {
        return model;
    };
    let mut inputs = Vec::new();
    g.initializer.retain_mut(|t| {
        let n = numel(&t.dims).unwrap_or(i64::MAX);
        let external = t.data_location == Some(DataLocation::External as i32);
        if n <= INLINE {
            if external {
                let bytes = n * elem_bytes(t.data_type()).unwrap_or(8);
                t.external_data
                    .retain(|e| e.key() != "location" && e.key() != "offset");
                t.external_data.push(proto::StringStringEntryProto {
                    key: Some("location".into()),
                    value: Some("data.bin".into()),
                });
                for e in &mut t.external_data {
                    if e.key() == "length" {
                        e.value = Some(bytes.to_string());
                    }
                }
            }
            return true;
        }
        inputs.push(input_for(t.name(), t.data_type.unwrap_or(1), &t.dims));
        false
    });
    g.node.retain(|n| {
        if n.op_type() != "Constant" || n.output.len() != 1 {
            return true;
        }
        let Some(t) = n.attribute.iter().find_map(|a| a.t.as_ref()) else {
            return true;
        };
        if numel(&t.dims).unwrap_or(i64::MAX) <= INLINE {
            return true;
        }
        inputs.push(input_for(&n.output[0], t.data_type.unwrap_or(1), &t.dims));
        false
    });
    g.input.retain(|i| !inputs.iter().any(|n| n.name == i.name));
    g.input.extend(inputs);
    model
}

/// The size of one element of an ONNX data type, for those tcc reads.
fn elem_bytes(data_type: i32) -> Option<i64> {
    Some(match data_type {
        1 | 6 => 4,
        2 | 3 | 9 => 1,
        4 | 5 | 10 | 16 => 2,
        7 | 11 => 8,
        _ => return None,
    })
}

/// One array of every dtype tcc reads, of ranks 0 to 3, one of them empty.
fn every_dtype_arrays() -> Vec<(String, Tensor)> {
    let t = |shape: Vec<usize>, data: TensorData| Tensor::new(shape, data).unwrap();
    vec![
        (
            "f32".into(),
            t(
                vec![2, 3],
                TensorData::from_f64(tcc_ir::DType::F32, [0.5, -1.0, 2.0, 3.5, f64::NAN, 1e30]),
            ),
        ),
        (
            "f64".into(),
            t(vec![], TensorData::from_f64(tcc_ir::DType::F64, [1.25])),
        ),
        (
            "f16".into(),
            t(
                vec![3],
                TensorData::from_f64(tcc_ir::DType::F16, [1.0, -0.0, 65504.0]),
            ),
        ),
        (
            "i64".into(),
            t(
                vec![1, 2, 2],
                TensorData::from_i64(tcc_ir::DType::I64, [1, -2, i64::MAX, i64::MIN]),
            ),
        ),
        (
            "i32".into(),
            t(vec![0, 4], TensorData::from_i64(tcc_ir::DType::I32, [])),
        ),
        (
            "i8".into(),
            t(
                vec![2],
                TensorData::from_i64(tcc_ir::DType::I8, [-128, 127]),
            ),
        ),
        (
            "u8".into(),
            t(vec![2], TensorData::from_i64(tcc_ir::DType::U8, [0, 255])),
        ),
        (
            "bool".into(),
            t(vec![2], TensorData::from_i64(tcc_ir::DType::Bool, [0, 1])),
        ),
    ]
}
