use super::*;
use crate::trap::cpuid::CpuidPolicy;

const HOST: HostView = HostView { cr0: 0x8005_0033, cr4: 0x6e0, efer: 0xd01 };

struct Fixture {
    regs: GuestRegisters,
    traps: TrapState,
    cpuid: CpuidPolicy,
    ports: crate::trap::ports::NoPorts,
}

impl Fixture {
    fn new() -> Self {
        let regs = GuestRegisters { rip: 0x10_0000, rax: 0x1111, rcx: 0x2222, rdx: 0x3333, ..Default::default() };
        Fixture { regs, traps: TrapState::default(), cpuid: CpuidPolicy::from_host(|_, _| [0; 4], 0x4_0011, 36), ports: crate::trap::ports::NoPorts }
    }

    fn ctx(&mut self) -> EmulationContext<'_> {
        EmulationContext {
            regs: &mut self.regs,
            traps: &mut self.traps,
            kernel_l4: 0x13_7000,
            host: HOST,
            cpuid: &self.cpuid,
            ports: &mut self.ports,
            privileged: true,
        }
    }
}

#[test]
fn control_register_reads_show_the_guests_view() {
    let mut f = Fixture::new();
    f.traps.cr2 = 0xdead_0000;
    f.traps.set_fpu_ts(true);
    // mov rax, cr2 ; mov rbx, cr0 ; mov r9, cr3 ; mov rdx, cr4
    assert_eq!(f.ctx().privileged(&[0x0f, 0x20, 0xd0]), Emulation::Done);
    assert_eq!(f.regs.rax, 0xdead_0000);
    assert_eq!(f.regs.rip, 0x10_0003);
    assert_eq!(f.ctx().privileged(&[0x0f, 0x20, 0xc3]), Emulation::Done);
    assert_eq!(f.regs.rbx, 0x8005_003b, "TS is the guest's");
    assert_eq!(f.ctx().privileged(&[0x41, 0x0f, 0x20, 0xd9]), Emulation::Done);
    assert_eq!(f.regs.r9, 0x13_7000);
    assert_eq!(f.ctx().privileged(&[0x0f, 0x20, 0xe2]), Emulation::Done);
    assert_eq!(f.regs.rdx, 0x6e0);
    // cr8 does not exist for a PV guest.
    assert_eq!(f.ctx().privileged(&[0x44, 0x0f, 0x20, 0xc0]), Emulation::GeneralProtection);
}

#[test]
fn control_register_writes_only_change_what_is_the_guests() {
    let mut f = Fixture::new();
    f.regs.rax = 0x8005_003b; // CR0 with TS
    assert_eq!(f.ctx().privileged(&[0x0f, 0x22, 0xc0]), Emulation::Done);
    assert!(f.traps.fpu_ts());
    f.regs.rax = 0x8005_0033 & !(1 << 16); // clears WP: refused
    assert_eq!(f.ctx().privileged(&[0x0f, 0x22, 0xc0]), Emulation::GeneralProtection);
    assert_eq!(f.ctx().privileged(&[0x0f, 0x06]), Emulation::Done, "clts");
    assert!(!f.traps.fpu_ts());
    f.regs.rax = 0x13_7000;
    assert_eq!(f.ctx().privileged(&[0x0f, 0x22, 0xd8]), Emulation::Done, "reloading the same cr3");
    f.regs.rax = 0x20_0000;
    assert_eq!(f.ctx().privileged(&[0x0f, 0x22, 0xd8]), Emulation::GeneralProtection);
}

#[test]
fn msrs_in_the_allowed_set_only() {
    let mut f = Fixture::new();
    let wrmsr = [0x0f, 0x30];
    let rdmsr = [0x0f, 0x32];
    f.regs.rcx = MSR_FS_BASE as u64;
    f.regs.rdx = 0xffff_ffff;
    f.regs.rax = 0x8000_1000;
    assert_eq!(f.ctx().privileged(&wrmsr), Emulation::Done);
    assert_eq!(f.traps.fs_base, 0xffff_ffff_8000_1000);
    assert!(f.traps.exit.segment_bases_dirty);
    f.regs.rax = 0;
    f.regs.rdx = 0;
    assert_eq!(f.ctx().privileged(&rdmsr), Emulation::Done);
    assert_eq!((f.regs.rdx, f.regs.rax), (0xffff_ffff, 0x8000_1000));
    f.regs.rcx = MSR_SHADOW_GS_BASE as u64;
    f.regs.rdx = 0x8000;
    assert_eq!(f.ctx().privileged(&wrmsr), Emulation::GeneralProtection, "non-canonical");
    f.regs.rcx = MSR_EFER as u64;
    assert_eq!(f.ctx().privileged(&rdmsr), Emulation::Done);
    assert_eq!((f.regs.rdx, f.regs.rax), (0, 0xd01));
    assert_eq!(f.ctx().privileged(&wrmsr), Emulation::Done, "the same EFER back");
    f.regs.rax ^= 0x800;
    assert_eq!(f.ctx().privileged(&wrmsr), Emulation::GeneralProtection, "EFER is read-only");
    f.regs.rcx = MSR_APIC_BASE as u64;
    assert_eq!(f.ctx().privileged(&rdmsr), Emulation::Done);
    assert_eq!(f.regs.rax, 0xfee0_0900);
    for msr in [0x10, 0xc000_0082, 0x4000_0000] {
        f.regs.rcx = msr;
        assert_eq!(f.ctx().privileged(&rdmsr), Emulation::GeneralProtection, "msr {msr:#x}");
    }
}

#[test]
fn io_and_interrupt_flag_follow_the_virtual_iopl() {
    let mut f = Fixture::new();
    for insn in [&[0xfa][..], &[0xfb], &[0xe4, 0x80], &[0xee]] {
        assert_eq!(f.ctx().privileged(insn), Emulation::GeneralProtection, "{insn:x?} with IOPL 0");
    }
    f.traps.iopl = 1;
    assert_eq!(f.ctx().privileged(&[0xfa]), Emulation::Done);
    f.regs.rax = 0x1234_5600;
    assert_eq!(f.ctx().privileged(&[0xe4, 0x80]), Emulation::Done);
    assert_eq!(f.regs.rax, 0x1234_56ff, "an empty port reads all ones");
    f.traps.set_mode(GuestMode::User);
    assert_eq!(f.ctx().privileged(&[0xfa]), Emulation::GeneralProtection, "user mode needs IOPL 3");
}

#[test]
fn everything_else_is_a_general_protection_fault() {
    let mut f = Fixture::new();
    let rip = f.regs.rip;
    for insn in [&[0xf4][..], &[0x0f, 0x01, 0x10], &[0x0f, 0x00, 0xd8], &[0x0f, 0x01, 0x38], &[0x90], &[0x0f, 0x00, 0x18]] {
        assert_eq!(f.ctx().privileged(insn), Emulation::GeneralProtection, "{insn:x?}");
    }
    f.traps.set_mode(GuestMode::User);
    assert_eq!(f.ctx().privileged(&[0x0f, 0x20, 0xd0]), Emulation::GeneralProtection, "cr reads from user mode");
    assert_eq!(f.regs.rip, rip, "nothing moved");
    assert_eq!(f.ctx().privileged(&[0x0f]), Emulation::Unreadable);
}

#[test]
fn forced_cpuid_and_plain_ud2() {
    let mut f = Fixture::new();
    f.regs.rax = 0x4000_0000;
    let forced = [0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2, 0x90];
    assert_eq!(f.ctx().invalid_opcode(&forced), Emulation::Done);
    assert_eq!((f.regs.rax, f.regs.rbx), (0x4000_0005, 0x566e_6558));
    assert_eq!(f.regs.rip, 0x10_0007);
    assert_eq!(f.ctx().invalid_opcode(&[0x0f, 0x0b, 0x90]), Emulation::InvalidOpcode);
    assert_eq!(f.ctx().invalid_opcode(&[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0x30]), Emulation::InvalidOpcode, "only cpuid");
    assert_eq!(f.ctx().invalid_opcode(&[0x0f, 0x0b, 0x78]), Emulation::Unreadable);
}

#[test]
fn debug_registers_through_mov() {
    let mut f = Fixture::new();
    f.regs.rax = 0x10_2000;
    assert_eq!(f.ctx().privileged(&[0x0f, 0x23, 0xc0]), Emulation::Done, "mov dr0, rax");
    assert_eq!(f.traps.debugreg[0], 0x10_2000);
    assert_eq!(f.ctx().privileged(&[0x0f, 0x21, 0xc3]), Emulation::Done, "mov rbx, dr0");
    assert_eq!(f.regs.rbx, 0x10_2000);
    f.regs.rax = 0xffff_8300_0000_0000;
    assert_eq!(f.ctx().privileged(&[0x0f, 0x23, 0xc8]), Emulation::GeneralProtection, "dr1 on the hypervisor");
    f.regs.rax = 1 << 13;
    assert_eq!(f.ctx().privileged(&[0x0f, 0x23, 0xf8]), Emulation::GeneralProtection, "dr7 with GD");
}

#[test]
fn table_stores_show_xens_limits_and_hide_the_bases() {
    let mut f = Fixture::new();
    f.regs.rdi = 0x40_0100;
    // sgdt [rdi + 8]
    match f.ctx().privileged(&[0x0f, 0x01, 0x47, 0x08]) {
        Emulation::Store { address, bytes, len, next_rip } => {
            assert_eq!((address, len, next_rip), (0x40_0108, 10, 0x10_0004));
            assert_eq!(bytes, [0xff, 0xef, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.regs.rip, 0x10_0000, "rip moves only once the store is done");
    // str eax; sldt eax; smsw eax (register forms are done at once), from user mode too.
    f.traps.set_mode(GuestMode::User);
    assert_eq!(f.ctx().privileged(&[0x0f, 0x00, 0xc8]), Emulation::Done);
    assert_eq!(f.regs.rax, 0xe040);
    assert_eq!(f.ctx().privileged(&[0x0f, 0x00, 0xc0]), Emulation::Done);
    assert_eq!(f.regs.rax, 0);
    assert_eq!(f.ctx().privileged(&[0x0f, 0x01, 0xe0]), Emulation::Done);
    assert_eq!(f.regs.rax, 0x0033);
    // sidt fs:[rip + 0x10]: segment base and rip-relative addressing.
    f.traps.fs_base = 0x7000_0000;
    match f.ctx().privileged(&[0x64, 0x0f, 0x01, 0x0d, 0x10, 0, 0, 0]) {
        Emulation::Store { address, bytes, .. } => {
            assert_eq!(address, 0x7000_0000 + f.regs.rip + 8 + 0x10);
            assert_eq!(&bytes[..2], &[0xff, 0x0f]);
        }
        other => panic!("{other:?}"),
    }
}

/// CR4.OSXSAVE is the guest's to set (any other CR4 bit is ignored, as on Xen); until
/// it is, XSETBV is #UD; then XCR0 takes what the policy allows, for `arch` to load.
#[test]
fn xsetbv_follows_the_guests_cr4_and_the_xcr0_rules() {
    let mut f = Fixture::new();
    f.cpuid = CpuidPolicy::from_host(
        |leaf, sub| match (leaf, sub) {
            (0, _) => [0xd, 0, 0, 0],
            (1, _) => [0, 0, (1 << 26) | (1 << 28), 0],
            (0xd, 0) => [0x7, 0x240, 0x340, 0],
            (0xd, 2) => [256, 576, 0, 0],
            _ => [0; 4],
        },
        0x4_0011,
        36,
    );
    let xsetbv = [0x0f, 0x01, 0xd1];
    let set = |f: &mut Fixture, ecx: u64, value: u64| {
        (f.regs.rcx, f.regs.rax, f.regs.rdx) = (ecx, value & 0xffff_ffff, value >> 32);
        f.ctx().privileged(&xsetbv)
    };
    assert_eq!(set(&mut f, 0, 7), Emulation::InvalidOpcode, "no OSXSAVE in the guest's CR4 yet");
    f.regs.rax = 0x6e0 | (1 << 18) | (1 << 7); // OSXSAVE, and PGE, which is ignored
    assert_eq!(f.ctx().privileged(&[0x0f, 0x22, 0xe0]), Emulation::Done, "mov cr4, rax");
    assert!(f.traps.cr4_osxsave);
    assert_eq!(f.ctx().privileged(&[0x0f, 0x20, 0xe2]), Emulation::Done);
    assert_eq!(f.regs.rdx, 0x6e0 | (1 << 18));
    f.traps.exit.xcr0_dirty = false;
    assert_eq!(set(&mut f, 0, 7), Emulation::Done);
    assert_eq!((f.traps.xcr0, f.traps.exit.xcr0_dirty), (7, true));
    for (ecx, value) in [(0, 2), (0, 5), (0, 0x207), (1, 3), (0, 1 << 32 | 7)] {
        assert_eq!(set(&mut f, ecx, value), Emulation::GeneralProtection, "xcr{ecx} = {value:#x}");
    }
    assert_eq!(f.traps.xcr0, 7, "refused writes change nothing");
    // The size leaf 0xD reports follows the vCPU's XCR0.
    (f.regs.rax, f.regs.rcx) = (0xd, 0);
    assert_eq!(f.ctx().invalid_opcode(&[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2]), Emulation::Done);
    assert_eq!((f.regs.rax, f.regs.rbx, f.regs.rcx), (7, 0x340, 0x340));
}
