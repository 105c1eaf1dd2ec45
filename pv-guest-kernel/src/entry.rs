//! Start of day: the Xen ELF notes a PV loader reads, the entry point, and the panic
//! handler.
//!
//! The loader (Xen's PV domain builder or ours) enters `_start` in ring 3, 64-bit, with
//! RSI = start_info and RSP on a one-page boot stack; we move to our own stack at once.

use crate::platform::ShutdownReason;
use crate::{commands, console, platform};
use hypercall_abi::start_info::StartInfo;

macro_rules! xen_note_string {
    ($kind:literal, $text:literal) => {
        concat!(
            ".balign 4\n",
            ".long 4\n",
            ".long 2f - 1f\n",
            ".long ",
            $kind,
            "\n",
            ".asciz \"Xen\"\n",
            ".balign 4\n",
            "1: .asciz \"",
            $text,
            "\"\n",
            "2: .balign 4\n"
        )
    };
}

macro_rules! xen_note_u64 {
    ($kind:literal, $value:literal) => {
        concat!(
            ".balign 4\n",
            ".long 4\n",
            ".long 8\n",
            ".long ",
            $kind,
            "\n",
            ".asciz \"Xen\"\n",
            ".balign 4\n",
            ".quad ",
            $value,
            "\n",
            ".balign 4\n"
        )
    };
}

// Note numbers from elfnote.h: 5 XEN_VERSION, 6 GUEST_OS, 7 GUEST_VERSION, 8 LOADER,
// 9 PAE_MODE, 10 FEATURES, 3 VIRT_BASE, 4 PADDR_OFFSET, 1 ENTRY, 2 HYPERCALL_PAGE.
core::arch::global_asm!(
    ".pushsection .note.Xen, \"a\", @note",
    xen_note_string!("6", "pv-guest-kernel"),
    xen_note_string!("7", "0.1"),
    xen_note_string!("5", "xen-3.0"),
    xen_note_string!("8", "generic"),
    xen_note_string!("9", "yes"),
    xen_note_string!("10", "pae_pgdir_above_4gb|dom0"),
    xen_note_u64!("3", "0"),
    xen_note_u64!("4", "0"),
    xen_note_u64!("1", "_start"),
    xen_note_u64!("2", "hypercall_page"),
    ".popsection",
    ".pushsection .text.start, \"ax\"",
    ".globl _start",
    "_start:",
    "lea rsp, [rip + guest_stack_top]",
    "mov rdi, rsi",
    "call guest_main",
    "ud2",
    ".popsection",
    ".pushsection .bss.guest_stack, \"aw\", @nobits",
    ".balign 16",
    "guest_stack_bottom: .skip 64 * 1024",
    "guest_stack_top:",
    ".popsection",
);

#[no_mangle]
extern "C" fn guest_main(start_info: *const StartInfo) -> ! {
    // SAFETY: the loader points RSI at start_info, inside our initial mapping, and nothing
    // else writes it while we run.
    let info: &'static StartInfo = unsafe { &*start_info };
    crate::console::init(info);
    crate::mm::init_later(info);
    let cmdline = core::str::from_utf8(info.cmd_line_bytes()).unwrap_or("");
    commands::greet(info, cmdline);
    let reason = commands::run(info, cmdline.trim());
    platform::shutdown(reason)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::print_line(format_args!("PANIC: {info}"));
    platform::shutdown(ShutdownReason::Crash)
}
