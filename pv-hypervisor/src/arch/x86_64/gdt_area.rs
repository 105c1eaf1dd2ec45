//! Where the CPU's GDT lives: a 15-page window in the hypervisor's part of every
//! address space (L4 slot 263). Pages 0-13 are the running guest's GDT frames (or a
//! zero page: not-present descriptors), page 14 is the hypervisor's own GDT page, so
//! that its selectors sit at entry 14 * 512 = 0x1c00 and up, where Xen's are
//! (arch-x86/xen.h FIRST_RESERVED_GDT_PAGE). Guest frames are mapped writable for the
//! CPU (it sets accessed bits), never for the guest: they are typed as descriptor pages
//! while in use.

use super::{phys_to_virt, DIRECTMAP_BASE};
use crate::trap::ldt::LDT_AREA;
use crate::trap::state::{GDT_FRAMES, LDT_PAGES};

/// The window's address: L4 slot 263, inside the range every guest leaves to the
/// hypervisor, and copied into every guest L4 with the other hypervisor slots.
pub const GDT_AREA: u64 = 0xFFFF_8380_0000_0000;
const GDT_AREA_SLOT: usize = 263;
/// The hypervisor's GDT page is page 14 of the window.
pub const HYPERVISOR_GDT_PAGE: usize = GDT_FRAMES;
/// The LDT window is pages 16-31 of this one.
const LDT_FIRST_PAGE: usize = 16;
const _: () = assert!(LDT_AREA == GDT_AREA + LDT_FIRST_PAGE as u64 * 4096);
const _: () = assert!(LDT_FIRST_PAGE > HYPERVISOR_GDT_PAGE + 1, "a guard page between the GDT and the LDT");
/// The GDT limit: 15 pages.
pub const GDT_LIMIT: u16 = ((HYPERVISOR_GDT_PAGE + 1) * 4096 - 1) as u16;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 2;
const NO_EXECUTE: u64 = 1 << 63;

#[repr(C, align(4096))]
struct Page([u64; 512]);

static mut AREA_L3: Page = Page([0; 512]);
static mut AREA_L2: Page = Page([0; 512]);
static mut AREA_L1: Page = Page([0; 512]);
static mut ZERO_PAGE: Page = Page([0; 512]);

/// The physical address of a hypervisor static (the image is linked in the direct map).
fn phys_of<T>(item: *const T) -> u64 {
    item as u64 - DIRECTMAP_BASE
}

/// Builds the window's page tables under `l4_phys` (the hypervisor's own L4, before
/// any guest L4 copies it) and maps `hypervisor_gdt_page` as page 14.
///
/// # Safety
/// Boot only, single CPU, before the first guest is built; `l4_phys` is the running L4.
pub unsafe fn init(l4_phys: u64, hypervisor_gdt_page: *const [u64; 512]) {
    // SAFETY: the statics are used only here and in `map_guest_frames`, on one CPU;
    // the L4 is the hypervisor's own, reached through the direct map.
    unsafe {
        let l3 = &mut *core::ptr::addr_of_mut!(AREA_L3);
        let l2 = &mut *core::ptr::addr_of_mut!(AREA_L2);
        l3.0[0] = phys_of(core::ptr::addr_of!(AREA_L2)) | PRESENT | WRITABLE;
        l2.0[0] = phys_of(core::ptr::addr_of!(AREA_L1)) | PRESENT | WRITABLE;
        let l4 = &mut *(phys_to_virt(l4_phys) as *mut [u64; 512]);
        l4[GDT_AREA_SLOT] = phys_of(core::ptr::addr_of!(AREA_L3)) | PRESENT | WRITABLE;
        let l1 = &mut *core::ptr::addr_of_mut!(AREA_L1);
        l1.0[HYPERVISOR_GDT_PAGE] = phys_of(hypervisor_gdt_page) | PRESENT | WRITABLE | NO_EXECUTE;
    }
    map_guest_frames(&[]);
}

/// Maps the guest's LDT pages into the LDT window (trap::ldt::LDT_AREA, pages 16-31 of
/// this one): `frames[n]` is page n's machine frame, 0 for a page not mapped yet (its
/// first use faults, and trap::ldt maps it).
pub fn map_ldt_frames(frames: &[u64; LDT_PAGES]) {
    // SAFETY: single CPU; the entries name frames trap::ldt typed as descriptor pages
    // of the running guest, or nothing.
    unsafe {
        let l1 = &mut *core::ptr::addr_of_mut!(AREA_L1);
        for (page, &mfn) in frames.iter().enumerate() {
            l1.0[LDT_FIRST_PAGE + page] = if mfn == 0 { 0 } else { (mfn << 12) | PRESENT | WRITABLE | NO_EXECUTE };
            x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(LDT_AREA + page as u64 * 4096));
        }
    }
}

/// Maps a guest's GDT frames as pages 0.. of the window and the zero page behind them,
/// then drops the old translations.
pub fn map_guest_frames(frames: &[u64]) {
    let zero = phys_of(core::ptr::addr_of!(ZERO_PAGE)) | PRESENT | NO_EXECUTE;
    // SAFETY: single CPU; the entries name either the zero page (read-only) or frames
    // the caller typed as descriptor pages for this guest.
    unsafe {
        let l1 = &mut *core::ptr::addr_of_mut!(AREA_L1);
        for page in 0..GDT_FRAMES {
            l1.0[page] = frames.get(page).map_or(zero, |mfn| (mfn << 12) | PRESENT | WRITABLE | NO_EXECUTE);
            x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(GDT_AREA + page as u64 * 4096));
        }
    }
}
