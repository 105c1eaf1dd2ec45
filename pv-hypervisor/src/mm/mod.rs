//! Memory management: machine frames and access to guest memory.

pub mod descriptors;
pub mod frame_alloc;
pub mod frame_table;
pub mod guest_walk;
pub mod m2p;
pub mod owned;
pub mod pagetable;
#[cfg(test)]
pub mod test_memory;

use hypercall_abi::arch_x86_64::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};

/// Whether `va` is a canonical 48-bit virtual address.
#[inline]
pub fn is_canonical(va: u64) -> bool {
    let top = (va as i64) >> 47;
    top == 0 || top == -1
}

/// Whether a guest may own `[start, end)`: canonical and clear of the range every guest
/// leaves to the hypervisor (arch-x86/xen-x86_64.h).
#[inline]
pub fn is_guest_range(start: u64, end: u64) -> bool {
    start < end && is_canonical(start) && is_canonical(end - 1) && !(start < HYPERVISOR_VIRT_END && end > HYPERVISOR_VIRT_START)
}

#[cfg(test)]
mod tests {
    #[test]
    fn guest_ranges() {
        assert!(super::is_guest_range(0x100000, 0x400000));
        assert!(super::is_guest_range(0xffff_ffff_8000_0000, 0xffff_ffff_8040_0000));
        assert!(!super::is_guest_range(0xffff_8000_0000_0000, 0xffff_8000_0000_1000));
        assert!(!super::is_guest_range(0x7fff_ffff_f000, 0x8000_0000_1000));
        assert!(!super::is_guest_range(5, 5));
    }
}
