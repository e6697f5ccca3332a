//! Archives whose one member is a `.npy` header followed by zeros, deflated, with any declared
//! sizes: what a hostile `.npz` looks like (8 MB on disk that inflate to 8 GiB). The deflate
//! stream is made without inflating anything: one block of a MiB of zeros is compressed once and
//! repeated (each copy refers only to itself), so a member of gigabytes costs milliseconds.
//! Shared by `crates/npz/tests/npz.rs` and `crates/cli/tests/hardening.rs`.

#![allow(dead_code)] // Each test file uses its own subset.

use flate2::{Compress, Compression, FlushCompress};
use std::path::Path;

/// Zeros per repeated deflate chunk.
pub const CHUNK: u64 = 1 << 20;

/// A version 1.0 `.npy` header for `descr` and `shape` (such as `"(2147483648,)"`), padded
/// so that the data starts 64-aligned.
pub fn npy_header(descr: &str, shape: &str) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((h.len() as u16).to_le_bytes());
    npy.extend(h.as_bytes());
    npy
}

/// `data` deflated by a fresh compressor, ending on a byte boundary in a non-final block.
fn deflate_open(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    c.compress_vec(data, &mut out, FlushCompress::Sync)
        .expect("deflate");
    assert_eq!(
        c.total_in(),
        data.len() as u64,
        "the buffer held the whole block"
    );
    out
}

/// A raw deflate stream of `head` followed by `zeros` zero bytes (a multiple of [`CHUNK`]).
pub fn deflated_zeros(head: &[u8], zeros: u64) -> Vec<u8> {
    assert!(zeros.is_multiple_of(CHUNK));
    let mut stream = deflate_open(head);
    let chunk = deflate_open(&vec![0u8; CHUNK as usize]);
    for _ in 0..zeros / CHUNK {
        stream.extend_from_slice(&chunk);
    }
    // A final, empty stored block.
    stream.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    stream
}

/// Writes a zip of one deflated member `name` whose central directory declares `declared`
/// bytes uncompressed, with zip64 sizes. The CRC is 0: readers refuse or stop long before
/// the end of the data, where it would be checked.
pub fn write_zip(path: &Path, name: &str, stream: &[u8], declared: u64) {
    let le16 = |v: u16| v.to_le_bytes();
    let le32 = |v: u32| v.to_le_bytes();
    let le64 = |v: u64| v.to_le_bytes();
    let zip64 = |out: &mut Vec<u8>| {
        out.extend(le16(0x0001));
        out.extend(le16(16));
        out.extend(le64(declared));
        out.extend(le64(stream.len() as u64));
    };
    let mut z = Vec::with_capacity(stream.len() + 256);
    // Local file header.
    z.extend(le32(0x0403_4b50));
    z.extend(le16(45)); // version needed: zip64
    z.extend(le16(0)); // flags
    z.extend(le16(8)); // deflate
    z.extend(le16(0)); // time
    z.extend(le16(0x21)); // date: 1980-01-01
    z.extend(le32(0)); // crc
    z.extend(le32(u32::MAX)); // sizes in the zip64 field
    z.extend(le32(u32::MAX));
    z.extend(le16(name.len() as u16));
    z.extend(le16(20));
    z.extend(name.as_bytes());
    zip64(&mut z);
    z.extend_from_slice(stream);
    // Central directory.
    let cd_start = z.len();
    z.extend(le32(0x0201_4b50));
    z.extend(le16(45)); // made by
    z.extend(le16(45)); // needed
    z.extend(le16(0));
    z.extend(le16(8));
    z.extend(le16(0));
    z.extend(le16(0x21));
    z.extend(le32(0));
    z.extend(le32(u32::MAX));
    z.extend(le32(u32::MAX));
    z.extend(le16(name.len() as u16));
    z.extend(le16(20)); // extra
    z.extend(le16(0)); // comment
    z.extend(le16(0)); // disk
    z.extend(le16(0)); // internal attributes
    z.extend(le32(0)); // external attributes
    z.extend(le32(0)); // local header offset
    z.extend(name.as_bytes());
    zip64(&mut z);
    let cd_len = z.len() - cd_start;
    // End of central directory.
    z.extend(le32(0x0605_4b50));
    z.extend(le16(0));
    z.extend(le16(0));
    z.extend(le16(1));
    z.extend(le16(1));
    z.extend(le32(cd_len as u32));
    z.extend(le32(cd_start as u32));
    z.extend(le16(0));
    std::fs::write(path, z).expect("write the archive");
}

/// Writes `name.npy` of `descr` and `shape` followed by `zeros` zero bytes, declared honestly
/// (header plus zeros), into the archive at `path`; returns the archive's size on disk.
pub fn write_bomb(path: &Path, name: &str, descr: &str, shape: &str, zeros: u64) -> u64 {
    let head = npy_header(descr, shape);
    let stream = deflated_zeros(&head, zeros);
    write_zip(
        path,
        &format!("{name}.npy"),
        &stream,
        head.len() as u64 + zeros,
    );
    std::fs::metadata(path).expect("stat the archive").len()
}
