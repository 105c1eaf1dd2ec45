//! `entry-attacks`: a hostile kernel goes for the ways into ring 0 and the frames the
//! hypervisor returns through. Each attempt must be refused with an errno, turned into
//! an exception for the guest (as Xen does), or crash only this domain; the hypervisor
//! always survives. `entry-attack NAME` runs one of the attacks that end the domain, for
//! a scenario each.

use super::{probe, report, Expect, RipIs, Tally};
use crate::console::println;
use crate::platform;
use hypercall_abi::ops::callback::{CALLBACKTYPE_SYSCALL32, CALLBACKTYPE_SYSENTER};
use hypercall_abi::start_info::StartInfo;

const NON_CANONICAL_RIP: u64 = 0x0000_8000_0000_0000;
const UNMAPPED: u64 = 0x0000_7fff_dead_0000;
const IOPL3: u64 = 3 << 12;
/// Where the loader's initial mapping of a small kernel ends (Xen's PV layout: the next
/// 4 MiB boundary past the boot structures).
const INITIAL_MAPPING_END: u64 = 0x40_0000;

// Compatibility-mode code the probes far-return into: a `syscall` and a `sysenter`.
core::arch::global_asm!(
    ".pushsection .text.compat, \"ax\"",
    ".code32",
    ".globl compat_syscall",
    "compat_syscall:",
    "syscall",
    "ud2",
    ".globl compat_sysenter",
    "compat_sysenter:",
    "sysenter",
    "ud2",
    ".code64",
    ".popsection",
);

extern "C" {
    fn compat_syscall();
    fn compat_sysenter();
}

/// The highest page of the lower half: a `syscall` in its last two bytes returns to
/// 0x0000_8000_0000_0000, the first non-canonical address.
const TOP_PAGE: u64 = 0x0000_7fff_ffff_f000;

/// Maps a code page at [`TOP_PAGE`] whose last two bytes are `syscall`, through new
/// L3, L2 and L1 tables under the kernel's L4 slot 255. Returns whether it worked.
fn map_top_of_lower_half(info: &StartInfo) -> bool {
    use hypercall_abi::ops::mmu::{MmuUpdate, DOMID_SELF};
    let mfn = |back: u64| platform::pfn_to_mfn(info, info.nr_pages - back).unwrap_or(0);
    let (l3, l2, l1, code) = (mfn(6), mfn(7), mfn(8), mfn(9));
    // 0f 05 (syscall) at offset 0xffe, as one word at 0xff8: bytes ff8..ffd are int3.
    let syscall_word = u64::from_le_bytes([0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0x0f, 0x05]);
    let ok = super::usermode::fill_frame(info, code, &[(511, syscall_word)])
        && super::usermode::fill_frame(info, l1, &[(511, (code << 12) | 0x25)])
        && super::usermode::fill_frame(info, l2, &[(511, (l1 << 12) | 0x27)])
        && super::usermode::fill_frame(info, l3, &[(511, (l2 << 12) | 0x27)]);
    if !ok {
        return false;
    }
    let l4 = platform::pfn_to_mfn(info, (info.pt_base - platform::virt_base()) >> 12).unwrap_or(0);
    let update = MmuUpdate { ptr: (l4 << 12) + 255 * 8, val: (l3 << 12) | 0x27 };
    // SAFETY: one readable request; it adds a mapping nothing else uses.
    let ret = unsafe {
        hypercall_abi::guest::calls::mmu_update(hypercall_abi::GuestArray::from_slice(&[update]), 1, hypercall_abi::GuestOut::NULL, DOMID_SELF)
    };
    ret == 0
}

pub fn run(info: &StartInfo) {
    let mut tally = Tally::new("entry-attacks");
    if crate::traps::install() != 0 {
        tally.add(false);
        tally.finish();
        return;
    }

    // An iret frame naming a non-canonical rip: on hardware the iretq would fault in
    // ring 0. Xen lets it fault and hands the guest a #GP at the target state.
    let p =
        probe!("mov rcx, rsp\npush 0xe02b\npush rcx\npushfq\npush 0xe030\npush rdi\npush 0", "jmp hypercall_page + 23 * 32", NON_CANONICAL_RIP, 0u64);
    let expect = Expect { rip: RipIs::Address(NON_CANONICAL_RIP), ..Expect::fault(13, 0) };
    tally.add(report("entry-attacks", "iret_noncanonical_rip", &p, &expect));

    // A ring-0 code selector: the hypervisor forces RPL 3, and 0xe00b is then a ring-0
    // segment with RPL 3, which the CPU refuses: #GP naming the selector.
    let p = probe!("mov rcx, rsp\npush 0xe02b\npush rcx\npushfq\npush 0xe008\nlea rax, [rip + 3f]\npush rax\npush 0", "jmp hypercall_page + 23 * 32");
    tally.add(report("entry-attacks", "iret_ring0_cs", &p, &Expect { rip: RipIs::Next, ..Expect::fault(13, 0xe008) }));

    // IOPL 3 in the frame is dropped: back at label 3 with IOPL 0 and no exception.
    let p = probe!(
        "mov rcx, rsp\npush 0xe02b\npush rcx\npushfq\nor qword ptr [rsp], rsi\npush 0xe030\nlea rax, [rip + 3f]\npush rax\npush 0",
        "jmp hypercall_page + 23 * 32",
        0u64,
        IOPL3
    );
    let iopl_after = current_iopl();
    let pass = report("entry-attacks", "iret_iopl3", &p, &Expect::none()) && iopl_after == 0;
    println!("RESULT test=entry-attacks check=iret_iopl3_dropped iopl={iopl_after} status={}", if iopl_after == 0 { "pass" } else { "fail" });
    tally.add(pass);

    // A syscall from 32-bit compatibility mode enters the hypervisor through CSTAR.
    // Without a syscall32 callback the guest gets #UD at the instruction.
    let p = probe!("push 0xe023\npush rdi\nretfq\n", "", compat_syscall as *const () as u64, 0u64);
    let expect = Expect { rip: RipIs::Address(compat_syscall as *const () as u64), ..Expect::fault(6, 0) };
    tally.add(report("entry-attacks", "compat_syscall_without_callback", &p, &expect));

    // With the callback it is delivered there, past the instruction.
    if let Some(entry) = crate::traps::callback_entry(CALLBACKTYPE_SYSCALL32) {
        let ret = platform::register_callback(CALLBACKTYPE_SYSCALL32, entry, true);
        let p = probe!("push 0xe023\npush rdi\nretfq\n", "", compat_syscall as *const () as u64, 0u64);
        let expect = Expect {
            vector: Some(crate::traps::CALLBACK_SYSCALL32),
            error_code: 0,
            rip: RipIs::Address(compat_syscall as *const () as u64 + 2),
            cr2: None,
            from_user: false,
        };
        tally.add(ret == 0 && report("entry-attacks", "compat_syscall_to_callback", &p, &expect));
    }

    // sysenter: SYSENTER_CS is 0 in the hypervisor, so it can never enter ring 0. On
    // this CPU (QEMU's AMD model) it is #UD in 64-bit code; from compatibility code the
    // CPU raises #GP(0) at the instruction (Xen 4.17 gives the same).
    let p = probe!("", "sysenter");
    tally.add(report("entry-attacks", "sysenter_64bit", &p, &Expect::fault(6, 0)));
    let p = probe!("push 0xe023\npush rdi\nretfq\n", "", compat_sysenter as *const () as u64, 0u64);
    let expect = Expect { rip: RipIs::Address(compat_sysenter as *const () as u64), ..Expect::fault(13, 0) };
    tally.add(report("entry-attacks", "sysenter_compat", &p, &expect));
    // A registered sysenter callback changes nothing where the CPU itself refuses.
    if let Some(entry) = crate::traps::callback_entry(CALLBACKTYPE_SYSENTER) {
        let ret = platform::register_callback(CALLBACKTYPE_SYSENTER, entry, true);
        let p = probe!("", "sysenter");
        tally.add(ret == 0 && report("entry-attacks", "sysenter_with_callback", &p, &Expect::fault(6, 0)));
    }

    // A hypercall made with a non-canonical stack pointer: the return does not use the
    // stack, so it returns (Xen's sysretq path does not check RSP either).
    let p = probe!("mov r8, rsp\nmov rsp, rdi\nmov eax, 17\nxor edi, edi\nxor esi, esi", "syscall\nmov rsp, r8", NON_CANONICAL_RIP, 0u64);
    let pass = report("entry-attacks", "hypercall_with_noncanonical_rsp", &p, &Expect::none());
    println!("RESULT test=entry-attacks check=hypercall_with_noncanonical_rsp_result version={:#x}", p.rax);
    tally.add(pass && p.rax == 0x4_0011);

    // A hypercall from the last two bytes below the non-canonical hole: the return rip is
    // 0x0000_8000_0000_0000. Real hardware would take that #GP in ring 0 on the way
    // out; Xen hands it to the guest instead, and so do we.
    if map_top_of_lower_half(info) {
        let p = probe!("mov eax, 17\nxor esi, esi\nmov rcx, rdi\nxor edi, edi", "jmp rcx", TOP_PAGE + 0xffe, 0u64);
        let expect = Expect { rip: RipIs::Address(NON_CANONICAL_RIP), ..Expect::fault(13, 0) };
        tally.add(report("entry-attacks", "hypercall_from_top_of_lower_half", &p, &expect));
    } else {
        println!("RESULT test=entry-attacks check=hypercall_from_top_of_lower_half status=fail reason=cannot-map");
        tally.add(false);
    }

    mov_ss_breakpoint_attacks(&mut tally);

    tally.finish();
}

/// The selector the MOV SS probes load: the guest's own stack selector, watched by DR0
/// (a u64: 8-aligned, as an 8-byte breakpoint must be).
static WATCHED_SS: u64 = 0xe02b;

/// MOV SS (or POP SS) delays the #DB of a data breakpoint on the selector it loads until
/// after the next instruction. On hardware, if that one enters ring 0 (`syscall`,
/// `int3`), the #DB comes at the first instruction of the hypervisor's entry, in ring 0
/// (CVE-2018-8897, Xen's XSA-260): a hypervisor that takes it for its own fault stops
/// the machine; Xen ignores it and the guest never sees it. QEMU's TCG raises the #DB
/// right after the MOV SS instead, before the instruction it shadows runs (Xen 4.17
/// under it alike), so either outcome passes; a hypervisor stop never does.
fn mov_ss_breakpoint_attacks(tally: &mut Tally) {
    use hypercall_abi::guest::calls;
    let watched = core::ptr::addr_of!(WATCHED_SS) as u64;
    // DR0 on the selector, read or write (R/W0 = 11), 8 bytes (LEN0 = 10), enabled locally.
    // SAFETY: plain values; the breakpoint watches a static only the probes read.
    let armed = unsafe { calls::set_debugreg(0, watched) == 0 && calls::set_debugreg(7, 1 | (3 << 16) | (2 << 18)) == 0 };
    println!("RESULT test=entry-attacks check=mov_ss_breakpoint_armed armed={}", u8::from(armed));
    tally.add(armed);

    // `mov ss, word ptr [rsi]` is 2 bytes: where QEMU reports the #DB.
    const MOV_SS_LEN: u64 = 2;
    let p = probe!("mov eax, 17\nxor edi, edi", "mov ss, word ptr [rsi]\nsyscall", 0u64, watched);
    let emulated = Expect { rip: RipIs::Address(p.at + MOV_SS_LEN), ..Expect::trap(1) };
    let pass = match p.trap {
        Some(_) => report("entry-attacks", "mov_ss_then_syscall", &p, &emulated),
        None => report("entry-attacks", "mov_ss_then_syscall", &p, &Expect::none()) && p.rax == 0x4_0011,
    };
    // SAFETY: reading a debug register has no side effects.
    let dr6 = unsafe { calls::get_debugreg(6) };
    println!("RESULT test=entry-attacks check=mov_ss_then_syscall_result rax={:#x} dr6={dr6:#x}", p.rax);
    tally.add(pass);

    let p = probe!("", "mov ss, word ptr [rsi]\nint3", 0u64, watched);
    let emulated = Expect { rip: RipIs::Address(p.at + MOV_SS_LEN), ..Expect::trap(1) };
    let delayed_one_ignored = matches!(p.trap, Some(t) if t.vector == 3);
    let expect = if delayed_one_ignored { Expect::trap(3) } else { emulated };
    tally.add(report("entry-attacks", "mov_ss_then_int3", &p, &expect));
    // SAFETY: as above.
    let dr6 = unsafe { calls::get_debugreg(6) };
    println!("RESULT test=entry-attacks check=mov_ss_then_int3_dr6 dr6={dr6:#x}");

    // SAFETY: plain values.
    let disarmed = unsafe { calls::set_debugreg(7, 0x400) == 0 && calls::set_debugreg(6, 0xffff_0ff0) == 0 };
    tally.add(disarmed);
}

fn current_iopl() -> u64 {
    let flags: u64;
    // SAFETY: reading rflags has no side effect.
    unsafe { core::arch::asm!("pushfq", "pop {}", out(reg) flags) };
    (flags & IOPL3) >> 12
}

/// Attacks that end the domain. Each prints what it is about to do; the hypervisor's
/// crash report is the result.
pub fn run_fatal(info: &StartInfo, name: &str) {
    if crate::traps::install() != 0 {
        println!("RESULT test=entry-attack status=fail reason=no-trap-table");
        return;
    }
    println!("RESULT test=entry-attack attack={name} status=about-to-attack");
    match name {
        // The iret hypercall with a frame running off the end of the initial mapping
        // (which stops at the 4 MiB boundary): the stub's pushes land in mapped memory,
        // the 72-byte frame does not.
        "iret-unreadable-frame" => unsafe_jump_to_iret_with_stack(INITIAL_MAPPING_END - 8),
        // `int1` (icebp) with no trap table: the #DB, taken on the hypervisor's #DB IST
        // stack, has nowhere to go and ends the domain (its teardown must not run on
        // that small stack).
        "icebp-without-handler" => {
            // SAFETY: clearing our own trap table; the int1 below must end the domain.
            unsafe { hypercall_abi::guest::calls::set_trap_table(hypercall_abi::GuestArray::NULL) };
            // SAFETY: the hypervisor must end the domain at this int1; nothing returns.
            unsafe { core::arch::asm!(".byte 0xf1", "ud2", options(noreturn)) }
        }
        // An exception while the kernel stack is unmapped: the bounce cannot be written.
        "bad-kernel-stack" => {
            // SAFETY: deliberately breaks the stack; the ud2 that follows must end the
            // domain, so nothing after it runs.
            unsafe { core::arch::asm!("mov rsp, {}", "ud2", in(reg) UNMAPPED, options(noreturn)) }
        }
        // Returning to user mode with no user page table registered.
        // An iret to a non-canonical rip with no trap table left to take the #GP that
        // Xen (and we) hand the guest for it: the domain is crashed.
        "noncanonical-rip-without-handler" => {
            // SAFETY: clearing our own trap table; the iret below must end the domain.
            unsafe { hypercall_abi::guest::calls::set_trap_table(hypercall_abi::GuestArray::NULL) };
            // SAFETY: the hypervisor must end the domain at this iret; nothing returns.
            unsafe {
                core::arch::asm!(
                    "mov rcx, rsp",
                    "push 0xe02b",
                    "push rcx",
                    "pushfq",
                    "push 0xe030",
                    "push {rip}",
                    "push 0",
                    "jmp hypercall_page + 23 * 32",
                    rip = in(reg) NON_CANONICAL_RIP,
                    options(noreturn)
                )
            }
        }
        // A user-mode system call while the kernel's stack_switch stack is unmapped.
        "user-entry-on-unmapped-stack" => super::usermode::run_with_kernel_stack(info, Some(UNMAPPED)),
        "iret-to-user-without-table" => {
            // SAFETY: the hypervisor must end the domain at the iret; nothing returns.
            unsafe {
                core::arch::asm!(
                    "mov rcx, rsp",
                    "push 0xe02b",
                    "push rcx",
                    "pushfq",
                    "push 0xe033",
                    "lea rax, [rip + 2f]",
                    "push rax",
                    "push 0",
                    "jmp hypercall_page + 23 * 32",
                    "2:",
                    "ud2",
                    options(noreturn)
                )
            }
        }
        other => println!("RESULT test=entry-attack attack={other} status=fail reason=unknown-attack"),
    }
}

fn unsafe_jump_to_iret_with_stack(stack: u64) {
    // SAFETY: the iret hypercall reads its frame from this stack, which is unmapped: the
    // hypervisor must end the domain, so nothing returns here.
    unsafe { core::arch::asm!("mov rsp, {}", "jmp hypercall_page + 23 * 32", in(reg) stack, options(noreturn)) }
}
