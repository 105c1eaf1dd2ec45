//! Delivering an event to a guest: exceptions through its trap table, callbacks, and
//! the `int n` rule. Works on a [`Domain`] and guest memory only, so it is host-tested;
//! `arch` calls it with the registers the CPU saved.

use super::bounce::{build_bounce, enter_handler, BounceError, BounceTarget, Interrupted};
use super::state::{GuestMode, VECTOR_NMI};
use crate::domain::vcpu::GuestRegisters;
use crate::domain::Domain;
use crate::mm::guest_walk::{copy_to_guest, MachineMemory};
use core::mem::offset_of;
use hypercall_abi::ops::traps::has_error_code;
use hypercall_abi::shared_info::{ArchVcpuInfo, VcpuInfo};

pub const VECTOR_PAGE_FAULT: u8 = 14;
pub const VECTOR_GENERAL_PROTECTION: u8 = 13;
pub const VECTOR_INVALID_OPCODE: u8 = 6;
const RFLAGS_DF: u64 = 1 << 10;
/// #PF error-code bit 2: the access came from user mode.
const PF_USER: u64 = 1 << 2;
/// #GP error-code bit 1: the error code names an IDT entry (`int n` with too low a DPL).
const EC_IDT: u64 = 1 << 1;
/// The vector whose `int` Xen's IDT lets through to the guest without a DPL check.
pub const VECTOR_INT80: u8 = 0x80;

/// Why an event could not be delivered: the domain must be crashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undeliverable {
    /// No trap-table entry (or callback) for the vector.
    NoHandler { vector: u8 },
    /// The kernel stack is outside guest memory.
    BadStack,
    /// The kernel stack is not mapped writable.
    StackNotWritable,
    /// shared_info could not be read or written.
    SharedInfo,
}

impl Undeliverable {
    pub fn describe(self) -> &'static str {
        match self {
            Undeliverable::NoHandler { .. } => "no handler registered for the exception",
            Undeliverable::BadStack => "guest kernel stack outside guest memory",
            Undeliverable::StackNotWritable => "guest kernel stack not mapped writable",
            Undeliverable::SharedInfo => "shared_info not accessible",
        }
    }
}

/// A hardware exception taken by the guest, as the CPU reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestException {
    pub vector: u8,
    pub error_code: u64,
    /// The faulting address, for #PF.
    pub cr2: u64,
}

fn event_mask_maddr(domain: &Domain) -> u64 {
    domain.vcpu_info_maddr() + offset_of!(VcpuInfo, evtchn_upcall_mask) as u64
}

fn read_event_mask<M: MachineMemory>(domain: &Domain, memory: &M) -> Result<u8, Undeliverable> {
    let mut byte = [0u8];
    memory.read_bytes(event_mask_maddr(domain), &mut byte).ok_or(Undeliverable::SharedInfo)?;
    Ok(byte[0])
}

/// Sets or clears vCPU 0's event mask (the PV interrupt flag).
pub fn write_event_mask<M: MachineMemory>(domain: &Domain, memory: &mut M, mask: u8) -> Result<(), Undeliverable> {
    memory.write_bytes(event_mask_maddr(domain), &[mask]).ok_or(Undeliverable::SharedInfo)
}

/// Records a page-fault address where the guest reads it: its virtual CR2 and
/// `vcpu_info.arch.cr2`.
fn record_cr2<M: MachineMemory>(domain: &mut Domain, memory: &mut M, cr2: u64) -> Result<(), Undeliverable> {
    domain.traps.cr2 = cr2;
    let at = domain.vcpu_info_maddr() + (offset_of!(VcpuInfo, arch) + offset_of!(ArchVcpuInfo, cr2)) as u64;
    memory.write_bytes(at, &cr2.to_le_bytes()).ok_or(Undeliverable::SharedInfo)
}

/// Enters `target` on the guest kernel stack, switching from guest user mode to its
/// kernel first when needed. On success `regs` holds the handler's state and the
/// domain is in kernel mode.
#[inline]
pub fn bounce_to<M: MachineMemory>(
    domain: &mut Domain,
    memory: &mut M,
    regs: &mut GuestRegisters,
    target: BounceTarget,
) -> Result<(), Undeliverable> {
    let in_kernel = domain.traps.mode() == GuestMode::Kernel;
    let stack_top = if in_kernel { regs.rsp } else { domain.traps.kernel_sp };
    let event_mask = read_event_mask(domain, memory)?;
    let visible_iopl = if domain.traps.architectural_iopl() { domain.traps.iopl } else { 0 };
    let interrupted = Interrupted { in_kernel, event_mask, visible_iopl };
    let frame = build_bounce(regs, stack_top, interrupted, &target).map_err(|e| match e {
        BounceError::NoHandler => Undeliverable::NoHandler { vector: 0 },
        BounceError::BadStack => Undeliverable::BadStack,
    })?;
    // The frame goes through the kernel's page tables: that is where the handler runs.
    copy_to_guest(memory, domain.l4_maddr(), frame.address, frame.bytes()).map_err(|_| Undeliverable::StackNotWritable)?;
    if target.mask_events {
        write_event_mask(domain, memory, 1)?;
    }
    domain.traps.set_mode(GuestMode::Kernel);
    enter_handler(regs, &frame, &target);
    Ok(())
}

/// Delivers vector `vector` through the guest's trap table.
#[inline]
pub fn bounce_vector<M: MachineMemory>(
    domain: &mut Domain,
    memory: &mut M,
    regs: &mut GuestRegisters,
    vector: u8,
    error_code: Option<u64>,
) -> Result<(), Undeliverable> {
    let entry = domain.traps.trap(vector);
    if !entry.is_set() {
        return Err(Undeliverable::NoHandler { vector });
    }
    let target = BounceTarget { handler: entry.address, mask_events: entry.masks_events(), error_code };
    bounce_to(domain, memory, regs, target).map_err(|e| match e {
        Undeliverable::NoHandler { .. } => Undeliverable::NoHandler { vector },
        other => other,
    })
}

/// Delivers a hardware exception the guest took. `regs` is the state the CPU saved.
#[inline]
pub fn deliver_exception<M: MachineMemory>(
    domain: &mut Domain,
    memory: &mut M,
    regs: &mut GuestRegisters,
    exception: GuestException,
) -> Result<(), Undeliverable> {
    let GuestException { vector, mut error_code, cr2 } = exception;
    if vector == VECTOR_GENERAL_PROTECTION && error_code & 3 == EC_IDT {
        return soft_interrupt(domain, memory, regs, (error_code >> 3) as u8, error_code);
    }
    if vector == VECTOR_PAGE_FAULT {
        // The CPU always ran at CPL 3; the guest wants to know whether its kernel or its
        // user mode faulted.
        error_code &= !PF_USER;
        if domain.traps.mode() == GuestMode::User {
            error_code |= PF_USER;
        }
        if domain.traps.trap(vector).is_set() {
            record_cr2(domain, memory, cr2)?;
        }
    }
    let code = has_error_code(vector).then_some(error_code);
    bounce_vector(domain, memory, regs, vector, code)
}

/// `int n` from the guest reached the hypervisor as #GP with error code `(n << 3) | 2`
/// (every IDT gate the guest may not use has DPL 0). Delivers vector n if the guest's
/// trap table allows it from the current mode (DPL >= 1 from its kernel, DPL 3 from
/// user), past the 2-byte instruction; otherwise the #GP itself.
pub fn soft_interrupt<M: MachineMemory>(
    domain: &mut Domain,
    memory: &mut M,
    regs: &mut GuestRegisters,
    vector: u8,
    gp_error_code: u64,
) -> Result<(), Undeliverable> {
    let entry = domain.traps.trap(vector);
    let lowest_allowed = if domain.traps.mode() == GuestMode::Kernel { 1 } else { 3 };
    if entry.is_set() && entry.dpl() >= lowest_allowed {
        regs.rip = regs.rip.wrapping_add(2);
        return bounce_vector(domain, memory, regs, vector, None);
    }
    bounce_vector(domain, memory, regs, VECTOR_GENERAL_PROTECTION, Some(gp_error_code))
}

/// `int 0x80` arrives through its own DPL 3 gate, already past the instruction: the
/// guest's handler runs if it has one (Xen's fast path checks no DPL); otherwise it is
/// the #GP an `int n` without permission gets, pointing back at the instruction.
pub fn int80<M: MachineMemory>(domain: &mut Domain, memory: &mut M, regs: &mut GuestRegisters) -> Result<(), Undeliverable> {
    if domain.traps.trap(VECTOR_INT80).is_set() {
        return bounce_vector(domain, memory, regs, VECTOR_INT80, None);
    }
    regs.rip = regs.rip.wrapping_sub(2);
    let code = ((VECTOR_INT80 as u64) << 3) | EC_IDT;
    bounce_vector(domain, memory, regs, VECTOR_GENERAL_PROTECTION, Some(code))
}

#[cfg(test)]
mod tests;

/// `syscall` from guest user mode: not a hypercall (a PV kernel's user programs cannot
/// make those) but the kernel's system call. It enters the syscall callback on the
/// kernel stack with the kernel's page table; rcx and r11 in the frame are the return
/// rip and rflags the CPU saved. Without a callback the guest gets #UD at the
/// instruction. Either way the handler starts with DF clear, as on Xen 4.17.
pub fn user_syscall<M: MachineMemory>(domain: &mut Domain, memory: &mut M, regs: &mut GuestRegisters) -> Result<(), Undeliverable> {
    let delivered = match domain.traps.callbacks.syscall {
        Some(callback) => {
            let target = BounceTarget { handler: callback.address, mask_events: callback.mask_events, error_code: None };
            bounce_to(domain, memory, regs, target)
        }
        None => {
            regs.rip = regs.rip.wrapping_sub(2);
            bounce_vector(domain, memory, regs, VECTOR_INVALID_OPCODE, None)
        }
    };
    regs.rflags &= !RFLAGS_DF;
    delivered
}

/// A pending NMI (VCPUOP_send_nmi), on the way back to the guest: it enters trap-table
/// entry 2 (the NMI callback) as an exception without error code, and further NMIs wait
/// for its `iret`. With no entry the NMI is dropped, as Xen drops it. Whether it entered
/// the handler.
pub fn deliver_nmi<M: MachineMemory>(domain: &mut Domain, memory: &mut M, regs: &mut GuestRegisters) -> Result<bool, Undeliverable> {
    if !domain.traps.nmi_deliverable() {
        return Ok(false);
    }
    domain.traps.exit.nmi_pending = false;
    if !domain.traps.trap(VECTOR_NMI).is_set() {
        return Ok(false);
    }
    bounce_vector(domain, memory, regs, VECTOR_NMI, None)?;
    domain.traps.nmi_masked = true;
    Ok(true)
}

/// Whether vCPU 0 has an event upcall to take now: evtchn_upcall_pending set and
/// evtchn_upcall_mask clear (the two bytes at the start of its vcpu_info).
#[inline(always)]
pub fn upcall_deliverable<M: MachineMemory>(domain: &Domain, memory: &M) -> bool {
    memory.read_u64(domain.vcpu_info_maddr()).is_some_and(|word| word & 0xffff == 1)
}

/// The event upcall, on the way back to the guest: with an event pending and events
/// not masked, the guest enters its event callback as if interrupted where it was
/// (a bounce frame without error code) with events masked, as Xen does on every return
/// to a guest. Without a registered callback nothing is delivered (the event stays
/// pending). Whether it entered the callback.
pub fn deliver_upcall<M: MachineMemory>(domain: &mut Domain, memory: &mut M, regs: &mut GuestRegisters) -> Result<bool, Undeliverable> {
    if !upcall_deliverable(domain, &*memory) {
        return Ok(false);
    }
    let Some(callback) = domain.traps.callbacks.event else { return Ok(false) };
    let target = BounceTarget { handler: callback.address, mask_events: true, error_code: None };
    bounce_to(domain, memory, regs, target).map(|()| true)
}
