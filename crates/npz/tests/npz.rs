//! Round trips through `write_npz` and `read_npz`, a real ONNX Runtime
//! reference from `../shared`, and the errors on bad files.

use half::f16;
use std::path::{Path, PathBuf};
use tcc_ir::{DType, Tensor};
use tcc_npz::{read_npz, write_npz, Error};

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tcc-npz-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

fn shared() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        p.is_dir(),
        "the shared data directory {} is missing: it must sit beside the workspace root (../shared)",
        p.display()
    );
    p
}

fn t<T: tcc_ir::Element>(shape: &[usize], v: Vec<T>) -> Tensor {
    Tensor::from_vec(shape.to_vec(), v).expect("shape matches")
}

#[test]
fn every_dtype_round_trips_in_order() {
    let arrays: Vec<(String, Tensor)> = vec![
        (
            "f32".into(),
            t(&[2, 3], vec![1.5f32, -2.0, 0.0, 3.25, f32::MAX, -0.0]),
        ),
        ("f64".into(), t(&[3], vec![1e-300f64, -7.5, 2.0])),
        (
            "f16".into(),
            t(
                &[2, 2],
                [0.5f32, -1.0, 65504.0, 0.0].map(f16::from_f32).to_vec(),
            ),
        ),
        ("i64".into(), t(&[1, 2], vec![i64::MIN, i64::MAX])),
        ("i32".into(), t(&[2], vec![-5i32, 7])),
        ("i8".into(), t(&[3], vec![-128i8, 0, 127])),
        ("u8".into(), t(&[2], vec![0u8, 255])),
        ("bool".into(), t(&[2, 1, 2], vec![true, false, false, true])),
        ("scalar".into(), Tensor::scalar(42.0f32)),
        ("empty".into(), t(&[0, 4], Vec::<i64>::new())),
    ];
    let path = scratch("round-trip").join("all.npz");
    write_npz(&path, &arrays).expect("write");
    let back = read_npz(&path).expect("read");
    assert_eq!(back.len(), arrays.len());
    for ((name, want), (got_name, got)) in arrays.iter().zip(&back) {
        assert_eq!(name, got_name, "names come back in file order");
        assert_eq!(want.shape(), got.shape(), "shape of {name}");
        assert_eq!(want.dtype(), got.dtype(), "dtype of {name}");
        assert!(want == got, "elements of {name}: {want:?} != {got:?}");
    }
    assert_eq!(back[8].1.shape(), &[] as &[usize], "a scalar stays rank 0");
}

#[test]
fn bf16_cannot_be_written_and_leaves_no_file() {
    let dir = scratch("bf16");
    let path = dir.join("bf16.npz");
    let x = t(&[1], vec![half::bf16::from_f32(1.0)]);
    let err = write_npz(&path, &[("x".into(), x)]).expect_err("bf16 has no numpy dtype");
    assert!(matches!(err, Error::UnsupportedDType { ref array, .. } if array == "x"));
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(&dir).expect("list").count(),
        0,
        "no temp file left"
    );
}

#[test]
fn writing_replaces_a_file_whole() {
    let path = scratch("replace").join("a.npz");
    write_npz(&path, &[("a".into(), t(&[2], vec![1i32, 2]))]).expect("first write");
    write_npz(&path, &[("b".into(), t(&[1], vec![3u8]))]).expect("second write");
    let back = read_npz(&path).expect("read");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, "b");
    assert_eq!(back[0].1.as_slice::<u8>(), Some(&[3u8][..]));
}

#[test]
fn duplicate_names_are_refused() {
    let path = scratch("dup").join("d.npz");
    let x = t(&[1], vec![1i64]);
    let err = write_npz(&path, &[("x".into(), x.clone()), ("x".into(), x)]).expect_err("dup");
    assert!(err.to_string().contains("`x`"), "{err}");
    assert!(!path.exists());
}

#[test]
fn reads_an_onnx_runtime_reference() {
    let path = shared().join("models/bert-tiny/ref_b2_s17.npz");
    let arrays = read_npz(&path).expect("read the bert-tiny reference");
    let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
    // Checked against the archive with Python's zipfile and the npy headers.
    assert_eq!(
        names,
        [
            "input_ids",
            "attention_mask",
            "token_type_ids",
            "last_hidden_state"
        ]
    );
    for (name, tensor) in &arrays[..3] {
        assert_eq!(tensor.dtype(), DType::I64, "{name}");
        assert_eq!(tensor.shape(), &[2, 17], "{name}");
    }
    let out = &arrays[3].1;
    assert_eq!(out.dtype(), DType::F32);
    assert_eq!(out.shape(), &[2, 17, 128]);
    // An attention mask holds zeros and ones only, and the first token of
    // each sequence is real.
    let mask = arrays[1].1.as_slice::<i64>().expect("i64");
    assert!(mask.iter().all(|&m| m == 0 || m == 1));
    assert_eq!(mask[0], 1);
    assert_eq!(mask[17], 1);
    let hidden = out.as_slice::<f32>().expect("f32");
    assert!(hidden.iter().all(|x| x.is_finite()));
}

#[test]
fn fortran_order_is_transposed() {
    // A hand-made .npy with fortran_order True: the 2x3 matrix
    // [[1, 2, 3], [4, 5, 6]] stored column-major as 1 4 2 5 3 6.
    let data: Vec<u8> = [1i32, 4, 2, 5, 3, 6]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let npy = npy_bytes(
        "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }",
        &data,
    );
    let path = scratch("fortran").join("f.npz");
    write_raw_zip(&path, &[("m.npy", &npy)]);
    let back = read_npz(&path).expect("read");
    assert_eq!(back[0].0, "m");
    assert_eq!(back[0].1.shape(), &[2, 3]);
    assert_eq!(
        back[0].1.as_slice::<i32>(),
        Some(&[1i32, 2, 3, 4, 5, 6][..])
    );
}

#[test]
fn unsupported_dtype_names_the_array() {
    let npy = npy_bytes(
        "{'descr': '<i2', 'fortran_order': False, 'shape': (1,), }",
        &7i16.to_le_bytes(),
    );
    let path = scratch("i16").join("s.npz");
    write_raw_zip(&path, &[("shorts.npy", &npy)]);
    let err = read_npz(&path).expect_err("i16 is not a tcc dtype");
    let msg = err.to_string();
    assert!(msg.contains("`shorts`") && msg.contains("<i2"), "{msg}");
    assert!(msg.contains("s.npz"), "the message names the file: {msg}");
}

#[test]
fn truncated_array_is_an_error_naming_it() {
    let dir = scratch("trunc");
    let full = dir.join("full.npz");
    write_npz(&full, &[("x".into(), t(&[4], vec![1.0f32, 2.0, 3.0, 4.0]))]).expect("write");
    // Take the stored .npy out of the archive and cut off its last element.
    let bytes = std::fs::read(&full).expect("read");
    let start = find(&bytes, b"\x93NUMPY").expect("npy magic");
    let hlen = u16::from_le_bytes([bytes[start + 8], bytes[start + 9]]) as usize;
    let npy = &bytes[start..start + 10 + hlen + 12];
    let path = dir.join("t.npz");
    write_raw_zip(&path, &[("x.npy", npy)]);
    let err = read_npz(&path).expect_err("too few bytes");
    assert!(
        matches!(err, Error::Npy { ref array, .. } if array == "x"),
        "{err:?}"
    );
}

#[test]
fn not_a_zip_and_missing_file_are_errors() {
    let dir = scratch("bad");
    let path = dir.join("text.npz");
    std::fs::write(&path, "hello, this is not a zip file").expect("write");
    let err = read_npz(&path).expect_err("not a zip");
    assert!(matches!(err, Error::Zip { .. }), "{err:?}");
    assert!(err.to_string().contains("text.npz"), "{err}");
    let missing = dir.join("missing.npz");
    let err = read_npz(&missing).expect_err("missing");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.npz"), "{err}");
}

/// A version 1.0 `.npy` file with the given header dict and raw data.
fn npy_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_string();
    // The header is padded with spaces so that the data starts 64-aligned.
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((h.len() as u16).to_le_bytes());
    npy.extend(h.as_bytes());
    npy.extend(data);
    npy
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Writes a zip with the given raw entries, stored uncompressed.
fn write_raw_zip(path: &Path, entries: &[(&str, &[u8])]) {
    use std::io::Write;
    let file = std::fs::File::create(path).expect("create");
    let mut zip = zip::ZipWriter::new(file);
    for (name, bytes) in entries {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file(*name, options).expect("start");
        zip.write_all(bytes).expect("write entry");
    }
    zip.finish().expect("finish");
}
