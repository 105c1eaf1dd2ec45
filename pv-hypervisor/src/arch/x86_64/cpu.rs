//! Small CPU operations used outside `arch`.

use hypercall_abi::debug_exit::{ExitCode, ISA_DEBUG_EXIT_PORT};
use x86_64::instructions::port::Port;
use x86_64::registers::control::{Cr2, Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

/// The faulting address of the last page fault.
pub fn cr2() -> u64 {
    Cr2::read_raw()
}

/// Physical address of the current top-level page table.
pub fn cr3() -> u64 {
    Cr3::read().0.start_address().as_u64()
}

/// Switches address space.
///
/// # Safety
/// `l4_phys` must be a page-aligned L4 that maps the hypervisor's slots exactly like the
/// current one, so the code and stack running now stay mapped.
pub unsafe fn load_cr3(l4_phys: u64) {
    let frame = PhysFrame::containing_address(PhysAddr::new(l4_phys));
    // SAFETY: the caller guarantees the hypervisor stays mapped in the new tables.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

/// Cycle counter, for timing.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is clear, so it is allowed.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Ends the QEMU run with `code` (QEMU exits with `(code << 1) | 1`); halts forever if
/// there is no isa-debug-exit device.
pub fn exit_qemu(code: ExitCode) -> ! {
    let mut port = Port::<u32>::new(ISA_DEBUG_EXIT_PORT);
    // SAFETY: writing to the debug-exit port has no effect other than stopping QEMU; on
    // a machine without the device the write goes nowhere.
    unsafe { port.write(code as u32) };
    halt_forever()
}

pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
