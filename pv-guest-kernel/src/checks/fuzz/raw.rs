//! The fuzzer's hypercall instruction: through the hypercall page or a bare `syscall`
//! (needed past the page's 128 stubs; a guest may do it anyway), optionally with the
//! stack pointer somewhere odd for the duration, and a check that the registers the
//! calling convention preserves came back unchanged.

use core::sync::atomic::AtomicU64;

/// The values the six callee-saved registers hold across every fuzzed call.
const PRESERVED: [u64; 6] =
    [0x1111_2222_3333_4444, 0x5555_6666_7777_8888, 0x9999_aaaa_bbbb_cccc, 0xdddd_eeee_ffff_0001, 0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];

/// Where the real stack pointer waits while a call runs on an odd one.
static SAVED_RSP: AtomicU64 = AtomicU64::new(0);

/// rflags bits a guest may set before a bare `syscall`: DF, AC and NT. The hypervisor
/// must mask them on entry (a backwards `rep movs`, SMAP off, a nested-task `iretq`)
/// and the guest gets them back.
pub const HOSTILE_RFLAGS: u64 = (1 << 10) | (1 << 18) | (1 << 14);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// Our own stack.
    Own,
    /// This stack pointer while the `syscall` runs (the hypervisor must not care: the
    /// arguments are all in registers).
    Odd(u64),
}

/// Makes hypercall `number` and returns RAX and whether rbx, rbp and r12-r15 survived.
/// `via_page` calls the page's stub (only for `number` < 128 and our own stack, since
/// the stub pushes); otherwise a bare `syscall` with RAX = number, with the `rflags`
/// bits (of [`HOSTILE_RFLAGS`]) set for the duration.
pub fn raw_hypercall(number: u64, args: [u64; 6], via_page: bool, stack: Stack, rflags: u64) -> (i64, bool) {
    let ret: i64;
    let (rbx, rbp): (u64, u64);
    let (r12, r13, r14, r15): (u64, u64, u64, u64);
    let entry = hypercall_abi::guest::hypercall_page_address() + (number & 127) * hypercall_abi::guest::STUB_SIZE;
    // 1 in rcx means "keep our stack" (an odd stack pointer of 1 is not offered).
    let odd_rsp = match stack {
        Stack::Own | Stack::Odd(1) => 1,
        Stack::Odd(rsp) => rsp,
    };
    // Operands live in fixed registers: a generic register operand could be given rbx or
    // rbp, which the blocks load with their own values.
    // SAFETY (DF, AC and NT are cleared again before any compiled code runs): the call targets the hypercall page's stub for `number` (< 128) or is a
    // `syscall` with RAX = number, the 64-bit PV hypercall instruction; every argument
    // register, rcx and r11 are declared clobbered, rbx and rbp are saved on the stack
    // around it; an odd stack is used by nothing but the `syscall` itself and the real
    // one is reloaded right after; the fuzzer only passes arguments whose effect it can
    // repair.
    unsafe {
        if via_page && stack == Stack::Own {
            core::arch::asm!(
                "push rbx", "push rbp",
                "mov rbx, {b}", "mov rbp, {p}",
                "call rcx",
                "mov rdi, rbx", "mov rsi, rbp",
                "pop rbp", "pop rbx",
                b = const PRESERVED[0], p = const PRESERVED[1],
                inlateout("rax") number as i64 => ret,
                inlateout("rdi") args[0] => rbx,
                inlateout("rsi") args[1] => rbp,
                inlateout("rdx") args[2] => _,
                inlateout("r10") args[3] => _,
                inlateout("r8") args[4] => _,
                inlateout("r9") args[5] => _,
                inout("r12") PRESERVED[2] => r12,
                inout("r13") PRESERVED[3] => r13,
                inout("r14") PRESERVED[4] => r14,
                inout("r15") PRESERVED[5] => r15,
                inlateout("rcx") entry => _,
                lateout("r11") _,
            );
        } else {
            core::arch::asm!(
                "push rbx", "push rbp",
                "mov rbx, {b}", "mov rbp, {p}",
                "mov qword ptr [rip + {saved}], rsp",
                "pushfq", "or qword ptr [rsp], r11", "popfq",
                "cmp rcx, 1",
                "cmovne rsp, rcx",
                "syscall",
                "mov rsp, qword ptr [rip + {saved}]",
                "pushfq", "and qword ptr [rsp], {clear}", "popfq",
                "mov rdi, rbx", "mov rsi, rbp",
                "pop rbp", "pop rbx",
                b = const PRESERVED[0], p = const PRESERVED[1],
                saved = sym SAVED_RSP,
                clear = const !HOSTILE_RFLAGS as i32,
                inlateout("rax") number as i64 => ret,
                inlateout("rdi") args[0] => rbx,
                inlateout("rsi") args[1] => rbp,
                inlateout("rdx") args[2] => _,
                inlateout("r10") args[3] => _,
                inlateout("r8") args[4] => _,
                inlateout("r9") args[5] => _,
                inout("r12") PRESERVED[2] => r12,
                inout("r13") PRESERVED[3] => r13,
                inout("r14") PRESERVED[4] => r14,
                inout("r15") PRESERVED[5] => r15,
                inlateout("rcx") odd_rsp => _,
                inlateout("r11") rflags & HOSTILE_RFLAGS => _,
            );
        }
    }
    (ret, [rbx, rbp, r12, r13, r14, r15] == PRESERVED)
}
