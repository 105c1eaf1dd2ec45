//! Handing a freshly built domain its frames in the frame table: ownership of every
//! page and of shared_info, and its initial page tables validated and pinned, as Xen's
//! PV builder pins the initial L4. From then on every change to them goes through the
//! validated updates of `mm::pagetable`.

use super::Domain;
use crate::mm::frame_alloc::FrameSource;
use crate::mm::frame_table::{FrameTable, PageType};
use crate::mm::guest_walk::MachineMemory;
use crate::mm::m2p::MachToPhys;
use crate::mm::pagetable::{fill_hypervisor_slots, M2pSlot, PageTables};
use hypercall_abi::Errno;

/// Assigns and types the domain's frames. On failure everything taken is given back.
pub fn adopt_frames<M: MachineMemory>(domain: &Domain, frames: &mut FrameTable, memory: &mut M, hypervisor_l4: &[u64; 512]) -> Result<(), Errno> {
    let all: alloc::vec::Vec<u64> = domain.p2m.iter().copied().chain([domain.shared_info_mfn]).collect();
    for (done, &mfn) in all.iter().enumerate() {
        if let Err(e) = frames.assign(mfn, domain.id) {
            all[..done].iter().for_each(|&m| {
                let _ = frames.release(m);
            });
            return Err(e);
        }
    }
    // shared_info is written by the hypervisor at any time: it stays a writable page
    // for good (a permanent type reference), so it can never become a page table.
    frames.get_ref(domain.shared_info_mfn, domain.id)?;
    frames.get_type(domain.shared_info_mfn, PageType::Writable)?;
    let l4 = domain.l4_maddr() / 4096;
    let mut tables = PageTables { frames: &mut *frames, memory: &mut *memory, domain: domain.id };
    // One reference for the pin, one for the vCPU's base pointer.
    let pinned = tables.get_page_and_type(l4, PageType::L4).and_then(|()| tables.get_page_and_type(l4, PageType::L4));
    match pinned {
        Ok(()) => {
            frames.set_pinned(l4, true);
            // Built, then used as the kernel's base pointer: it has the M2P table.
            fill_hypervisor_slots(memory, l4, hypervisor_l4, M2pSlot::Map)
        }
        Err(e) => {
            let _ = frames.put_type(domain.shared_info_mfn);
            frames.put_ref(domain.shared_info_mfn);
            all.iter().for_each(|&m| {
                let _ = frames.release(m);
            });
            Err(e)
        }
    }
}

/// Gives back every reference and type the domain's tables hold and every frame it
/// owns, so nothing of it is left in the frame table.
pub fn release_frames<M: MachineMemory>(domain: &Domain, frames: &mut FrameTable, memory: &mut M) {
    let pinned: alloc::vec::Vec<u64> = frames.frames_of(domain.id).filter(|&m| frames.is_pinned(m)).collect();
    let mut tables = PageTables { frames: &mut *frames, memory: &mut *memory, domain: domain.id };
    // The GDT's and LDT's frames, the vCPU's base pointers, then every pinned table.
    let gdt = domain.traps.gdt_frames;
    for &mfn in &gdt[..domain.traps.gdt_frame_count.min(gdt.len())] {
        tables.put_page_and_type(mfn);
    }
    // The domain is going: its CPU state is not loaded again.
    let _ = crate::trap::ldt::release(&mut domain.traps.ldt.clone(), &mut tables);
    for root in [domain.l4_maddr(), domain.traps.user_l4()] {
        if root != 0 {
            tables.put_page_and_type(root / 4096);
        }
    }
    for mfn in pinned {
        tables.frames.set_pinned(mfn, false);
        tables.put_page_and_type(mfn);
    }
    let _ = frames.put_type(domain.shared_info_mfn);
    frames.put_ref(domain.shared_info_mfn);
}

/// Frees the frames a domain gave back while they were still referenced whose last
/// reference has gone since (FrameTable::give_back): out of the M2P table, into the
/// free pool, off the owner's reservation. Runs after every hypercall and exception
/// that may have dropped a reference.
pub fn free_given_back<M: MachineMemory>(domain: &mut Domain, frames: &mut FrameTable, memory: &mut M, m2p: &MachToPhys, free: &mut dyn FrameSource) {
    while let Some((mfn, owner)) = frames.take_unused_given_back() {
        m2p.invalidate(memory, mfn);
        free.give_back(mfn);
        if owner == domain.id {
            domain.tot_pages = domain.tot_pages.saturating_sub(1);
        }
    }
}

/// What a teardown could not give back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Frames still referenced or typed after every reference the domain held was
    /// dropped: a reference-counting bug. They stay owned and are not freed, since
    /// something may still map them.
    pub still_referenced: u64,
}

/// Takes a stopped domain apart: every reference and type its tables, GDT and base
/// pointers hold, then every frame the frame table says it owns (whatever the builder
/// or ballooning gave it, walked by frame number: a list could be more than the heap
/// holds for a large domain), each made invalid in the M2P table and given back.
pub fn tear_down<M: MachineMemory>(
    domain: &Domain,
    frames: &mut FrameTable,
    memory: &mut M,
    m2p: &MachToPhys,
    free: &mut dyn FrameSource,
) -> Leftovers {
    release_frames(domain, frames, memory);
    let mut left = Leftovers::default();
    for mfn in 0..frames.len() {
        if frames.owner(mfn) != Some(domain.id) {
            continue;
        }
        m2p.invalidate(memory, mfn);
        match frames.release(mfn) {
            Ok(()) => free.give_back(mfn),
            Err(_) => left.still_referenced += 1,
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::builder::tests::build;

    #[test]
    fn the_initial_tables_are_pinned_and_everything_comes_back() {
        let (domain, mut memory, _) = build(2048, 4096);
        let domain = domain.unwrap();
        let mut frames = FrameTable::new(0x1000 + 4096);
        let mut hv = [0u64; 512];
        hv[262] = 0xdead_0003;
        adopt_frames(&domain, &mut frames, &mut memory, &hv).unwrap();
        let l4 = domain.l4_maddr() / 4096;
        assert!(frames.is_pinned(l4));
        assert_eq!(frames.page_type(l4), PageType::L4);
        assert_eq!(memory.read_u64(domain.l4_maddr() + 262 * 8), Some(0xdead_0003));
        assert_eq!(frames.page_type(domain.shared_info_mfn), PageType::Writable);
        // Every frame below 4 MiB is mapped: page tables typed, data writable.
        let typed = domain.p2m[..1024].iter().filter(|&&m| frames.page_type(m) != PageType::None).count();
        assert_eq!(typed, 1024);
        release_frames(&domain, &mut frames, &mut memory);
        for &mfn in domain.p2m.iter().chain([domain.shared_info_mfn].iter()) {
            assert_eq!((frames.type_count(mfn), frames.ref_count(mfn)), (0, 0), "frame {mfn:#x} still held");
            frames.release(mfn).unwrap();
        }
    }

    #[test]
    fn teardown_gives_every_frame_back_and_forgets_it_in_the_m2p() {
        use crate::hypercall::test_support::FreeList;
        let (domain, mut memory, _) = build(2048, 4096);
        let domain = domain.unwrap();
        let mut frames = FrameTable::new(0x1000 + 4096);
        adopt_frames(&domain, &mut frames, &mut memory, &[0u64; 512]).unwrap();
        // An M2P table in frames of its own (past the pool), every owned frame entered.
        let m2p_first = 0x1000 + 4096;
        for f in 0..MachToPhys::frames_for(frames.len()) {
            memory.add_frame(m2p_first + f, 0);
        }
        let m2p = MachToPhys::init(&mut memory, m2p_first, frames.len()).unwrap();
        for (pfn, &mfn) in domain.p2m.iter().enumerate() {
            m2p.set(&mut memory, mfn, pfn as u64).unwrap();
        }
        let mut free = FreeList(Vec::new());
        assert_eq!(tear_down(&domain, &mut frames, &mut memory, &m2p, &mut free), Leftovers::default());
        let mut expected: Vec<u64> = domain.p2m.iter().copied().chain([domain.shared_info_mfn]).collect();
        expected.sort_unstable();
        assert_eq!(free.0, expected);
        assert_eq!(frames.frames_of(domain.id).count(), 0);
        assert!(domain.p2m.iter().all(|&mfn| m2p.get(&memory, mfn) == Some(u64::MAX)));
    }

    #[test]
    fn a_frame_still_referenced_is_kept_not_freed() {
        use crate::hypercall::test_support::FreeList;
        let (domain, mut memory, _) = build(2048, 4096);
        let domain = domain.unwrap();
        let mut frames = FrameTable::new(0x1000 + 4096);
        adopt_frames(&domain, &mut frames, &mut memory, &[0u64; 512]).unwrap();
        // A reference nothing in the domain accounts for (as a leaked grant would be).
        let data = domain.p2m[2000];
        frames.get_ref(data, domain.id).unwrap();
        let m2p = MachToPhys { first_mfn: 0, entries: 0 };
        let mut free = FreeList(Vec::new());
        assert_eq!(tear_down(&domain, &mut frames, &mut memory, &m2p, &mut free), Leftovers { still_referenced: 1 });
        assert!(!free.0.contains(&data));
        assert_eq!(frames.owner(data), Some(domain.id));
        assert_eq!(free.0.len(), domain.p2m.len());
    }
}
