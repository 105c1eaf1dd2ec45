//! The balloon: frames the kernel does not need go back to the hypervisor
//! (XENMEM_decrease_reservation) and come back when it asks (XENMEM_populate_physmap),
//! as Linux's balloon driver does. A frame given back is first unmapped (the physmap is
//! its only mapping: the allocator hands out only unused frames) and flushed from the
//! TLB, so the hypervisor frees it at once; its p2m entry becomes INVALID_P2M_ENTRY,
//! which is also how `up` finds the guest frames to fill again.

use super::{check, flush_tlb, Memory, MmError, DATA, INVALID_P2M_ENTRY};
use hypercall_abi::guest::calls;
use hypercall_abi::ops::memory::{MemoryReservation, XENMEM_DECREASE_RESERVATION, XENMEM_POPULATE_PHYSMAP};
use hypercall_abi::ops::mmu::{MmuUpdate, DOMID_SELF};
use hypercall_abi::GuestHandle;

const BATCH: usize = 256;

fn reservation(op: u32, extents: &mut [u64]) -> Result<u64, MmError> {
    let request =
        MemoryReservation { extent_start: extents.as_mut_ptr() as u64, nr_extents: extents.len() as u64, domid: DOMID_SELF, ..Default::default() };
    // SAFETY: `request` and the extent list it names are ours and live for the call.
    let ret = unsafe { calls::memory_op(op.into(), GuestHandle::from_ref(&request)) };
    check(ret).map(|()| ret as u64)
}

impl Memory {
    /// Gives up to `pages` free frames back; returns how many went.
    pub fn balloon_down(&mut self, pages: u64) -> Result<u64, MmError> {
        let mut done = 0;
        while done < pages {
            let mut pfns = [0u64; BATCH];
            let mut mfns = [0u64; BATCH];
            let mut unmaps = [MmuUpdate { ptr: 0, val: 0 }; BATCH];
            let mut n = 0;
            while n < BATCH && done + (n as u64) < pages {
                let Ok((pfn, mfn)) = self.take_frame() else { break };
                let Some((table, index)) = self.walk(self.kernel_l4, self.physmap_va(pfn))? else { return Err(MmError::NotMapped) };
                (pfns[n], mfns[n]) = (pfn, mfn);
                unmaps[n] = MmuUpdate { ptr: (table << 12) | (index * 8), val: 0 };
                n += 1;
            }
            if n == 0 {
                break;
            }
            super::mmu_update(&unmaps[..n])?;
            flush_tlb()?;
            let gone = reservation(XENMEM_DECREASE_RESERVATION, &mut mfns[..n])? as usize;
            for &pfn in &pfns[..gone] {
                self.set_p2m(pfn, INVALID_P2M_ENTRY);
            }
            // What the hypervisor did not take stays ours: mapped and free again.
            for &pfn in &pfns[gone..n] {
                self.remap_physmap(pfn, DATA)?;
                self.give_frame(pfn);
            }
            done += gone as u64;
            if gone < n {
                break;
            }
        }
        Ok(done)
    }

    /// Fills up to `pages` of the guest frames the balloon emptied; returns how many.
    pub fn balloon_up(&mut self, pages: u64) -> Result<u64, MmError> {
        let mut done = 0;
        let mut next = self.frames.range().start;
        let end = self.frames.range().end;
        while done < pages {
            let mut pfns = [0u64; BATCH];
            let mut n = 0;
            while n < BATCH && done + (n as u64) < pages && next < end {
                if self.mfn(next).is_none() {
                    pfns[n] = next;
                    n += 1;
                }
                next += 1;
            }
            if n == 0 {
                break;
            }
            // In: the guest frame numbers; out: the machine frames now behind them.
            let mut extents = pfns;
            let filled = reservation(XENMEM_POPULATE_PHYSMAP, &mut extents[..n])? as usize;
            for i in 0..filled {
                self.set_p2m(pfns[i], extents[i]);
                self.remap_physmap(pfns[i], DATA)?;
                self.give_frame(pfns[i]);
            }
            done += filled as u64;
            if filled < n {
                break;
            }
        }
        Ok(done)
    }

    /// Guest frames of the manager's range that the balloon holds (no machine frame).
    pub fn ballooned(&self) -> u64 {
        self.frames.range().filter(|&pfn| self.mfn(pfn).is_none()).count() as u64
    }
}
