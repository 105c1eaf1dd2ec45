//! What happens on each way into the hypervisor from a guest, as policy over a domain,
//! its memory and the saved registers: a CPU exception (emulate, or deliver, or crash),
//! a compatibility-mode `syscall`, and the check of the frame every exit returns
//! through. `arch` only saves the registers, reads the hardware state these need, and
//! loads the results into the CPU.

use super::bounce::BounceTarget;
use super::cpuid::CpuidPolicy;
use super::debugreg;
use super::deliver::{self, GuestException, VECTOR_GENERAL_PROTECTION, VECTOR_INVALID_OPCODE, VECTOR_PAGE_FAULT};
use super::emulate::{Emulation, EmulationContext, HostView};
use super::frame_check::{self, check_return_frame, is_plain_flat_frame, BadFrame};
use super::ldt;
use super::ports::PortIo;
use super::ptwr;
use crate::domain::vcpu::GuestRegisters;
use crate::domain::Domain;
use crate::mm::frame_table::FrameTable;
use crate::mm::guest_walk::{copy_from_guest, copy_to_guest, MachineMemory};
use crate::mm::owned::OwnedBy;
use crate::mm::pagetable::PageTables;

pub const VECTOR_DEBUG: u64 = 1;
/// #PF error-code bit 1: a write.
const PF_WRITE: u64 = 2;
pub const VECTOR_DEVICE_NOT_AVAILABLE: u64 = 7;
/// The soft-interrupt vector guests may raise directly (`int 0x80`).
pub const VECTOR_INT80: u64 = 0x80;

/// Hardware state the exception path may need, read by `arch` at entry.
#[derive(Clone, Copy, Debug)]
pub struct ExceptionContext {
    /// CR2 at entry (the faulting address of a #PF).
    pub cr2: u64,
    /// DR6 at entry, for a #DB.
    pub debug_status: u64,
    /// The control registers a PV guest may read.
    pub host: HostView,
}

/// A CPU exception the guest took: emulate what is emulated, deliver the rest through
/// its trap table; a domain that cannot take it is crashed.
pub fn guest_exception<M: MachineMemory>(
    domain: &mut Domain,
    memory: &mut M,
    frames: &mut FrameTable,
    cpuid: &CpuidPolicy,
    ports: &mut dyn PortIo,
    frame: &mut GuestRegisters,
    hardware: &ExceptionContext,
) {
    // A selector load touched a page of the LDT window not mapped yet (an implicit,
    // supervisor access: the U bit is clear whatever the CPL).
    if frame.vector == VECTOR_PAGE_FAULT as u64 && frame.error_code & 4 == 0 {
        if let Some(offset) = hardware.cr2.checked_sub(ldt::LDT_AREA).filter(|&o| o < ldt::LDT_WINDOW) {
            let mut tables = PageTables { frames: &mut *frames, memory: &mut *memory, domain: domain.id };
            if let ldt::LdtFault::PageFault(address) = ldt::map_on_fault(domain, &mut tables, offset) {
                let fault = GuestException { vector: VECTOR_PAGE_FAULT, error_code: 0, cr2: address };
                if let Err(why) = deliver::deliver_exception(domain, &mut OwnedBy::new(memory, frames, domain.id), frame, fault) {
                    domain.crash(why.describe());
                }
            }
            return;
        }
    }
    // A store into the guest's own L1 (trap::ptwr). Like mmu_update it flushes nothing
    // for the guest; the frame table asks for a flush if its rules need one.
    if frame.vector == VECTOR_PAGE_FAULT as u64 && ptwr::emulate_page_table_write(domain, memory, frames, frame, hardware.cr2, frame.error_code) {
        return;
    }
    // Everything else reaches only the domain's own frames (mm::owned).
    let memory = &mut OwnedBy::new(memory, frames, domain.id);
    let delivered = if frame.vector == VECTOR_INT80 {
        deliver::int80(domain, memory, frame)
    } else {
        if frame.vector == VECTOR_DEBUG {
            debugreg::record_debug_status(&mut domain.traps, hardware.debug_status);
        }
        if frame.vector == VECTOR_DEVICE_NOT_AVAILABLE {
            // Real CR0.TS is only ever set on the guest's behalf: the #NM is its, and
            // taking it clears its virtual TS, as Xen does.
            domain.traps.set_fpu_ts(false);
        }
        let exception = GuestException { vector: frame.vector as u8, error_code: frame.error_code, cr2: hardware.cr2 };
        match emulate_instead(domain, memory, cpuid, ports, frame, hardware.host) {
            Some(Ok(())) => Ok(()),
            Some(Err(instead)) => deliver::deliver_exception(domain, memory, frame, instead),
            None => deliver::deliver_exception(domain, memory, frame, exception),
        }
    };
    if let Err(why) = delivered {
        domain.crash(why.describe());
    }
}

/// `syscall` from 32-bit compatibility mode. A 64-bit PV guest has no compat-mode
/// hypercalls: its syscall32 callback gets it if it registered one, else #UD at the
/// instruction (2 bytes before the return address the CPU saved).
pub fn compat_syscall<M: MachineMemory>(domain: &mut Domain, memory: &mut M, frame: &mut GuestRegisters) {
    let delivered = match domain.traps.callbacks.syscall32 {
        Some(callback) => {
            let target = BounceTarget { handler: callback.address, mask_events: callback.mask_events, error_code: None };
            deliver::bounce_to(domain, memory, frame, target)
        }
        None => {
            frame.rip = frame.rip.wrapping_sub(2);
            deliver::bounce_vector(domain, memory, frame, VECTOR_INVALID_OPCODE, None)
        }
    };
    if let Err(why) = delivered {
        domain.crash(why.describe());
    }
}

/// Bytes the guest has at `rip`: up to 20 (an instruction behind the forced-emulation
/// prefix), fewer where the mapping ends. Returns the bytes read and, if the read
/// stopped early, the first address that could not be read.
pub fn fetch_instruction<M: MachineMemory>(memory: &M, l4: u64, rip: u64) -> ([u8; 20], usize, Option<u64>) {
    let mut bytes = [0u8; 20];
    let mut len = 0;
    while len < bytes.len() {
        let at = rip.wrapping_add(len as u64);
        let room = ((4096 - at % 4096) as usize).min(bytes.len() - len);
        if copy_from_guest(memory, l4, at, &mut bytes[len..len + room]).is_err() {
            return (bytes, len, Some(at));
        }
        len += room;
    }
    (bytes, len, None)
}

/// #GP(0) and #UD may be instructions the hypervisor emulates (trap::emulate). `None`:
/// not emulated, deliver the exception. `Some(Err(exception))`: deliver that one
/// instead: the page fault of an instruction that could not be read in full or of a
/// store that could not be written, or the #UD an instruction raises in the guest's
/// virtual CPU state (XSETBV without its CR4.OSXSAVE).
fn emulate_instead<M: MachineMemory>(
    domain: &mut Domain,
    memory: &mut M,
    cpuid: &CpuidPolicy,
    ports: &mut dyn PortIo,
    frame: &mut GuestRegisters,
    host: HostView,
) -> Option<Result<(), GuestException>> {
    let general_protection = frame.vector == VECTOR_GENERAL_PROTECTION as u64 && frame.error_code == 0;
    if !general_protection && frame.vector != VECTOR_INVALID_OPCODE as u64 {
        return None;
    }
    let (bytes, len, unreadable) = fetch_instruction(&*memory, domain.active_l4(), frame.rip);
    let kernel_l4 = domain.l4_maddr();
    let privileged = domain.privileged;
    let mut ctx = EmulationContext { regs: frame, traps: &mut domain.traps, kernel_l4, host, cpuid, ports, privileged };
    let outcome = if general_protection { ctx.privileged(&bytes[..len]) } else { ctx.invalid_opcode(&bytes[..len]) };
    match outcome {
        Emulation::Done => Some(Ok(())),
        Emulation::Store { address, bytes, len, next_rip } => {
            match copy_to_guest(memory, domain.active_l4(), address, &bytes[..len]) {
                Ok(()) => {
                    frame.rip = next_rip;
                    Some(Ok(()))
                }
                // The store faults as it would have natively: a write.
                Err(_) => Some(Err(GuestException { vector: VECTOR_PAGE_FAULT, error_code: PF_WRITE, cr2: address })),
            }
        }
        Emulation::Unreadable if !general_protection => {
            unreadable.map(|at| Err(GuestException { vector: VECTOR_PAGE_FAULT, error_code: 0, cr2: at }))
        }
        Emulation::InvalidOpcode if general_protection => Some(Err(GuestException { vector: VECTOR_INVALID_OPCODE, error_code: 0, cr2: 0 })),
        Emulation::Unreadable | Emulation::GeneralProtection | Emulation::InvalidOpcode => None,
    }
}

/// Entry `selector >> 3` of the GDT the guest installed (set_gdt), if it has one there.
fn guest_descriptor<M: MachineMemory>(domain: &Domain, memory: &M, selector: u16) -> Option<u64> {
    let index = (selector >> 3) as usize;
    let traps = &domain.traps;
    // GDT entry 0 is never a descriptor to the CPU: selectors 0-3 are the null selector
    // (whatever the guest put in that slot), which `iretq` refuses for cs and for a
    // ring-3 ss.
    if selector & !3 == 0 {
        return None;
    }
    let frame = if selector & SELECTOR_TI_LDT != 0 {
        // An LDT selector within the guest's LDT, on a page already mapped for the CPU
        // (`map_ldt_pages_for` maps the frame's pages first).
        if index >= traps.ldt.entries as usize {
            return None;
        }
        Some(traps.ldt.frames[index / 512]).filter(|&f| f != 0)?
    } else {
        *traps.gdt_frames.get(..traps.gdt_frame_count)?.get(index / 512)?
    };
    memory.read_u64(frame * 4096 + (index % 512) as u64 * 8)
}

/// Selector bit 2: the descriptor is in the LDT.
const SELECTOR_TI_LDT: u16 = 4;

/// An `iretq` to a frame naming LDT segments reads their descriptors through the LDT
/// window, and a page of it not mapped yet would fault there, in ring 0. Xen maps such a
/// page then (as for any LDT access) and the `iretq` goes through; so we map the pages
/// the frame's cs and ss need before checking it. A page that cannot be mapped leaves
/// the selector refused: the guest gets the #GP(selector) `iretq` gives.
fn map_ldt_pages_for<M: MachineMemory>(domain: &mut Domain, memory: &mut M, frames: &mut FrameTable, selectors: &[u64]) {
    // map_on_fault leaves alone an offset past the LDT's entries or a page mapped already.
    for &selector in selectors.iter().filter(|&&s| s <= u64::from(u16::MAX) && s as u16 & SELECTOR_TI_LDT != 0) {
        let mut tables = PageTables { frames: &mut *frames, memory: &mut *memory, domain: domain.id };
        let _ = ldt::map_on_fault(domain, &mut tables, selector & !7);
    }
}

/// The DS, ES, FS and GS a vCPU had when it was switched away from, to load when it
/// runs again, each kept if loading it from ring 3 cannot fault: null, the
/// hypervisor's flat ring-3 segments, or a selector whose descriptor in the guest's own
/// GDT or LDT is loadable (LDT pages mapped first, as the CPU's load would need). The
/// guest cannot have changed its tables meanwhile, but update_descriptor while it ran
/// may have made a loaded descriptor unloadable; such a selector becomes null (Xen
/// would enter the failsafe callback instead).
pub fn loadable_data_selectors<M: MachineMemory>(domain: &mut Domain, memory: &mut M, frames: &mut FrameTable, selectors: [u16; 4]) -> [u16; 4] {
    use hypercall_abi::arch_x86_64::{FLAT_RING3_CS32, FLAT_RING3_CS64, FLAT_RING3_DS32};
    map_ldt_pages_for(domain, memory, frames, &selectors.map(u64::from));
    let memory = OwnedBy::new(memory, frames, domain.id);
    selectors.map(|selector| {
        let hypervisors = [FLAT_RING3_DS32, FLAT_RING3_CS32, FLAT_RING3_CS64].contains(&selector);
        let null = selector & !3 == 0;
        let guests = || guest_descriptor(domain, &memory, selector).is_some_and(frame_check::loadable_data_segment);
        if null || hypervisors || guests() {
            selector
        } else {
            0
        }
    })
}

/// The check before every return to a running guest. A frame `iretq` would fault on is
/// not a fault in ring 0 here: Xen lets the `iretq` fault and hands the guest the #GP at
/// the target state, and so do we, having checked first. A frame still bad after that
/// (no #GP handler, or it leads to garbage again) crashes the domain.
#[inline(always)]
pub fn check_exit_frame<M: MachineMemory>(domain: &mut Domain, memory: &mut M, frames: &mut FrameTable, frame: &mut GuestRegisters) {
    if !is_plain_flat_frame(frame) {
        map_ldt_pages_for(domain, memory, frames, &[frame.cs, frame.ss]);
    }
    let memory = &mut OwnedBy::new(memory, frames, domain.id);
    let descriptor = |selector: u16| guest_descriptor(domain, memory, selector);
    let Err(bad) = check_return_frame(frame, &descriptor) else { return };
    let error_code = match bad {
        BadFrame::NonCanonicalRip | BadFrame::RipBeyond32Bits | BadFrame::Rflags => 0,
        BadFrame::CodeSelector => frame.cs & 0xfff8,
        BadFrame::StackSelector => frame.ss & 0xfff8,
    };
    let gp = GuestException { vector: VECTOR_GENERAL_PROTECTION, error_code, cr2: 0 };
    let delivered = deliver::deliver_exception(domain, memory, frame, gp);
    let descriptor = |selector: u16| guest_descriptor(domain, memory, selector);
    if delivered.is_err() || check_return_frame(frame, &descriptor).is_err() {
        domain.crash(bad.describe());
    }
}

#[cfg(test)]
mod tests;
