//! The IDT: exception vectors 0-31 go to the stubs in [`super::entry`], and 0x80 to its
//! own stub.
//!
//! Gate DPLs decide which `int n` a guest (ring 3) reaches directly. As in Xen: #BP (3)
//! and #OF (4) so `int3`/`into` work, and 0x80 for the fast system-call path; every
//! other gate has DPL 0, so a guest's `int n` raises #GP with error code
//! `(n << 3) | 2`, which `trap::deliver` turns into vector n or a #GP for the guest.
//! Hardware-only events get IST stacks: NMI, #DF, #MC, and #DB (a guest can make #DB hit
//! on any instruction, including the first of an entry).

use super::entry::{int80_stub_address, trap_stub_address, EXCEPTION_VECTORS, INT80_VECTOR};
use super::gdt::{HYPERVISOR_CS, IST_DEBUG, IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI};
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(core::mem::size_of::<Gate>() == 16);

impl Gate {
    const MISSING: Gate = Gate { offset_low: 0, selector: 0, ist: 0, type_attributes: 0, offset_mid: 0, offset_high: 0, reserved: 0 };

    /// A present 64-bit interrupt gate (IF cleared on entry) that ring `dpl` may raise
    /// with `int n`.
    fn interrupt(handler: u64, ist: u16, dpl: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: HYPERVISOR_CS,
            ist: ist as u8,
            type_attributes: 0x8E | ((dpl & 3) << 5),
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

static mut IDT: [Gate; 256] = [Gate::MISSING; 256];

pub fn init() {
    // SAFETY: runs once on the boot CPU with interrupts off, before any gate can be used.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for (vector, gate) in idt.iter_mut().enumerate().take(EXCEPTION_VECTORS) {
            let ist = match vector {
                1 => IST_DEBUG,
                2 => IST_NMI,
                8 => IST_DOUBLE_FAULT,
                18 => IST_MACHINE_CHECK,
                _ => 0,
            };
            let dpl = if vector == 3 || vector == 4 { 3 } else { 0 };
            *gate = Gate::interrupt(trap_stub_address(vector), ist, dpl);
        }
        idt[INT80_VECTOR as usize] = Gate::interrupt(int80_stub_address(), 0, 3);
        // DPL 0: a guest's `int 0xef` is a #GP, never a fake timer tick (nor `int 0xee`
        // a kick).
        let (timer, spurious, kick) = super::entry::interrupt_stub_addresses();
        idt[super::lapic::TIMER_VECTOR as usize] = Gate::interrupt(timer, 0, 0);
        idt[super::lapic::KICK_VECTOR as usize] = Gate::interrupt(kick, 0, 0);
        idt[super::lapic::SPURIOUS_VECTOR as usize] = Gate::interrupt(spurious, 0, 0);
        lidt(&DescriptorTablePointer { limit: (core::mem::size_of_val(idt) - 1) as u16, base: VirtAddr::new(idt.as_ptr() as u64) });
    }
}
