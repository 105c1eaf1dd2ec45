//! The guest's local descriptor table (xen.h MMUEXT_SET_LDT), as Xen keeps it: the guest
//! names a page-aligned linear address and an entry count; nothing is checked or mapped
//! then. The CPU reads the LDT through a hypervisor window (`arch`: LDT_AREA, described
//! by a system descriptor in the hypervisor's GDT page). The first time a selector load
//! touches a page of it, the #PF in the window comes here: the guest page behind it
//! (through the guest kernel's page tables) is typed as a descriptor page, which checks
//! every descriptor in it as set_gdt does and keeps it from being mapped writable, and
//! is mapped into the window; the load is retried. A page that cannot be (unmapped,
//! not the guest's, or holding a descriptor the rules refuse) becomes a #PF for the
//! guest at the LDT entry's own linear address, error code 0: what Xen 4.17 delivers
//! (seen by the `ldt` conformance command), so the guest's fault handler can map the
//! page and retry.

use super::state::{LdtState, LDT_MAX_ENTRIES, LDT_PAGES};
use crate::domain::Domain;
use crate::mm::frame_table::PageType;
use crate::mm::guest_walk::{translate, Access, MachineMemory};
use crate::mm::is_guest_range;
use crate::mm::pagetable::PageTables;
use hypercall_abi::Errno;

const PAGE: u64 = 4096;

/// Where `arch` maps the LDT for the CPU: pages 16-31 of the GDT window (L4 slot 263),
/// page 15 left unmapped between them.
pub const LDT_AREA: u64 = 0xFFFF_8380_0001_0000;
/// The window's size: the largest LDT.
pub const LDT_WINDOW: u64 = LDT_PAGES as u64 * PAGE;

/// MMUEXT_SET_LDT: a zero count means no LDT (whatever the address); otherwise the
/// address must be page-aligned and a guest address. Only the start is checked, as Xen
/// 4.17 does: pages past the guest's range simply never map.
pub fn set_ldt<M: MachineMemory>(domain: &mut Domain, tables: &mut PageTables<'_, M>, linear_address: u64, entries: u32) -> Result<(), Errno> {
    let base = if entries == 0 { 0 } else { linear_address };
    if !base.is_multiple_of(PAGE) || entries > LDT_MAX_ENTRIES || (entries != 0 && !is_guest_range(base, base + 1)) {
        return Err(Errno::EINVAL);
    }
    let ldt = &domain.traps.ldt;
    if ldt.base != base || ldt.entries != entries {
        // Dirty whether or not a page was mapped: the descriptor changes.
        let _ = release(&mut domain.traps.ldt, tables);
        domain.traps.ldt = LdtState { base, entries, frames: [0; LDT_PAGES] };
        domain.traps.exit.ldt_dirty = true;
    }
    Ok(())
}

/// Gives up the frames mapped for the CPU (their descriptor type and reference).
/// Whether there were any: the CPU's LDT window must then be cleared.
#[must_use]
pub fn release<M: MachineMemory>(ldt: &mut LdtState, tables: &mut PageTables<'_, M>) -> bool {
    let mut released = false;
    for frame in ldt.frames.iter_mut().filter(|f| **f != 0) {
        tables.put_page_and_type(*frame);
        *frame = 0;
        released = true;
    }
    released
}

/// What became of a #PF at `offset` into the LDT window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LdtFault {
    /// The page is mapped now (arch maps it before the guest runs): retry.
    Mapped,
    /// The guest gets #PF (error code 0) at this address: the LDT entry, in its own
    /// address space, on a page that cannot be used.
    PageFault(u64),
}

pub fn map_on_fault<M: MachineMemory>(domain: &mut Domain, tables: &mut PageTables<'_, M>, offset: u64) -> LdtFault {
    let ldt = domain.traps.ldt;
    let refused = LdtFault::PageFault(ldt.base.wrapping_add(offset));
    let page = (offset / PAGE) as usize;
    if offset >= u64::from(ldt.entries) * 8 || page >= LDT_PAGES || ldt.frames[page] != 0 {
        return refused;
    }
    let Ok(maddr) = translate(&*tables.memory, domain.l4_maddr(), ldt.base + page as u64 * PAGE, Access::Read) else {
        return refused;
    };
    let mfn = maddr / PAGE;
    if tables.frames.owner(mfn) != Some(domain.id) || tables.get_page_and_type(mfn, PageType::SegmentDescriptors).is_err() {
        return refused;
    }
    domain.traps.ldt.frames[page] = mfn;
    domain.traps.exit.ldt_dirty = true;
    LdtFault::Mapped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::test_support::{TestGuest, GUEST_DATA_VA, L1, SPARE_FRAMES};
    use hypercall_abi::nr;
    use hypercall_abi::ops::mmu::{MmuUpdate, MmuextOp, DOMID_SELF, MMUEXT_SET_LDT};
    use zerocopy::IntoBytes;

    const SCRATCH: u64 = GUEST_DATA_VA + 0x800;
    const DATA_DPL0: u64 = 0x00cf_9200_0000_ffff;
    const TSS: u64 = 0x0000_8900_0000_0067;

    fn set_ldt(g: &mut TestGuest, base: u64, entries: u64) -> i64 {
        g.poke(SCRATCH, MmuextOp { cmd: MMUEXT_SET_LDT, _pad: 0, arg1: base, arg2: entries }.as_bytes());
        g.call(nr::mmuext_op, [SCRATCH, 1, 0, DOMID_SELF as u64, 0, 0])
    }

    /// Puts `descriptor` in entry 0 of a spare frame and maps it read-only at the data
    /// area's fifth page; returns the page's address and the frame.
    fn ldt_page(g: &mut TestGuest, descriptor: u64) -> (u64, u64) {
        let mfn = SPARE_FRAMES.start;
        g.host.memory.write_bytes(mfn * PAGE, &descriptor.to_le_bytes()).unwrap();
        let pte = L1 + ((GUEST_DATA_VA >> 12) & 511) * 8 + 4 * 8;
        g.poke(SCRATCH, MmuUpdate { ptr: pte, val: (mfn << 12) | 0x65 }.as_bytes());
        assert_eq!(g.call(nr::mmu_update, [SCRATCH, 1, 0, DOMID_SELF as u64, 0, 0]), 0);
        (GUEST_DATA_VA + 4 * PAGE, mfn)
    }

    fn fault(g: &mut TestGuest, offset: u64) -> LdtFault {
        let mut tables = PageTables { frames: &mut g.host.frames, memory: &mut g.host.memory, domain: g.domain.id };
        map_on_fault(&mut g.domain, &mut tables, offset)
    }

    #[test]
    fn set_ldt_checks_only_its_arguments() {
        let mut g = TestGuest::new();
        assert_eq!(set_ldt(&mut g, GUEST_DATA_VA + 8, 4), -22, "not page-aligned");
        assert_eq!(set_ldt(&mut g, GUEST_DATA_VA, 8193), -22, "too many entries");
        assert_eq!(set_ldt(&mut g, 0xffff_8000_0000_0000, 4), -22, "the hypervisor's range");
        assert_eq!(set_ldt(&mut g, 0x7fff_ffff_f000, 8192), 0, "only the start is checked");
        assert_eq!(set_ldt(&mut g, 0xdead_0000, 16), 0, "unmapped is fine until used");
        assert_eq!(set_ldt(&mut g, 0xffff_8000_0000_0008, 0), 0, "no entries: the address does not matter");
        assert_eq!(g.domain.traps.ldt.base, 0);
    }

    #[test]
    fn a_page_is_mapped_on_first_use_checked_and_released() {
        let mut g = TestGuest::new();
        let (va, mfn) = ldt_page(&mut g, DATA_DPL0);
        assert_eq!(set_ldt(&mut g, va, 4), 0);
        g.domain.traps.exit.ldt_dirty = false;
        assert_eq!(fault(&mut g, 8), LdtFault::Mapped);
        assert_eq!(g.domain.traps.ldt.frames[0], mfn);
        assert!(g.domain.traps.exit.ldt_dirty, "arch maps it before the guest runs");
        assert_eq!(g.host.frames.page_type(mfn), PageType::SegmentDescriptors);
        let mut entry = [0u8; 8];
        g.host.memory.read_bytes(mfn * PAGE, &mut entry).unwrap();
        assert_eq!((u64::from_le_bytes(entry) >> 45) & 3, 3, "DPL raised to 3, as in a GDT");
        assert_eq!(fault(&mut g, 4 * 8), LdtFault::PageFault(va + 4 * 8), "past the entries (the CPU's limit check comes first)");
        // Changing the LDT gives the page back.
        assert_eq!(set_ldt(&mut g, 0, 0), 0);
        assert_eq!((g.host.frames.type_count(mfn), g.domain.traps.ldt.frames[0]), (0, 0));
    }

    #[test]
    fn pages_that_cannot_hold_descriptors_become_a_page_fault_at_the_entry() {
        let mut g = TestGuest::new();
        let (va, mfn) = ldt_page(&mut g, TSS);
        assert_eq!(set_ldt(&mut g, va, 8), 0);
        assert_eq!(fault(&mut g, 0x10), LdtFault::PageFault(va + 0x10), "a system descriptor in the page");
        assert_eq!(g.host.frames.type_count(mfn), 0);
        // A page the guest has writable (its data area) cannot become a descriptor page.
        assert_eq!(set_ldt(&mut g, GUEST_DATA_VA, 8), 0);
        assert_eq!(fault(&mut g, 0), LdtFault::PageFault(GUEST_DATA_VA));
        // Nor can an unmapped one.
        assert_eq!(set_ldt(&mut g, 0xdead_0000, 8), 0);
        assert_eq!(fault(&mut g, 8), LdtFault::PageFault(0xdead_0008));
    }

    /// An iret frame whose cs and ss are LDT segments (RPL 3) goes through, as on Xen:
    /// the exit check maps the LDT page they are on first, and reads them from it.
    #[test]
    fn an_exit_frame_may_name_ldt_segments() {
        use crate::domain::DomainState;
        const CODE64_DPL3: u64 = 0x00af_fa00_0000_ffff;
        const DATA_DPL3: u64 = 0x00cf_f200_0000_ffff;
        let mut g = TestGuest::new();
        let (va, mfn) = ldt_page(&mut g, CODE64_DPL3);
        g.host.memory.write_bytes(mfn * PAGE + 8, &DATA_DPL3.to_le_bytes()).unwrap();
        assert_eq!(set_ldt(&mut g, va, 2), 0);
        g.regs.cs = 0x7; // LDT entry 0, RPL 3
        g.regs.ss = 0xf; // LDT entry 1
        g.regs.rcx = 1; // not a sysret frame
        let before = g.regs;
        crate::trap::entry::check_exit_frame(&mut g.domain, &mut g.host.memory, &mut g.host.frames, &mut g.regs);
        assert_eq!((g.regs, g.domain.state), (before, DomainState::Running));
        assert_eq!(g.domain.traps.ldt.frames[0], mfn, "mapped for the CPU's iretq");
        assert!(g.domain.traps.exit.ldt_dirty);
        // A selector past the LDT's entries is refused (no #GP handler here: crashed).
        g.regs.cs = 0x17;
        crate::trap::entry::check_exit_frame(&mut g.domain, &mut g.host.memory, &mut g.host.frames, &mut g.regs);
        assert_eq!(g.domain.state, DomainState::Crashed);
    }

    /// After a domain switch a vCPU gets back the data selectors it had, those the CPU
    /// can load from ring 3 without fault; LDT pages they name are mapped first.
    #[test]
    fn data_selectors_are_kept_when_loadable() {
        const DATA_DPL3: u64 = 0x00cf_f200_0000_ffff;
        let mut g = TestGuest::new();
        let (va, mfn) = ldt_page(&mut g, DATA_DPL3);
        assert_eq!(set_ldt(&mut g, va, 1), 0);
        let kept = crate::trap::entry::loadable_data_selectors(&mut g.domain, &mut g.host.memory, &mut g.host.frames, [0x7, 0xf, 0xe02b, 0x3]);
        assert_eq!(kept, [0x7, 0, 0xe02b, 0x3], "LDT entry 0 kept, entry 1 is past the count");
        assert_eq!(g.domain.traps.ldt.frames[0], mfn, "mapped for the load");
        let kept = crate::trap::entry::loadable_data_selectors(&mut g.domain, &mut g.host.memory, &mut g.host.frames, [0xe008, 0xe033, 0x0b, 0x4]);
        assert_eq!(kept, [0, 0xe033, 0, 0x4], "ring-0 code: no; readable ring-3 code: yes; no GDT: no");
    }
}
