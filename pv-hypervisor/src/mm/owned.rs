//! Machine memory as one domain may reach it: every access, page-table reads of the
//! software walk included, must fall in frames the frame table says the domain owns.
//!
//! Validation already guarantees that a walk through a domain's own page tables only
//! reaches its own frames; this is the second, independent check the guest-memory
//! paths (hypercall arguments, bounce frames, iret frames) go through, so a validator
//! bug cannot become a read or write of another domain's memory or the hypervisor's.
//!
//! What is checked is every byte read or written (`read_bytes`, `write_bytes`), not
//! the page-table entries the walk reads on the way (`read_u64`): whatever frame a bad
//! entry led to, the access that follows is checked, and five frame-table lookups per
//! access instead of one cost a bounce + iret some 400 instructions.

use super::frame_table::FrameTable;
use super::guest_walk::MachineMemory;
use crate::domain::DomainId;

const PAGE: u64 = 4096;

pub struct OwnedBy<'a, M: MachineMemory> {
    memory: Access<'a, M>,
    frames: &'a FrameTable,
    domain: DomainId,
}

/// Readers need only a shared borrow of machine memory; writers an exclusive one.
enum Access<'a, M> {
    Read(&'a M),
    Write(&'a mut M),
}

impl<'a, M: MachineMemory> OwnedBy<'a, M> {
    pub fn new(memory: &'a mut M, frames: &'a FrameTable, domain: DomainId) -> Self {
        OwnedBy { memory: Access::Write(memory), frames, domain }
    }

    /// For reading only: every write is refused.
    pub fn read_only(memory: &'a M, frames: &'a FrameTable, domain: DomainId) -> Self {
        OwnedBy { memory: Access::Read(memory), frames, domain }
    }

    fn memory(&self) -> &M {
        match &self.memory {
            Access::Read(m) => m,
            Access::Write(m) => m,
        }
    }

    /// Whether every frame of `[maddr, maddr + len)` is the domain's.
    #[inline]
    fn owns(&self, maddr: u64, len: usize) -> bool {
        let Some(last) = maddr.checked_add((len as u64).max(1) - 1) else { return false };
        let (first, last) = (maddr / PAGE, last / PAGE);
        // Almost every access is within one page.
        self.frames.is_owned_by(first, self.domain) && (first == last || (first + 1..=last).all(|mfn| self.frames.is_owned_by(mfn, self.domain)))
    }
}

impl<M: MachineMemory> MachineMemory for OwnedBy<'_, M> {
    fn read_u64(&self, maddr: u64) -> Option<u64> {
        self.memory().read_u64(maddr)
    }

    fn read_bytes(&self, maddr: u64, out: &mut [u8]) -> Option<()> {
        self.owns(maddr, out.len()).then(|| self.memory().read_bytes(maddr, out))?
    }

    fn write_bytes(&mut self, maddr: u64, data: &[u8]) -> Option<()> {
        if !self.owns(maddr, data.len()) {
            return None;
        }
        match &mut self.memory {
            Access::Write(m) => m.write_bytes(maddr, data),
            Access::Read(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::guest_walk::copy_from_guest;
    use crate::mm::test_memory::SparseMemory;

    #[test]
    fn only_the_domains_frames_are_reachable() {
        let mut memory = SparseMemory::default();
        let mut frames = FrameTable::new(16);
        for mfn in 1..=3 {
            memory.add_frame(mfn, mfn as u8);
            frames.assign(mfn, 7).unwrap();
        }
        memory.add_frame(4, 4);
        frames.assign(4, 8).unwrap();
        let mut owned = OwnedBy::new(&mut memory, &frames, 7);
        let mut word = [0u8; 8];
        assert_eq!(owned.read_bytes(PAGE + 8, &mut word), Some(()));
        assert_eq!(word, [1; 8]);
        assert!(owned.owns(2 * PAGE - 8, 16), "frames 1 and 2, both ours");
        assert!(!owned.owns(4 * PAGE - 8, 16), "frame 3 is ours, frame 4 is not");
        let mut across = [0u8; 16];
        assert_eq!(owned.read_bytes(4 * PAGE - 8, &mut across), None);
        assert_eq!(owned.read_bytes(4 * PAGE, &mut word), None);
        assert_eq!(owned.write_bytes(4 * PAGE, &[0]), None);
        assert_eq!(owned.write_bytes(u64::MAX - 1, &[0, 0]), None, "wraps");
        assert_eq!(owned.write_bytes(3 * PAGE, &[9]), Some(()));
    }

    #[test]
    fn a_walk_through_a_table_that_maps_someone_elses_frame_fails() {
        // An L4 -> L3 -> L2 -> L1 of ours whose L1 (as if the validator had let it
        // through) maps frame 5, another domain's.
        let mut memory = SparseMemory::default();
        let mut frames = FrameTable::new(16);
        for mfn in 1..=4 {
            memory.add_frame(mfn, 0);
            frames.assign(mfn, 7).unwrap();
        }
        memory.add_frame(5, 0x55);
        frames.assign(5, 8).unwrap();
        for (table, next) in [(1u64, 2u64), (2, 3), (3, 4)] {
            memory.set_entry(table * PAGE, 0, (next * PAGE) | 0x67);
        }
        memory.set_entry(4 * PAGE, 0, (5 * PAGE) | 0x67);
        let mut out = [0u8; 8];
        assert!(copy_from_guest(&memory, PAGE, 0x10, &mut out).is_ok(), "without the check the bytes come back");
        let owned = OwnedBy::read_only(&memory, &frames, 7);
        assert!(copy_from_guest(&owned, PAGE, 0x10, &mut out).is_err());
    }
}
