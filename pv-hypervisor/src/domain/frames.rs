//! Handing a freshly built domain its frames in the frame table: ownership of every
//! page and of shared_info, and its initial page tables validated and pinned, as Xen's
//! PV builder pins the initial L4. From then on every change to them goes through the
//! validated updates of `mm::pagetable`.

use super::Domain;
use crate::mm::frame_table::{FrameTable, PageType};
use crate::mm::guest_walk::MachineMemory;
use crate::mm::pagetable::{fill_hypervisor_slots, PageTables};
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
    let l4 = domain.l4_maddr / 4096;
    let mut tables = PageTables { frames: &mut *frames, memory: &mut *memory, domain: domain.id };
    // One reference for the pin, one for the vCPU's base pointer.
    let pinned = tables.get_page_and_type(l4, PageType::L4).and_then(|()| tables.get_page_and_type(l4, PageType::L4));
    match pinned {
        Ok(()) => {
            frames.set_pinned(l4, true);
            fill_hypervisor_slots(memory, l4, hypervisor_l4)
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
    // The GDT's frames, the vCPU's base pointers, then every pinned table.
    let gdt = domain.traps.gdt_frames;
    for &mfn in &gdt[..domain.traps.gdt_frame_count.min(gdt.len())] {
        tables.put_page_and_type(mfn);
    }
    for root in [domain.l4_maddr, domain.traps.user_l4] {
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
        let l4 = domain.l4_maddr / 4096;
        assert!(frames.is_pinned(l4));
        assert_eq!(frames.page_type(l4), PageType::L4);
        assert_eq!(memory.read_u64(domain.l4_maddr + 262 * 8), Some(0xdead_0003));
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
}
