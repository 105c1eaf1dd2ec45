//! Which of the guest's own frames are free: one bit per guest frame number of the range
//! the memory manager owns (set = free), with a cursor so a run of allocations does not
//! rescan the front.

/// The most frames one manager tracks (4 GiB of guest memory); beyond that the range is
/// cut short and the rest stays unused.
pub const MAX_FRAMES: u64 = 1 << 20;
const WORDS: usize = (MAX_FRAMES / 64) as usize;

pub struct Frames {
    /// The first guest frame number tracked, and how many.
    base: u64,
    count: u64,
    free: [u64; WORDS],
    free_count: u64,
    /// The word the next search starts at.
    cursor: usize,
}

impl Frames {
    /// Tracks nothing (all zero, so the static holding it lives in .bss).
    pub const EMPTY: Frames = Frames { base: 0, count: 0, free: [0; WORDS], free_count: 0, cursor: 0 };

    /// Tracks `[base, base + count)`, all of it taken until given.
    pub fn reset(&mut self, base: u64, count: u64) {
        self.base = base;
        self.count = count.min(MAX_FRAMES);
        self.free = [0; WORDS];
        self.free_count = 0;
        self.cursor = 0;
    }

    pub fn contains(&self, pfn: u64) -> bool {
        pfn.wrapping_sub(self.base) < self.count
    }

    pub fn range(&self) -> core::ops::Range<u64> {
        self.base..self.base + self.count
    }

    pub fn free_count(&self) -> u64 {
        self.free_count
    }

    pub fn is_free(&self, pfn: u64) -> bool {
        self.contains(pfn) && {
            let bit = pfn - self.base;
            self.free[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        }
    }

    /// Makes `pfn` available. Giving a frame that is outside the range or already free
    /// is a bug in the caller, refused with `false`.
    pub fn give(&mut self, pfn: u64) -> bool {
        if !self.contains(pfn) || self.is_free(pfn) {
            return false;
        }
        let bit = pfn - self.base;
        self.free[(bit / 64) as usize] |= 1 << (bit % 64);
        self.free_count += 1;
        true
    }

    /// A free frame, now taken.
    pub fn take(&mut self) -> Option<u64> {
        if self.free_count == 0 {
            return None;
        }
        let words = self.count.div_ceil(64) as usize;
        for step in 0..words {
            let word = (self.cursor + step) % words;
            let bits = self.free[word];
            if bits != 0 {
                let bit = bits.trailing_zeros();
                self.free[word] &= !(1 << bit);
                self.free_count -= 1;
                self.cursor = word;
                return Some(self.base + word as u64 * 64 + u64::from(bit));
            }
        }
        None
    }
}
