//! What the console shows when a domain dies: the register dump of a fatal fault and the
//! machine-readable `RESULT` lines the test harness reads.

use super::vcpu::GuestRegisters;
use core::fmt::{self, Write};

pub fn exception_name(vector: u64) -> &'static str {
    match vector {
        0x100 => "hypercall",
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 error",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD error",
        20 => "#VE virtualization",
        21 => "#CP control protection",
        _ => "exception",
    }
}

/// The register lines of a dump, each `(hv)`-prefixed.
fn write_registers(out: &mut dyn Write, regs: &GuestRegisters, cr2: u64) -> fmt::Result {
    writeln!(out, "(hv)   rip={:#018x} rsp={:#018x} rflags={:#010x} cr2={:#018x}", regs.rip, regs.rsp, regs.rflags, cr2)?;
    writeln!(out, "(hv)   cs={:#06x} ss={:#06x}", regs.cs, regs.ss)?;
    writeln!(out, "(hv)   rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}", regs.rax, regs.rbx, regs.rcx, regs.rdx)?;
    writeln!(out, "(hv)   rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}", regs.rsi, regs.rdi, regs.rbp, regs.r8)?;
    writeln!(out, "(hv)   r9 ={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}", regs.r9, regs.r10, regs.r11, regs.r12)?;
    writeln!(out, "(hv)   r13={:#018x} r14={:#018x} r15={:#018x}", regs.r13, regs.r14, regs.r15)
}

/// Writes the human-readable dump, one `(hv)`-prefixed line each, then the RESULT line.
/// `reason` says why the hypervisor gave up on the domain when that is not simply the
/// exception in `regs` (e.g. a bounce it could not deliver, or a bad return frame).
pub fn write_crash_report(out: &mut dyn Write, domid: u16, regs: &GuestRegisters, cr2: u64, reason: Option<&str>) -> fmt::Result {
    writeln!(
        out,
        "(hv) domain {domid} crashed: {} (vector {}), error code {:#x}, in ring {}",
        exception_name(regs.vector),
        regs.vector,
        regs.error_code,
        regs.cs & 3
    )?;
    if let Some(reason) = reason {
        writeln!(out, "(hv)   reason: {reason}")?;
    }
    write_registers(out, regs, cr2)?;
    writeln!(
        out,
        "(hv) RESULT event=domain_crash domid={domid} vector={} error_code={:#x} rip={:#x} rsp={:#x} cr2={:#x} reason=\"{}\"",
        regs.vector,
        regs.error_code,
        regs.rip,
        regs.rsp,
        cr2,
        reason.unwrap_or(exception_name(regs.vector))
    )
}

/// The dump of an exception the hypervisor itself took (a bug, or a machine check).
pub fn write_hypervisor_fault_report(out: &mut dyn Write, regs: &GuestRegisters, cr2: u64) -> fmt::Result {
    writeln!(
        out,
        "(hv) FATAL: {} (vector {}), error code {:#x}, in the hypervisor (ring {})",
        exception_name(regs.vector),
        regs.vector,
        regs.error_code,
        regs.cs & 3
    )?;
    write_registers(out, regs, cr2)?;
    writeln!(out, "(hv) RESULT event=hypervisor_fault vector={} error_code={:#x} rip={:#x} cr2={:#x}", regs.vector, regs.error_code, regs.rip, cr2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    #[test]
    fn dump_names_domain_vector_and_registers() {
        let regs = GuestRegisters { vector: 13, rip: 0x10_2345, rsp: 0x40_0000, cs: 0xe033, ..Default::default() };
        let mut out = String::new();
        write_crash_report(&mut out, 0, &regs, 0xdead, Some("no handler")).unwrap();
        assert!(out.contains("reason: no handler"));
        assert!(out.contains("domain 0 crashed: #GP general protection (vector 13)"));
        assert!(out.contains("in ring 3"));
        assert!(out.contains("rip=0x0000000000102345"));
        assert!(out.contains("cr2=0x000000000000dead"));
        assert!(out.lines().last().unwrap().starts_with("(hv) RESULT event=domain_crash domid=0 vector=13 "));
        assert!(out.lines().all(|l| l.starts_with("(hv) ")));
    }
}
