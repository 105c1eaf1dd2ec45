//! `usermode`: the kernel builds a user address space (its own page tables, validated
//! by the hypervisor), enters user mode through the iret hypercall, and the user
//! program makes system calls and takes exceptions that the kernel handles. The user
//! program asks the kernel (by system call) to arm each probe and to report it, since
//! it cannot reach kernel memory itself.

use super::{report, Expect, Probed};
use crate::console::println;
use crate::platform;
use crate::traps::{last, ARMED, PROBE_RIP, RESUME_RIP};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use hypercall_abi::ops::callback::CALLBACKTYPE_SYSCALL;
use hypercall_abi::ops::mmu::{MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L4_TABLE};
use hypercall_abi::start_info::StartInfo;

/// The last page of the loader's initial mapping: free memory the kernel borrows as a
/// window to fill new page-table frames before they become tables.
const WINDOW: u64 = 0x3f_f000;
const UNMAPPED: u64 = 0x0000_7fff_dead_0000;
const M2P: u64 = hypercall_abi::ops::memory::MACH2PHYS_VIRT_START;
/// The user address space's L4, for system call 7.
static USER_L4: AtomicU64 = AtomicU64::new(0);
/// Where the user stack lives in the user address space.
const USER_STACK: u64 = 0x1f_0000;
const DATA_RW: u64 = 0x67;
const CODE_RO: u64 = 0x25;
const TABLE: u64 = 0x27;

/// One probe: a system call arms it, the instruction at label 7 may fault, label 8 is
/// the next instruction, and a second system call reports it (check number `$id`).
macro_rules! user_probe {
    ($id:literal, $insn:literal) => {
        concat!(
            "lea rdi, [rip + 8f]\n",
            "lea rsi, [rip + 7f]\n",
            "mov eax, 2\n",
            "syscall\n",
            "7: ",
            $insn,
            "\n",
            "8: mov edi, ",
            stringify!($id),
            "\n",
            "mov eax, 4\n",
            "syscall\n"
        )
    };
}

// The user program. On entry r13 holds a kernel-only address and r14 an unmapped one.
// System calls: 0 exit to the kernel, 1 add the six argument registers, 2 arm a probe
// (rdi = resume, rsi = probed instruction), 3 report a value (rdi = check, rsi =
// value), 4 report the probe's exception (rdi = check), 7 turn VMASST_TYPE_m2p_strict
// on and reload the user base pointer.
core::arch::global_asm!(
    ".pushsection .user_text, \"ax\"",
    ".globl user_program",
    "user_program:",
    "mov r12, 0x1212",
    "mov r15, 0x1515",
    "mov rbx, 0x0b0b",
    "mov rbp, 0x0d0d",
    "mov eax, 1",
    "mov edi, 0x1",
    "mov esi, 0x20",
    "mov edx, 0x300",
    "mov r10d, 0x4000",
    "mov r8d, 0x50000",
    "mov r9d, 0x600000",
    "syscall",
    "mov rsi, rax",
    "mov edi, 1",
    "mov eax, 3",
    "syscall",
    "xor esi, esi",
    "cmp r12, 0x1212",
    "jne 9f",
    "cmp r15, 0x1515",
    "jne 9f",
    "cmp rbx, 0x0b0b",
    "jne 9f",
    "cmp rbp, 0x0d0d",
    "jne 9f",
    "mov esi, 1",
    "9:",
    "mov edi, 2",
    "mov eax, 3",
    "syscall",
    user_probe!(3, "mov rax, qword ptr [r14]"),
    user_probe!(4, "mov rax, qword ptr [r13]"),
    user_probe!(5, "mov qword ptr [r13], rax"),
    user_probe!(6, "int 0x83"),
    user_probe!(7, "int 0x84"),
    user_probe!(8, "int3"),
    user_probe!(9, "mov rax, cr0"),
    user_probe!(10, "ud2"),
    user_probe!(11, "cli"),
    // The M2P table, which a user L4 lacks unless it served as a kernel one; again
    // after the kernel turned VMASST_TYPE_m2p_strict on and reloaded the user L4.
    "mov rbx, 0xffff800000000000",
    user_probe!(12, "mov rax, qword ptr [rbx]"),
    "mov eax, 7",
    "syscall",
    user_probe!(13, "mov rax, qword ptr [rbx]"),
    "xor eax, eax",
    "syscall",
    "ud2",
    // The benchmark program: r12 round trips of an empty system call (5) between two
    // `lfence; rdtsc`, reported by system call 6, then exit.
    ".globl user_benchmark",
    "user_benchmark:",
    "mov r15, r12",
    "lfence",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "mov r14, rax",
    "6:",
    "mov eax, 5",
    "syscall",
    "dec r15",
    "jnz 6b",
    "lfence",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "sub rax, r14",
    "mov rsi, rax",
    "mov eax, 6",
    "syscall",
    "xor eax, eax",
    "syscall",
    "ud2",
    ".popsection",
);

extern "C" {
    fn user_program();
    fn user_benchmark();
    static user_text_start: u8;
    static user_text_end: u8;
}

/// Where the kernel continues when the user program exits.
static KERNEL_RESUME_RIP: AtomicU64 = AtomicU64::new(0);
static KERNEL_RESUME_RSP: AtomicU64 = AtomicU64::new(0);
/// A word only the kernel maps.
static KERNEL_ONLY: AtomicU64 = AtomicU64::new(0x6b65_726e_656c);
static FAILED: AtomicU64 = AtomicU64::new(0);
/// What the benchmark program measured.
static BENCH_CYCLES: AtomicU64 = AtomicU64::new(0);
static CHECKS: AtomicU64 = AtomicU64::new(0);

/// The kernel stack user-mode events arrive on (stack_switch). Page-aligned, so the
/// frames at its top do not straddle a page (and measurements do not depend on where
/// the linker put it).
#[repr(C, align(4096))]
struct KernelStack([u8; 16 * 1024]);
static mut USER_ENTRY_STACK: KernelStack = KernelStack([0; 16 * 1024]);

fn tally(pass: bool) {
    CHECKS.fetch_add(1, SeqCst);
    if !pass {
        FAILED.fetch_add(1, SeqCst);
    }
}

fn pass_fail(pass: bool) -> &'static str {
    if pass {
        "pass"
    } else {
        "fail"
    }
}

/// The syscall callback (from `traps`): a user program's system call.
pub fn system_call(frame: &mut crate::traps::TrapFrame) {
    match frame.rax {
        0 => {
            frame.rip = KERNEL_RESUME_RIP.load(SeqCst);
            frame.rsp = KERNEL_RESUME_RSP.load(SeqCst);
            frame.cs = (frame.cs & !0xffff) | 0xe030;
            frame.rflags = 0x2;
        }
        1 => {
            let sum = frame.rdi + frame.rsi + frame.rdx + frame.r10 + frame.r8 + frame.r9;
            // The frame the hypervisor built: user cs (RPL 3), the user stack, and the
            // handler itself on the stack_switch stack.
            let here = core::ptr::addr_of!(*frame) as u64;
            let stack = core::ptr::addr_of!(USER_ENTRY_STACK) as u64;
            let on_kernel_stack = (stack..stack + 16 * 1024).contains(&here);
            let user_stack = (USER_STACK..=USER_STACK + 4096).contains(&frame.rsp);
            let pass = frame.cs & 0xffff == 0xe033 && user_stack && on_kernel_stack;
            println!(
                "RESULT test=usermode check=syscall_frame cs={:#x} on_user_stack={} handler_on_kernel_stack={} status={}",
                frame.cs & 0xffff,
                u8::from(user_stack),
                u8::from(on_kernel_stack),
                pass_fail(pass)
            );
            tally(pass);
            frame.rax = sum;
        }
        2 => {
            crate::traps::clear();
            RESUME_RIP.store(frame.rdi, SeqCst);
            PROBE_RIP.store(frame.rsi, SeqCst);
            ARMED.store(true, SeqCst);
        }
        3 => report_value(frame.rdi, frame.rsi),
        4 => report_trap(frame.rdi),
        5 => frame.rax = 0,
        6 => BENCH_CYCLES.store(frame.rsi, SeqCst),
        7 => {
            // SAFETY: vm_assist takes no pointer.
            let strict = unsafe { hypercall_abi::guest::calls::vm_assist(0, hypercall_abi::ops::vm_assist::VMASST_TYPE_M2P_STRICT) };
            let reloaded = platform::mmuext(MMUEXT_NEW_USER_BASEPTR, USER_L4.load(SeqCst));
            let pass = strict == 0 && reloaded == 0;
            println!("RESULT test=usermode check=m2p_strict_on vm_assist={strict} new_user_baseptr={reloaded} status={}", pass_fail(pass));
            tally(pass);
        }
        other => println!("usermode: unknown system call {other}"),
    }
}

fn report_value(check: u64, value: u64) {
    let (name, expected) = match check {
        1 => ("syscall_round_trip", 0x65_4321),
        2 => ("registers_preserved", 1),
        _ => ("unknown", u64::MAX),
    };
    let pass = value == expected;
    println!("RESULT test=usermode check={name} value={value:#x} status={}", pass_fail(pass));
    tally(pass);
}

fn report_trap(check: u64) {
    ARMED.store(false, SeqCst);
    let user = |e: Expect| Expect { from_user: true, ..e };
    let kernel_only = core::ptr::addr_of!(KERNEL_ONLY) as u64;
    let (name, expect) = match check {
        3 => ("user_page_fault", user(Expect { cr2: Some(UNMAPPED), ..Expect::fault(14, 4) })),
        4 => ("user_reads_kernel_memory", user(Expect { cr2: Some(kernel_only), ..Expect::fault(14, 4) })),
        5 => ("user_writes_kernel_memory", user(Expect { cr2: Some(kernel_only), ..Expect::fault(14, 6) })),
        6 => ("user_int_dpl3", user(Expect::trap(0x83))),
        7 => ("user_int_dpl1", user(Expect::fault(13, (0x84 << 3) | 2))),
        8 => ("user_breakpoint", user(Expect::trap(3))),
        9 => ("user_privileged_instruction", user(Expect::fault(13, 0))),
        10 => ("user_invalid_opcode", user(Expect::fault(6, 0))),
        11 => ("user_cli", user(Expect::fault(13, 0))),
        12 => ("user_reads_m2p", user(Expect { cr2: Some(M2P), ..Expect::fault(14, 4) })),
        13 => ("user_reads_m2p_strict", user(Expect { cr2: Some(M2P), ..Expect::fault(14, 4) })),
        _ => ("unknown", Expect::none()),
    };
    let probed = Probed { trap: last(), at: PROBE_RIP.load(SeqCst), next: RESUME_RIP.load(SeqCst), rax: 0, rdx: 0 };
    tally(report("usermode", name, &probed, &expect));
}

/// Fills frame `mfn` with `entries` (index, value) through the window page, then gives
/// the window back its own frame.
pub fn fill_frame(info: &StartInfo, mfn: u64, entries: &[(u64, u64)]) -> bool {
    let window_mfn = platform::pfn_to_mfn(info, WINDOW >> 12).unwrap_or(0);
    if platform::update_va_mapping(WINDOW, (mfn << 12) | DATA_RW) != 0 {
        return false;
    }
    let table = WINDOW as *mut u64;
    for i in 0..512 {
        let value = entries.iter().find(|(index, _)| *index == i).map_or(0, |(_, v)| *v);
        // SAFETY: WINDOW maps `mfn` writable right now; nothing else uses that page.
        unsafe { table.add(i as usize).write_volatile(value) };
    }
    platform::update_va_mapping(WINDOW, (window_mfn << 12) | DATA_RW) == 0
}

/// Builds the user address space from the last frames of the domain: L4, L3, L2 and
/// L1 covering the first 2 MiB, with the user program's pages read-only at their
/// kernel addresses and one stack page. Returns the L4's frame.
fn build_user_tables(info: &StartInfo) -> Option<u64> {
    let mfn = |back: u64| platform::pfn_to_mfn(info, info.nr_pages - back);
    let (l4, l3, l2, l1, stack) = (mfn(1)?, mfn(2)?, mfn(3)?, mfn(4)?, mfn(5)?);
    let start = core::ptr::addr_of!(user_text_start) as u64;
    let end = core::ptr::addr_of!(user_text_end) as u64;
    let mut l1_entries = [(0u64, 0u64); 9];
    let mut count = 0;
    for va in (start..end).step_by(4096).take(8) {
        l1_entries[count] = ((va >> 12) & 511, (platform::pfn_to_mfn(info, va >> 12)? << 12) | CODE_RO);
        count += 1;
    }
    l1_entries[count] = ((USER_STACK >> 12) & 511, (stack << 12) | DATA_RW);
    count += 1;
    let ok = fill_frame(info, stack, &[])
        && fill_frame(info, l1, &l1_entries[..count])
        && fill_frame(info, l2, &[(0, (l1 << 12) | TABLE)])
        && fill_frame(info, l3, &[(0, (l2 << 12) | TABLE)])
        && fill_frame(info, l4, &[(0, (l3 << 12) | TABLE)]);
    ok.then_some(l4)
}

pub fn run(info: &StartInfo) {
    run_with_kernel_stack(info, None);
}

/// `kernel_stack`: what to give stack_switch instead of the real entry stack (the
/// entry-attack with an unmapped one).
pub fn run_with_kernel_stack(info: &StartInfo, kernel_stack: Option<u64>) {
    if prepare(info, kernel_stack) {
        enter_user_mode(user_program as *const () as u64, 0);
        println!("RESULT test=usermode check=back_in_kernel status=pass");
        tally(true);
    }
    let failed = FAILED.load(SeqCst);
    println!("RESULT test=usermode status={} checks={} failed={failed}", pass_fail(failed == 0), CHECKS.load(SeqCst));
}

/// Builds and registers the user address space, the kernel entry stack and the syscall
/// callback; prints the setup line.
fn prepare(info: &StartInfo, kernel_stack: Option<u64>) -> bool {
    if crate::traps::install() != 0 {
        println!("RESULT test=usermode status=fail reason=no-trap-table");
        return false;
    }
    let Some(user_l4) = build_user_tables(info) else {
        println!("RESULT test=usermode status=fail reason=cannot-build-user-tables");
        return false;
    };
    USER_L4.store(user_l4, SeqCst);
    let pinned = platform::mmuext(MMUEXT_PIN_L4_TABLE, user_l4);
    let based = platform::mmuext(MMUEXT_NEW_USER_BASEPTR, user_l4);
    let stack_top = kernel_stack.unwrap_or(core::ptr::addr_of!(USER_ENTRY_STACK) as u64 + 16 * 1024);
    let switched = platform::stack_switch(stack_top);
    let syscall_entry = crate::traps::callback_entry(CALLBACKTYPE_SYSCALL).unwrap_or(0);
    let registered = platform::register_callback(CALLBACKTYPE_SYSCALL, syscall_entry, true);
    let setup_ok = pinned == 0 && based == 0 && switched == 0 && registered == 0;
    println!(
        "RESULT test=usermode check=setup pin_l4={pinned} new_user_baseptr={based} stack_switch={switched} callback={registered} status={}",
        pass_fail(setup_ok)
    );
    tally(setup_ok);
    setup_ok
}

/// TSC cycles for `iterations` round trips of an empty user-mode system call (user
/// program -> hypervisor -> kernel callback -> iret -> user program), or None if user
/// mode could not be set up.
pub fn syscall_round_trip_cycles(info: &StartInfo, iterations: u64) -> Option<u64> {
    if !prepare(info, None) {
        return None;
    }
    enter_user_mode(user_benchmark as *const () as u64, iterations);
    Some(BENCH_CYCLES.load(SeqCst))
}

/// Enters user code at `entry` with an iret frame whose cs has RPL 3 (r12 = `argument`);
/// returns when it makes system call 0.
fn enter_user_mode(entry: u64, argument: u64) {
    // SAFETY: the iret hypercall switches to the user page table and the user program;
    // its system call 0 resumes label 2 with this stack pointer, after which rbx and rbp
    // are restored; every other register is declared clobbered.
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "lea rax, [rip + 2f]",
            "mov qword ptr [rip + {resume_rip}], rax",
            "mov qword ptr [rip + {resume_rsp}], rsp",
            "push 0xe02b",
            "push {user_stack}",
            "push 0x2",
            "push 0xe033",
            "push {entry}",
            "push 0",
            "jmp hypercall_page + 23 * 32",
            "2:",
            "pop rbp",
            "pop rbx",
            resume_rip = sym KERNEL_RESUME_RIP,
            resume_rsp = sym KERNEL_RESUME_RSP,
            user_stack = in(reg) USER_STACK + 4096,
            entry = in(reg) entry,
            inout("r12") argument => _,
            inout("r13") core::ptr::addr_of!(KERNEL_ONLY) as u64 => _,
            inout("r14") UNMAPPED => _,
            out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _, out("rdi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _, out("r15") _,
        );
    }
}
