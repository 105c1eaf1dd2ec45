//! The guest's memory manager, over the PV MMU hypercalls: a frame allocator over its
//! p2m list, a page-table manager (map, unmap, change protection, new address spaces,
//! switch, pin/unpin), a map of its own memory, a heap that grows by mapping frames,
//! and a balloon that gives frames back to the hypervisor and takes them again.
//!
//! Layout, in the kernel's address space (virt_base is 0):
//! - L4 slot 0: what the loader mapped (guest frame n at n * 4096, up to the end of the
//!   initial mapping), as it left it;
//! - L4 slot 1 ([`physmap`]): every frame the manager owns at `PHYSMAP_BASE + pfn * 4096`,
//!   data writable, page tables read-only (the rule a PV guest lives by: the hypervisor
//!   refuses a writable mapping of a page table);
//! - L4 slot 2 ([`heap`]): the kernel heap, growing upwards.
//!
//! The manager owns the frames between the end of the initial mapping and the last
//! [`FRAMES_FOR_CHECKS`] frames, which the conformance checks keep building page tables
//! from by hand (they need frames nothing maps). It starts on first use, so a check
//! that never uses it sees the domain exactly as the loader left it, on our hypervisor
//! and on Xen alike.

mod address_space;
pub mod balloon;
mod frames;
pub mod heap;
mod physmap;
mod raw;

pub use address_space::AddressSpace;
pub use raw::{m2p, PAGE};

use crate::platform;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use frames::Frames;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::mmu::{MmuUpdate, MmuextOp, DOMID_SELF, MMUEXT_INVLPG_LOCAL, MMUEXT_TLB_FLUSH_LOCAL, UVMF_INVLPG};
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::{GuestArray, GuestOut};
use spin::Mutex;

/// Frames at the end of the domain the manager leaves alone (see the module docs).
pub const FRAMES_FOR_CHECKS: u64 = 2048;

/// Page-table entry bits (the x86-64 PTE format Xen's PV ABI uses unchanged).
pub const PTE_PRESENT: u64 = 1 << 0;
pub const PTE_WRITABLE: u64 = 1 << 1;
pub const PTE_USER: u64 = 1 << 2;
pub const PTE_ACCESSED: u64 = 1 << 5;
pub const PTE_DIRTY: u64 = 1 << 6;
pub const PTE_PS: u64 = 1 << 7;
pub const PTE_ADDRESS: u64 = 0x000f_ffff_ffff_f000;
/// Ordinary data, read-write (a PV kernel runs in ring 3, so its pages are "user").
pub const DATA: u64 = PTE_PRESENT | PTE_WRITABLE | PTE_USER | PTE_ACCESSED | PTE_DIRTY;
/// Readable, not writable.
pub const READ_ONLY: u64 = PTE_PRESENT | PTE_USER | PTE_ACCESSED;
/// A link to a lower-level table.
const TABLE: u64 = PTE_PRESENT | PTE_WRITABLE | PTE_USER | PTE_ACCESSED;

/// What went wrong, for RESULT lines: a hypercall's errno, or the manager's own reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    Hypercall(i64),
    OutOfFrames,
    /// A table the walk needs is not mapped where the manager can read it.
    TableNotReachable,
    /// A superpage entry on the way (the loader never makes one; we cannot split it).
    Superpage,
    AlreadyMapped,
    NotMapped,
    /// The current address space cannot be destroyed.
    InUse,
}

impl MmError {
    /// A number for RESULT lines: the errno, or a small positive code of ours.
    pub fn code(self) -> i64 {
        match self {
            MmError::Hypercall(e) => e,
            MmError::OutOfFrames => 1,
            MmError::TableNotReachable => 2,
            MmError::Superpage => 3,
            MmError::AlreadyMapped => 4,
            MmError::NotMapped => 5,
            MmError::InUse => 6,
        }
    }
}

fn check(ret: i64) -> Result<(), MmError> {
    if ret < 0 {
        Err(MmError::Hypercall(ret))
    } else {
        Ok(())
    }
}

pub struct Memory {
    ready: bool,
    nr_pages: u64,
    /// The p2m list's address (start_info.mfn_list), nr_pages entries, ours to keep.
    p2m: u64,
    /// The kernel's L4 (the one the loader built).
    kernel_l4: u64,
    /// Guest frames below this are mapped at their identity address by the loader.
    boot_end_pfn: u64,
    frames: Frames,
    physmap_ready: bool,
    /// The L4 the CPU runs on (NEW_BASEPTR changes it).
    current_l4: u64,
}

static MEMORY: Mutex<Memory> = Mutex::new(Memory {
    ready: false,
    nr_pages: 0,
    p2m: 0,
    kernel_l4: 0,
    boot_end_pfn: 0,
    frames: Frames::EMPTY,
    physmap_ready: false,
    current_l4: 0,
});

/// Where start_info is, for the manager's first use (set once at boot).
static START_INFO: AtomicU64 = AtomicU64::new(0);

/// Remembers start_info for the manager, which starts on first use.
pub fn init_later(info: &'static StartInfo) {
    START_INFO.store(info as *const StartInfo as u64, Relaxed);
}

/// Runs `f` with the manager, starting it first if this is its first use.
pub fn with<R>(f: impl FnOnce(&mut Memory) -> Result<R, MmError>) -> Result<R, MmError> {
    let mut memory = MEMORY.lock();
    if !memory.ready {
        let info = START_INFO.load(Relaxed) as *const StartInfo;
        // SAFETY: set at boot from the loader's start_info, which stays mapped and
        // unchanged for the domain's life.
        let info = unsafe { info.as_ref() }.ok_or(MmError::TableNotReachable)?;
        memory.start(info)?;
    }
    f(&mut memory)
}

impl Memory {
    fn start(&mut self, info: &StartInfo) -> Result<(), MmError> {
        self.nr_pages = info.nr_pages;
        self.p2m = info.mfn_list;
        let pt_pfn = (info.pt_base - platform::virt_base()) / PAGE;
        self.kernel_l4 = self.mfn(pt_pfn).ok_or(MmError::TableNotReachable)?;
        self.current_l4 = self.kernel_l4;
        // Until the end of the initial mapping is known, the loader's own tables are
        // what the walk may read.
        self.boot_end_pfn = pt_pfn + info.nr_pt_frames;
        self.boot_end_pfn = self.find_boot_end()?;
        let end = self.nr_pages.saturating_sub(FRAMES_FOR_CHECKS).max(self.boot_end_pfn);
        self.frames.reset(self.boot_end_pfn, end - self.boot_end_pfn);
        physmap::build(self)?;
        self.physmap_ready = true;
        heap::prepare(self)?;
        self.ready = true;
        Ok(())
    }

    /// The first guest frame after the loader's initial mapping: walk up from the page
    /// tables (which it maps) to the first guest frame whose identity address is unmapped.
    fn find_boot_end(&self) -> Result<u64, MmError> {
        let base = platform::virt_base();
        let mut pfn = self.boot_end_pfn;
        while pfn < self.nr_pages {
            match self.lookup(self.kernel_l4, base + pfn * PAGE) {
                Ok(Some(pte)) if pte & PTE_PRESENT != 0 => pfn += 1,
                Ok(_) | Err(MmError::NotMapped) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(pfn)
    }

    /// The machine frame behind guest frame `pfn` (the p2m list), if it has one.
    pub fn mfn(&self, pfn: u64) -> Option<u64> {
        if pfn >= self.nr_pages {
            return None;
        }
        // SAFETY: the loader maps the p2m list, nr_pages entries, and it is ours.
        let mfn = unsafe { raw::read_word(self.p2m + pfn * 8) };
        (mfn != INVALID_P2M_ENTRY).then_some(mfn)
    }

    fn set_p2m(&mut self, pfn: u64, mfn: u64) {
        if pfn < self.nr_pages {
            // SAFETY: as in `mfn`; writable, and we are its only writer.
            unsafe { raw::write_word(self.p2m + pfn * 8, mfn) };
        }
    }

    /// Where the manager can read the table in machine frame `mfn`, if anywhere.
    fn table_va(&self, mfn: u64) -> Option<u64> {
        let pfn = raw::m2p(mfn)?;
        if self.mfn(pfn) != Some(mfn) {
            return None;
        }
        if pfn < self.boot_end_pfn {
            Some(platform::virt_base() + pfn * PAGE)
        } else if self.physmap_ready && self.frames.contains(pfn) {
            Some(physmap::va(pfn))
        } else {
            None
        }
    }

    fn entry(&self, table_mfn: u64, index: u64) -> Result<u64, MmError> {
        let va = self.table_va(table_mfn).ok_or(MmError::TableNotReachable)?;
        // SAFETY: `table_va` answers only addresses where the table is mapped.
        Ok(unsafe { raw::read_entry(va, index & 511) })
    }

    /// The L1 entry that maps `va` in the address space of `l4`, `None` if a table on
    /// the way is missing.
    pub fn lookup(&self, l4: u64, va: u64) -> Result<Option<u64>, MmError> {
        self.walk(l4, va)?.map(|(table, index)| self.entry(table, index)).transpose()
    }

    /// The L1 table and index that map `va`, if the tables above exist.
    fn walk(&self, l4: u64, va: u64) -> Result<Option<(u64, u64)>, MmError> {
        let mut table = l4;
        for shift in [39, 30, 21] {
            let entry = self.entry(table, va >> shift)?;
            if entry & PTE_PRESENT == 0 {
                return Ok(None);
            }
            if entry & PTE_PS != 0 {
                return Err(MmError::Superpage);
            }
            table = (entry & PTE_ADDRESS) >> 12;
        }
        Ok(Some((table, (va >> 12) & 511)))
    }

    /// A new, empty page-table frame, mapped read-only in the physmap: ready to be
    /// linked in (the hypervisor validates and types it then).
    fn new_table(&mut self) -> Result<u64, MmError> {
        let pfn = self.frames.take().ok_or(MmError::OutOfFrames)?;
        let mfn = self.mfn(pfn).ok_or(MmError::OutOfFrames)?;
        // SAFETY: a free frame of ours, mapped writable in the physmap, used by no one.
        unsafe { raw::fill_page(physmap::va(pfn), |_| 0) };
        if let Err(e) = self.remap_physmap(pfn, READ_ONLY) {
            self.frames.give(pfn);
            return Err(e);
        }
        Ok(mfn)
    }

    /// Gives back a table frame nothing links to any more: writable in the physmap again.
    fn free_table(&mut self, mfn: u64) -> Result<(), MmError> {
        let pfn = raw::m2p(mfn).filter(|&pfn| self.frames.contains(pfn)).ok_or(MmError::TableNotReachable)?;
        self.remap_physmap(pfn, DATA)?;
        self.frames.give(pfn);
        Ok(())
    }

    /// Points `pfn`'s physmap entry at its frame with `flags` (0: unmapped), flushed.
    fn remap_physmap(&mut self, pfn: u64, flags: u64) -> Result<(), MmError> {
        let mfn = self.mfn(pfn);
        let pte = match (flags, mfn) {
            (0, _) => 0,
            (_, Some(mfn)) => (mfn << 12) | flags,
            (_, None) => return Err(MmError::NotMapped),
        };
        let l4 = self.kernel_l4;
        self.set_entry(l4, physmap::va(pfn), pte)?;
        invlpg(physmap::va(pfn))
    }

    /// Writes the L1 entry for `va` in the address space of `l4` (tables must exist).
    fn set_entry(&mut self, l4: u64, va: u64, pte: u64) -> Result<(), MmError> {
        let (table, index) = self.walk(l4, va)?.ok_or(MmError::NotMapped)?;
        mmu_update(&[MmuUpdate { ptr: (table << 12) | (index * 8), val: pte }])
    }

    /// The L1 table and index for `va` in `l4`'s space, making the tables on the way.
    fn walk_or_build(&mut self, l4: u64, va: u64) -> Result<(u64, u64), MmError> {
        let mut table = l4;
        for shift in [39, 30, 21] {
            let index = (va >> shift) & 511;
            let mut entry = self.entry(table, index)?;
            if entry & PTE_PRESENT == 0 {
                let new = self.new_table()?;
                entry = (new << 12) | TABLE;
                if let Err(e) = mmu_update(&[MmuUpdate { ptr: (table << 12) | (index * 8), val: entry }]) {
                    let _ = self.free_table(new);
                    return Err(e);
                }
            } else if entry & PTE_PS != 0 {
                return Err(MmError::Superpage);
            }
            table = (entry & PTE_ADDRESS) >> 12;
        }
        Ok((table, (va >> 12) & 511))
    }

    /// Maps machine frame `mfn` at `va` with `flags` in `l4`'s address space, making
    /// any missing table. Refuses to replace a mapping (unmap first).
    pub fn map(&mut self, l4: u64, va: u64, mfn: u64, flags: u64) -> Result<(), MmError> {
        let (table, index) = self.walk_or_build(l4, va)?;
        if self.entry(table, index)? & PTE_PRESENT != 0 {
            return Err(MmError::AlreadyMapped);
        }
        mmu_update(&[MmuUpdate { ptr: (table << 12) | (index * 8), val: (mfn << 12) | flags }])
    }

    /// Maps machine frame `mfn` read-only at every page of `count` 2 MiB regions from
    /// `va` (2 MiB aligned, no tables there yet below the L2s): one L1 table whose 512
    /// entries all name the frame, linked from `count` L2 entries. Gigabytes of address
    /// space for a few tables (what `console-flood` writes from).
    pub fn map_repeated(&mut self, l4: u64, va: u64, mfn: u64, count: u64) -> Result<(), MmError> {
        let pfn = self.frames.take().ok_or(MmError::OutOfFrames)?;
        let l1 = self.mfn(pfn).ok_or(MmError::OutOfFrames)?;
        // SAFETY: a free frame of ours, writable in the physmap, used by no one yet.
        unsafe { raw::fill_page(physmap::va(pfn), |_| (mfn << 12) | READ_ONLY) };
        self.remap_physmap(pfn, READ_ONLY)?;
        let mut batch = [MmuUpdate { ptr: 0, val: 0 }; 64];
        let mut filled = 0;
        for region in 0..count {
            let at = va + region * (2 << 20);
            // The L2 that holds `at`'s entry: walk (building) to the L1 level's parent.
            let mut table = l4;
            for shift in [39, 30] {
                let index = (at >> shift) & 511;
                let mut entry = self.entry(table, index)?;
                if entry & PTE_PRESENT == 0 {
                    let new = self.new_table()?;
                    entry = (new << 12) | TABLE;
                    mmu_update(&[MmuUpdate { ptr: (table << 12) | (index * 8), val: entry }])?;
                }
                table = (entry & PTE_ADDRESS) >> 12;
            }
            batch[filled] = MmuUpdate { ptr: (table << 12) | (((at >> 21) & 511) * 8), val: (l1 << 12) | TABLE };
            filled += 1;
            if filled == batch.len() || region + 1 == count {
                mmu_update(&batch[..filled])?;
                filled = 0;
            }
        }
        Ok(())
    }

    /// Removes the mapping of `va` (flushed when `l4` is the running space).
    pub fn unmap(&mut self, l4: u64, va: u64) -> Result<(), MmError> {
        self.change(l4, va, |_| 0)
    }

    /// Gives `va`'s mapping new permission bits, keeping its frame.
    pub fn protect(&mut self, l4: u64, va: u64, flags: u64) -> Result<(), MmError> {
        self.change(l4, va, |pte| (pte & PTE_ADDRESS) | flags)
    }

    fn change(&mut self, l4: u64, va: u64, new: impl FnOnce(u64) -> u64) -> Result<(), MmError> {
        let (table, index) = self.walk(l4, va)?.ok_or(MmError::NotMapped)?;
        let pte = self.entry(table, index)?;
        if pte & PTE_PRESENT == 0 {
            return Err(MmError::NotMapped);
        }
        mmu_update(&[MmuUpdate { ptr: (table << 12) | (index * 8), val: new(pte) }])?;
        // A PV kernel flushes for itself: the hypervisor does not on updates.
        invlpg(va)
    }

    /// The kernel's own address space.
    pub fn kernel_space(&self) -> AddressSpace {
        AddressSpace { l4: self.kernel_l4 }
    }

    /// Free frames the allocator holds.
    pub fn free_frames(&self) -> u64 {
        self.frames.free_count()
    }

    /// A free frame, taken: its guest frame number and machine frame. Mapped writable in
    /// the physmap at [`physmap_va`](Self::physmap_va).
    pub fn take_frame(&mut self) -> Result<(u64, u64), MmError> {
        let pfn = self.frames.take().ok_or(MmError::OutOfFrames)?;
        let mfn = self.mfn(pfn).ok_or(MmError::OutOfFrames)?;
        Ok((pfn, mfn))
    }

    /// Gives a frame from [`take_frame`](Self::take_frame) back.
    pub fn give_frame(&mut self, pfn: u64) {
        self.frames.give(pfn);
    }

    /// Records that a frame taken from the allocator is no longer backed (its machine
    /// frame went back to the hypervisor): `balloon_up` fills it again.
    pub fn forget_machine_frame(&mut self, pfn: u64) {
        if self.frames.contains(pfn) && !self.frames.is_free(pfn) {
            self.set_p2m(pfn, INVALID_P2M_ENTRY);
        }
    }

    pub fn physmap_va(&self, pfn: u64) -> u64 {
        physmap::va(pfn)
    }

    /// Writes word `index` of a frame taken from the allocator, through the physmap.
    pub fn poke(&mut self, pfn: u64, index: u64, value: u64) -> Result<(), MmError> {
        let va = self.taken_frame_word(pfn, index)?;
        // SAFETY: a frame the caller took from the allocator: mapped writable in the
        // physmap (the allocator hands out only data frames), no Rust reference to it.
        unsafe { raw::write_word(va, value) };
        Ok(())
    }

    /// Reads word `index` of a frame taken from the allocator, through the physmap.
    pub fn peek(&self, pfn: u64, index: u64) -> Result<u64, MmError> {
        let va = self.taken_frame_word(pfn, index)?;
        // SAFETY: as in `poke`, mapped in the physmap.
        Ok(unsafe { raw::read_word(va) })
    }

    /// Visits every free frame: a word written through the physmap reads back, and the
    /// M2P table maps its machine frame back to it. Returns (frames that passed the
    /// first, frames that passed the second).
    pub fn audit_free_frames(&mut self) -> (u64, u64) {
        let (mut usable, mut m2p_ok) = (0, 0);
        for pfn in self.frames.range().filter(|&pfn| self.frames.is_free(pfn)) {
            let Some(mfn) = self.mfn(pfn) else { continue };
            let va = physmap::va(pfn) + 7 * 8;
            // SAFETY: a free frame of ours: mapped writable in the physmap, used by no
            // one (its contents mean nothing until it is taken).
            let back = unsafe {
                raw::write_word(va, pfn ^ 0x5a5a);
                raw::read_word(va)
            };
            usable += u64::from(back == pfn ^ 0x5a5a);
            m2p_ok += u64::from(raw::m2p(mfn) == Some(pfn));
        }
        (usable, m2p_ok)
    }

    fn taken_frame_word(&self, pfn: u64, index: u64) -> Result<u64, MmError> {
        if !self.frames.contains(pfn) || self.frames.is_free(pfn) || self.mfn(pfn).is_none() || index >= 512 {
            return Err(MmError::NotMapped);
        }
        Ok(physmap::va(pfn) + index * 8)
    }
}

/// The p2m entry of a frame the domain gave back (Linux's INVALID_P2M_ENTRY).
pub const INVALID_P2M_ENTRY: u64 = u64::MAX;

fn mmu_update(requests: &[MmuUpdate]) -> Result<(), MmError> {
    // SAFETY: the requests are readable; each names an entry of one of our tables,
    // which the hypervisor validates.
    check(unsafe { calls::mmu_update(GuestArray::from_slice(requests), requests.len() as u32, GuestOut::NULL, DOMID_SELF) })
}

fn mmuext(cmd: u32, arg1: u64) -> Result<(), MmError> {
    let op = MmuextOp { cmd, _pad: 0, arg1, arg2: 0 };
    // SAFETY: one readable MmuextOp.
    check(unsafe { calls::mmuext_op(GuestArray::from_slice(&[op]), 1, GuestOut::NULL, DOMID_SELF) })
}

fn invlpg(va: u64) -> Result<(), MmError> {
    mmuext(MMUEXT_INVLPG_LOCAL, va)
}

fn flush_tlb() -> Result<(), MmError> {
    mmuext(MMUEXT_TLB_FLUSH_LOCAL, 0)
}

/// Points `va` (in the running address space, whose L1 for it exists) at `pte`.
fn update_va_mapping(va: u64, pte: u64) -> Result<(), MmError> {
    // SAFETY: the caller owns what `va` maps and nothing else uses it meanwhile.
    check(unsafe { calls::update_va_mapping(va, pte, UVMF_INVLPG) })
}
