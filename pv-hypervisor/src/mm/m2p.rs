//! The machine-to-phys (M2P) table: for every machine frame, the guest frame number
//! its owner gave it (or INVALID_M2P_ENTRY). It is one array of u64 in hypervisor
//! frames, written by the hypervisor through machine memory and mapped read-only at
//! MACH2PHYS_VIRT_START in every guest (arch-x86/xen-x86_64.h): a PV kernel turns the
//! machine addresses in its page tables back into its own frame numbers with one load.

use super::guest_walk::MachineMemory;
use hypercall_abi::ops::memory::{INVALID_M2P_ENTRY, MACH2PHYS_NR_ENTRIES, MACH2PHYS_VIRT_START};
use hypercall_abi::Errno;

const PAGE: u64 = 4096;
const ENTRIES_PER_PAGE: u64 = PAGE / 8;
const PRESENT: u64 = 1 << 0;
const USER: u64 = 1 << 2;
const NO_EXECUTE: u64 = 1 << 63;

/// Where the table lives and how many machine frames it describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachToPhys {
    /// First machine frame of the table (its frames are contiguous).
    pub first_mfn: u64,
    /// Machine frames described: 0..entries.
    pub entries: u64,
}

impl MachToPhys {
    /// The frames a table for `entries` machine frames takes.
    pub fn frames_for(entries: u64) -> u64 {
        entries.min(MACH2PHYS_NR_ENTRIES).div_ceil(ENTRIES_PER_PAGE)
    }

    /// Frames of page tables `map` needs to map a table of `table_frames` frames:
    /// one L3, one L2 per GiB of table and one L1 per 2 MiB of it.
    pub fn mapping_frames_for(table_frames: u64) -> u64 {
        1 + table_frames.div_ceil(512 * 512) + table_frames.div_ceil(512)
    }

    /// A table in `first_mfn..` for frames 0..entries, every entry made invalid.
    pub fn init<M: MachineMemory>(memory: &mut M, first_mfn: u64, entries: u64) -> Option<MachToPhys> {
        let table = MachToPhys { first_mfn, entries: entries.min(MACH2PHYS_NR_ENTRIES) };
        let invalid = [0xffu8; PAGE as usize];
        for frame in 0..Self::frames_for(table.entries) {
            memory.write_bytes((first_mfn + frame) * PAGE, &invalid)?;
        }
        Some(table)
    }

    fn entry_maddr(&self, mfn: u64) -> Result<u64, Errno> {
        if mfn >= self.entries {
            return Err(Errno::EINVAL);
        }
        Ok(self.first_mfn * PAGE + mfn * 8)
    }

    pub fn set<M: MachineMemory>(&self, memory: &mut M, mfn: u64, pfn: u64) -> Result<(), Errno> {
        let at = self.entry_maddr(mfn)?;
        memory.write_bytes(at, &pfn.to_le_bytes()).ok_or(Errno::EFAULT)
    }

    pub fn get<M: MachineMemory>(&self, memory: &M, mfn: u64) -> Option<u64> {
        memory.read_u64(self.entry_maddr(mfn).ok()?)
    }

    pub fn invalidate<M: MachineMemory>(&self, memory: &mut M, mfn: u64) {
        let _ = self.set(memory, mfn, INVALID_M2P_ENTRY);
    }

    /// The table's frames, as machphys_mfn_list reports them: one per 2 MiB of table.
    pub fn extent_mfns(&self) -> impl Iterator<Item = u64> + '_ {
        let frames = Self::frames_for(self.entries);
        (0..frames.div_ceil(512)).map(move |i| self.first_mfn + i * 512)
    }

    /// Builds the page tables that map the table read-only (and not executable) for
    /// guest kernels at MACH2PHYS_VIRT_START, in frames taken from `alloc`. Returns the
    /// L3's frame, for L4 slot 256; every level is user-accessible but none writable.
    pub fn map<M: MachineMemory>(&self, memory: &mut M, alloc: &mut dyn FnMut() -> Option<u64>) -> Option<u64> {
        let zero = [0u8; PAGE as usize];
        let mut fresh = |memory: &mut M| -> Option<u64> {
            let mfn = alloc()?;
            memory.write_bytes(mfn * PAGE, &zero)?;
            Some(mfn)
        };
        let l3 = fresh(memory)?;
        let table_frames = Self::frames_for(self.entries);
        let (mut l2, mut l1) = (0, 0);
        for frame in 0..table_frames {
            let va = MACH2PHYS_VIRT_START + frame * PAGE;
            if frame % (512 * 512) == 0 {
                l2 = fresh(memory)?;
                write_entry(memory, l3, (va >> 30) & 511, (l2 * PAGE) | PRESENT | USER)?;
            }
            if frame % 512 == 0 {
                l1 = fresh(memory)?;
                write_entry(memory, l2, (va >> 21) & 511, (l1 * PAGE) | PRESENT | USER)?;
            }
            write_entry(memory, l1, (va >> 12) & 511, ((self.first_mfn + frame) * PAGE) | PRESENT | USER | NO_EXECUTE)?;
        }
        Some(l3)
    }
}

fn write_entry<M: MachineMemory>(memory: &mut M, table: u64, index: u64, value: u64) -> Option<()> {
    memory.write_bytes(table * PAGE + index * 8, &value.to_le_bytes())
}

/// The L4 entry that makes the table at `l3` visible: present, user, read-only.
pub fn l4_entry(l3: u64) -> u64 {
    (l3 * PAGE) | PRESENT | USER
}

/// L4 slot of MACH2PHYS_VIRT_START.
pub const L4_SLOT: usize = ((MACH2PHYS_VIRT_START >> 39) & 511) as usize;
const _: () = assert!(L4_SLOT == 256);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::guest_walk::{translate, Access};
    use crate::mm::test_memory::SparseMemory;

    #[test]
    fn sizes() {
        assert_eq!(MachToPhys::frames_for(0x20000), 256); // 512 MiB of RAM: 1 MiB of table
        assert_eq!(MachToPhys::frames_for(0x20001), 257);
        assert_eq!(MachToPhys::mapping_frames_for(256), 3);
        assert_eq!(MachToPhys::mapping_frames_for(2048), 6);
        assert_eq!(MachToPhys::frames_for(u64::MAX), MACH2PHYS_NR_ENTRIES / 512);
    }

    fn memory_with(frames: core::ops::Range<u64>) -> SparseMemory {
        let mut memory = SparseMemory::default();
        for mfn in frames {
            memory.add_frame(mfn, 0x5a);
        }
        memory
    }

    #[test]
    fn entries_start_invalid_and_are_set_and_bounded() {
        let mut memory = memory_with(0x100..0x102);
        let m2p = MachToPhys::init(&mut memory, 0x100, 700).unwrap();
        assert_eq!(m2p.get(&memory, 0), Some(INVALID_M2P_ENTRY));
        assert_eq!(m2p.get(&memory, 699), Some(INVALID_M2P_ENTRY));
        m2p.set(&mut memory, 600, 42).unwrap();
        assert_eq!(m2p.get(&memory, 600), Some(42));
        assert_eq!(memory.read_u64(0x101 * PAGE + (600 - 512) * 8), Some(42));
        assert_eq!(m2p.set(&mut memory, 700, 1), Err(Errno::EINVAL));
        assert_eq!(m2p.get(&memory, 700), None);
        m2p.invalidate(&mut memory, 600);
        assert_eq!(m2p.get(&memory, 600), Some(INVALID_M2P_ENTRY));
    }

    #[test]
    fn the_mapping_is_read_only_user_and_finds_every_entry() {
        // 1030 table frames: three L1s, so a 2 MiB boundary is crossed twice.
        let entries = 1030 * 512;
        let mut memory = memory_with(0x1000..0x1000 + 1030);
        for mfn in 0x9000..0x9010 {
            memory.add_frame(mfn, 0x77);
        }
        let m2p = MachToPhys::init(&mut memory, 0x1000, entries).unwrap();
        let mut next = 0x9000;
        let l3 = m2p.map(&mut memory, &mut || {
            next += 1;
            Some(next - 1)
        });
        let l3 = l3.unwrap();
        assert_eq!(next - 0x9000, MachToPhys::mapping_frames_for(1030));
        // An L4 with only the M2P slot, walked as a guest access would be.
        memory.add_frame(0x8000, 0);
        memory.set_entry(0x8000 * PAGE, L4_SLOT as u64, l4_entry(l3));
        m2p.set(&mut memory, 513 * 512 + 3, 0xabc).unwrap();
        let walk = |va, access| cpu_walk(&memory, 0x8000 * PAGE, va, access);
        let va = MACH2PHYS_VIRT_START + (513 * 512 + 3) * 8;
        let maddr = walk(va, Access::Read).unwrap();
        assert_eq!(memory.read_u64(maddr), Some(0xabc));
        assert_eq!(walk(va, Access::Write), None);
        assert!(walk(MACH2PHYS_VIRT_START + 1030 * PAGE, Access::Read).is_none());
        // Hypercall arguments never reach it: the guest-pointer walker refuses the
        // hypervisor's range outright, as Xen's copy routines do.
        assert_eq!(translate(&memory, 0x8000 * PAGE, va, Access::Read), Err(Errno::EFAULT));
    }

    /// The walk the CPU does for a guest's own load (ring 3: user bit at every level).
    fn cpu_walk(memory: &SparseMemory, l4: u64, va: u64, access: Access) -> Option<u64> {
        let mut table = l4;
        for shift in [39u32, 30, 21, 12] {
            let entry = memory.read_u64(table + ((va >> shift) & 511) * 8)?;
            if entry & PRESENT == 0 || entry & USER == 0 || (access == Access::Write && entry & 2 == 0) {
                return None;
            }
            table = entry & 0x000f_ffff_ffff_f000;
        }
        Some(table + (va & 0xfff))
    }
}
