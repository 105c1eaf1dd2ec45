//! The IDT: exception vectors 0-31 go to the stubs in [`super::entry`].
//!
//! Every gate has DPL 0, so a guest's `int n` raises #GP with error code
//! `(n << 3) | 2`, which the trap handler reports (and, once guests have trap tables,
//! will bounce to the guest).

use super::entry::{trap_stub_address, EXCEPTION_VECTORS};
use super::gdt::{HYPERVISOR_CS, IST_DOUBLE_FAULT, IST_NMI};
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
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    /// A present 64-bit interrupt gate (IF cleared on entry), DPL 0.
    fn interrupt(handler: u64, ist: u16) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: HYPERVISOR_CS,
            ist: ist as u8,
            type_attributes: 0x8E,
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
        for vector in 0..EXCEPTION_VECTORS {
            let ist = match vector {
                2 => IST_NMI,
                8 => IST_DOUBLE_FAULT,
                _ => 0,
            };
            idt[vector] = Gate::interrupt(trap_stub_address(vector), ist);
        }
        lidt(&DescriptorTablePointer {
            limit: (core::mem::size_of_val(idt) - 1) as u16,
            base: VirtAddr::new(idt.as_ptr() as u64),
        });
    }
}
