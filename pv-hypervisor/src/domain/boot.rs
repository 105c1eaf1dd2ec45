//! The boot flow's decisions, apart from the hardware: which machine frames are free,
//! what the boot bundle gives dom0, and building dom0 into the frame table. `arch`
//! reads the PVH structures and runs these in order.

use super::builder::{build_domain, BuildError, DomainSpec};
use super::bundle::{Bundle, DOM0_CMDLINE, DOM0_KERNEL};
use super::frames::adopt_frames;
use super::Domain;
use crate::mm::frame_alloc::FrameAllocator;
use crate::mm::frame_table::FrameTable;
use crate::mm::guest_walk::MachineMemory;
use crate::mm::m2p::{self, MachToPhys};
use alloc::format;
use alloc::string::String;
use core::ops::Range;

/// The first MiB holds firmware data and the PVH structures.
const LOW_MEMORY_FRAMES: Range<u64> = 0..256;

/// What the memory map left after the reservations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootMemory {
    /// One past the highest RAM byte.
    pub ram_end: u64,
    /// RAM the direct map does not reach (not used yet), if any.
    pub unused_high: Option<Range<u64>>,
}

/// Gives `frames` every RAM page below `direct_map_end`, minus low memory and the
/// `reserved` byte ranges (the hypervisor image, the boot modules).
pub fn plan_memory(
    frames: &mut FrameAllocator<'_>,
    ram: impl Iterator<Item = Range<u64>>,
    reserved: &[Range<u64>],
    direct_map_end: u64,
) -> BootMemory {
    let mut plan = BootMemory { ram_end: 0, unused_high: None };
    for region in ram {
        plan.ram_end = plan.ram_end.max(region.end);
        frames.add_free(region.start.div_ceil(4096)..region.end / 4096);
        if region.end > direct_map_end {
            let high = region.start.max(direct_map_end)..region.end;
            plan.unused_high = Some(plan.unused_high.map_or(high.clone(), |h| h.start.min(high.start)..h.end.max(high.end)));
        }
    }
    frames.reserve(LOW_MEMORY_FRAMES);
    for range in reserved {
        frames.reserve(range.start / 4096..range.end.div_ceil(4096));
    }
    plan
}

/// Why boot input is refused: the file and the reason.
pub type Refusal = (&'static str, String);

/// dom0's kernel and command line from the boot bundle.
pub fn dom0_files(bundle_bytes: &[u8]) -> Result<(&[u8], &[u8]), Refusal> {
    let bundle = Bundle::parse(bundle_bytes).map_err(|e| ("bundle", format!("{e}")))?;
    let kernel = bundle.file(DOM0_KERNEL).ok_or((DOM0_KERNEL, String::from("missing from the boot bundle")))?;
    let cmdline = bundle.file(DOM0_CMDLINE).unwrap_or(b"");
    Ok((kernel, cmdline.strip_suffix(b"\n").unwrap_or(cmdline)))
}

/// dom0_mem asked for more than there is.
#[derive(Debug, PartialEq, Eq)]
pub struct Dom0TooLarge {
    pub asked_pages: u64,
    pub free_pages: u64,
}

impl core::fmt::Display for Dom0TooLarge {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "option 'dom0_mem': {} MiB asked, {} MiB free for domains (RAM minus the hypervisor's own)",
            self.asked_pages / 256,
            self.free_pages / 256
        )
    }
}

/// Whether dom0's pages (and its shared_info frame) fit in the free frames.
pub fn check_dom0_fits(dom0_pages: u64, free_pages: u64) -> Result<(), Dom0TooLarge> {
    if dom0_pages.saturating_add(1) <= free_pages {
        Ok(())
    } else {
        Err(Dom0TooLarge { asked_pages: dom0_pages, free_pages })
    }
}

/// Makes the machine-to-phys table for frames 0..`nr_frames` (contiguous frames, all
/// entries invalid) and the read-only page tables that map it. Returns the table and the
/// L4 entry for slot [`m2p::L4_SLOT`], which every guest L4 then gets with the
/// hypervisor's other slots.
pub fn set_up_m2p<M: MachineMemory>(frames: &mut FrameAllocator<'_>, memory: &mut M, nr_frames: u64) -> Result<(MachToPhys, u64), &'static str> {
    let table_frames = MachToPhys::frames_for(nr_frames);
    let first = frames.alloc_contiguous(table_frames).ok_or("no room for the machine-to-phys table")?;
    let table = MachToPhys::init(memory, first, nr_frames).ok_or("the machine-to-phys table is outside RAM")?;
    let l3 = table.map(memory, &mut || frames.alloc()).ok_or("no room for the machine-to-phys table's page tables")?;
    Ok((table, m2p::l4_entry(l3)))
}

/// Why a domain could not be built, and which of its inputs is to blame: its kernel
/// image or its command line (the bundle's file for dom0).
#[derive(Debug)]
pub struct BuildRefusal {
    pub cmdline_at_fault: bool,
    pub reason: String,
}

/// Builds a domain and gives it its frames in the frame table (initial page tables
/// validated and pinned). On failure every frame goes back to `frames`.
pub fn build_and_adopt<M: MachineMemory>(
    spec: &DomainSpec<'_>,
    memory: &mut M,
    frames: &mut FrameAllocator<'_>,
    frame_table: &mut FrameTable,
    hypervisor_l4: &[u64; 512],
    m2p: &MachToPhys,
) -> Result<Domain, BuildRefusal> {
    let allocator = core::cell::RefCell::new(frames);
    let domain = build_domain(
        spec,
        memory,
        &mut || allocator.borrow_mut().alloc(),
        &mut |mfn| {
            let _ = allocator.borrow_mut().free(mfn);
        },
        hypervisor_l4,
    )
    .map_err(|e| BuildRefusal { cmdline_at_fault: matches!(e, BuildError::CommandLineTooLong(_)), reason: format!("{e}") })?;
    if let Err(e) = adopt_frames(&domain, frame_table, memory, hypervisor_l4) {
        for &mfn in domain.p2m.iter().chain([domain.shared_info_mfn].iter()) {
            let _ = allocator.borrow_mut().free(mfn);
        }
        return Err(BuildRefusal { cmdline_at_fault: false, reason: format!("initial page tables refused: {e:?}") });
    }
    for (pfn, &mfn) in domain.p2m.iter().enumerate() {
        m2p.set(memory, mfn, pfn as u64)
            .map_err(|e| BuildRefusal { cmdline_at_fault: false, reason: format!("frame {mfn:#x} has no M2P entry: {e:?}") })?;
    }
    Ok(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn free_memory_is_ram_minus_low_memory_image_and_modules() {
        let mut bitmap = vec![0u64; 64];
        let mut frames = FrameAllocator::new(&mut bitmap);
        let ram = [0..0x9f000, 0x10_0000..0x40_0000];
        let plan = plan_memory(&mut frames, ram.iter().cloned(), &[0x20_0000..0x20_3001, 0x30_0000..0x30_1000], 0x100_0000);
        assert_eq!(plan, BootMemory { ram_end: 0x40_0000, unused_high: None });
        // 3 MiB of RAM above 1 MiB = 768 frames, minus 4 + 1 reserved.
        assert_eq!(frames.free_frames(), 768 - 5);
        let mut bitmap = vec![0u64; 64];
        let mut frames = FrameAllocator::new(&mut bitmap);
        let plan = plan_memory(&mut frames, core::iter::once(0x10_0000..0x80_0000), &[], 0x40_0000);
        assert_eq!(plan.unused_high, Some(0x40_0000..0x80_0000));
    }

    #[test]
    fn the_m2p_table_takes_its_frames_from_the_allocator_and_starts_invalid() {
        use crate::mm::test_memory::SparseMemory;
        use hypercall_abi::ops::memory::INVALID_M2P_ENTRY;
        let mut bitmap = vec![0u64; 64];
        let mut frames = FrameAllocator::new(&mut bitmap);
        frames.add_free(0x100..0x400);
        let mut memory = SparseMemory::default();
        for mfn in 0x100..0x400 {
            memory.add_frame(mfn, 0xcc);
        }
        let before = frames.free_frames();
        // 0x400 frames of RAM: 2 frames of table, mapped by an L3, an L2 and an L1.
        let (table, l4_entry) = set_up_m2p(&mut frames, &mut memory, 0x400).unwrap();
        assert_eq!(before - frames.free_frames(), 2 + 3);
        assert_eq!(table.get(&memory, 0x3ff), Some(INVALID_M2P_ENTRY));
        assert_eq!(l4_entry & 0x7, 0x5, "present, user, read-only");
        let mut none = vec![0u64; 64];
        let mut empty = FrameAllocator::new(&mut none);
        assert!(set_up_m2p(&mut empty, &mut memory, 0x400).is_err());
    }

    #[test]
    fn dom0_must_fit_in_free_memory() {
        assert!(check_dom0_fits(16384, 16385).is_ok());
        let e = check_dom0_fits(16384, 16384).unwrap_err();
        assert_eq!(std::format!("{e}"), "option 'dom0_mem': 64 MiB asked, 64 MiB free for domains (RAM minus the hypervisor's own)");
        assert!(check_dom0_fits(u64::MAX, 10).is_err());
    }

    #[test]
    fn bundle_errors_name_the_file() {
        assert_eq!(dom0_files(b"garbage").unwrap_err().0, "bundle");
    }
}
