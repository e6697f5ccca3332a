//! Round trips through `write_npz` and `read_npz`, a real ONNX Runtime
//! reference from `../shared`, and the errors on bad files.

mod support {
    pub mod deflate_bomb;
}

use half::f16;
use std::path::{Path, PathBuf};
use support::deflate_bomb;
use tcc_ir::{DType, Tensor};
use tcc_npz::{read_npz, write_npz, Error, MAX_ARRAY_BYTES, MAX_HEADER_BYTES};

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
    // A directory, and a FIFO, which would block a reader that opened it.
    let err = read_npz(&dir).expect_err("a directory");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let fifo = dir.join("fifo.npz");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo failed");
    let err = read_npz(&fifo).expect_err("a FIFO");
    assert!(err.to_string().contains("fifo.npz"), "{err}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let missing = dir.join("missing.npz");
    let err = read_npz(&missing).expect_err("missing");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.npz"), "{err}");
}

#[test]
fn a_member_that_inflates_past_the_limit_is_refused_before_inflating() {
    // The case: about 8 MB on disk, 8 GiB of f32 zeros once inflated, declared
    // honestly by both the .npy header (2^31 elements) and the archive entry.
    let path = scratch("bomb").join("bomb.npz");
    let on_disk = deflate_bomb::write_bomb(&path, "huge", "<f4", "(2147483648,)", 8 << 30);
    assert!(
        on_disk < 16 << 20,
        "the bomb is small on disk: {on_disk} bytes"
    );
    let err = read_npz(&path).expect_err("8 GiB is over the limit");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Npy { ref array, .. } if array == "huge"),
        "{err:?}"
    );
    assert!(
        msg.contains("bomb.npz"),
        "the message names the file: {msg}"
    );
    assert!(
        msg.contains(&MAX_ARRAY_BYTES.to_string()),
        "the message names the limit: {msg}"
    );
    // 8 MB a run is too much to leave in the temporary directory.
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_header_whose_shape_is_over_the_limit_is_refused_whatever_the_entry_declares() {
    // The .npy header asks for 2^33 bytes of u8, the archive entry declares (falsely) just
    // what the limit allows; the shape alone is refused.
    let head = deflate_bomb::npy_header("|u1", "(8589934592,)");
    let stream = deflate_bomb::deflated_zeros(&head, deflate_bomb::CHUNK);
    let path = scratch("bomb-header").join("h.npz");
    deflate_bomb::write_zip(&path, "big.npy", &stream, MAX_ARRAY_BYTES);
    let err = read_npz(&path).expect_err("the shape is over the limit");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Npy { ref array, .. } if array == "big"),
        "{err:?}"
    );
    assert!(
        msg.contains("8589934592"),
        "the message shows the shape: {msg}"
    );
}

#[test]
fn a_member_that_inflates_past_its_declared_size_is_read_only_as_far_as_declared() {
    // The entry declares a header and 16 bytes (four f32 zeros) but its data inflates to
    // 64 MiB more; reading stops at what the entry declares.
    let head = deflate_bomb::npy_header("<f4", "(4,)");
    let stream = deflate_bomb::deflated_zeros(&head, 64 * deflate_bomb::CHUNK);
    let dir = scratch("over-declared");
    let path = dir.join("o.npz");
    deflate_bomb::write_zip(&path, "x.npy", &stream, head.len() as u64 + 16);
    let back = read_npz(&path).expect("the declared part is a whole array");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].1.shape(), &[4]);
    assert_eq!(back[0].1.as_slice::<f32>(), Some(&[0.0f32; 4][..]));
    // A header whose shape needs more than the entry declares is refused, although the
    // data would inflate that far.
    let head = deflate_bomb::npy_header("<f4", "(1048576,)");
    let stream = deflate_bomb::deflated_zeros(&head, 4 * deflate_bomb::CHUNK);
    let path = dir.join("short.npz");
    deflate_bomb::write_zip(&path, "y.npy", &stream, head.len() as u64 + 16);
    let err = read_npz(&path).expect_err("the shape needs more than the entry declares");
    assert!(
        matches!(err, Error::Npy { ref array, .. } if array == "y"),
        "{err:?}"
    );
    assert!(err.to_string().contains("archive entry holds"), "{err}");
}

#[test]
fn an_entry_declaring_more_than_the_limit_is_refused_before_its_header_is_read() {
    // The declared size alone is over the limit; the data is not even a .npy.
    let stream = deflate_bomb::deflated_zeros(b"not an npy header", 0);
    let path = scratch("declared").join("d.npz");
    let declared = MAX_ARRAY_BYTES + MAX_HEADER_BYTES + 1;
    deflate_bomb::write_zip(&path, "liar.npy", &stream, declared);
    let err = read_npz(&path).expect_err("the declared size is over the limit");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Npy { ref array, .. } if array == "liar"),
        "{err:?}"
    );
    assert!(msg.contains(&declared.to_string()), "{msg}");
}

#[test]
fn a_header_length_over_the_limit_is_refused() {
    // A version 2.0 .npy whose header claims 4 GiB - 1 bytes: refused before the reader
    // allocates a buffer for it.
    let mut npy = b"\x93NUMPY\x02\x00".to_vec();
    npy.extend(u32::MAX.to_le_bytes());
    npy.extend(b"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n");
    let path = scratch("header-length").join("l.npz");
    write_raw_zip(&path, &[("long.npy", &npy)]);
    let err = read_npz(&path).expect_err("the header is over the limit");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Npy { ref array, .. } if array == "long"),
        "{err:?}"
    );
    assert!(
        msg.contains(&MAX_HEADER_BYTES.to_string()) && msg.contains(&u32::MAX.to_string()),
        "{msg}"
    );
}

#[test]
fn a_large_fortran_array_is_transposed() {
    // Big enough that a table of indices would be noticed, small enough to be quick:
    // a 300 x 200 i32 matrix stored column-major.
    let (rows, cols) = (300usize, 200usize);
    let data: Vec<u8> = (0..cols)
        .flat_map(|j| (0..rows).map(move |i| (i * cols + j) as i32))
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let npy = npy_bytes(
        &format!("{{'descr': '<i4', 'fortran_order': True, 'shape': ({rows}, {cols}), }}"),
        &data,
    );
    let path = scratch("fortran-large").join("f.npz");
    write_raw_zip(&path, &[("m.npy", &npy)]);
    let back = read_npz(&path).expect("read");
    let want: Vec<i32> = (0..(rows * cols) as i32).collect();
    assert_eq!(back[0].1.as_slice::<i32>(), Some(&want[..]));
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
