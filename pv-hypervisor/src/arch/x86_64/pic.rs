//! The legacy 8259 PICs. The BIOS leaves IRQ 0-7 on vectors 8-15, which collide with CPU
//! exceptions (the timer would look like a double fault), so we move them to 0x20-0x2f
//! and mask every line. Interrupts will come from the local APIC.

use x86_64::instructions::port::Port;

const PIC1_COMMAND: u16 = 0x20;
const PIC1_DATA: u16 = 0x21;
const PIC2_COMMAND: u16 = 0xa0;
const PIC2_DATA: u16 = 0xa1;
pub const PIC1_VECTOR_BASE: u8 = 0x20;
pub const PIC2_VECTOR_BASE: u8 = 0x28;

pub fn remap_and_mask() {
    let writes: [(u16, u8); 10] = [
        (PIC1_COMMAND, 0x11), // ICW1: initialise, expect ICW4
        (PIC2_COMMAND, 0x11),
        (PIC1_DATA, PIC1_VECTOR_BASE), // ICW2: vector base
        (PIC2_DATA, PIC2_VECTOR_BASE),
        (PIC1_DATA, 4), // ICW3: slave on IRQ2
        (PIC2_DATA, 2),
        (PIC1_DATA, 1), // ICW4: 8086 mode
        (PIC2_DATA, 1),
        (PIC1_DATA, 0xff), // mask everything
        (PIC2_DATA, 0xff),
    ];
    for (port, value) in writes {
        // SAFETY: ports 0x20/0x21/0xa0/0xa1 are the PC's 8259 pair; this is the standard
        // initialisation sequence and nothing else in the hypervisor drives them.
        unsafe { Port::<u8>::new(port).write(value) };
    }
}
