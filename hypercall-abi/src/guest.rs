//! The guest's side of the calling convention (feature `guest`).
//!
//! A guest calls hypercall `nr` by `call hypercall_page + 32 * nr`; the hypervisor wrote
//! a stub there that does the `syscall` (xen.h, arch-x86/xen-x86_64.h). This module
//! reserves the page (symbol `hypercall_page`, 4 KiB aligned, filled with `int3` so a
//! call before the hypervisor fills it traps) and performs the call. A guest kernel names
//! the page in its XEN_ELFNOTE_HYPERCALL_PAGE note.

pub use crate::hypercalls::calls;

core::arch::global_asm!(
    ".pushsection .text.hypercall_page, \"ax\", @progbits",
    ".balign 4096",
    ".globl hypercall_page",
    "hypercall_page:",
    ".fill 4096, 1, 0xcc",
    ".popsection",
);

extern "C" {
    /// The page the hypervisor fills with one 32-byte stub per hypercall.
    static hypercall_page: [u8; 4096];
}

/// Size of one stub in the hypercall page.
pub const STUB_SIZE: u64 = 32;

/// The guest virtual address of the hypercall page.
pub fn hypercall_page_address() -> u64 {
    core::ptr::addr_of!(hypercall_page) as u64
}

/// Makes hypercall `number` with up to six arguments and returns RAX.
///
/// # Safety
/// The arguments must satisfy the contract of that hypercall (pointers valid for what it
/// reads or writes), and the hypercall page must have been filled by the hypervisor.
#[inline]
pub unsafe fn hypercall(number: u64, args: [u64; 6]) -> i64 {
    let entry = hypercall_page_address() + number * STUB_SIZE;
    let ret: i64;
    // SAFETY: the stub at `entry` saves RCX/R11, does `syscall` with RAX = number and
    // returns; the ABI lets the hypervisor clobber the argument registers, so they are
    // all declared clobbered. The stub uses our stack for two pushes and the return
    // address, which `call` needs anyway.
    unsafe {
        core::arch::asm!(
            "call {entry}",
            entry = in(reg) entry,
            lateout("rax") ret,
            inlateout("rdi") args[0] => _,
            inlateout("rsi") args[1] => _,
            inlateout("rdx") args[2] => _,
            inlateout("r10") args[3] => _,
            inlateout("r8") args[4] => _,
            inlateout("r9") args[5] => _,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}
