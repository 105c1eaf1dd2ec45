//! `memory_op` (memory.h): what a PV kernel asks about memory at boot, the
//! machine-to-phys table's place, and (in `reservation`) ballooning.

use super::HypercallContext;
use crate::mm::guest_walk::MachineMemory;
use alloc::vec::Vec;
use hypercall_abi::ops::memory::*;
use hypercall_abi::ops::mmu::DOMID_SELF;
use hypercall_abi::{Errno, GuestArray, GuestHandle};

pub fn memory_op<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u64, arg: GuestHandle) -> Result<i64, Errno> {
    let op = (cmd & u64::from(MEMOP_CMD_MASK)) as u32;
    // Only the reservation commands continue from an extent; the rest refuse one.
    let start_extent = cmd >> MEMOP_EXTENT_SHIFT;
    match op {
        XENMEM_MAXIMUM_RAM_PAGE | XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION if start_extent != 0 => Err(Errno::EINVAL),
        // Xen hands these to its x86 code with the whole `cmd`, where extent bits
        // make a command it does not know (seen on 4.17).
        XENMEM_MACHPHYS_MAPPING | XENMEM_MACHPHYS_MFN_LIST | XENMEM_MACHINE_MEMORY_MAP | XENMEM_MEMORY_MAP if start_extent != 0 => Err(Errno::ENOSYS),
        XENMEM_INCREASE_RESERVATION | XENMEM_DECREASE_RESERVATION | XENMEM_POPULATE_PHYSMAP => {
            Ok(super::reservation::reservation_op(ctx, op, start_extent, arg))
        }
        XENMEM_MAXIMUM_RAM_PAGE => Ok(ctx.host.machine.max_page as i64),
        XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION => {
            let domid: u16 = arg.into_in().read(ctx)?;
            // Only the caller exists to ask about (no other domain yet): Xen answers an
            // unknown id with -ESRCH.
            if domid != DOMID_SELF && domid != ctx.domain.id {
                return Err(Errno::ESRCH);
            }
            Ok(if op == XENMEM_CURRENT_RESERVATION { ctx.domain.tot_pages } else { ctx.domain.max_pages } as i64)
        }
        XENMEM_MACHPHYS_MAPPING => {
            // The largest frame there is, not the most the range could hold (Xen 4.17
            // answers max_page - 1, seen under the conformance harness).
            let mapping = MachphysMapping {
                v_start: MACH2PHYS_VIRT_START,
                v_end: MACH2PHYS_VIRT_END,
                max_mfn: ctx.host.machine.max_page.saturating_sub(1).min(MACH2PHYS_NR_ENTRIES - 1),
            };
            arg.into_out().write(ctx, &mapping)?;
            Ok(0)
        }
        XENMEM_MACHPHYS_MFN_LIST => machphys_mfn_list(ctx, arg),
        XENMEM_MACHINE_MEMORY_MAP => machine_memory_map(ctx, arg),
        // A PV domain whose builder set no pseudo-physical map has none to report
        // (Xen: -ENOSYS, and Linux then assumes one RAM range of nr_pages).
        XENMEM_MEMORY_MAP => {
            let _: MemoryMap = arg.into_in().read(ctx)?;
            Err(Errno::ENOSYS)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// The M2P table's frames, one per 2 MiB of table, as many as `max_extents` allows.
fn machphys_mfn_list<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, arg: GuestHandle) -> Result<i64, Errno> {
    let (mut list, list_out) = arg.into_in_out::<MachphysMfnList>().read(ctx)?;
    // Copied out: writing to the guest borrows the context.
    let mfns: Vec<u64> = ctx.host.machine.m2p.extent_mfns().take(list.max_extents as usize).collect();
    let mut extents = GuestArray::<u64>::from_raw(list.extent_start);
    let mut written = 0u32;
    for mfn in mfns {
        extents = extents.write_from(ctx, &[mfn])?;
        written += 1;
    }
    list.nr_extents = written;
    list_out.write(ctx, &list)?;
    Ok(0)
}

/// The firmware's memory map, for dom0 only. A NULL buffer asks only for the count.
/// Otherwise the entries are written one by one while there is room (-EINVAL at the
/// first that does not fit, -EFAULT at the first that cannot be written), and the
/// buffer must have had room for one more (Xen keeps it for the entry splitting around
/// reserved device memory may add): the order in which Xen 4.17 answers, seen under
/// the conformance harness.
fn machine_memory_map<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, arg: GuestHandle) -> Result<i64, Errno> {
    if !ctx.domain.privileged {
        return Err(Errno::EPERM);
    }
    let (mut map, map_out) = arg.into_in_out::<MemoryMap>().read(ctx)?;
    let entries = ctx.host.machine.memory_map.clone();
    let count = entries.len() as u32;
    if map.buffer != 0 {
        let mut buffer = GuestArray::<E820Entry>::from_raw(map.buffer);
        for (i, entry) in entries.iter().enumerate() {
            if i as u32 >= map.nr_entries {
                return Err(Errno::EINVAL);
            }
            buffer = buffer.write_from(ctx, core::slice::from_ref(entry))?;
        }
        if map.nr_entries < count + 1 {
            return Err(Errno::EINVAL);
        }
    }
    map.nr_entries = count;
    map_out.write(ctx, &map)?;
    Ok(0)
}

#[cfg(test)]
mod tests;
