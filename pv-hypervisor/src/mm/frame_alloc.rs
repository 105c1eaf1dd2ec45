//! The machine-frame allocator: one bit per 4 KiB frame of RAM.
//!
//! Boot marks the RAM ranges of the memory map free and then reserves what is already
//! in use (the hypervisor image, the boot modules, firmware areas). Everything the
//! hypervisor hands to domains or keeps for itself comes from here.

use core::ops::Range;

pub const FRAME_SIZE: u64 = 4096;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum FrameError {
    /// The frame is outside what the allocator tracks.
    OutOfRange(u64),
    /// The frame was already free: a double free, always a hypervisor bug.
    AlreadyFree(u64),
}

pub struct FrameAllocator<'a> {
    /// Bit set = frame free.
    bitmap: &'a mut [u64],
    free: u64,
    /// Where the next single-frame search starts, so allocation is not quadratic.
    hint: usize,
}

impl<'a> FrameAllocator<'a> {
    /// An allocator for frames `0..bitmap.len() * 64`, all initially in use.
    pub fn new(bitmap: &'a mut [u64]) -> Self {
        bitmap.fill(0);
        FrameAllocator { bitmap, free: 0, hint: 0 }
    }

    /// Number of frames the bitmap can describe.
    pub fn capacity(&self) -> u64 {
        self.bitmap.len() as u64 * 64
    }

    pub fn free_frames(&self) -> u64 {
        self.free
    }

    fn clip(&self, frames: Range<u64>) -> Range<u64> {
        frames.start.min(self.capacity())..frames.end.min(self.capacity())
    }

    fn is_free(&self, pfn: u64) -> bool {
        self.bitmap[(pfn / 64) as usize] & (1 << (pfn % 64)) != 0
    }

    fn set(&mut self, pfn: u64, free: bool) {
        let word = &mut self.bitmap[(pfn / 64) as usize];
        let bit = 1u64 << (pfn % 64);
        match (free, *word & bit != 0) {
            (true, false) => {
                *word |= bit;
                self.free += 1;
            }
            (false, true) => {
                *word &= !bit;
                self.free -= 1;
            }
            _ => {}
        }
    }

    /// Marks frames free (RAM from the memory map). Frames beyond the capacity are
    /// ignored; the caller reports them.
    pub fn add_free(&mut self, frames: Range<u64>) {
        for pfn in self.clip(frames) {
            self.set(pfn, true);
        }
    }

    /// Marks frames in use (already occupied at boot).
    pub fn reserve(&mut self, frames: Range<u64>) {
        for pfn in self.clip(frames) {
            self.set(pfn, false);
        }
    }

    /// Takes one free frame.
    pub fn alloc(&mut self) -> Option<u64> {
        let words = self.bitmap.len();
        for i in 0..words {
            let index = (self.hint + i) % words;
            let word = self.bitmap[index];
            if word != 0 {
                let pfn = index as u64 * 64 + word.trailing_zeros() as u64;
                self.set(pfn, false);
                self.hint = index;
                return Some(pfn);
            }
        }
        None
    }

    /// Takes `count` consecutive free frames, returning the first.
    pub fn alloc_contiguous(&mut self, count: u64) -> Option<u64> {
        if count == 0 {
            return None;
        }
        let mut run_start = 0;
        let mut run = 0;
        for pfn in 0..self.capacity() {
            if self.is_free(pfn) {
                if run == 0 {
                    run_start = pfn;
                }
                run += 1;
                if run == count {
                    for p in run_start..run_start + count {
                        self.set(p, false);
                    }
                    return Some(run_start);
                }
            } else {
                run = 0;
            }
        }
        None
    }

    /// Returns a frame.
    pub fn free(&mut self, pfn: u64) -> Result<(), FrameError> {
        if pfn >= self.capacity() {
            return Err(FrameError::OutOfRange(pfn));
        }
        if self.is_free(pfn) {
            return Err(FrameError::AlreadyFree(pfn));
        }
        self.set(pfn, true);
        Ok(())
    }
}

/// Where hypercalls get machine frames from and give them back to (memory_op's
/// reservations): the frame allocator at run time, a plain list in host tests.
pub trait FrameSource {
    /// A free frame below frame `limit` (exclusive), if there is one.
    fn take_below(&mut self, limit: u64) -> Option<u64>;
    /// 2^order free frames in a row, the first a multiple of 2^order, all below
    /// `limit`: the first of them.
    fn take_run_below(&mut self, order: u32, limit: u64) -> Option<u64>;
    fn give_back(&mut self, mfn: u64);
}

impl FrameSource for FrameAllocator<'_> {
    fn take_below(&mut self, limit: u64) -> Option<u64> {
        let mfn = self.alloc()?;
        if mfn < limit {
            return Some(mfn);
        }
        // The lowest free frame is what a bounded request can best hope for.
        let _ = self.free(mfn);
        let low = (0..limit.min(self.capacity())).find(|&pfn| self.is_free(pfn))?;
        self.set(low, false);
        Some(low)
    }

    fn take_run_below(&mut self, order: u32, limit: u64) -> Option<u64> {
        let size = 1u64.checked_shl(order)?;
        let end = limit.min(self.capacity());
        let mut start: u64 = 0;
        while start.checked_add(size)? <= end {
            match (start..start + size).find(|&pfn| !self.is_free(pfn)) {
                // Skip past the frame in use, to the next aligned start.
                Some(used) => start = (used + 1).next_multiple_of(size),
                None => {
                    for pfn in start..start + size {
                        self.set(pfn, false);
                    }
                    return Some(start);
                }
            }
        }
        None
    }

    fn give_back(&mut self, mfn: u64) {
        let _ = self.free(mfn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_only_free_ram_and_counts() {
        let mut bits = [0u64; 4];
        let mut a = FrameAllocator::new(&mut bits);
        assert_eq!(a.alloc(), None);
        a.add_free(10..20);
        a.reserve(12..14);
        assert_eq!(a.free_frames(), 8);
        let mut got = std::vec::Vec::new();
        while let Some(f) = a.alloc() {
            got.push(f);
        }
        got.sort();
        assert_eq!(got, [10, 11, 14, 15, 16, 17, 18, 19]);
        assert_eq!(a.free_frames(), 0);
    }

    #[test]
    fn ranges_beyond_capacity_are_clipped() {
        let mut bits = [0u64; 1];
        let mut a = FrameAllocator::new(&mut bits);
        a.add_free(60..1000);
        assert_eq!(a.free_frames(), 4);
        assert_eq!(a.free(5000), Err(FrameError::OutOfRange(5000)));
    }

    #[test]
    fn contiguous_runs_skip_holes() {
        let mut bits = [0u64; 2];
        let mut a = FrameAllocator::new(&mut bits);
        a.add_free(0..128);
        a.reserve(3..4);
        assert_eq!(a.alloc_contiguous(5), Some(4));
        assert_eq!(a.alloc_contiguous(3), Some(0));
        assert_eq!(a.alloc_contiguous(200), None);
        assert_eq!(a.alloc_contiguous(0), None);
        assert_eq!(a.free_frames(), 128 - 1 - 5 - 3);
    }

    #[test]
    fn double_free_is_detected() {
        let mut bits = [0u64; 1];
        let mut a = FrameAllocator::new(&mut bits);
        a.add_free(0..8);
        let f = a.alloc().unwrap();
        assert_eq!(a.free(f), Ok(()));
        assert_eq!(a.free(f), Err(FrameError::AlreadyFree(f)));
        assert_eq!(a.free_frames(), 8);
    }

    #[test]
    fn runs_are_aligned_and_skip_frames_in_use() {
        let mut bits = [0u64; 4];
        let mut a = FrameAllocator::new(&mut bits);
        a.add_free(0..256);
        a.reserve(5..6);
        // Order 2: 0-3 is free; then order 3 must skip 0-7 (5 is in use, 0-3 taken).
        assert_eq!(a.take_run_below(2, 256), Some(0));
        assert_eq!(a.take_run_below(3, 256), Some(8));
        assert_eq!(a.take_run_below(0, 256), Some(4));
        assert_eq!(a.take_run_below(8, 256), None, "256 frames from 0 are not all free");
        assert_eq!(a.take_run_below(4, 16), None, "below the limit");
        assert_eq!(a.take_run_below(64, 256), None, "no overflow");
        assert_eq!(a.free_frames(), 256 - 1 - 4 - 8 - 1);
    }
}
