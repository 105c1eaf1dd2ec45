//! Guest memory as the hypervisor reaches it: through the direct map, bounds-checked
//! against RAM. This is the only place the hypervisor touches memory by machine address.

use super::{phys_to_virt, DIRECTMAP_SIZE};
use crate::mm::guest_walk::MachineMemory;

/// A copy this small (the event-mask byte every bounce and iret touch) is done in place:
/// cheaper than a memcpy call.
const SMALL: usize = 1;

/// Machine memory below `ram_end` (and below the end of the direct map).
pub struct DirectMap {
    ram_end: u64,
}

impl DirectMap {
    pub fn new(ram_end: u64) -> DirectMap {
        DirectMap { ram_end: ram_end.min(DIRECTMAP_SIZE) }
    }

    fn check(&self, maddr: u64, len: usize) -> Option<*mut u8> {
        let end = maddr.checked_add(len as u64)?;
        (end <= self.ram_end).then(|| phys_to_virt(maddr) as *mut u8)
    }
}

impl MachineMemory for DirectMap {
    fn read_u64(&self, maddr: u64) -> Option<u64> {
        if !maddr.is_multiple_of(8) {
            return None;
        }
        let ptr = self.check(maddr, 8)? as *const u64;
        // SAFETY: aligned, inside RAM, and RAM below 4 GiB is always mapped by the
        // direct map. Page tables may be changed by the guest concurrently on SMP;
        // a volatile read takes one snapshot.
        Some(unsafe { ptr.read_volatile() })
    }

    fn read_bytes(&self, maddr: u64, out: &mut [u8]) -> Option<()> {
        let ptr = self.check(maddr, out.len())?;
        if out.len() <= SMALL {
            for (i, byte) in out.iter_mut().enumerate() {
                // SAFETY: inside the range checked above.
                *byte = unsafe { ptr.add(i).read_volatile() };
            }
            return Some(());
        }
        // SAFETY: the source range is mapped RAM (checked above) and cannot overlap
        // `out`, which is hypervisor memory.
        unsafe { core::ptr::copy_nonoverlapping(ptr, out.as_mut_ptr(), out.len()) };
        Some(())
    }

    fn write_bytes(&mut self, maddr: u64, data: &[u8]) -> Option<()> {
        let ptr = self.check(maddr, data.len())?;
        if data.len() <= SMALL {
            for (i, &byte) in data.iter().enumerate() {
                // SAFETY: inside the range checked above.
                unsafe { ptr.add(i).write_volatile(byte) };
            }
            return Some(());
        }
        // SAFETY: as for reads; the destination is a frame the caller chose (a guest's,
        // after a page-table walk, or one the builder allocated).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), ptr, data.len()) };
        Some(())
    }
}
