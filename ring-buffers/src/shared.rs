//! The shared area as an array of atomic 32-bit words: the only module that touches raw
//! memory.
//!
//! Every access to memory the peer can write is an atomic operation, so a peer writing
//! concurrently (even maliciously) is never a data race on our side. Relaxed loads and
//! stores compile to plain moves on x86; the protocol's ordering comes from the explicit
//! Acquire/Release operations and SeqCst fences in the rings. Under `--cfg loom` the
//! same code runs on loom's atomics for model checking.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, Ordering};

/// A view of shared memory as 32-bit words. Byte offsets passed by the rings are their
/// own layout constants or slot offsets already reduced modulo the ring size, so an
/// out-of-range offset is a bug in this crate, never the peer's doing.
#[derive(Clone, Copy)]
pub struct SharedWords<'a> {
    words: &'a [AtomicU32],
}

impl<'a> SharedWords<'a> {
    /// Views memory we own as shared words (tests, loom models, a domain's own rings).
    pub fn new(words: &'a [AtomicU32]) -> Self {
        SharedWords { words }
    }

    /// Views `len` bytes at `ptr`, e.g. a page granted by and mapped from another
    /// domain. A trailing part of `len` that is not a whole word is not used.
    ///
    /// # Safety
    /// For all of `'a`: `ptr` is 4-byte aligned and valid for reads and writes of `len`
    /// bytes, the memory stays mapped, and this side never accesses it except through
    /// the returned view (the peer may write anything at any time: that is allowed).
    #[cfg(not(loom))]
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> Self {
        debug_assert!((ptr as usize).is_multiple_of(core::mem::align_of::<AtomicU32>()));
        // SAFETY: AtomicU32 has the size and alignment of u32 and may be shared between
        // threads (and so between domains: the peer is just another writer). The caller
        // guarantees the pointer is aligned, the range valid for 'a, and that every
        // access of ours goes through these atomics, so no non-atomic access races.
        let words = unsafe { core::slice::from_raw_parts(ptr as *const AtomicU32, len / 4) };
        SharedWords { words }
    }

    pub fn len_bytes(&self) -> usize {
        self.words.len() * 4
    }

    #[inline]
    pub(crate) fn word(&self, byte_offset: usize) -> &'a AtomicU32 {
        &self.words[byte_offset / 4]
    }

    /// Copies bytes out of shared memory starting at any byte offset. Each word is read
    /// exactly once, so the copy is a snapshot the peer cannot change afterwards (it can
    /// only make the snapshot inconsistent, which the caller's validation must handle).
    #[inline]
    pub(crate) fn read_bytes(&self, byte_offset: usize, out: &mut [u8]) {
        if byte_offset.is_multiple_of(4) && out.len().is_multiple_of(4) {
            // Whole words (every ring slot): the hot path, one load per word.
            let words = &self.words[byte_offset / 4..][..out.len() / 4];
            for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
                chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
            }
            return;
        }
        let mut at = byte_offset;
        let mut done = 0;
        while done < out.len() {
            let in_word = at % 4;
            let take = (4 - in_word).min(out.len() - done);
            let bytes = self.words[at / 4].load(Ordering::Relaxed).to_le_bytes();
            out[done..done + take].copy_from_slice(&bytes[in_word..in_word + take]);
            done += take;
            at += take;
        }
    }

    /// Copies `data` into shared memory at any byte offset. A word only partly covered
    /// is read, merged and written back: its other bytes are ours too (the rings never
    /// let two owners share a word), so the merge cannot undo a legitimate peer write.
    #[inline]
    pub(crate) fn write_bytes(&self, byte_offset: usize, data: &[u8]) {
        if byte_offset.is_multiple_of(4) && data.len().is_multiple_of(4) {
            // Whole words (every ring slot): the hot path, one store per word.
            let words = &self.words[byte_offset / 4..][..data.len() / 4];
            for (chunk, word) in data.chunks_exact(4).zip(words) {
                let bytes = [chunk[0], chunk[1], chunk[2], chunk[3]];
                word.store(u32::from_le_bytes(bytes), Ordering::Relaxed);
            }
            return;
        }
        let mut at = byte_offset;
        let mut done = 0;
        while done < data.len() {
            let in_word = at % 4;
            let take = (4 - in_word).min(data.len() - done);
            let word = &self.words[at / 4];
            let mut bytes = if take == 4 { [0; 4] } else { word.load(Ordering::Relaxed).to_le_bytes() };
            bytes[in_word..in_word + take].copy_from_slice(&data[done..done + take]);
            word.store(u32::from_le_bytes(bytes), Ordering::Relaxed);
            done += take;
            at += take;
        }
    }
}

/// `N` zeroed, page-aligned 4 KiB pages of shared words: the safe way to get a ring
/// area on the host (tests, benchmarks) or for rings within one domain.
#[cfg(not(loom))]
#[repr(C, align(4096))]
pub struct SharedPages<const N: usize>([[AtomicU32; 1024]; N]);

/// One page, the usual ring size.
#[cfg(not(loom))]
pub type Page = SharedPages<1>;

#[cfg(not(loom))]
impl<const N: usize> SharedPages<N> {
    pub const BYTES: usize = N * 4096;

    pub fn new() -> Self {
        SharedPages([const { [const { AtomicU32::new(0) }; 1024] }; N])
    }

    pub fn words(&self) -> SharedWords<'_> {
        SharedWords::new(self.0.as_flattened())
    }
}

#[cfg(not(loom))]
impl<const N: usize> Default for SharedPages<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn byte_copies_at_any_offset_round_trip() {
        let page = Page::new();
        let mem = page.words();
        let data: [u8; 11] = core::array::from_fn(|i| 0xa0 + i as u8);
        for offset in 0..8 {
            mem.write_bytes(100 + offset, &data);
            let mut back = [0u8; 11];
            mem.read_bytes(100 + offset, &mut back);
            assert_eq!(back, data, "offset {offset}");
        }
        // Neighbours of a partial write keep their bytes.
        mem.write_bytes(200, &[1, 2, 3, 4, 5, 6, 7, 8]);
        mem.write_bytes(201, &[9, 9]);
        let mut back = [0u8; 8];
        mem.read_bytes(200, &mut back);
        assert_eq!(back, [1, 9, 9, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn pages_are_aligned_and_sized() {
        let pages = SharedPages::<4>::new();
        assert_eq!(pages.words().len_bytes(), 4 * 4096);
        assert_eq!(&pages as *const _ as usize % 4096, 0);
        let mut raw = std::vec![0u32; 8];
        // SAFETY: `raw` is u32-aligned, 32 bytes long, outlives `mem`, and is accessed
        // only through `mem` until `mem`'s last use.
        let mem = unsafe { SharedWords::from_raw(raw.as_mut_ptr() as *mut u8, 30) };
        assert_eq!(mem.len_bytes(), 28, "the partial last word is not used");
        mem.write_bytes(0, &[7; 4]);
        assert_eq!(raw[0], 0x0707_0707);
    }
}
