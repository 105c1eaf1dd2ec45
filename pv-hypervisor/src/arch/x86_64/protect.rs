//! The hypervisor's own mappings, made W^X once it runs at its high addresses: its code
//! read-only and executable, its read-only data read-only and not executable, its data
//! writable and not executable, guard pages below every stack not mapped at all; the
//! rest of the direct map (guest frames, the heap) writable and not executable; and the
//! identity map the 32-bit boot code needed is removed. The image's 2 MiB pages are split
//! into 4 KiB pages for that. Every guest L4 shares these tables (L4 slot 262).

use super::{boot, gdt, DIRECTMAP_BASE};

// Page-table entry bits of the hypervisor's own tables (also high_memory.rs).
pub(super) const PRESENT: u64 = 1;
pub(super) const WRITABLE: u64 = 2;
pub(super) const LARGE: u64 = 1 << 7;
pub(super) const NO_EXECUTE: u64 = 1 << 63;
pub(super) const LARGE_PAGE: u64 = 2 << 20;
/// The boot code maps 4 GiB with 2 MiB pages: four page directories after the PDPT.
const DIRECTORIES: usize = 4;
/// L1 tables for the 2 MiB regions the image spans.
const IMAGE_REGIONS: usize = 2;

#[repr(C, align(4096))]
struct Table([u64; 512]);

static mut IMAGE_L1: [Table; IMAGE_REGIONS] = [const { Table([0; 512]) }; IMAGE_REGIONS];

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __writable_start: u8;
    static __image_phys_end: u8;
}

fn phys(virt: u64) -> u64 {
    virt - DIRECTMAP_BASE
}

/// What a page of the image (by physical address) may be used for.
fn image_page_flags(page: u64, guards: &[u64]) -> u64 {
    let text = phys(core::ptr::addr_of!(__text_start) as u64)..phys(core::ptr::addr_of!(__text_end) as u64);
    let read_only_end = phys(core::ptr::addr_of!(__writable_start) as u64);
    if guards.iter().any(|&g| phys(g) == page) {
        0
    } else if text.contains(&page) {
        PRESENT
    } else if page >= text.end && page < read_only_end {
        PRESENT | NO_EXECUTE
    } else {
        PRESENT | WRITABLE | NO_EXECUTE
    }
}

/// Applies the protections. Returns false (and changes nothing) if the image does not
/// fit the regions this module can split.
///
/// # Safety
/// Boot only, single CPU, on the boot L4, after the jump to the high addresses and with
/// EFER.NXE set (the new entries use NX).
pub unsafe fn protect_hypervisor_mappings() -> bool {
    let image_start = phys(core::ptr::addr_of!(__text_start) as u64) & !(LARGE_PAGE - 1);
    let image_end = core::ptr::addr_of!(__image_phys_end) as u64;
    let first_region = image_start / LARGE_PAGE;
    let regions = image_end.div_ceil(LARGE_PAGE) - first_region;
    if regions as usize > IMAGE_REGIONS {
        return false;
    }
    let mut guards = [0u64; 5];
    guards[0] = boot::hypervisor_stack_guard();
    guards[1..].copy_from_slice(&gdt::ist_guard_pages());
    // SAFETY: the boot L4, its PDPT and PDs are the hypervisor's own tables, reached in the
    // direct map; single CPU, and the entries are rewritten with mappings of the same
    // physical memory (minus guard pages), so the code and stack in use stay mapped.
    unsafe {
        let l4 = &mut *(boot::boot_l4_address() as *mut [u64; 512]);
        let pdpt_phys = l4[262] & 0x000f_ffff_ffff_f000;
        let pdpt = &*((DIRECTMAP_BASE + pdpt_phys) as *const [u64; 512]);
        for (d, &pd_entry) in pdpt.iter().enumerate().take(DIRECTORIES) {
            let pd = &mut *((DIRECTMAP_BASE + (pd_entry & 0x000f_ffff_ffff_f000)) as *mut [u64; 512]);
            for (i, entry) in pd.iter_mut().enumerate() {
                let region = (d * 512 + i) as u64;
                if *entry & PRESENT == 0 {
                    continue;
                }
                if (first_region..first_region + regions).contains(&region) {
                    let table = &mut (*core::ptr::addr_of_mut!(IMAGE_L1))[(region - first_region) as usize];
                    for (p, pte) in table.0.iter_mut().enumerate() {
                        let page = region * LARGE_PAGE + p as u64 * 4096;
                        *pte = page | image_page_flags(page, &guards);
                    }
                    *entry = phys(table.0.as_ptr() as u64) | PRESENT | WRITABLE;
                } else if *entry & LARGE != 0 {
                    *entry |= NO_EXECUTE;
                }
            }
        }
        // The identity map of the 32-bit boot code is not needed any more.
        l4[0] = 0;
    }
    super::cpu::flush_tlb();
    true
}

/// `selftest=lost-debug-frame`: enters the #DB stub with the frame the CPU leaves when
/// a #DB comes at the #DB entry's own first instruction, in ring 0 (a guest's `mov ss`
/// then `int1` under a data breakpoint, on hardware; QEMU raises that #DB in the guest,
/// and an instruction breakpoint on the stub would fire again on every entry). From
/// there on it is the real path: `trap_from_cpu` must crash the current domain (dom0
/// here) from the hypervisor stack and never come back.
pub fn debug_frame_selftest() -> ! {
    let stub = super::entry::trap_stub_address(crate::trap::entry::VECTOR_DEBUG as usize);
    // SAFETY: the pushed words are the iretq frame of a ring-0 #DB at `stub`, as the
    // CPU would push it; the stub and `trap_from_cpu` take it from there and never
    // return to this code, whose stack frames are not needed any more.
    unsafe {
        core::arch::asm!(
            "mov rax, rsp",
            "push 0",
            "push rax",
            "pushfq",
            "push {cs}",
            "push rcx",
            "jmp rcx",
            cs = const super::gdt::HYPERVISOR_CS as u64,
            in("rcx") stub,
            options(noreturn),
        );
    }
}

/// `ret`, in case it were executable; an atomic, so it lives in writable data.
static SELFTEST_DATA_WORD: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0xc3);

/// Breaks one protection on purpose (boot option `selftest=`): each must end in a fatal
/// page fault in the hypervisor, which reports it and stops the machine.
pub fn run_selftest(test: crate::boot_options::SelfTest) {
    use crate::boot_options::SelfTest;

    match test {
        // Not a protection: `start` runs it once dom0 exists (`debug_frame_selftest`).
        SelfTest::LostDebugFrame => {}
        // SAFETY (all three): deliberately faulting accesses; the fault handler reports
        // and stops the machine, so nothing after them runs.
        SelfTest::WriteText => unsafe {
            let text = core::ptr::addr_of!(__text_start) as *mut u8;
            text.write_volatile(0xcc);
        },
        SelfTest::StackGuard => unsafe {
            (boot::hypervisor_stack_guard() as *mut u64).write_volatile(0);
        },
        SelfTest::ExecuteData => unsafe {
            core::arch::asm!("call {}", in(reg) SELFTEST_DATA_WORD.as_ptr(), clobber_abi("C"));
        },
    }
}
