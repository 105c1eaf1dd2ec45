//! Entries from guests (and from faults) into the hypervisor, and the way back.
//!
//! Both a `syscall` (hypercall) and an exception leave the same frame at the top of the
//! hypervisor stack: the guest's general registers, vector, error code and an `iretq`
//! frame, laid out as [`GuestRegisters`]. Rust handlers get it as `&mut` and may change
//! it (return value in RAX, or a whole other vCPU's state); `restore_frame` then resumes
//! whatever the frame holds with `iretq`.
//!
//! Single CPU: the syscall entry stores the guest RSP straight into the frame at the
//! top of the one hypervisor stack. Per-CPU data (and `swapgs`) comes with SMP.

use crate::domain::vcpu::{GuestRegisters, SYSCALL32_VECTOR, SYSCALL_VECTOR};
use hypercall_abi::arch_x86_64::{FLAT_RING3_CS32, FLAT_RING3_CS64, FLAT_RING3_SS64};
use x86_64::registers::model_specific::Msr;

/// Vectors 0-31 are CPU exceptions.
pub const EXCEPTION_VECTORS: usize = 32;
/// Every exception stub is padded to this size, so vector n's stub is at base + n * size.
const STUB_SIZE: u64 = 16;

core::arch::global_asm!(
    ".pushsection .text.entry, \"ax\"",
    // The general registers, pushed so they end up in GuestRegisters order (r15 lowest).
    ".macro push_guest_registers",
    "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
    "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
    ".endm",
    // AC set in ring 0 would switch SMAP off, and Rust code assumes DF clear. `syscall`
    // clears both through SFMASK, so the syscall entries need neither `cld` nor `clac`
    // (each costs a translation block under TCG: 60 cycles of a null hypercall), but an
    // exception or interrupt from ring 3 keeps the guest's AC and DF. clac exists only
    // where SMAP does, so it is skipped on CPUs without it.
    ".macro clac_if_smap",
    "cmp byte ptr [rip + SMAP_ENABLED], 0",
    "je 7f",
    "clac",
    "7:",
    ".endm",
    // One stub per exception vector: those without a CPU error code push a zero, so
    // every frame has the same shape.
    ".balign 16",
    ".globl trap_stubs",
    "trap_stubs:",
    ".irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    ".balign 16",
    ".if (\\vector != 8) && (\\vector != 10) && (\\vector != 11) && (\\vector != 12) && (\\vector != 13) && (\\vector != 14) && (\\vector != 17) && (\\vector != 21) && (\\vector != 29) && (\\vector != 30)",
    "push 0",
    ".endif",
    "push \\vector",
    "jmp trap_common",
    ".endr",

    // `int 0x80` through its DPL 3 gate (the one soft interrupt Xen lets guests reach
    // directly): no error code.
    ".balign 16",
    ".globl int80_stub",
    "int80_stub:",
    "push 0",
    "push {int80_vector}",
    "jmp trap_common",

    // The LAPIC timer and spurious interrupts: no error code.
    ".balign 16",
    ".globl timer_stub",
    "timer_stub:",
    "push 0",
    "push {timer_vector}",
    "jmp trap_common",
    ".balign 16",
    ".globl kick_stub",
    "kick_stub:",
    "push 0",
    "push {kick_vector}",
    "jmp trap_common",
    ".balign 16",
    ".globl spurious_stub",
    "spurious_stub:",
    "push 0",
    "push {spurious_vector}",
    "jmp trap_common",

    "trap_common:",
    "push_guest_registers",
    "cld",
    "clac_if_smap",
    "mov rdi, rsp",
    "call trap_from_cpu", // leaves through resume_frame, never returns
    "ud2",

    // Hypercall: `syscall` left RIP in RCX and RFLAGS in R11, and SFMASK cleared IF, DF
    // and AC (SYSCALL_RFLAGS_MASK).
    ".globl syscall_entry",
    "syscall_entry:",
    // The guest RSP goes straight into its slot of the frame (ss above it).
    "mov [rip + hv_stack_top - 16], rsp",
    "lea rsp, [rip + hv_stack_top - 16]",
    "mov qword ptr [rsp + 8], {guest_ss}",
    "push r11",
    "push {guest_cs}",
    "push rcx",
    "push 0",
    "push {syscall_vector}",
    "push_guest_registers",
    "mov rdi, rsp",
    "call hypercall_from_guest", // leaves through resume_frame, never returns
    "ud2",

    // `syscall` from 32-bit compatibility mode (CSTAR). Same register contract as the
    // 64-bit entry; the frame records the 32-bit code selector it came from.
    ".globl syscall32_entry",
    "syscall32_entry:",
    "mov [rip + hv_stack_top - 16], rsp",
    "lea rsp, [rip + hv_stack_top - 16]",
    "mov qword ptr [rsp + 8], {guest_ss}",
    "push r11",
    "push {guest_cs32}",
    "push rcx",
    "push 0",
    "push {syscall32_vector}",
    "push_guest_registers",
    "mov rdi, rsp",
    "call syscall32_from_guest", // leaves through resume_frame, never returns
    "ud2",

    // Back to the guest (or to the ring-0 code an interrupt hit) with `iretq`.
    ".macro pop_guest_registers",
    "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
    "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
    ".endm",
    ".globl restore_frame",
    "restore_frame:",
    "pop_guest_registers",
    "add rsp, 16", // vector and error code
    "iretq",
    // Back to the guest with `sysretq`, which loads no descriptors and costs far less
    // than `iretq`: only for a frame rcx and r11 already resume (rip and rflags) and that
    // passed `trap::frame_check` (canonical rip, flat 64-bit selectors), see
    // `resume_frame_by_sysret`. Interrupts are off (SFMASK) between loading the guest
    // rsp and sysretq; NMI and #MC use IST stacks.
    ".globl restore_frame_by_sysret",
    "restore_frame_by_sysret:",
    "pop_guest_registers",
    "mov rsp, [rsp + 40]", // the guest rsp: 16 (vector, error code) + rip, cs, rflags
    "sysretq",
    ".popsection",

    guest_ss = const FLAT_RING3_SS64 as u64,
    guest_cs = const FLAT_RING3_CS64 as u64,
    guest_cs32 = const FLAT_RING3_CS32 as u64,
    syscall_vector = const SYSCALL_VECTOR,
    syscall32_vector = const SYSCALL32_VECTOR,
    int80_vector = const INT80_VECTOR,
    timer_vector = const super::lapic::TIMER_VECTOR as u64,
    spurious_vector = const super::lapic::SPURIOUS_VECTOR as u64,
    kick_vector = const super::lapic::KICK_VECTOR as u64,
);

/// The soft-interrupt vector guests may raise directly (`int 0x80`).
pub const INT80_VECTOR: u64 = crate::trap::entry::VECTOR_INT80;

extern "C" {
    static trap_stubs: u8;
    static int80_stub: u8;
    static timer_stub: u8;
    static spurious_stub: u8;
    static kick_stub: u8;
    fn syscall_entry();
    fn syscall32_entry();
    fn restore_frame();
    fn restore_frame_by_sysret();
}

pub fn trap_stub_address(vector: usize) -> u64 {
    core::ptr::addr_of!(trap_stubs) as u64 + vector as u64 * STUB_SIZE
}

/// Copies `frame` to the top of the hypervisor stack, where a guest's entries leave
/// theirs, and goes on there with `then(copy)`: for a frame taken on an IST stack (16
/// KiB) whose handling may need the slow path's whole depth.
///
/// # Safety
/// Nothing on the hypervisor stack may be needed any more (the interrupted context was
/// a guest's).
pub unsafe fn continue_on_hypervisor_stack(frame: &GuestRegisters, then: extern "C" fn(&mut GuestRegisters) -> !) -> ! {
    let copy = (super::boot::hypervisor_stack_top() - core::mem::size_of::<GuestRegisters>() as u64) as *mut GuestRegisters;
    // The frame's 22 words keep the stack 16-byte aligned for the call.
    const _: () = assert!(core::mem::size_of::<GuestRegisters>().is_multiple_of(16));
    // SAFETY: `copy` is the top of the hypervisor stack, free by the caller's guarantee,
    // and not the IST stack `frame` is on; then the stack is cut to it and `then`,
    // which never returns, gets it as its frame.
    unsafe {
        copy.write(*frame);
        core::arch::asm!("mov rsp, rdi", "call {then}", "ud2", then = in(reg) then, in("rdi") copy, options(noreturn));
    }
}

/// Whether `rip` is the first instruction of one of the ways into ring 0: the syscall
/// entries and every IDT stub. A #DB taken there in ring 0 is a guest's, delayed past
/// its `syscall` or `int` by the MOV SS shadow (start.rs, `trap_from_cpu`).
pub fn is_entry_point(rip: u64) -> bool {
    let stubs = core::ptr::addr_of!(trap_stubs) as u64;
    let (timer, spurious, kick) = interrupt_stub_addresses();
    let in_trap_stubs = (stubs..stubs + EXCEPTION_VECTORS as u64 * STUB_SIZE).contains(&rip) && (rip - stubs).is_multiple_of(STUB_SIZE);
    in_trap_stubs
        || [syscall_entry as *const () as u64, syscall32_entry as *const () as u64, int80_stub_address(), timer, spurious, kick].contains(&rip)
}

pub fn int80_stub_address() -> u64 {
    core::ptr::addr_of!(int80_stub) as u64
}

/// The stubs of the LAPIC timer, spurious and kick interrupts.
pub fn interrupt_stub_addresses() -> (u64, u64, u64) {
    (core::ptr::addr_of!(timer_stub) as u64, core::ptr::addr_of!(spurious_stub) as u64, core::ptr::addr_of!(kick_stub) as u64)
}

const MSR_SYSENTER_CS: u32 = 0x174;
const MSR_SYSENTER_ESP: u32 = 0x175;
const MSR_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xC000_0081;
const MSR_LSTAR: u32 = 0xC000_0082;
const MSR_CSTAR: u32 = 0xC000_0083;
const MSR_SFMASK: u32 = 0xC000_0084;
/// RFLAGS bits cleared on `syscall`: TF, IF, DF, IOPL, NT, AC. The hypervisor runs with
/// interrupts off and a clean direction flag whatever the guest had.
const SYSCALL_RFLAGS_MASK: u64 = (1 << 8) | (1 << 9) | (1 << 10) | (3 << 12) | (1 << 14) | (1 << 18);
// The syscall entries do without `cld` and `clac` because of these two bits.
const _: () = assert!(SYSCALL_RFLAGS_MASK & (1 << 10) != 0 && SYSCALL_RFLAGS_MASK & (1 << 18) != 0);

/// Sets every MSR through which an instruction a guest may execute enters ring 0:
/// `syscall` from 64-bit mode (LSTAR) and from compatibility mode (CSTAR) go to our
/// entries, with SFMASK clearing IF/TF/DF/AC/NT/IOPL; `sysenter` gets SYSENTER_CS = 0,
/// which makes it fault (#GP, or #UD on AMD in long mode) in the guest instead of
/// entering ring 0 (EFER.SCE was set at boot).
pub fn init_syscall() {
    let star = ((super::gdt::SYSRET_BASE as u64) << 48) | ((super::gdt::HYPERVISOR_CS as u64) << 32);
    // SAFETY: these MSRs only define where `syscall`/`sysenter` enter and with which
    // selectors and flags; the selectors exist in the GDT loaded by `gdt::init`, and
    // both entry points are ours.
    unsafe {
        Msr::new(MSR_STAR).write(star);
        Msr::new(MSR_LSTAR).write(syscall_entry as *const () as u64);
        Msr::new(MSR_CSTAR).write(syscall32_entry as *const () as u64);
        Msr::new(MSR_SFMASK).write(SYSCALL_RFLAGS_MASK);
        Msr::new(MSR_SYSENTER_CS).write(0);
        Msr::new(MSR_SYSENTER_ESP).write(0);
        Msr::new(MSR_SYSENTER_EIP).write(0);
    }
}

/// What the entry MSRs hold now, for the boot log and the boundary scenario.
pub fn entry_msrs() -> [(&'static str, u64); 5] {
    // SAFETY: reading these architectural MSRs has no side effects.
    unsafe {
        [
            ("LSTAR", Msr::new(MSR_LSTAR).read()),
            ("CSTAR", Msr::new(MSR_CSTAR).read()),
            ("SFMASK", Msr::new(MSR_SFMASK).read()),
            ("SYSENTER_CS", Msr::new(MSR_SYSENTER_CS).read()),
            ("SYSENTER_EIP", Msr::new(MSR_SYSENTER_EIP).read()),
        ]
    }
}

/// Leaves through `restore_frame` with `frame`, which an entry stub pushed: the stack
/// is cut back to it, so the Rust frames above return nowhere (one indirect branch
/// less per exit, which matters under TCG, where each costs ~40 cycles).
///
/// # Safety
/// `frame` must be the frame the entry stub pushed on the current stack, and nothing on
/// the stack below it (Rust frames, locks held by them) may be needed any more.
pub unsafe fn resume_frame(frame: *mut GuestRegisters) -> ! {
    // SAFETY: the caller's guarantee; `restore_frame` pops exactly one GuestRegisters.
    unsafe {
        core::arch::asm!(
            "mov rsp, {frame}",
            "jmp {restore}",
            frame = in(reg) frame,
            restore = sym restore_frame,
            options(noreturn),
        )
    }
}

/// [`resume_frame`], leaving by `sysretq` instead of `iretq`.
///
/// # Safety
/// As for [`resume_frame`]; and the frame must be one `sysretq` resumes exactly
/// (`GuestRegisters::sysret_can_resume`) with a canonical rip (`trap::frame_check`):
/// sysretq to a non-canonical rcx faults in ring 0 on Intel CPUs.
pub unsafe fn resume_frame_by_sysret(frame: *mut GuestRegisters) -> ! {
    // SAFETY: the caller's guarantees; `restore_frame_by_sysret` pops exactly one
    // GuestRegisters and takes rip, rflags and rsp from it.
    unsafe {
        core::arch::asm!(
            "mov rsp, {frame}",
            "jmp {restore}",
            frame = in(reg) frame,
            restore = sym restore_frame_by_sysret,
            options(noreturn),
        )
    }
}

/// Resumes a guest from `frame`, which must hold a ring-3 state, on the current CR3.
///
/// # Safety
/// The current CR3 must be the guest's address space (with the hypervisor's slots), and
/// nothing on the hypervisor stack may be needed any more: the stack is reset.
pub unsafe fn enter_guest(frame: &GuestRegisters) -> ! {
    let top = super::boot::hypervisor_stack_top();
    let slot = (top - core::mem::size_of::<GuestRegisters>() as u64) as *mut GuestRegisters;
    // SAFETY: `slot` is the frame area at the top of the hypervisor stack, which the
    // caller guarantees is no longer in use; we copy first and switch RSP to it after.
    unsafe {
        slot.write(*frame);
        resume_frame(slot)
    }
}
