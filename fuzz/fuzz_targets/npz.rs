//! Fuzz target: npz reading, `tcc_npz::read_npz_from` on the bytes as an
//! archive in memory (`read_npz` adds only the regular-file check and the
//! open). Errors are expected; a panic, an abort, an allocation over the limit
//! (an array may declare at most `MAX_ARRAY_BYTES`, 4 GiB) or a timeout is a
//! finding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = tcc_npz::read_npz_from(Path::new("fuzz.npz"), Cursor::new(data));
});
