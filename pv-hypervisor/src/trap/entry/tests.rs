use super::*;
use crate::domain::DomainState;
use crate::hypercall::test_support::{TestGuest, GUEST_DATA_VA};
use hypercall_abi::ops::traps::TrapInfo;

const HOST: HostView = HostView { cr0: 0x8005_0033, cr4: 0x660, efer: 0xd01 };
const STACK_TOP: u64 = GUEST_DATA_VA + TestGuest::MAPPED_BYTES;

fn guest() -> (TestGuest, CpuidPolicy) {
    let mut g = TestGuest::new();
    for (vector, address) in [(6u8, 0x10_6000u64), (13, 0x10_d000), (14, 0x10_e000)] {
        g.domain.traps.set_trap(&TrapInfo { vector, flags: 0, cs: 0xe033, _pad: 0, address });
    }
    g.regs.rsp = STACK_TOP - 8;
    (g, CpuidPolicy::from_host(|_, _| [0; 4], 0x4_0011, 36))
}

fn exception(g: &mut TestGuest, cpuid: &CpuidPolicy, vector: u64, error_code: u64) {
    g.regs.vector = vector;
    g.regs.error_code = error_code;
    let hw = ExceptionContext { cr2: 0x1234_5000, debug_status: 0, host: HOST };
    guest_exception(&mut g.domain, &mut g.host.memory, &mut g.host.frames, cpuid, &mut crate::trap::ports::NoPorts, &mut g.regs, &hw);
}

#[test]
fn privileged_instructions_are_emulated_in_place() {
    let (mut g, cpuid) = guest();
    g.poke(GUEST_DATA_VA, &[0x0f, 0x20, 0xc0]); // mov rax, cr0
    g.regs.rip = GUEST_DATA_VA;
    exception(&mut g, &cpuid, 13, 0);
    assert_eq!((g.regs.rip, g.regs.rax), (GUEST_DATA_VA + 3, 0x8005_0033));
    // Not emulated: the #GP reaches the guest's handler.
    g.poke(GUEST_DATA_VA, &[0xf4]); // hlt
    g.regs.rip = GUEST_DATA_VA;
    exception(&mut g, &cpuid, 13, 0);
    assert_eq!(g.regs.rip, 0x10_d000);
}

#[test]
fn forced_cpuid_and_an_instruction_cut_by_the_mapping() {
    let (mut g, cpuid) = guest();
    g.poke(GUEST_DATA_VA, &[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2]);
    g.regs.rip = GUEST_DATA_VA;
    g.regs.rax = 0x4000_0000;
    exception(&mut g, &cpuid, 6, 0);
    assert_eq!((g.regs.rip, g.regs.rbx), (GUEST_DATA_VA + 7, 0x566e_6558));
    // The prefix runs off the last mapped page: a #PF at the first unmapped byte.
    let last = GUEST_DATA_VA + TestGuest::MAPPED_BYTES - 3;
    g.poke(last, &[0x0f, 0x0b, 0x78]);
    g.regs.rip = last;
    g.regs.rsp = STACK_TOP - 8;
    exception(&mut g, &cpuid, 6, 0);
    assert_eq!((g.regs.rip, g.domain.traps.cr2), (0x10_e000, GUEST_DATA_VA + TestGuest::MAPPED_BYTES));
}

#[test]
fn compat_syscall_without_callback_is_ud_at_the_instruction() {
    let (mut g, _) = guest();
    g.regs.rip = 0x40_1002;
    compat_syscall(&mut g.domain, &mut g.host.memory, &mut g.regs);
    assert_eq!(g.regs.rip, 0x10_6000);
    assert_eq!(g.peek(g.regs.rsp + 16, 8), 0x40_1000u64.to_le_bytes());
}

#[test]
fn bad_exit_frames_become_the_guests_gp_or_crash_it() {
    let (mut g, _) = guest();
    g.regs.rip = 0x0000_8000_0000_0000;
    check_exit_frame(&mut g.domain, &mut g.host.memory, &mut g.host.frames, &mut g.regs);
    assert_eq!((g.regs.rip, g.domain.state), (0x10_d000, DomainState::Running));
    // No #GP handler: crashed.
    let mut g = TestGuest::new();
    g.regs.rip = 0x0000_8000_0000_0000;
    check_exit_frame(&mut g.domain, &mut g.host.memory, &mut g.host.frames, &mut g.regs);
    assert_eq!(g.domain.state, DomainState::Crashed);
    // A non-canonical rsp is the guest's own business: iretq loads it without
    // faulting, so the frame goes back as it was (Xen resumes it the same way).
    let (mut g, _) = guest();
    g.regs.rsp = 0x1234_0000_0000_0000;
    g.regs.rcx = 1; // not a sysret frame
    let before = g.regs;
    check_exit_frame(&mut g.domain, &mut g.host.memory, &mut g.host.frames, &mut g.regs);
    assert_eq!((g.regs, g.domain.state), (before, DomainState::Running));
}

/// Selectors 0-3 are the null selector to the CPU whatever GDT entry 0 holds: a return
/// frame naming one is refused (here: crashed, no #GP handler), never handed to iretq.
#[test]
fn a_null_selector_never_passes_the_exit_check() {
    use crate::hypercall::test_support::SPARE_FRAMES;
    const DATA_DPL3: u64 = 0x00cf_f200_0000_ffff;
    const CODE64_DPL3: u64 = 0x00af_fa00_0000_ffff;
    for (cs, ss, entry0) in [(0xe033, 3, DATA_DPL3), (3, 0xe02b, CODE64_DPL3), (0xe033, 0, DATA_DPL3)] {
        let mut g = TestGuest::new();
        let gdt = SPARE_FRAMES.start;
        g.host.memory.write_bytes(gdt * 4096, &entry0.to_le_bytes()).unwrap();
        g.domain.traps.gdt_frames[0] = gdt;
        g.domain.traps.gdt_frame_count = 1;
        (g.regs.cs, g.regs.ss, g.regs.rcx) = (cs, ss, 1);
        check_exit_frame(&mut g.domain, &mut g.host.memory, &mut g.host.frames, &mut g.regs);
        assert_eq!(g.domain.state, DomainState::Crashed, "cs {cs:#x} ss {ss:#x}");
    }
}
