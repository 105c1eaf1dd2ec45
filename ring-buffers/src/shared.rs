//! The shared page as an array of atomic 32-bit words.
//!
//! Every access to memory the peer can write is an atomic operation, so a peer writing
//! concurrently (even maliciously) is never a data race on our side. Relaxed loads and
//! stores compile to plain moves on x86; the protocol's ordering comes from the
//! explicit Acquire/Release/SeqCst operations in the rings. Under `--cfg loom` the same
//! code runs on loom's atomics for model checking.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, Ordering};
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, Ordering};

/// A view of shared memory as words. Offsets below are in bytes and must be multiples
/// of 4; they are checked against the length (a bug, not peer input, if wrong).
#[derive(Clone, Copy)]
pub struct SharedWords<'a> {
    words: &'a [AtomicU32],
}

impl<'a> SharedWords<'a> {
    pub fn new(words: &'a [AtomicU32]) -> Self {
        SharedWords { words }
    }

    /// Views `len` bytes at `ptr` (e.g. a granted page mapped from another domain).
    ///
    /// # Safety
    /// `ptr` must be 4-byte aligned, valid for reads and writes of `len` bytes for `'a`,
    /// and only ever accessed atomically by this side (the peer may do anything).
    #[cfg(not(loom))]
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> Self {
        // SAFETY: AtomicU32 has the size and alignment of u32; the caller guarantees the
        // range and that all our accesses go through these atomics.
        let words = unsafe { core::slice::from_raw_parts(ptr as *const AtomicU32, len / 4) };
        SharedWords { words }
    }

    pub fn len_bytes(&self) -> usize {
        self.words.len() * 4
    }

    #[inline]
    pub(crate) fn word(&self, byte_offset: usize) -> &AtomicU32 {
        &self.words[byte_offset / 4]
    }

    /// Copies `out.len()` bytes from `byte_offset` (word-aligned) out of shared memory.
    #[inline]
    pub(crate) fn read_bytes(&self, byte_offset: usize, out: &mut [u8]) {
        let words = &self.words[byte_offset / 4..(byte_offset + out.len()).div_ceil(4)];
        for (chunk, word) in out.chunks_mut(4).zip(words) {
            let bytes = word.load(Ordering::Relaxed).to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    /// Copies `data` into shared memory at `byte_offset` (word-aligned). A partial last
    /// word keeps its other bytes (read-modify-write; only our side writes there).
    #[inline]
    pub(crate) fn write_bytes(&self, byte_offset: usize, data: &[u8]) {
        let words = &self.words[byte_offset / 4..(byte_offset + data.len()).div_ceil(4)];
        for (chunk, word) in data.chunks(4).zip(words) {
            let mut bytes = [0u8; 4];
            if chunk.len() < 4 {
                bytes = word.load(Ordering::Relaxed).to_le_bytes();
            }
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u32::from_le_bytes(bytes), Ordering::Relaxed);
        }
    }

    /// Reads one byte at any offset.
    #[inline]
    pub(crate) fn read_byte(&self, byte_offset: usize) -> u8 {
        self.words[byte_offset / 4].load(Ordering::Relaxed).to_le_bytes()[byte_offset % 4]
    }

    /// Writes one byte at any offset.
    #[inline]
    pub(crate) fn write_byte(&self, byte_offset: usize, value: u8) {
        let word = &self.words[byte_offset / 4];
        let mut bytes = word.load(Ordering::Relaxed).to_le_bytes();
        bytes[byte_offset % 4] = value;
        word.store(u32::from_le_bytes(bytes), Ordering::Relaxed);
    }
}

/// One 4 KiB page of shared words, for tests, benchmarks and a domain's own rings.
#[cfg(not(loom))]
#[repr(C, align(4096))]
pub struct Page(pub [AtomicU32; 1024]);

#[cfg(not(loom))]
impl Page {
    pub fn new() -> Self {
        Page([const { AtomicU32::new(0) }; 1024])
    }

    pub fn words(&self) -> SharedWords<'_> {
        SharedWords::new(&self.0)
    }
}

#[cfg(not(loom))]
impl Default for Page {
    fn default() -> Self {
        Page::new()
    }
}
