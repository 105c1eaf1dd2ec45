//! The GDT and TSS.
//!
//! Xen's PV ABI fixes the flat selectors a guest uses (arch-x86/xen-x86_64.h:
//! FLAT_RING3_CS64 0xe033, FLAT_RING3_DS32/SS 0xe02b, FLAT_RING3_CS32 0xe023), and they
//! live in the hypervisor's part of the GDT, from entry 14 * 512 = 0x1c00 up. Our own
//! ring-0 selectors sit in the same reserved area. The layout also satisfies
//! `syscall`/`sysret`: STAR's user base 0xe020 gives SS 0xe02b and CS 0xe033, its kernel
//! base 0xe008 gives CS 0xe008 and SS 0xe010.

use hypercall_abi::arch_x86_64::{FLAT_RING3_CS32, FLAT_RING3_CS64, FLAT_RING3_SS64};
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::{lgdt, load_tss};
use x86_64::structures::gdt::SegmentSelector;
use x86_64::structures::tss::TaskStateSegment;
use x86_64::structures::DescriptorTablePointer;
use x86_64::{PrivilegeLevel, VirtAddr};

pub const HYPERVISOR_CS: u16 = 0xe008;
pub const HYPERVISOR_DS: u16 = 0xe010;
const TSS_SELECTOR: u16 = 0xe040;
/// The running guest's LDT (a 16-byte system descriptor, after the TSS's two slots).
const LDT_SELECTOR: u16 = 0xe050;
/// STAR[63:48]: sysret derives the guest's SS (+8) and 64-bit CS (+16) from it.
pub const SYSRET_BASE: u16 = 0xe020;

const _: () = assert!(FLAT_RING3_CS64 == SYSRET_BASE + 16 + 3);
const _: () = assert!(FLAT_RING3_SS64 == SYSRET_BASE + 8 + 3);
const _: () = assert!(FLAT_RING3_CS32 == SYSRET_BASE + 3);

/// Our entries live in the hypervisor's GDT page, the window's page 14 (gdt_area):
/// entry `selector >> 3` is slot `(selector >> 3) - FIRST_RESERVED_GDT_ENTRY` of it.
fn slot(selector: u16) -> usize {
    (selector as usize >> 3) - hypercall_abi::arch_x86_64::FIRST_RESERVED_GDT_ENTRY
}

const CODE64_RING0: u64 = 0x00AF_9A00_0000_FFFF;
const DATA_RING0: u64 = 0x00CF_9200_0000_FFFF;
const CODE32_RING3: u64 = 0x00CF_FA00_0000_FFFF;
const DATA_RING3: u64 = 0x00CF_F200_0000_FFFF;
const CODE64_RING3: u64 = 0x00AF_FA00_0000_FFFF;

/// Stack sizes for the IST entries: a double fault or an NMI gets a known-good stack.
const IST_STACK_SIZE: usize = 16 * 1024;
pub const IST_DOUBLE_FAULT: u16 = 1;
pub const IST_NMI: u16 = 2;
pub const IST_MACHINE_CHECK: u16 = 3;
pub const IST_DEBUG: u16 = 4;

/// An IST stack with a guard page below it (unmapped by protect.rs).
#[repr(C, align(4096))]
struct Stack {
    _guard: [u8; 4096],
    _bytes: [u8; IST_STACK_SIZE],
}

impl Stack {
    const fn new() -> Stack {
        Stack { _guard: [0; 4096], _bytes: [0; IST_STACK_SIZE] }
    }
}

#[repr(C, align(4096))]
struct GdtPage([u64; 512]);

static mut GDT_PAGE: GdtPage = GdtPage([0; 512]);
static mut TSS: TaskStateSegment = TaskStateSegment::new();
static mut DOUBLE_FAULT_STACK: Stack = Stack::new();
static mut NMI_STACK: Stack = Stack::new();
static mut MACHINE_CHECK_STACK: Stack = Stack::new();
static mut DEBUG_STACK: Stack = Stack::new();

/// The guard pages of the IST stacks.
pub fn ist_guard_pages() -> [u64; 4] {
    [
        core::ptr::addr_of!(DOUBLE_FAULT_STACK) as u64,
        core::ptr::addr_of!(NMI_STACK) as u64,
        core::ptr::addr_of!(MACHINE_CHECK_STACK) as u64,
        core::ptr::addr_of!(DEBUG_STACK) as u64,
    ]
}

fn top(stack: *const Stack) -> u64 {
    stack as u64 + core::mem::size_of::<Stack>() as u64
}

fn tss_descriptor(base: u64) -> (u64, u64) {
    let limit = (core::mem::size_of::<TaskStateSegment>() - 1) as u64;
    let low = (limit & 0xFFFF)
        | ((base & 0xFF_FFFF) << 16)
        | (0x89 << 40) // present, 64-bit TSS (available)
        | (((limit >> 16) & 0xF) << 48)
        | (((base >> 24) & 0xFF) << 56);
    (low, base >> 32)
}

/// # Safety
/// `selector` is 0 or names an LDT descriptor of the running GDT.
unsafe fn lldt(selector: u16) {
    // SAFETY: as the caller guarantees; lldt touches no memory but the GDT entry.
    unsafe { core::arch::asm!("lldt {0:x}", in(reg) selector, options(nostack, preserves_flags)) };
}

/// Loads the running guest's LDT: `entries` descriptors at trap::ldt::LDT_AREA, or
/// none (the null LDT selector) for 0.
pub fn load_ldt(entries: u32) {
    if entries == 0 {
        // SAFETY: the null selector makes every LDT selector load fault; nothing of ours
        // uses the LDT.
        unsafe { lldt(0) };
        return;
    }
    let base = crate::trap::ldt::LDT_AREA;
    let limit = u64::from(entries) * 8 - 1;
    let low = (limit & 0xFFFF)
        | ((base & 0xFF_FFFF) << 16)
        | (0x82 << 40) // present, DPL 0, LDT
        | (((limit >> 16) & 0xF) << 48)
        | (((base >> 24) & 0xFF) << 56);
    // SAFETY: single CPU; the slot is ours (the hypervisor's GDT page) and the CPU
    // reads it only at the lldt below, which describes the LDT window, where only
    // validated descriptor pages of the running guest are ever mapped.
    unsafe {
        let gdt = &mut (*core::ptr::addr_of_mut!(GDT_PAGE)).0;
        gdt[slot(LDT_SELECTOR)] = low;
        gdt[slot(LDT_SELECTOR) + 1] = base >> 32;
        lldt(LDT_SELECTOR);
    }
}

/// Builds and loads the GDT and TSS. `kernel_stack_top` is where the CPU switches to on
/// an interrupt or exception from ring 3 (TSS.RSP0).
pub fn init(kernel_stack_top: u64) {
    // SAFETY: runs once on the boot CPU before anything else uses these statics, with
    // interrupts off; afterwards the CPU is their only reader.
    unsafe {
        let tss = &mut *core::ptr::addr_of_mut!(TSS);
        tss.privilege_stack_table[0] = VirtAddr::new(kernel_stack_top);
        let df = top(core::ptr::addr_of!(DOUBLE_FAULT_STACK));
        let nmi = top(core::ptr::addr_of!(NMI_STACK));
        tss.interrupt_stack_table[(IST_DOUBLE_FAULT - 1) as usize] = VirtAddr::new(df);
        tss.interrupt_stack_table[(IST_NMI - 1) as usize] = VirtAddr::new(nmi);
        let mc = top(core::ptr::addr_of!(MACHINE_CHECK_STACK));
        let db = top(core::ptr::addr_of!(DEBUG_STACK));
        tss.interrupt_stack_table[(IST_MACHINE_CHECK - 1) as usize] = VirtAddr::new(mc);
        tss.interrupt_stack_table[(IST_DEBUG - 1) as usize] = VirtAddr::new(db);

        let gdt = &mut (*core::ptr::addr_of_mut!(GDT_PAGE)).0;
        gdt[slot(HYPERVISOR_CS)] = CODE64_RING0;
        gdt[slot(HYPERVISOR_DS)] = DATA_RING0;
        gdt[slot(FLAT_RING3_CS32)] = CODE32_RING3;
        gdt[slot(FLAT_RING3_SS64)] = DATA_RING3;
        gdt[slot(FLAT_RING3_CS64)] = CODE64_RING3;
        let (low, high) = tss_descriptor(core::ptr::addr_of!(TSS) as u64);
        gdt[slot(TSS_SELECTOR)] = low;
        gdt[slot(TSS_SELECTOR) + 1] = high;

        super::gdt_area::init(super::cpu::cr3(), core::ptr::addr_of!(GDT_PAGE).cast());
        lgdt(&DescriptorTablePointer { limit: super::gdt_area::GDT_LIMIT, base: VirtAddr::new(super::gdt_area::GDT_AREA) });
        CS::set_reg(SegmentSelector::new(HYPERVISOR_CS >> 3, PrivilegeLevel::Ring0));
        SS::set_reg(SegmentSelector::new(HYPERVISOR_DS >> 3, PrivilegeLevel::Ring0));
        DS::set_reg(SegmentSelector(0));
        ES::set_reg(SegmentSelector(0));
        load_tss(SegmentSelector::new(TSS_SELECTOR >> 3, PrivilegeLevel::Ring0));
    }
}
