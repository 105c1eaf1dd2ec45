//! The direct map above 4 GiB. The 32-bit boot code maps the first 4 GiB (four page
//! directories of 2 MiB pages, all it can address); once in long mode this adds page
//! directories for RAM above that, up to [`super::DIRECTMAP_MAX`], not executable, in
//! the same PDPT (L4 slot 262, which every guest L4 shares).

use super::protect::{LARGE, LARGE_PAGE, NO_EXECUTE, PRESENT, WRITABLE};
use super::{boot, DIRECTMAP_BASE, DIRECTMAP_MAX};

const BOOT_MAPPED: u64 = 4 << 30;
const GIB: u64 = 1 << 30;
const HIGH_DIRECTORIES: usize = ((DIRECTMAP_MAX - BOOT_MAPPED) / GIB) as usize;

#[repr(C, align(4096))]
struct Directory([u64; 512]);

static mut HIGH_PDS: [Directory; HIGH_DIRECTORIES] = [const { Directory([0; 512]) }; HIGH_DIRECTORIES];

/// Maps physical memory up to `ram_end` (rounded up to 1 GiB, at most DIRECTMAP_MAX) in
/// the direct map and returns where the direct map now ends.
///
/// # Safety
/// Boot only, single CPU, on the boot L4, with EFER.NXE set; called once.
pub unsafe fn extend_direct_map(ram_end: u64) -> u64 {
    let end = ram_end.div_ceil(GIB).saturating_mul(GIB).clamp(BOOT_MAPPED, DIRECTMAP_MAX);
    // SAFETY: the boot L4 and its PDPT are the hypervisor's own tables, reached in the
    // direct map; the new directories are statics nothing else uses; slots past the
    // first four are empty (the boot code maps 4 GiB), so no mapping in use changes.
    unsafe {
        // The boot tables sit at their physical (link) address: reach them through the
        // direct map, the identity map being gone.
        let l4 = &*(super::phys_to_virt(boot::boot_l4_address()) as *const [u64; 512]);
        let pdpt = &mut *((DIRECTMAP_BASE + (l4[262] & 0x000f_ffff_ffff_f000)) as *mut [u64; 512]);
        let directories = &mut *core::ptr::addr_of_mut!(HIGH_PDS);
        for (d, directory) in directories.iter_mut().enumerate().take(((end - BOOT_MAPPED) / GIB) as usize) {
            let base = BOOT_MAPPED + d as u64 * GIB;
            for (i, entry) in directory.0.iter_mut().enumerate() {
                *entry = (base + i as u64 * LARGE_PAGE) | PRESENT | WRITABLE | LARGE | NO_EXECUTE;
            }
            pdpt[(BOOT_MAPPED / GIB) as usize + d] = (directory.0.as_ptr() as u64 - DIRECTMAP_BASE) | PRESENT | WRITABLE;
        }
    }
    super::cpu::flush_tlb();
    end
}
