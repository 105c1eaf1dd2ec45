//! The memory manager's raw accesses: page-table entries read where a table is mapped,
//! whole frames written where a frame is mapped writable, and the M2P table. Every
//! other part of `mm` works with frame numbers and calls these.

use hypercall_abi::ops::memory::{MACH2PHYS_NR_ENTRIES, MACH2PHYS_VIRT_START};

pub const PAGE: u64 = 4096;

/// Entry `index` of the table mapped at `table_va`.
///
/// # Safety
/// `table_va` maps a page (read access is enough) and `index < 512`.
pub unsafe fn read_entry(table_va: u64, index: u64) -> u64 {
    // SAFETY: the caller guarantees the page is mapped; the index keeps us inside it.
    unsafe { ((table_va + index * 8) as *const u64).read_volatile() }
}

/// Writes `entry(i)` into word `i` of the page mapped writable at `va`, for all 512.
///
/// # Safety
/// `va` maps a page writable, and nothing else (no Rust reference) uses that page.
pub unsafe fn fill_page(va: u64, entry: impl Fn(u64) -> u64) {
    let page = va as *mut u64;
    for i in 0..512u64 {
        // SAFETY: inside the page the caller vouched for.
        unsafe { page.add(i as usize).write_volatile(entry(i)) };
    }
}

/// Writes one word at `va`.
///
/// # Safety
/// `va` is 8-aligned and maps writable memory no Rust reference covers.
pub unsafe fn write_word(va: u64, value: u64) {
    // SAFETY: as the caller guarantees.
    unsafe { (va as *mut u64).write_volatile(value) };
}

/// Reads one word at `va`.
///
/// # Safety
/// `va` is 8-aligned and mapped.
pub unsafe fn read_word(va: u64) -> u64 {
    // SAFETY: as the caller guarantees.
    unsafe { (va as *const u64).read_volatile() }
}

/// The guest frame number the M2P table gives machine frame `mfn`, if the table has an
/// entry for it.
pub fn m2p(mfn: u64) -> Option<u64> {
    if mfn >= MACH2PHYS_NR_ENTRIES {
        return None;
    }
    // SAFETY: both hypervisors map the M2P table read-only in every guest for every RAM
    // frame; callers ask only about frames the p2m list says are ours, which are RAM.
    Some(unsafe { ((MACH2PHYS_VIRT_START + mfn * 8) as *const u64).read_volatile() })
}
