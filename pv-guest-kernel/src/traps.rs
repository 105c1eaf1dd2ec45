//! The guest's own exception handling: a trap table registered with set_trap_table,
//! one assembly stub per vector that turns the hypervisor's bounce frame into a
//! [`TrapFrame`], a Rust handler, and the way back through the `iret` hypercall.
//!
//! The handler is built for tests that provoke exceptions on purpose: a probe arms a
//! resume address, runs one instruction, and reads back what the handler recorded
//! ([`TrapRecord`]). An exception nobody expected is fatal to the kernel.

use crate::console::println;
use crate::platform;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use hypercall_abi::ops::traps::TrapInfo;

/// What the stubs leave on the stack, lowest address first: the general registers, the
/// vector, the error code (0 when the exception has none) and the interrupted frame.
#[repr(C)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    /// Selector in bits 0-15, the event mask the hypervisor saved in bits 32-39.
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);

/// One stub per vector in the list: the CPU exceptions a PV kernel handles, and a few
/// soft-interrupt vectors for the `int n` checks. `code` marks the exceptions whose
/// bounce frame carries an error code. The stubs' addresses land in `guest_trap_stubs`
/// as (vector, address) pairs for [`install`].
macro_rules! trap_stubs {
    ($($vector:literal $kind:ident),* $(,)?) => {
        core::arch::global_asm!(
            $(
                concat!("guest_trap_", stringify!($vector), ":"),
                // The bounce frame starts with rcx and r11 below rip.
                "pop rcx",
                "pop r11",
                trap_stubs!(@error_code $kind),
                concat!("push ", stringify!($vector)),
                "jmp guest_trap_common",
            )*
            ".pushsection .rodata.guest_trap_stubs, \"a\"",
            ".balign 8",
            ".globl guest_trap_stubs",
            "guest_trap_stubs:",
            $( concat!(".quad ", stringify!($vector), ", guest_trap_", stringify!($vector)), )*
            ".popsection",
        );
        const STUB_COUNT: usize = [$($vector),*].len();
    };
    (@error_code plain) => { "push 0" };
    (@error_code code) => { "" };
}

/// Callbacks (syscall32, sysenter) enter with the same frame as an exception without
/// error code; they are recorded as these pseudo-vectors.
pub const CALLBACK_SYSCALL32: u64 = 0x107;
/// The 64-bit syscall callback (a user program's system call).
pub const CALLBACK_SYSCALL: u64 = 0x102;

core::arch::global_asm!(
    ".globl guest_callback_syscall32",
    "guest_callback_syscall32:",
    "pop rcx",
    "pop r11",
    "push 0",
    "push 0x107",
    "jmp guest_trap_common",
    ".globl guest_callback_syscall",
    "guest_callback_syscall:",
    "pop rcx",
    "pop r11",
    "push 0",
    "push 0x102",
    "jmp guest_trap_common",
    ".globl guest_callback_event",
    "guest_callback_event:",
    "pop rcx",
    "pop r11",
    "push 0",
    "push 0x100",
    "jmp guest_trap_common",
    ".globl guest_callback_nmi",
    "guest_callback_nmi:",
    "pop rcx",
    "pop r11",
    "push 0",
    "push 0x104",
    "jmp guest_trap_common",
    ".globl guest_callback_sysenter",
    "guest_callback_sysenter:",
    "pop rcx",
    "pop r11",
    "push 0",
    "push 0x105",
    "jmp guest_trap_common",
);

extern "C" {
    fn guest_callback_syscall();
    fn guest_callback_syscall32();
    fn guest_callback_sysenter();
    fn guest_callback_event();
    fn guest_callback_nmi();
}

/// The NMI callback (CALLBACKTYPE_NMI / nmi_op): recorded as this pseudo-vector; an NMI
/// through trap-table entry 2 is recorded as vector 2.
pub const CALLBACK_NMI: u64 = 0x104;

/// Entry points for callback_op registrations.
pub fn callback_entry(callback_type: u16) -> Option<u64> {
    use hypercall_abi::ops::callback::{CALLBACKTYPE_EVENT, CALLBACKTYPE_SYSCALL, CALLBACKTYPE_SYSCALL32, CALLBACKTYPE_SYSENTER};
    match callback_type {
        CALLBACKTYPE_EVENT => Some(guest_callback_event as *const () as u64),
        hypercall_abi::ops::callback::CALLBACKTYPE_NMI => Some(guest_callback_nmi as *const () as u64),
        CALLBACKTYPE_SYSCALL => Some(guest_callback_syscall as *const () as u64),
        CALLBACKTYPE_SYSCALL32 => Some(guest_callback_syscall32 as *const () as u64),
        CALLBACKTYPE_SYSENTER => Some(guest_callback_sysenter as *const () as u64),
        _ => None,
    }
}

trap_stubs! {
    0 plain, 1 plain, 2 plain, 3 plain, 4 plain, 5 plain, 6 plain, 7 plain, 8 code, 10 code, 11 code,
    12 code, 13 code, 14 code, 16 plain, 17 code, 19 plain,
    0x80 plain, 0x81 plain, 0x83 plain, 0x84 plain, 0x86 plain,
}

// Common tail: save the registers, call the handler, then resume whatever the frame says
// through the iret hypercall (flags 0: not returning from a syscall callback; the iret
// stub pushes rcx, r11 and rax itself).
core::arch::global_asm!(
    "guest_trap_common:",
    "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
    "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
    "cld",
    "mov rdi, rsp",
    "call guest_trap_handler",
    "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
    "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
    "add rsp, 16",
    "push 0",
    "jmp hypercall_page + {iret_stub}",
    iret_stub = const hypercall_abi::nr::iret * hypercall_abi::guest::STUB_SIZE,
);

#[repr(C)]
struct StubEntry {
    vector: u64,
    address: u64,
}

extern "C" {
    static guest_trap_stubs: [StubEntry; STUB_COUNT];
}

/// Trap-table flags per vector: DPL in bits 0-1, bit 2 = interrupt gate (events masked
/// on entry). Soft interrupts 0x80 (DPL 3), 0x81 (DPL 0), 0x83 (DPL 3) and 0x84
/// (DPL 1) exercise the `int n` permission rule; 0x86 (DPL 3) is the one interrupt gate.
fn flags_for(vector: u64) -> u8 {
    match vector {
        3 | 4 | 0x80 | 0x83 => 3,
        0x84 => 1,
        0x86 => 3 | hypercall_abi::ops::traps::TI_FLAG_MASK_EVENTS,
        _ => 0,
    }
}

/// The vector-2 stub is an NMI handler: only the `nmi` checks install it (a trap-table
/// entry 2 is the NMI callback).
pub const NMI_STUB_VECTOR: u64 = 2;

/// The address of the vector's stub, if there is one.
pub fn stub_address(vector: u64) -> Option<u64> {
    // SAFETY: the table is emitted by the assembly above with exactly STUB_COUNT entries.
    let stubs = unsafe { &*core::ptr::addr_of!(guest_trap_stubs) };
    stubs.iter().find(|s| s.vector == vector).map(|s| s.address)
}

/// Registers every stub with the hypervisor. Returns the hypercall's result.
pub fn install() -> i64 {
    let mut table = [TrapInfo::default(); STUB_COUNT + 1];
    // SAFETY: the table is emitted by the assembly above with exactly STUB_COUNT entries.
    let stubs = unsafe { &*core::ptr::addr_of!(guest_trap_stubs) };
    for (slot, stub) in table.iter_mut().zip(stubs.iter().filter(|s| s.vector != NMI_STUB_VECTOR)) {
        *slot = TrapInfo {
            vector: stub.vector as u8,
            flags: flags_for(stub.vector),
            cs: hypercall_abi::arch_x86_64::FLAT_KERNEL_CS64,
            _pad: 0,
            address: stub.address,
        };
    }
    platform::set_trap_table(&table)
}

/// What the handler saw of one exception.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapRecord {
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    /// The guest's CR2 as read in the handler (page faults only).
    pub cr2: u64,
    /// evtchn_upcall_mask as the handler found it (u64::MAX: shared_info not mapped).
    pub mask_at_entry: u64,
}

/// Set by a probe before its instruction: where to resume after the exception.
pub static RESUME_RIP: AtomicU64 = AtomicU64::new(0);
/// Whether an exception is expected (and so resumes at [`RESUME_RIP`]).
pub static ARMED: AtomicBool = AtomicBool::new(false);
/// Set by a probe: the address of the instruction it expects to fault.
pub static PROBE_RIP: AtomicU64 = AtomicU64::new(0);
static TAKEN: AtomicU64 = AtomicU64::new(0);
static LAST: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// Forgets the last record; a probe calls it first.
pub fn clear() {
    TAKEN.store(0, SeqCst);
}

/// The record of the exception since [`clear`], if one was taken.
pub fn last() -> Option<TrapRecord> {
    (TAKEN.load(SeqCst) != 0).then(|| {
        let v = |i: usize| LAST[i].load(SeqCst);
        TrapRecord { vector: v(0), error_code: v(1), rip: v(2), cs: v(3), rflags: v(4), rsp: v(5), cr2: v(6), mask_at_entry: v(7) }
    })
}

const RFLAGS_TF: u64 = 1 << 8;

#[no_mangle]
extern "C" fn guest_trap_handler(frame: &mut TrapFrame) {
    // A user program's system call is not an exception to record.
    if frame.vector == CALLBACK_SYSCALL {
        crate::checks::usermode::system_call(frame);
        return;
    }
    if frame.vector == crate::events::CALLBACK_EVENT {
        crate::events::upcall();
        return;
    }
    if frame.vector == CALLBACK_NMI || frame.vector == NMI_STUB_VECTOR {
        crate::checks::nmi::nmi(frame);
        return;
    }
    let cr2 = if frame.vector == 14 { platform::read_cr2() } else { 0 };
    let mask = crate::events::upcall_mask().map_or(u64::MAX, u64::from);
    for (slot, value) in LAST.iter().zip([frame.vector, frame.error_code, frame.rip, frame.cs, frame.rflags, frame.rsp, cr2, mask]) {
        slot.store(value, SeqCst);
    }
    TAKEN.store(1, SeqCst);
    if !ARMED.swap(false, SeqCst) {
        println!(
            "unexpected exception: vector {} error code {:#x} at rip {:#x} cs {:#x} rsp {:#x}",
            frame.vector, frame.error_code, frame.rip, frame.cs, frame.rsp
        );
        println!("RESULT test=trap-handler status=fail reason=unexpected-exception vector={}", frame.vector);
        platform::shutdown(platform::ShutdownReason::Crash);
    }
    frame.rip = RESUME_RIP.load(SeqCst);
    // Probes are 64-bit code: resume in 64-bit mode (even if the exception came from
    // compatibility mode), in the kernel or in user mode, wherever the probe ran.
    let rpl = if frame.cs & 3 == 3 { 3 } else { 0 };
    frame.cs = (frame.cs & !0xffff) | u64::from(hypercall_abi::arch_x86_64::FLAT_KERNEL_CS64 & !3) | rpl;
    frame.ss = u64::from(hypercall_abi::arch_x86_64::FLAT_KERNEL_SS64);
    // A single-step trap would repeat after every instruction from here on.
    frame.rflags &= !RFLAGS_TF;
}
