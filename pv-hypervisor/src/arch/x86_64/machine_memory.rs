//! Guest memory as the hypervisor reaches it: through the direct map, bounds-checked
//! against RAM. This is the only place the hypervisor touches memory by machine address.

use super::phys_to_virt;
use crate::mm::guest_walk::MachineMemory;

/// Machine memory below `ram_end`, which the caller keeps within the direct map.
pub struct DirectMap {
    ram_end: u64,
}

impl DirectMap {
    pub fn new(ram_end: u64) -> DirectMap {
        DirectMap { ram_end: ram_end.min(super::DIRECTMAP_MAX) }
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
        // SAFETY: the range is mapped RAM (checked above); `out` is hypervisor memory.
        unsafe { read_volatile_bytes(ptr, out) };
        Some(())
    }

    fn write_bytes(&mut self, maddr: u64, data: &[u8]) -> Option<()> {
        let ptr = self.check(maddr, data.len())?;
        // SAFETY: as for reads; the destination is a frame the caller chose (a guest's,
        // after a page-table walk, or one the builder allocated).
        unsafe { write_volatile_bytes(ptr, data) };
        Some(())
    }
}

// Guest memory may change under the hypervisor at any time (a guest's other vCPUs, once
// there are several): every access is volatile, so each byte is read or written exactly
// once, as rust-vmm's vm-memory does, never a memcpy the compiler may split, repeat or
// widen. Aligned 8-byte words in the middle, bytes at the edges.

/// # Safety
/// `src..src + out.len()` must be mapped, readable memory that `out` does not overlap.
#[inline]
unsafe fn read_volatile_bytes(src: *const u8, out: &mut [u8]) {
    let (n, dst) = (out.len(), out.as_mut_ptr());
    let mut i = 0;
    while i < n && !(src as usize + i).is_multiple_of(8) {
        // SAFETY: src + i is inside the caller's range, dst + i inside `out`.
        unsafe { dst.add(i).write(src.add(i).read_volatile()) };
        i += 1;
    }
    // Four words per turn while they last: bounce and iret frames (40-64 bytes) take one
    // or two turns instead of five to eight (a loop turn is a translation block under
    // TCG).
    while i + 32 <= n {
        for k in (i..i + 32).step_by(8) {
            // SAFETY: as in the loop below.
            unsafe { (dst.add(k) as *mut u64).write_unaligned((src.add(k) as *const u64).read_volatile()) };
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: src + i..src + i + 8 is inside the caller's range and 8-aligned;
        // dst + i..dst + i + 8 inside `out` (any alignment).
        unsafe { (dst.add(i) as *mut u64).write_unaligned((src.add(i) as *const u64).read_volatile()) };
        i += 8;
    }
    while i < n {
        // SAFETY: as in the first loop.
        unsafe { dst.add(i).write(src.add(i).read_volatile()) };
        i += 1;
    }
}

/// # Safety
/// `dst..dst + data.len()` must be mapped, writable memory that `data` does not overlap.
#[inline]
unsafe fn write_volatile_bytes(dst: *mut u8, data: &[u8]) {
    let (n, src) = (data.len(), data.as_ptr());
    let mut i = 0;
    while i < n && !(dst as usize + i).is_multiple_of(8) {
        // SAFETY: dst + i is inside the caller's range, src + i inside `data`.
        unsafe { dst.add(i).write_volatile(src.add(i).read()) };
        i += 1;
    }
    // Four words per turn while they last, as in `read_volatile_bytes`.
    while i + 32 <= n {
        for k in (i..i + 32).step_by(8) {
            // SAFETY: as in the loop below.
            unsafe { (dst.add(k) as *mut u64).write_volatile((src.add(k) as *const u64).read_unaligned()) };
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: dst + i..dst + i + 8 is inside the caller's range and 8-aligned;
        // src + i..src + i + 8 inside `data` (any alignment).
        unsafe { (dst.add(i) as *mut u64).write_volatile((src.add(i) as *const u64).read_unaligned()) };
        i += 8;
    }
    while i < n {
        // SAFETY: as in the first loop.
        unsafe { dst.add(i).write_volatile(src.add(i).read()) };
        i += 1;
    }
}
