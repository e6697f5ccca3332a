//! The checks a model library passes before `dlopen` maps it: a whole x86-64 ELF shared
//! object. `dlopen` trusts the file: a truncated library is mapped past its end and the loader
//! dies of SIGBUS when it touches the missing pages, and a corrupted header can send it
//! anywhere. These checks read the headers with bounded reads and refuse, with an error
//! naming the file, anything that is not what `tcc compile` writes:
//!
//! - a regular file (not a directory, FIFO or device), of at least one ELF header;
//! - the ELF magic, 64-bit class, little-endian data, version 1, type `ET_DYN` (a shared
//!   object) and machine x86-64, with the 64-bit header, program header and section header
//!   entry sizes;
//! - the program header table inside the file, and the file bytes of every segment
//!   (`PT_LOAD`, `PT_DYNAMIC`, ...) inside the file, with a loadable segment no larger on file
//!   than in memory, at least one `PT_LOAD` and a `PT_DYNAMIC`;
//! - the section header table inside the file (where a linker puts it last, so a truncated
//!   file fails here first), and the bytes of every section that has bytes in the file.
//!
//! The dynamic symbol table's string table, which the loader searches for the model's prefix,
//! is returned, read with the same bounds. These checks catch truncation and damage to the
//! headers; a library whose code or data are damaged but whose structure is intact is
//! loaded, as any other library would be.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// What failed, in words that follow "it is not a whole x86-64 shared library:".
type Result<T> = std::result::Result<T, String>;

/// Returns early with a formatted reason.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(format!($($arg)*))
    };
}

/// The size of a 64-bit ELF header.
const EHDR_SIZE: u64 = 64;
/// The size of a 64-bit program header.
const PHDR_SIZE: u64 = 56;
/// The size of a 64-bit section header.
const SHDR_SIZE: u64 = 64;
/// `ET_DYN`: a shared object.
const ET_DYN: u16 = 3;
/// `EM_X86_64`.
const EM_X86_64: u16 = 62;
/// Program header types.
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
/// Section header types.
const SHT_DYNSYM: u32 = 11;
const SHT_NOBITS: u32 = 8;
/// At most this many section headers are read (a tcc library has about 30).
const MAX_SECTIONS: u64 = 1 << 16;
/// The dynamic string table is read only up to this size (a tcc library's has a few KiB).
const MAX_DYNSTR: u64 = 64 << 20;

/// What [`check`] found in a library that passed it.
pub struct Checked {
    /// The bytes of the dynamic symbol table's string table (empty if the file has none).
    pub dynstr: Vec<u8>,
}

/// Reads little-endian fields of a header.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }

    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }

    fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.0[at..at + 8].try_into().expect("8 bytes"))
    }
}

/// Checks that `path` is a whole x86-64 ELF shared library (see the module documentation)
/// and returns its dynamic string table. The error says what is wrong, in a sentence that
/// the caller prefixes with the file's name.
pub fn check(path: &Path) -> Result<Checked> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        bail!("it is not a regular file");
    }
    let mut file = File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    check_file(&mut file, meta.len())
        .map_err(|e| format!("it is not a whole x86-64 shared library: {e}"))
}

/// [`check`] on an open file of `len` bytes.
fn check_file<F: Read + Seek>(file: &mut F, len: u64) -> Result<Checked> {
    if len < EHDR_SIZE {
        bail!("the file has {len} bytes, fewer than an ELF header's {EHDR_SIZE}");
    }
    let header = read_at(file, 0, EHDR_SIZE)?;
    let h = Fields(&header);
    if &header[..4] != b"\x7fELF" {
        bail!("it does not start with the ELF magic number (7f 45 4c 46)");
    }
    if header[4] != 2 {
        bail!("it is not a 64-bit ELF file (class {})", header[4]);
    }
    if header[5] != 1 {
        bail!(
            "it is not a little-endian ELF file (data encoding {})",
            header[5]
        );
    }
    if header[6] != 1 || h.u32(20) != 1 {
        bail!("it has an unknown ELF version");
    }
    let e_type = h.u16(16);
    if e_type != ET_DYN {
        bail!("it is an ELF file of type {e_type}, not a shared object (type {ET_DYN})");
    }
    let machine = h.u16(18);
    if machine != EM_X86_64 {
        bail!("it is built for ELF machine {machine}, not x86-64 ({EM_X86_64})");
    }
    let (phoff, shoff) = (h.u64(32), h.u64(40));
    let (ehsize, phentsize, phnum) = (h.u16(52), h.u16(54), u64::from(h.u16(56)));
    let (shentsize, shnum, shstrndx) = (h.u16(58), u64::from(h.u16(60)), h.u16(62));
    if u64::from(ehsize) != EHDR_SIZE || u64::from(phentsize) != PHDR_SIZE {
        bail!("its ELF header or program header size is wrong ({ehsize}, {phentsize})");
    }

    // Program headers: the segments the loader maps.
    let table_end = |what: &str, off: u64, count: u64, size: u64| -> Result<()> {
        let end = count
            .checked_mul(size)
            .and_then(|bytes| bytes.checked_add(off));
        match end {
            Some(end) if end <= len => Ok(()),
            _ => bail!(
                "it is truncated or damaged: its {what} ({count} entries at byte {off}) \
                 ends past the end of the file ({len} bytes)"
            ),
        }
    };
    if phnum == 0 {
        bail!("it has no program headers, so there is nothing to load");
    }
    table_end("program header table", phoff, phnum, PHDR_SIZE)?;
    let phdrs = read_at(file, phoff, phnum * PHDR_SIZE)?;
    let (mut loads, mut dynamic) = (0, false);
    for i in 0..phnum as usize {
        let p = Fields(&phdrs[i * PHDR_SIZE as usize..][..PHDR_SIZE as usize]);
        let (p_type, offset, filesz, memsz) = (p.u32(0), p.u64(8), p.u64(32), p.u64(40));
        if offset.checked_add(filesz).is_none_or(|end| end > len) {
            bail!(
                "it is truncated or damaged: segment {i} (type {p_type}) has {filesz} bytes \
                 at byte {offset}, past the end of the file ({len} bytes)"
            );
        }
        if p_type == PT_LOAD {
            if filesz > memsz {
                bail!("it is damaged: loadable segment {i} is larger on file than in memory");
            }
            loads += 1;
        }
        dynamic |= p_type == PT_DYNAMIC;
    }
    if loads == 0 || !dynamic {
        bail!("it has no loadable or no dynamic segment, so it is no shared library");
    }

    // Section headers: a linker writes the table last, so a truncated file loses it first.
    if shnum == 0 && shoff == 0 {
        return Ok(Checked { dynstr: Vec::new() });
    }
    if u64::from(shentsize) != SHDR_SIZE {
        bail!("its section header size is wrong ({shentsize})");
    }
    // With more than 0xff00 sections, the count is in the first section header's size.
    table_end("section header table", shoff, shnum.max(1), SHDR_SIZE)?;
    let shnum = if shnum == 0 {
        Fields(&read_at(file, shoff, SHDR_SIZE)?).u64(32)
    } else {
        shnum
    };
    if shnum > MAX_SECTIONS {
        bail!("it is damaged: it claims {shnum} sections");
    }
    table_end("section header table", shoff, shnum, SHDR_SIZE)?;
    if u64::from(shstrndx) >= shnum && shstrndx < 0xff00 {
        bail!("it is damaged: its section name table is section {shstrndx} of {shnum}");
    }
    let shdrs = read_at(file, shoff, shnum * SHDR_SIZE)?;
    let section = |i: usize| Fields(&shdrs[i * SHDR_SIZE as usize..][..SHDR_SIZE as usize]);
    let mut dynstr = None;
    for i in 0..shnum as usize {
        let s = section(i);
        let (s_type, offset, size, link) = (s.u32(4), s.u64(24), s.u64(32), s.u32(40));
        if s_type != SHT_NOBITS && offset.checked_add(size).is_none_or(|end| end > len) {
            bail!(
                "it is truncated or damaged: section {i} has {size} bytes at byte {offset}, \
                 past the end of the file ({len} bytes)"
            );
        }
        if s_type == SHT_DYNSYM {
            if u64::from(link) >= shnum {
                bail!("it is damaged: its dynamic symbols name section {link} of {shnum}");
            }
            dynstr = Some(link as usize);
        }
    }
    let dynstr = match dynstr {
        Some(i) => {
            let s = section(i);
            let (offset, size) = (s.u64(24), s.u64(32));
            if size > MAX_DYNSTR {
                bail!("it is damaged: its dynamic string table claims {size} bytes");
            }
            read_at(file, offset, size)?
        }
        None => Vec::new(),
    };
    Ok(Checked { dynstr })
}

/// Reads `len` bytes at `offset`, which the caller has checked lie inside the file.
fn read_at<F: Read + Seek>(file: &mut F, offset: u64, len: u64) -> Result<Vec<u8>> {
    let fail = |e: std::io::Error| format!("cannot read {len} bytes at byte {offset}: {e}");
    file.seek(SeekFrom::Start(offset)).map_err(fail)?;
    let len_usize =
        usize::try_from(len).map_err(|_| format!("{len} bytes do not fit in memory"))?;
    let mut bytes = vec![0u8; len_usize];
    file.read_exact(&mut bytes).map_err(fail)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A minimal x86-64 shared object: an ELF header, two program headers (a PT_LOAD over the
    /// whole file and a PT_DYNAMIC), a dynamic string table, and three section headers (null,
    /// .dynstr, .dynsym linking to it) at the end, as a linker lays them out.
    fn tiny_so() -> Vec<u8> {
        let dynstr = b"\0m_session_create\0";
        let phoff = 64u64;
        let strtab = phoff + 2 * PHDR_SIZE;
        let shoff = strtab + dynstr.len() as u64;
        let len = shoff + 3 * SHDR_SIZE;
        let mut f = vec![0u8; len as usize];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        let put16 =
            |f: &mut Vec<u8>, at: usize, v: u16| f[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let put64 =
            |f: &mut Vec<u8>, at: usize, v: u64| f[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put16(&mut f, 16, ET_DYN);
        put16(&mut f, 18, EM_X86_64);
        put32(&mut f, 20, 1);
        put64(&mut f, 32, phoff);
        put64(&mut f, 40, shoff);
        put16(&mut f, 52, 64);
        put16(&mut f, 54, PHDR_SIZE as u16);
        put16(&mut f, 56, 2);
        put16(&mut f, 58, SHDR_SIZE as u16);
        put16(&mut f, 60, 3);
        put16(&mut f, 62, 0);
        // PT_LOAD over the whole file, PT_DYNAMIC over the string table.
        let p0 = phoff as usize;
        put32(&mut f, p0, PT_LOAD);
        put64(&mut f, p0 + 32, len);
        put64(&mut f, p0 + 40, len);
        let p1 = p0 + PHDR_SIZE as usize;
        put32(&mut f, p1, PT_DYNAMIC);
        put64(&mut f, p1 + 8, strtab);
        put64(&mut f, p1 + 32, dynstr.len() as u64);
        put64(&mut f, p1 + 40, dynstr.len() as u64);
        f[strtab as usize..][..dynstr.len()].copy_from_slice(dynstr);
        // Section 1: the string table; section 2: dynsym (no bytes) linking to it.
        let s1 = shoff as usize + SHDR_SIZE as usize;
        put32(&mut f, s1 + 4, 3);
        put64(&mut f, s1 + 24, strtab);
        put64(&mut f, s1 + 32, dynstr.len() as u64);
        let s2 = s1 + SHDR_SIZE as usize;
        put32(&mut f, s2 + 4, SHT_DYNSYM);
        put32(&mut f, s2 + 40, 1);
        f
    }

    fn check_bytes(bytes: &[u8]) -> Result<Checked> {
        check_file(&mut Cursor::new(bytes), bytes.len() as u64)
    }

    fn refused(bytes: &[u8], says: &str) {
        match check_bytes(bytes) {
            Ok(_) => panic!("accepted a library that should fail with `{says}`"),
            Err(e) => {
                let msg = e;
                assert!(msg.contains(says), "`{msg}` does not say `{says}`");
            }
        }
    }

    #[test]
    fn a_whole_library_passes_and_gives_its_dynamic_strings() {
        let so = tiny_so();
        let checked = check_bytes(&so).expect("a whole library");
        assert_eq!(checked.dynstr, b"\0m_session_create\0");
    }

    #[test]
    fn a_wrong_header_is_named() {
        let so = tiny_so();
        refused(b"hello", "fewer than an ELF header");
        refused(&[b'x'; 100], "ELF magic");
        let mut bad = so.clone();
        bad[4] = 1;
        refused(&bad, "64-bit");
        let mut bad = so.clone();
        bad[5] = 2;
        refused(&bad, "little-endian");
        let mut bad = so.clone();
        bad[16] = 2; // ET_EXEC
        refused(&bad, "not a shared object");
        let mut bad = so.clone();
        bad[18] = 183; // aarch64
        refused(&bad, "not x86-64");
    }

    #[test]
    fn truncation_anywhere_is_found() {
        let so = tiny_so();
        // Every cut of the file fails: the section table is last, the segment covers it all.
        for cut in [63, 64, 100, 200, so.len() - 64, so.len() - 1] {
            assert!(check_bytes(&so[..cut]).is_err(), "a cut at {cut} passed");
        }
        refused(&so[..so.len() - 1], "past the end of the file");
    }

    #[test]
    fn damaged_tables_are_found() {
        let so = tiny_so();
        // A segment that reaches far past the end.
        let mut bad = so.clone();
        bad[64 + 32..64 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        refused(&bad, "segment 0");
        // A program header table offset that overflows.
        let mut bad = so.clone();
        bad[32..40].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
        refused(&bad, "program header table");
        // A dynamic symbol table linking to a section that does not exist.
        let mut bad = so.clone();
        let s2 = so.len() - 64;
        bad[s2 + 40..s2 + 44].copy_from_slice(&9u32.to_le_bytes());
        refused(&bad, "section 9 of 3");
    }
}
