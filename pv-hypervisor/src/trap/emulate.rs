//! Emulating the privileged instructions a PV kernel may execute, after the #GP (or,
//! with the forced-emulation prefix, the #UD) they raise in ring 3. Xen's rules
//! (semantics of xen/arch/x86/pv/emul-priv-op.c and emul-inv-op.c): a fixed set is
//! emulated from guest kernel mode, everything else is reflected as #GP(0).

use super::cpuid::CpuidPolicy;
use super::debugreg;
use super::decode::{decode, Decoded, Gpr, Instruction, MemoryOperand, Operand, OperandSize, PortOperand, Segment};
use super::ports::{self, PortIo};
use super::state::{GuestMode, TrapState};
use crate::domain::vcpu::GuestRegisters;
use crate::mm::is_canonical;
use hypercall_abi::Errno;

pub const MSR_APIC_BASE: u32 = 0x1b;
pub const MSR_EFER: u32 = 0xC000_0080;
/// What vCPU 0 reads from APIC_BASE: the architectural base 0xfee00000, xAPIC enabled
/// (bit 11), bootstrap processor (bit 8). Xen 4.17 shows a PV dom0 the same.
const APIC_BASE_VCPU0: u64 = 0xfee0_0900;
pub const MSR_FS_BASE: u32 = 0xC000_0100;
pub const MSR_GS_BASE: u32 = 0xC000_0101;
pub const MSR_SHADOW_GS_BASE: u32 = 0xC000_0102;

const CR0_TS: u64 = 1 << 3;
const CR4_OSXSAVE: u64 = 1 << 18;

/// The real CPU state an emulated read may show the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostView {
    /// Real CR0 without TS (TS is the guest's own).
    pub cr0: u64,
    /// CR4 as a PV guest sees it.
    pub cr4: u64,
    /// EFER as a PV guest sees it.
    pub efer: u64,
}

/// The result of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulation {
    /// Done: registers updated, rip past the instruction.
    Done,
    /// Not emulated: the guest gets #GP(0) at the instruction.
    GeneralProtection,
    /// The guest gets #UD: a plain ud2 (no forced-emulation prefix), or a debug register
    /// that does not exist.
    InvalidOpcode,
    /// The instruction bytes could not be read or decoded in full: #PF or #GP is the
    /// caller's to decide (it knows which fetch failed).
    Unreadable,
    /// A store to guest memory (sgdt and friends): the caller writes `bytes[..len]` at
    /// guest address `address` through the guest's page tables, then sets rip to
    /// `next_rip`; if the write fails, the guest gets the page fault.
    Store { address: u64, bytes: [u8; 10], len: usize, next_rip: u64 },
}

/// What the descriptor-table and machine-status stores show a guest. The hypervisor runs
/// with UMIP, so they fault into it instead of showing its own addresses; the limits and
/// selectors are the ones a PV guest sees on Xen 4.17 (GDT: 15 pages, IDT: 256 gates,
/// TR: the hypervisor TSS at 0xe040, no LDT), the bases are hidden (0).
pub const GDT_LIMIT_SHOWN: u16 = 0xefff;
pub const IDT_LIMIT_SHOWN: u16 = 0xfff;
pub const TASK_REGISTER_SHOWN: u16 = 0xe040;

pub(super) fn gpr(regs: &mut GuestRegisters, which: Gpr) -> &mut u64 {
    match which {
        Gpr::Rax => &mut regs.rax,
        Gpr::Rcx => &mut regs.rcx,
        Gpr::Rdx => &mut regs.rdx,
        Gpr::Rbx => &mut regs.rbx,
        Gpr::Rsp => &mut regs.rsp,
        Gpr::Rbp => &mut regs.rbp,
        Gpr::Rsi => &mut regs.rsi,
        Gpr::Rdi => &mut regs.rdi,
        Gpr::R8 => &mut regs.r8,
        Gpr::R9 => &mut regs.r9,
        Gpr::R10 => &mut regs.r10,
        Gpr::R11 => &mut regs.r11,
        Gpr::R12 => &mut regs.r12,
        Gpr::R13 => &mut regs.r13,
        Gpr::R14 => &mut regs.r14,
        Gpr::R15 => &mut regs.r15,
    }
}

/// Everything emulation may read or change.
pub struct EmulationContext<'a> {
    pub regs: &'a mut GuestRegisters,
    pub traps: &'a mut TrapState,
    /// Machine address of the kernel's L4, which CR3 reads show.
    pub kernel_l4: u64,
    pub host: HostView,
    pub cpuid: &'a CpuidPolicy,
    /// The machine's I/O ports (trap::ports decides which the domain reaches).
    pub ports: &'a mut dyn PortIo,
    /// dom0: the machine's ports are its, but for the hypervisor's own.
    pub privileged: bool,
}

impl EmulationContext<'_> {
    /// Whether the guest's virtual IOPL lets it run cli/sti/in/out here: its kernel
    /// counts as ring 1 (ring 0 with vm_assist architectural_iopl), its user mode as 3.
    fn iopl_allows(&self) -> bool {
        let ring = match self.traps.mode() {
            GuestMode::User => 3,
            GuestMode::Kernel if self.traps.architectural_iopl() => 0,
            GuestMode::Kernel => 1,
        };
        self.traps.iopl >= ring
    }

    fn finish(&mut self, decoded: &Decoded) -> Emulation {
        self.regs.rip = self.regs.rip.wrapping_add(decoded.length as u64);
        Emulation::Done
    }

    /// After a #GP with error code 0: `bytes` are what could be read at rip.
    pub fn privileged(&mut self, bytes: &[u8]) -> Emulation {
        let Ok(decoded) = decode(bytes) else { return Emulation::Unreadable };
        if decoded.forced {
            // The prefix starts with ud2: it raises #UD, never #GP.
            return Emulation::GeneralProtection;
        }
        let kernel = self.traps.mode() == GuestMode::Kernel;
        if let Some(store) = self.table_store(&decoded) {
            return store;
        }
        let outcome = match decoded.instruction {
            Instruction::MovFromCr { cr, gpr: reg } if kernel => self.read_cr(cr).map(|v| *gpr(self.regs, reg) = v),
            Instruction::MovToCr { cr, gpr: reg } if kernel => {
                let value = *gpr(self.regs, reg);
                self.write_cr(cr, value)
            }
            Instruction::Clts if kernel => {
                self.traps.set_fpu_ts(false);
                Some(())
            }
            Instruction::Rdmsr if kernel => self.read_msr(self.regs.rcx as u32).map(|v| {
                self.regs.rax = v & 0xffff_ffff;
                self.regs.rdx = v >> 32;
            }),
            Instruction::Wrmsr if kernel => {
                let value = (self.regs.rdx << 32) | (self.regs.rax & 0xffff_ffff);
                self.write_msr(self.regs.rcx as u32, value)
            }
            Instruction::Cpuid => {
                self.cpuid_into_registers();
                Some(())
            }
            // Architecturally #UD without CR4.OSXSAVE: the guest's virtual one.
            Instruction::Xsetbv if kernel && !self.traps.cr4_osxsave => return Emulation::InvalidOpcode,
            Instruction::Xsetbv if kernel => {
                let value = (self.regs.rdx << 32) | (self.regs.rax & 0xffff_ffff);
                (self.regs.rcx as u32 == 0 && self.cpuid.xcr0_allowed(value)).then(|| {
                    self.traps.xcr0 = value;
                    self.traps.exit.xcr0_dirty = true;
                })
            }
            // Only with enough virtual IOPL, and then they do nothing: the event mask,
            // not IF, is a PV kernel's interrupt flag.
            Instruction::Cli | Instruction::Sti => self.iopl_allows().then_some(()),
            Instruction::In { size, port } if self.iopl_allows() => {
                let port = self.port_number(port);
                let value = ports::read(self.ports, self.privileged, self.traps.pci_cf8, port, size);
                self.set_accumulator(size, value);
                Some(())
            }
            Instruction::Out { size, port } if self.iopl_allows() => {
                let port = self.port_number(port);
                let value = (self.regs.rax & u64::from(ports::all_ones(size))) as u32;
                ports::write(self.ports, self.privileged, &mut self.traps.pci_cf8, port, size, value);
                Some(())
            }
            // Xen lets a guest ask for a cache flush; it has nothing to flush here.
            Instruction::Wbinvd if kernel => Some(()),
            Instruction::MovFromDr { dr, gpr: reg } if kernel => match debugreg::get(self.traps, u32::from(dr)) {
                Ok(v) => {
                    *gpr(self.regs, reg) = v;
                    Some(())
                }
                Err(_) => return Emulation::InvalidOpcode,
            },
            Instruction::MovToDr { dr, gpr: reg } if kernel => {
                let value = *gpr(self.regs, reg);
                match debugreg::set(self.traps, u32::from(dr), value) {
                    Ok(()) => Some(()),
                    // As Xen maps set_debugreg's errors: no such register is #UD.
                    Err(Errno::ENODEV) => return Emulation::InvalidOpcode,
                    Err(_) => None,
                }
            }
            _ => None,
        };
        match outcome {
            Some(()) => self.finish(&decoded),
            None => Emulation::GeneralProtection,
        }
    }

    /// After a #UD: only `cpuid` behind the forced-emulation prefix is emulated.
    pub fn invalid_opcode(&mut self, bytes: &[u8]) -> Emulation {
        match decode(bytes) {
            Ok(decoded) if decoded.forced && decoded.instruction == Instruction::Cpuid => {
                self.cpuid_into_registers();
                self.finish(&decoded)
            }
            Err(super::decode::DecodeError::Truncated) if bytes.len() < super::decode::XEN_EMULATE_PREFIX.len() => Emulation::Unreadable,
            _ => Emulation::InvalidOpcode,
        }
    }

    /// sgdt, sidt, sldt, str and smsw, from either mode (they are not privileged; only
    /// UMIP makes them fault).
    fn table_store(&mut self, decoded: &Decoded) -> Option<Emulation> {
        let cr0 = self.read_cr(0).unwrap_or(0);
        let (value, len): ([u8; 10], usize) = match decoded.instruction {
            Instruction::Sgdt => (table_register(GDT_LIMIT_SHOWN), 10),
            Instruction::Sidt => (table_register(IDT_LIMIT_SHOWN), 10),
            Instruction::Sldt => (word(0), 2),
            Instruction::Str => (word(TASK_REGISTER_SHOWN), 2),
            Instruction::Smsw => (word(cr0 as u16), 2),
            _ => return None,
        };
        let next_rip = self.regs.rip.wrapping_add(decoded.length as u64);
        match decoded.operand? {
            Operand::Register(reg) => {
                *gpr(self.regs, reg) = u64::from(u16::from_le_bytes([value[0], value[1]]));
                self.regs.rip = next_rip;
                Some(Emulation::Done)
            }
            Operand::Memory(memory) => {
                let address = effective_address(self.regs, self.traps, &memory, next_rip);
                Some(Emulation::Store { address, bytes: value, len, next_rip })
            }
        }
    }

    fn cpuid_into_registers(&mut self) {
        let [a, b, c, d] = self.cpuid.leaf_for(self.regs.rax as u32, self.regs.rcx as u32, self.traps.xcr0);
        self.regs.rax = a as u64;
        self.regs.rbx = b as u64;
        self.regs.rcx = c as u64;
        self.regs.rdx = d as u64;
    }

    fn read_cr(&self, cr: u8) -> Option<u64> {
        match cr {
            0 => Some((self.host.cr0 & !CR0_TS) | if self.traps.fpu_ts() { CR0_TS } else { 0 }),
            2 => Some(self.traps.cr2),
            3 => Some(self.kernel_l4),
            4 => Some(self.host.cr4 | if self.traps.cr4_osxsave { CR4_OSXSAVE } else { 0 }),
            _ => None,
        }
    }

    fn write_cr(&mut self, cr: u8, value: u64) -> Option<()> {
        match cr {
            // Only TS is the guest's to change.
            0 if value & !CR0_TS == self.host.cr0 & !CR0_TS => {
                self.traps.set_fpu_ts(value & CR0_TS != 0);
                Some(())
            }
            2 => {
                self.traps.cr2 = value;
                Some(())
            }
            // A new base pointer needs the page-type checks of MMUEXT_NEW_BASEPTR;
            // until those exist, only reloading the current L4 (a TLB flush) passes.
            3 if value & !0xfff == self.kernel_l4 => Some(()),
            // Xen takes any CR4 write and keeps only what a PV guest may change: here
            // OSXSAVE (with XSAVE on the CPU). The rest is the hypervisor's.
            4 => {
                self.traps.cr4_osxsave = value & CR4_OSXSAVE != 0 && self.cpuid.xcr0_max() != 0;
                Some(())
            }
            _ => None,
        }
    }

    fn read_msr(&self, msr: u32) -> Option<u64> {
        let t = &*self.traps;
        match msr {
            MSR_FS_BASE => Some(t.fs_base),
            MSR_GS_BASE => Some(t.gs_base_kernel),
            MSR_SHADOW_GS_BASE => Some(t.gs_base_user),
            MSR_EFER => Some(self.host.efer),
            MSR_APIC_BASE => Some(APIC_BASE_VCPU0),
            _ => None,
        }
    }

    fn write_msr(&mut self, msr: u32, value: u64) -> Option<()> {
        // Writing back what EFER reads changes nothing and is accepted, as on Xen.
        if msr == MSR_EFER {
            return (value == self.host.efer).then_some(());
        }
        let slot = match msr {
            MSR_FS_BASE => &mut self.traps.fs_base,
            MSR_GS_BASE => &mut self.traps.gs_base_kernel,
            MSR_SHADOW_GS_BASE => &mut self.traps.gs_base_user,
            _ => return None,
        };
        if !is_canonical(value) {
            return None;
        }
        *slot = value;
        self.traps.exit.segment_bases_dirty = true;
        Some(())
    }

    fn port_number(&self, port: PortOperand) -> u16 {
        match port {
            PortOperand::Imm8(n) => u16::from(n),
            PortOperand::Dx => self.regs.rdx as u16,
        }
    }

    /// `in` writes al, ax or eax: a 32-bit result clears the upper half of rax, the
    /// narrower ones keep the rest.
    fn set_accumulator(&mut self, size: OperandSize, value: u32) {
        let ones = u64::from(ports::all_ones(size));
        self.regs.rax = match size {
            OperandSize::Dword => u64::from(value),
            _ => (self.regs.rax & !ones) | (u64::from(value) & ones),
        };
    }
}

#[cfg(test)]
mod tests;

/// A descriptor-table register as `sgdt`/`sidt` store it: 16-bit limit, 64-bit base.
fn table_register(limit: u16) -> [u8; 10] {
    let mut bytes = [0u8; 10];
    bytes[..2].copy_from_slice(&limit.to_le_bytes());
    bytes
}

fn word(value: u16) -> [u8; 10] {
    let mut bytes = [0u8; 10];
    bytes[..2].copy_from_slice(&value.to_le_bytes());
    bytes
}

/// The linear address a memory operand names: `segment base + base + index * scale +
/// displacement` (rip-relative from the next instruction), truncated to 32 bits with
/// the 0x67 prefix; FS and GS have the bases the guest set (GS: the current mode's).
pub(super) fn effective_address(regs: &mut GuestRegisters, traps: &TrapState, memory: &MemoryOperand, next_rip: u64) -> u64 {
    let mut address = memory.displacement as i64 as u64;
    if memory.rip_relative {
        address = address.wrapping_add(next_rip);
    }
    if let Some(base) = memory.base {
        address = address.wrapping_add(*gpr(regs, base));
    }
    if let Some(index) = memory.index {
        address = address.wrapping_add(gpr(regs, index).wrapping_mul(u64::from(memory.scale)));
    }
    if memory.address_32 {
        address &= 0xffff_ffff;
    }
    let segment_base = match (memory.segment, traps.mode()) {
        (Some(Segment::Fs), _) => traps.fs_base,
        (Some(Segment::Gs), GuestMode::Kernel) => traps.gs_base_kernel,
        (Some(Segment::Gs), GuestMode::User) => traps.gs_base_user,
        (None, _) => 0,
    };
    address.wrapping_add(segment_base)
}
