//! The physmap: every frame the manager owns, mapped at `PHYSMAP_BASE + pfn * 4096`
//! (L4 slot 1), data writable and page tables read-only. Built once, when the manager
//! starts: its own tables (one L3, an L2 per GiB, an L1 per 2 MiB) are the first frames
//! of the range, filled through a window page and linked into the kernel's L4 last, in
//! one mmu_update that makes the hypervisor validate the whole tree.

use super::raw::{self, PAGE};
use super::{mmu_update, update_va_mapping, Memory, MmError, DATA, READ_ONLY, TABLE};
use crate::platform;
use core::cell::UnsafeCell;
use hypercall_abi::ops::mmu::MmuUpdate;

pub const PHYSMAP_BASE: u64 = 1 << 39;
const PHYSMAP_SLOT: u64 = PHYSMAP_BASE >> 39;

pub fn va(pfn: u64) -> u64 {
    PHYSMAP_BASE + pfn * PAGE
}

/// A page of the kernel image that is pointed, for a moment, at a frame nothing else
/// maps, to write it.
#[repr(C, align(4096))]
struct WindowPage(UnsafeCell<[u8; 4096]>);

// SAFETY: only the memory manager, under its lock, touches the page, and only through
// raw pointers.
unsafe impl Sync for WindowPage {}

static WINDOW: WindowPage = WindowPage(UnsafeCell::new([0; 4096]));

/// Writes `entry(i)` into word `i` of machine frame `mfn` through the window.
fn fill_frame(memory: &Memory, mfn: u64, entry: impl Fn(u64) -> u64) -> Result<(), MmError> {
    let window = WINDOW.0.get() as u64;
    let own = memory.mfn((window - platform::virt_base()) / PAGE).ok_or(MmError::TableNotReachable)?;
    update_va_mapping(window, (mfn << 12) | DATA)?;
    // SAFETY: the window maps `mfn` writable now, and nothing else maps that frame.
    unsafe { raw::fill_page(window, entry) };
    update_va_mapping(window, (own << 12) | DATA)
}

pub fn build(memory: &mut Memory) -> Result<(), MmError> {
    let range = memory.frames.range();
    if range.is_empty() {
        return Ok(());
    }
    let (first_l1, last_l1) = (range.start / 512, (range.end - 1) / 512);
    let (first_l2, last_l2) = (range.start >> 18, (range.end - 1) >> 18);
    let (l1_count, l2_count) = (last_l1 - first_l1 + 1, last_l2 - first_l2 + 1);
    let tables = range.start..range.start + 1 + l2_count + l1_count;
    if tables.end >= range.end {
        return Err(MmError::OutOfFrames);
    }
    let mfn = |pfn: u64| memory.mfn(pfn).ok_or(MmError::OutOfFrames);
    let l3 = tables.start;
    let l2_pfn = |l2: u64| tables.start + 1 + (l2 - first_l2);
    let l1_pfn = |l1: u64| tables.start + 1 + l2_count + (l1 - first_l1);
    for l1 in first_l1..=last_l1 {
        let table = mfn(l1_pfn(l1))?;
        fill_frame(memory, table, |i| {
            let pfn = l1 * 512 + i;
            match memory.mfn(pfn) {
                Some(frame) if range.contains(&pfn) => (frame << 12) | if tables.contains(&pfn) { READ_ONLY } else { DATA },
                _ => 0,
            }
        })?;
    }
    for l2 in first_l2..=last_l2 {
        let table = mfn(l2_pfn(l2))?;
        fill_frame(memory, table, |i| {
            let l1 = l2 * 512 + i;
            match memory.mfn(l1_pfn(l1)) {
                Some(frame) if (first_l1..=last_l1).contains(&l1) => (frame << 12) | TABLE,
                _ => 0,
            }
        })?;
    }
    // Entry i of the L3 covers GiB i of the slot: L2 number i.
    fill_frame(memory, mfn(l3)?, |l2| match memory.mfn(l2_pfn(l2)) {
        Some(frame) if (first_l2..=last_l2).contains(&l2) => (frame << 12) | TABLE,
        _ => 0,
    })?;
    let link = MmuUpdate { ptr: (memory.kernel_l4 << 12) | (PHYSMAP_SLOT * 8), val: (mfn(l3)? << 12) | TABLE };
    mmu_update(&[link])?;
    for pfn in tables.end..range.end {
        if memory.mfn(pfn).is_some() {
            memory.frames.give(pfn);
        }
    }
    Ok(())
}
