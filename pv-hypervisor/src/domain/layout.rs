//! Where things go in a new PV domain's virtual address space, following the layout
//! Xen's PV domain builder uses (observed on Xen 4.17, see docs/xen-abi.md): from
//! `virt_base`, the kernel, an optional module, the p2m list (one u64 per guest page),
//! start_info (one page), the initial page tables, a one-page boot stack; the initial
//! mapping then runs to the next 4 MiB boundary with at least 512 KiB to spare. A domU
//! also gets a xenstore page and a console ring page right after start_info, where
//! Xen's toolstack (libxenguest's PV builder) puts them. Guest
//! page frame n is mapped at `virt_base + n * 4096`. A kernel's INIT_P2M note
//! (elfnote.h) moves the p2m list out of that mapping to the address it names, backed
//! by the frames after the initial mapping's.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

const PAGE: u64 = 4096;
const FOUR_MIB: u64 = 4 << 20;
const MIN_SLACK: u64 = 512 << 10;

/// Present | writable | user | accessed | dirty: an ordinary guest page.
pub const PTE_DATA: u64 = 0x67;
/// Present | user | accessed | dirty: a page-table page, which the guest may read but
/// only change through hypercalls.
pub const PTE_READ_ONLY: u64 = 0x65;
/// Present | writable | user | accessed: a link to a lower-level table.
pub const PTE_TABLE: u64 = 0x27;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutInput {
    pub virt_base: u64,
    pub virt_kstart: u64,
    pub virt_kend: u64,
    /// Guest memory in 4 KiB pages.
    pub nr_pages: u64,
    /// Bytes of a module placed after the kernel (0: none).
    pub module_len: u64,
    /// The kernel's INIT_P2M note: map the p2m list at this address instead of after
    /// the module (its frames then follow the initial mapping).
    pub p2m_at: Option<u64>,
    /// A domU: the xenstore and console pages follow start_info.
    pub toolstack_pages: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainLayout {
    pub v_start: u64,
    pub kernel: Range<u64>,
    pub module: Range<u64>,
    pub p2m: Range<u64>,
    pub start_info: Range<u64>,
    /// A domU's xenstore ring page and console ring page (empty for dom0).
    pub xenstore: Range<u64>,
    pub console: Range<u64>,
    pub page_tables: Range<u64>,
    pub boot_stack: Range<u64>,
    pub v_end: u64,
    pub nr_pt_frames: u64,
    /// With INIT_P2M: the guest frame of the p2m list's first page (its pages follow
    /// the initial mapping's), else None (the list is inside the initial mapping).
    pub p2m_first_pfn: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    EmptyKernel,
    KernelBelowBase { virt_base: u64, kernel_start: u64 },
    AddressOverflow,
    TooLargeForMemory { needed: u64, available: u64 },
    OverlapsHypervisor { start: u64, end: u64 },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayoutError::EmptyKernel => write!(f, "the kernel image loads nothing"),
            LayoutError::KernelBelowBase { virt_base, kernel_start } => {
                write!(f, "kernel starts at {kernel_start:#x}, below its virt_base {virt_base:#x}")
            }
            LayoutError::AddressOverflow => write!(f, "the domain layout overflows the address space"),
            LayoutError::TooLargeForMemory { needed, available } => {
                write!(f, "too large for memory: needs {needed} pages, the domain has {available}")
            }
            LayoutError::OverlapsHypervisor { start, end } => {
                write!(f, "mapping {start:#x}-{end:#x} overlaps the hypervisor's reserved range")
            }
        }
    }
}

fn round_up(value: u64, to: u64) -> Option<u64> {
    Some(value.checked_add(to - 1)? & !(to - 1))
}

/// Page-table pages needed to map the (non-empty, disjoint) ranges with 4 KiB pages: one
/// L4, and one table per distinct 512 GiB / 1 GiB / 2 MiB region touched at levels 3,
/// 2, 1 (two ranges may share a region).
fn tables_needed(ranges: &[Range<u64>]) -> u64 {
    let count = |shift: u32| {
        let mut regions: Vec<(u64, u64)> = ranges.iter().filter(|r| !r.is_empty()).map(|r| (r.start >> shift, (r.end - 1) >> shift)).collect();
        regions.sort_unstable();
        let mut total = 0;
        let mut covered_to: Option<u64> = None;
        for (first, last) in regions {
            let from = covered_to.map_or(first, |c| first.max(c + 1));
            if last >= from {
                total += last - from + 1;
            }
            covered_to = Some(covered_to.map_or(last, |c| c.max(last)));
        }
        total
    };
    1 + count(39) + count(30) + count(21)
}

impl DomainLayout {
    pub fn compute(input: &LayoutInput) -> Result<DomainLayout, LayoutError> {
        let overflow = LayoutError::AddressOverflow;
        if input.virt_kend <= input.virt_kstart {
            return Err(LayoutError::EmptyKernel);
        }
        if input.virt_kstart < input.virt_base {
            return Err(LayoutError::KernelBelowBase { virt_base: input.virt_base, kernel_start: input.virt_kstart });
        }
        let v_start = input.virt_base & !(PAGE - 1);
        let kernel = (input.virt_kstart & !(PAGE - 1))..round_up(input.virt_kend, PAGE).ok_or(overflow)?;
        let module_end = kernel.end.checked_add(round_up(input.module_len, PAGE).ok_or(overflow)?).ok_or(overflow)?;
        let module = kernel.end..module_end;
        let p2m_bytes = round_up(input.nr_pages.checked_mul(8).ok_or(overflow)?, PAGE).ok_or(overflow)?;
        // With INIT_P2M the list is mapped at the kernel's address instead.
        let elsewhere = match input.p2m_at {
            Some(at) => Some(at..at.checked_add(p2m_bytes).ok_or(overflow)?),
            None => None,
        };
        if let Some(at) = &elsewhere {
            if at.start % PAGE != 0 || !crate::mm::is_guest_range(at.start, at.end) {
                return Err(LayoutError::OverlapsHypervisor { start: at.start, end: at.end });
            }
        }
        let inline_p2m = if elsewhere.is_some() { 0 } else { p2m_bytes };
        let p2m = module.end..module.end.checked_add(inline_p2m).ok_or(overflow)?;
        let start_info = p2m.end..p2m.end.checked_add(PAGE).ok_or(overflow)?;
        let toolstack_page = if input.toolstack_pages { PAGE } else { 0 };
        let xenstore = start_info.end..start_info.end + toolstack_page;
        let console = xenstore.end..xenstore.end + toolstack_page;
        let pt_start = console.end;

        // The tables map themselves, so their count feeds back into the mapping's end:
        // grow until it is stable.
        let mut nr_pt_frames = 1;
        let (v_end, boot_stack) = loop {
            let pt_end = pt_start.checked_add(nr_pt_frames * PAGE).ok_or(overflow)?;
            let stack = pt_end..pt_end.checked_add(PAGE).ok_or(overflow)?;
            let mut v_end = round_up(stack.end, FOUR_MIB).ok_or(overflow)?;
            if v_end - stack.end < MIN_SLACK {
                v_end = v_end.checked_add(FOUR_MIB).ok_or(overflow)?;
            }
            let needed = tables_needed(&[v_start..v_end, elsewhere.clone().unwrap_or(0..0)]);
            if needed <= nr_pt_frames {
                break (v_end, stack);
            }
            nr_pt_frames = needed;
        };
        let page_tables = pt_start..pt_start + nr_pt_frames * PAGE;

        if !crate::mm::is_guest_range(v_start, v_end) {
            return Err(LayoutError::OverlapsHypervisor { start: v_start, end: v_end });
        }
        if let Some(at) = &elsewhere {
            if at.start < v_end && v_start < at.end {
                return Err(LayoutError::OverlapsHypervisor { start: at.start, end: at.end });
            }
        }
        let mapped = (v_end - v_start) / PAGE;
        let needed = mapped + (elsewhere.as_ref().map_or(0, |at| (at.end - at.start) / PAGE));
        if needed > input.nr_pages {
            return Err(LayoutError::TooLargeForMemory { needed, available: input.nr_pages });
        }
        let (p2m, p2m_first_pfn) = match elsewhere {
            Some(at) => (at, Some(mapped)),
            None => (p2m, None),
        };
        Ok(DomainLayout { v_start, kernel, module, p2m, start_info, xenstore, console, page_tables, boot_stack, v_end, nr_pt_frames, p2m_first_pfn })
    }

    /// The guest frame mapped at `va`, if `va` is inside the initial mapping (or the
    /// p2m list mapped elsewhere).
    pub fn pfn_of(&self, va: u64) -> Option<u64> {
        if (self.v_start..self.v_end).contains(&va) {
            return Some((va - self.v_start) / PAGE);
        }
        let first = self.p2m_first_pfn?;
        self.p2m.contains(&va).then(|| first + (va - self.p2m.start) / PAGE)
    }

    pub fn mapped_pages(&self) -> u64 {
        (self.v_end - self.v_start) / PAGE
    }
}

/// "Write `value` into entry `index` of the page-table page at guest frame `table_pfn`."
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtEntryWrite {
    pub table_pfn: u64,
    pub index: u16,
    pub value: u64,
}

/// The initial page tables: every page of `[v_start, v_end)` mapped to its frame, the
/// page-table pages themselves read-only. Table pages are used in order from
/// `layout.page_tables`: the L4, then L3s, L2s and L1s as the walk first needs them.
/// The hypervisor's L4 slots are left for the caller.
pub fn initial_page_tables(layout: &DomainLayout, mfn_of_pfn: impl Fn(u64) -> u64, mut emit: impl FnMut(PtEntryWrite)) {
    let pt_pfns = layout.pfn_of(layout.page_tables.start).unwrap_or(0)..layout.pfn_of(layout.page_tables.start).unwrap_or(0) + layout.nr_pt_frames;
    let l4_pfn = pt_pfns.start;
    let mut next_table = l4_pfn + 1;
    // The table currently used at levels 3, 2, 1 and the region it covers.
    let mut current: [Option<(u64, u64)>; 3] = [None; 3];
    // The initial mapping, then (INIT_P2M) the p2m list where the kernel asked for it.
    let p2m_elsewhere = layout.p2m_first_pfn.map(|_| layout.p2m.clone()).unwrap_or(0..0);
    let pages = (layout.v_start..layout.v_end).step_by(PAGE as usize).chain(p2m_elsewhere.step_by(PAGE as usize));
    for va in pages {
        let mut parent = l4_pfn;
        for (slot, shift) in [(0usize, 39u32), (1, 30), (2, 21)] {
            let region = va >> shift;
            let table = match current[slot] {
                Some((pfn, r)) if r == region => pfn,
                _ => {
                    let pfn = next_table;
                    next_table += 1;
                    current[slot] = Some((pfn, region));
                    emit(PtEntryWrite { table_pfn: parent, index: (region & 511) as u16, value: (mfn_of_pfn(pfn) << 12) | PTE_TABLE });
                    pfn
                }
            };
            parent = table;
        }
        let pfn = layout.pfn_of(va).unwrap_or(0);
        let flags = if pt_pfns.contains(&pfn) { PTE_READ_ONLY } else { PTE_DATA };
        emit(PtEntryWrite { table_pfn: parent, index: ((va >> 12) & 511) as u16, value: (mfn_of_pfn(pfn) << 12) | flags });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::guest_walk::{translate, Access};
    use crate::mm::test_memory::SparseMemory;
    use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;

    fn small_kernel(nr_pages: u64) -> LayoutInput {
        LayoutInput { virt_base: 0, virt_kstart: 0x100000, virt_kend: 0x115110, nr_pages, module_len: 0, p2m_at: None, toolstack_pages: false }
    }

    #[test]
    fn a_domu_gets_xenstore_and_console_pages_after_start_info() {
        let l = DomainLayout::compute(&LayoutInput { toolstack_pages: true, ..small_kernel(16384) }).unwrap();
        assert_eq!(l.start_info, 0x136000..0x137000);
        assert_eq!(l.xenstore, 0x137000..0x138000);
        assert_eq!(l.console, 0x138000..0x139000);
        assert_eq!(l.page_tables.start, 0x139000);
        let dom0 = DomainLayout::compute(&small_kernel(16384)).unwrap();
        assert!(dom0.xenstore.is_empty() && dom0.console.is_empty());
    }

    #[test]
    fn matches_xen_4_17_for_a_small_kernel() {
        // Figures Xen 4.17 printed for this same kernel as dom0 with 16384 pages.
        let l = DomainLayout::compute(&small_kernel(16384)).unwrap();
        assert_eq!(l.kernel, 0x100000..0x116000);
        assert_eq!(l.p2m, 0x116000..0x136000);
        assert_eq!(l.start_info, 0x136000..0x137000);
        assert_eq!(l.page_tables, 0x137000..0x13c000);
        assert_eq!(l.nr_pt_frames, 5);
        assert_eq!(l.boot_stack, 0x13c000..0x13d000);
        assert_eq!((l.v_start, l.v_end), (0, 0x400000));
    }

    #[test]
    fn slack_rule_adds_four_mib_when_short() {
        // A kernel ending just below 4 MiB leaves < 512 KiB after the stack.
        let l = DomainLayout::compute(&LayoutInput { virt_kend: 0x3a0000, ..small_kernel(4096) }).unwrap();
        assert_eq!(l.v_end, 0x800000);
        assert!(l.v_end - l.boot_stack.end >= MIN_SLACK);
    }

    #[test]
    fn high_virt_base_kernels_are_laid_out_from_their_base() {
        let base = 0xffff_ffff_8000_0000;
        let l = DomainLayout::compute(&LayoutInput {
            virt_base: base,
            virt_kstart: base + 0x200000,
            virt_kend: base + 0x300000,
            nr_pages: 8192,
            module_len: 0,
            p2m_at: None,
            toolstack_pages: false,
        })
        .unwrap();
        assert_eq!(l.v_start, base);
        assert_eq!(l.pfn_of(base + 0x200000), Some(0x200));
        assert_eq!(l.pfn_of(base - 1), None);
    }

    #[test]
    fn refuses_what_does_not_fit_or_overlaps() {
        assert!(matches!(DomainLayout::compute(&small_kernel(512)), Err(LayoutError::TooLargeForMemory { needed: 1024, available: 512 })));
        let hv = HYPERVISOR_VIRT_START + 0x100000;
        assert!(matches!(
            DomainLayout::compute(&LayoutInput {
                virt_base: hv,
                virt_kstart: hv,
                virt_kend: hv + 0x1000,
                nr_pages: 8192,
                module_len: 0,
                p2m_at: None,
                toolstack_pages: false,
            }),
            Err(LayoutError::OverlapsHypervisor { .. })
        ));
        assert_eq!(DomainLayout::compute(&LayoutInput { virt_kend: 0x100000, ..small_kernel(8192) }), Err(LayoutError::EmptyKernel));
        assert_eq!(
            DomainLayout::compute(&LayoutInput {
                virt_base: u64::MAX - 0x1000,
                virt_kstart: u64::MAX - 0x1000,
                virt_kend: u64::MAX,
                nr_pages: 8192,
                module_len: 0,
                p2m_at: None,
                toolstack_pages: false,
            }),
            Err(LayoutError::AddressOverflow)
        );
    }

    #[test]
    fn initial_tables_map_every_page_and_protect_themselves() {
        let l = DomainLayout::compute(&small_kernel(16384)).unwrap();
        // Scatter guest frames to machine frames to catch pfn/mfn mix-ups.
        let mfn = |pfn: u64| 0x5000 + pfn * 3;
        let mut mem = SparseMemory::default();
        let mut tables_written = std::collections::HashSet::new();
        initial_page_tables(&l, mfn, |w| {
            if tables_written.insert(w.table_pfn) {
                mem.add_frame(mfn(w.table_pfn), 0);
            }
            mem.set_entry(mfn(w.table_pfn) << 12, w.index as u64, w.value);
        });
        assert_eq!(tables_written.len() as u64, l.nr_pt_frames);
        let l4 = mfn(l.pfn_of(l.page_tables.start).unwrap()) << 12;
        for pfn in 0..l.mapped_pages() {
            let va = l.v_start + pfn * 4096;
            assert_eq!(translate(&mem, l4, va + 8, Access::Read), Ok((mfn(pfn) << 12) + 8));
            let is_table = l.page_tables.contains(&va);
            assert_eq!(translate(&mem, l4, va, Access::Write).is_ok(), !is_table, "va {va:#x}");
        }
        assert!(translate(&mem, l4, l.v_end, Access::Read).is_err());
    }

    #[test]
    fn init_p2m_maps_the_list_where_the_kernel_asks_after_the_initial_mapping() {
        let at = 0x80_0000_0000; // Linux's INIT_P2M: 512 GiB
        let l = DomainLayout::compute(&LayoutInput { p2m_at: Some(at), ..small_kernel(16384) }).unwrap();
        // Nothing of the list in the initial mapping: start_info follows the kernel.
        assert_eq!(l.start_info.start, 0x116000);
        assert_eq!(l.p2m, at..at + 32 * 4096);
        let first = l.p2m_first_pfn.unwrap();
        assert_eq!(first, l.mapped_pages(), "its frames follow the initial mapping");
        assert_eq!(l.pfn_of(at + 4096 + 8), Some(first + 1));
        // The tables map both; the list is writable.
        let mfn = |pfn: u64| 0x9000 + pfn * 5;
        let mut mem = SparseMemory::default();
        let mut tables = std::collections::HashSet::new();
        initial_page_tables(&l, mfn, |w| {
            if tables.insert(w.table_pfn) {
                mem.add_frame(mfn(w.table_pfn), 0);
            }
            mem.set_entry(mfn(w.table_pfn) << 12, w.index as u64, w.value);
        });
        assert_eq!(tables.len() as u64, l.nr_pt_frames, "L4 + 2 L3 + 2 L2 + 3 L1");
        let l4 = mfn(l.pfn_of(l.page_tables.start).unwrap()) << 12;
        for page in [0u64, 31] {
            assert_eq!(translate(&mem, l4, at + page * 4096, Access::Write), Ok(mfn(first + page) << 12));
        }
        assert_eq!(translate(&mem, l4, 0x100000, Access::Read), Ok(mfn(0x100) << 12));
        // Refused: unaligned, inside the initial mapping, or not guest memory.
        assert!(DomainLayout::compute(&LayoutInput { p2m_at: Some(at + 8), ..small_kernel(16384) }).is_err());
        assert!(DomainLayout::compute(&LayoutInput { p2m_at: Some(0x200000), ..small_kernel(16384) }).is_err());
        assert!(DomainLayout::compute(&LayoutInput { p2m_at: Some(0xffff_8000_0000_0000), ..small_kernel(16384) }).is_err());
    }

    #[test]
    fn tables_are_counted_once_for_ranges_that_share_them() {
        assert_eq!(tables_needed(core::slice::from_ref(&(0..0x400000))), 1 + 1 + 1 + 2);
        assert_eq!(tables_needed(&[0..0x200000, 0x200000..0x400000]), 1 + 1 + 1 + 2);
        assert_eq!(tables_needed(&[0..0x1000, 0x80_0000_0000..0x80_0000_1000]), 1 + 2 + 2 + 2);
        assert_eq!(tables_needed(&[0..0x1000, 0..0]), 1 + 1 + 1 + 1);
    }
}
