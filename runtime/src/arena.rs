//! A 64-byte-aligned buffer that grows only when asked for more than it has.
//!
//! Each session has one as its activation arena (the size the compiled model plans for the
//! run's symbol values) and one per session-owned output. Growing frees the old block and
//! allocates a new one without copying: the contents of an arena do not survive between runs.
//! Allocation failure is reported, never an abort, so a run on inputs too large for the
//! machine gets `TCC_ERR_OUT_OF_MEMORY`.

use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;

/// The alignment of every arena, in bytes: a cache line and an AVX-512 register.
pub const ALIGN: usize = 64;

/// An arena could not grow: the allocator refused or the size does not fit the address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError {
    /// The bytes that were asked for.
    pub bytes: u64,
}

/// A growable, 64-byte-aligned block of memory. Never empty once grown: its pointer is always
/// valid for [`Arena::capacity`] bytes.
#[derive(Debug)]
pub struct Arena {
    ptr: Option<NonNull<u8>>,
    capacity: usize,
    grows: u64,
}

// SAFETY: the arena owns its block exclusively; moving it to another thread moves that
// ownership, and `&Arena` gives no access to the bytes.
unsafe impl Send for Arena {}

impl Default for Arena {
    fn default() -> Self {
        Arena::new()
    }
}

impl Arena {
    /// An arena with no memory yet.
    pub const fn new() -> Arena {
        Arena {
            ptr: None,
            capacity: 0,
            grows: 0,
        }
    }

    /// The bytes the arena holds now.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many times the arena has allocated a block.
    pub fn grows(&self) -> u64 {
        self.grows
    }

    /// A 64-byte-aligned pointer to at least `bytes` bytes, growing the arena if it is smaller.
    ///
    /// The pointer is never NULL (an arena asked for 0 bytes still holds one aligned block) and
    /// stays valid until the next call that grows the arena, or until the arena is dropped.
    pub fn reserve(&mut self, bytes: u64) -> Result<NonNull<u8>, AllocError> {
        let error = AllocError { bytes };
        let wanted = usize::try_from(bytes).map_err(|_| error)?;
        if let Some(ptr) = self.ptr {
            if wanted <= self.capacity {
                return Ok(ptr);
            }
        }
        // Round up to whole cache lines; refuse sizes `Layout` rejects (beyond isize::MAX).
        let size = wanted.max(1).checked_next_multiple_of(ALIGN).ok_or(error)?;
        let layout = Layout::from_size_align(size, ALIGN).map_err(|_| error)?;
        self.release();
        // SAFETY: `layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc(layout) }).ok_or(error)?;
        self.ptr = Some(ptr);
        self.capacity = size;
        self.grows += 1;
        Ok(ptr)
    }

    /// Frees the block, if any.
    fn release(&mut self) {
        if let Some(ptr) = self.ptr.take() {
            // SAFETY: `ptr` was allocated by `reserve` with exactly this layout, which was
            // valid then, and it is freed once because `take` cleared it.
            unsafe {
                dealloc(
                    ptr.as_ptr(),
                    Layout::from_size_align_unchecked(self.capacity, ALIGN),
                )
            };
            self.capacity = 0;
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_only_when_asked_for_more() {
        let mut arena = Arena::new();
        assert_eq!((arena.capacity(), arena.grows()), (0, 0));
        let a = arena.reserve(100).unwrap();
        assert_eq!(a.as_ptr() as usize % ALIGN, 0);
        assert_eq!((arena.capacity(), arena.grows()), (128, 1));
        // Smaller or equal requests reuse the block.
        assert_eq!(arena.reserve(10).unwrap(), a);
        assert_eq!(arena.reserve(128).unwrap(), a);
        assert_eq!(arena.grows(), 1);
        // A larger one grows it.
        let b = arena.reserve(129).unwrap();
        assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        assert_eq!((arena.capacity(), arena.grows()), (192, 2));
        // The whole block is writable.
        // SAFETY: the arena holds `capacity` bytes at `b`.
        unsafe { std::ptr::write_bytes(b.as_ptr(), 0xab, arena.capacity()) };
    }

    #[test]
    fn zero_bytes_is_still_a_valid_block() {
        let mut arena = Arena::new();
        let ptr = arena.reserve(0).unwrap();
        assert_eq!(ptr.as_ptr() as usize % ALIGN, 0);
        assert_eq!(arena.capacity(), ALIGN);
    }

    #[test]
    fn impossible_sizes_are_errors_not_aborts() {
        let mut arena = Arena::new();
        arena.reserve(64).unwrap();
        for bytes in [u64::MAX, 1 << 62, isize::MAX as u64] {
            assert_eq!(arena.reserve(bytes), Err(AllocError { bytes }));
        }
    }
}
