//! The platform layer: every operation that would be privileged on bare metal goes
//! through here, as a hypercall. Keeping it narrow is what lets the same kernel later
//! run natively as a baseline.

use hypercall_abi::guest::calls;
use hypercall_abi::ops::console_io::CONSOLEIO_WRITE;
use hypercall_abi::ops::sched_op::{SchedShutdown, SCHEDOP_SHUTDOWN};
use hypercall_abi::ops::xen_version::{XENVER_EXTRAVERSION, XENVER_VERSION};
use hypercall_abi::{Errno, GuestAddr};

pub use hypercall_abi::ops::sched_op::ShutdownReason;

/// Writes bytes to the hypervisor console.
pub fn console_write(bytes: &[u8]) -> Result<(), Errno> {
    // SAFETY: the buffer is valid for `len` bytes of reading.
    let ret = unsafe { calls::console_io(CONSOLEIO_WRITE, bytes.len() as u32, GuestAddr::from_ptr(bytes.as_ptr())) };
    Errno::check(ret).map(|_| ())
}

/// Asks the hypervisor to print from an arbitrary address, valid or not: the hypervisor
/// must check it. Used to exercise that check.
pub fn console_write_from_address(address: u64, len: u32) -> Result<(), Errno> {
    // SAFETY: the hypervisor only reads through the address after checking it against
    // our page tables; nothing on our side dereferences it.
    let ret = unsafe { calls::console_io(CONSOLEIO_WRITE, len, GuestAddr(address)) };
    Errno::check(ret).map(|_| ())
}

/// The hypervisor's version as (major, minor).
pub fn hypervisor_version() -> (u32, u32) {
    // SAFETY: XENVER_version takes no argument buffer.
    let v = unsafe { calls::xen_version(XENVER_VERSION, GuestAddr::NULL) };
    ((v >> 16) as u32, (v & 0xffff) as u32)
}

/// The hypervisor's extra version string (e.g. ".0" or "-pvhv").
pub fn hypervisor_extraversion() -> [u8; 16] {
    let mut text = [0u8; 16];
    // SAFETY: XENVER_extraversion writes 16 bytes to the buffer.
    let ret = unsafe { calls::xen_version(XENVER_EXTRAVERSION, GuestAddr::from_mut_ptr(text.as_mut_ptr())) };
    if ret < 0 {
        text = [0; 16];
    }
    text
}

/// How many times this domain made hypercall `number` (our arch_0 hypercall).
pub fn hypercall_count(number: u64) -> Result<u64, Errno> {
    // SAFETY: hypercall_count takes no pointer.
    let ret = unsafe { calls::hypercall_count(number as u32) };
    Errno::check(ret).map(|n| n as u64)
}

/// Stops this domain. Does not return; if the hypervisor refuses, we wait forever.
pub fn shutdown(reason: ShutdownReason) -> ! {
    let request = SchedShutdown { reason: reason as u32 };
    loop {
        // SAFETY: `request` is a valid SchedShutdown for the hypervisor to read.
        unsafe { calls::sched_op(SCHEDOP_SHUTDOWN, GuestAddr::from_ptr(&request)) };
    }
}

/// Executes a privileged instruction, which a ring-3 PV kernel must never do: the
/// hypervisor has to stop this domain. The one deliberate exception to this module's
/// rule, used to test fault isolation.
pub fn execute_privileged_instruction() -> ! {
    loop {
        // SAFETY: `hlt` touches no memory; in ring 3 it raises #GP before doing anything.
        unsafe { core::arch::asm!("hlt", options(nomem, nostack)) };
    }
}
