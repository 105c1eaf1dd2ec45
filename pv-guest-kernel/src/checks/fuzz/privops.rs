//! Privileged instructions mixed into the hypercall stream, run under our own #GP
//! handler. Each must either complete (the hypervisor emulated it) or come back to us as
//! #GP or #UD at the instruction; some must be exactly #GP(0).

use super::args::Rng;
use crate::checks::{probe, Probed};

const MSR_FS_BASE: u32 = 0xC000_0100;
const MSR_SHADOW_GS_BASE: u32 = 0xC000_0102;
const GP: u64 = 13;
const UD: u64 = 6;

/// What an instruction may do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allowed {
    /// Complete, or #GP/#UD.
    Any,
    /// Must raise #GP(0) (halting, descriptor tables, MSR writes; I/O and the interrupt
    /// flag without enough virtual IOPL).
    Gp0,
    /// Must complete (emulated reads the PV ABI gives a kernel).
    Completes,
    /// Must raise #UD.
    Ud,
    /// `int n` without a handler of DPL >= 1: #GP with error code (n << 3) | 2.
    IntGp(u64),
}

pub struct ProbeFailure {
    pub name: &'static str,
    pub operand: u64,
    pub vector: Option<u64>,
    pub error_code: u64,
}

fn random_msr(rng: &mut Rng) -> u32 {
    let msr = match rng.below(4) {
        0 => rng.below(0x2000) as u32,
        1 => 0xC000_0000 + rng.below(0x200) as u32,
        2 => rng.pick(&[0x10, 0x1b, 0x3a, 0x48, 0x49, 0x8b, 0x174, 0x175, 0x176, 0x277, 0x600, 0xC000_0080, 0xC000_0081, 0xC000_0082, 0xC000_0084]),
        _ => rng.next() as u32,
    };
    if (MSR_FS_BASE..=MSR_SHADOW_GS_BASE).contains(&msr) {
        0xC000_0082
    } else {
        msr
    }
}

/// Runs one random privileged instruction; `Err` describes a result the ABI does not
/// allow. With vm_assist architectural_iopl the kernel counts as ring 0, so its virtual
/// IOPL (0) allows cli, sti, in and out, which the hypervisor then completes.
///
/// On Xen, dom0 may own I/O ports and some MSR writes are dropped silently, so those
/// are only required to complete or fault.
pub fn run_one(rng: &mut Rng, architectural_iopl: bool, on_xen: bool) -> Result<(), ProbeFailure> {
    let io = if on_xen {
        Allowed::Any
    } else if architectural_iopl {
        Allowed::Completes
    } else {
        Allowed::Gp0
    };
    let msr_write = if on_xen { Allowed::Any } else { Allowed::Gp0 };
    let operand = rng.next();
    // The MSR number lives in ecx; garbage above it must be ignored.
    let msr = (rng.next() & !0xffff_ffff) | random_msr(rng) as u64;
    // dom0 owns the machine's ports (on Xen, and here through trap::ports), so a random
    // one could reset or power off the machine (0x64, 0x92, the ACPI ports): the
    // fuzzer picks among the hypervisor's own ports, which must stay out of reach
    // (PIC, PIT, ELCR, its serial port, QEMU's debug-exit port), and ports where
    // nothing answers. Not 0xcf9: Xen lets dom0 reach it, and a write resets the machine.
    let port = rng.pick(&[0x21u64, 0xa1, 0x40, 0x43, 0x4d0, 0x3f8, 0x3fd, 0xf4, 0x80, 0x278, 0x2e8]) | (rng.next() & !0xffff);
    let (name, allowed, p): (&'static str, Allowed, Probed) = match rng.below(24) {
        0 => ("hlt", Allowed::Gp0, probe!("", "hlt")),
        1 => ("cli", io, probe!("", "cli")),
        2 => ("sti", io, probe!("", "sti")),
        3 => ("in_al_dx", io, probe!("mov rdx, rdi", "in al, dx", port, 0u64)),
        4 => ("out_dx_eax", io, probe!("mov rdx, rdi\nmov rax, rsi", "out dx, eax", port, operand)),
        5 => ("in_eax_imm", io, probe!("", "in eax, 0x71")),
        6 => ("rdmsr", Allowed::Any, probe!("mov rcx, rdi", "rdmsr", msr, 0u64)),
        7 => ("wrmsr", msr_write, probe!("mov rcx, rdi\nmov rax, rsi\nmov rdx, rsi\nshr rdx, 32", "wrmsr", msr, operand)),
        8 => ("read_cr0", Allowed::Completes, probe!("", "mov rax, cr0")),
        9 => ("read_cr4", Allowed::Completes, probe!("", "mov rax, cr4")),
        10 => ("read_cr2", Allowed::Completes, probe!("", "mov rax, cr2")),
        11 => ("read_cr3", Allowed::Completes, probe!("", "mov rax, cr3")),
        12 => ("write_cr0_wp", Allowed::Gp0, probe!("mov rax, cr0\nxor rax, 0x10000", "mov cr0, rax")),
        13 => ("write_cr4_same", Allowed::Any, probe!("mov rax, cr4", "mov cr4, rax")),
        14 => ("read_dr7", Allowed::Completes, probe!("", "mov rax, dr7")),
        15 => ("lgdt", Allowed::Gp0, probe!("", "lgdt [rsp]")),
        16 => ("lidt", Allowed::Gp0, probe!("", "lidt [rsp]")),
        17 => ("invlpg", Allowed::Gp0, probe!("", "invlpg [rdi]", operand & 0x7fff_ffff_ffff, 0u64)),
        18 => ("wbinvd", Allowed::Any, probe!("", "wbinvd")),
        19 => ("ud2", Allowed::Ud, probe!("", "ud2")),
        20 => ("int_0x20", Allowed::IntGp(0x20), probe!("", "int 0x20")),
        21 => ("int_0x81", Allowed::IntGp(0x81), probe!("", "int 0x81")),
        22 => ("clts", Allowed::Completes, probe!("", "clts")),
        _ => ("swapgs", Allowed::Any, probe!("", "swapgs")),
    };
    let vector = p.trap.map(|t| t.vector);
    let error_code = p.trap.map_or(0, |t| t.error_code);
    let at_instruction = p.trap.is_none_or(|t| t.rip == p.at);
    let ok = at_instruction
        && match allowed {
            Allowed::Any => matches!(vector, None | Some(GP) | Some(UD)),
            Allowed::Gp0 => vector == Some(GP) && error_code == 0,
            Allowed::Completes => vector.is_none(),
            Allowed::Ud => vector == Some(UD),
            Allowed::IntGp(n) => vector == Some(GP) && error_code == (n << 3) | 2,
        };
    let operand = match name {
        "rdmsr" | "wrmsr" => msr,
        "in_al_dx" | "out_dx_eax" => port,
        _ => operand,
    };
    if ok {
        Ok(())
    } else {
        Err(ProbeFailure { name, operand, vector, error_code })
    }
}
