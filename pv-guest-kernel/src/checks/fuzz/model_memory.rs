//! memory_op for the fuzzer: the information commands with hostile pointers, domain ids
//! and continuation bits, and the reservation commands with everything that must come
//! to "no extent done" (frames not ours, lists outside guest memory, other domains,
//! too many extents, a continuation past the end). Reservations that would succeed are
//! left to the `memory` check: on Xen they really move memory.

use super::args::{harmless_read_target, small, write_target, Ptr, Rng};
use super::memory::{self, Layout};
use super::model::{guarded, Call, Expect, EFAULT, EINVAL, ENOSYS, ESRCH};
use hypercall_abi::nr;
use hypercall_abi::ops::memory::*;
use hypercall_abi::ops::mmu::DOMID_SELF;

/// What memory_op answered when the run began; the answers must not change.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryFacts {
    pub max_ram_page: i64,
    pub current: i64,
    pub maximum: i64,
    /// Entries in the machine memory map.
    pub machine_map_entries: u32,
}

impl MemoryFacts {
    pub fn ask() -> MemoryFacts {
        let op = |cmd: u32, arg: u64| {
            // SAFETY: NULL or a pointer to a live local of the size the command reads.
            unsafe { hypercall_abi::guest::calls::memory_op(cmd.into(), hypercall_abi::GuestHandle::from_raw(arg)) }
        };
        let self_id = DOMID_SELF;
        let id = &self_id as *const u16 as u64;
        let mut map = MemoryMap::default();
        op(XENMEM_MACHINE_MEMORY_MAP, &mut map as *mut MemoryMap as u64);
        MemoryFacts {
            max_ram_page: op(XENMEM_MAXIMUM_RAM_PAGE, 0),
            current: op(XENMEM_CURRENT_RESERVATION, id),
            maximum: op(XENMEM_MAXIMUM_RESERVATION, id),
            machine_map_entries: map.nr_entries,
        }
    }
}

/// A pointer to `size` bytes we choose (scratch) or one that cannot be read whole.
fn structure(rng: &mut Rng, l: &Layout, size: u64) -> Ptr {
    harmless_read_target(rng, l, size)
}

pub fn memory_op(rng: &mut Rng, l: &Layout, mut args: [u64; 6], facts: &MemoryFacts) -> Call {
    const COMMANDS: [u32; 7] = [
        XENMEM_MAXIMUM_RAM_PAGE,
        XENMEM_CURRENT_RESERVATION,
        XENMEM_MAXIMUM_RESERVATION,
        XENMEM_MACHPHYS_MFN_LIST,
        XENMEM_MEMORY_MAP,
        XENMEM_MACHINE_MEMORY_MAP,
        XENMEM_MACHPHYS_MAPPING,
    ];
    // Commands Xen 4.17 does not have (it has up to 29) are -ENOSYS on both.
    if rng.percent(20) {
        return reservation(rng, l, args);
    }
    let cmd = if rng.percent(90) { rng.pick(&COMMANDS) } else { 40 + rng.below(24) as u32 };
    let extent = if rng.percent(20) { small(rng) & 0xffff } else { 0 };
    args[0] = u64::from(cmd) | extent << MEMOP_EXTENT_SHIFT;
    let refuses_extent = matches!(cmd, XENMEM_MAXIMUM_RAM_PAGE | XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION);
    if extent != 0 && refuses_extent {
        return Call::new(nr::memory_op, args, Expect::Exact(EINVAL));
    }
    // Xen's x86 code gets the whole cmd: with extent bits it is no command it knows.
    if extent != 0 {
        return Call::new(nr::memory_op, args, Expect::Exact(ENOSYS));
    }
    match cmd {
        XENMEM_MAXIMUM_RAM_PAGE => Call::new(nr::memory_op, args, Expect::Exact(facts.max_ram_page)),
        XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION => {
            let p = structure(rng, l, 2);
            args[1] = p.addr;
            let expect = match p.scratch {
                None => EFAULT,
                Some(offset) => {
                    let domid: u16 = rng.pick(&[DOMID_SELF, DOMID_SELF, 0, 1, 9, 0x7ff1, 0x7ff2, 0xffff]);
                    memory::poke_scratch(offset, &domid.to_le_bytes());
                    match domid {
                        DOMID_SELF | 0 if cmd == XENMEM_CURRENT_RESERVATION => facts.current,
                        DOMID_SELF | 0 => facts.maximum,
                        _ => ESRCH,
                    }
                }
            };
            Call::new(nr::memory_op, args, Expect::Exact(expect))
        }
        XENMEM_MACHPHYS_MAPPING => {
            let p = write_target(rng, l, 24);
            args[1] = p.addr;
            let expect = if p.write_room >= 24 { 0 } else { EFAULT };
            guarded(Call::new(nr::memory_op, args, Expect::Exact(expect)), &p)
        }
        XENMEM_MACHPHYS_MFN_LIST => {
            let p = structure(rng, l, 24);
            args[1] = p.addr;
            let Some(offset) = p.scratch else { return Call::new(nr::memory_op, args, Expect::Exact(EFAULT)) };
            let max_extents: u32 = rng.pick(&[0, 1, 1, 4]);
            let out = write_target(rng, l, 8);
            memory::poke_scratch(offset, &max_extents.to_le_bytes());
            memory::poke_scratch(offset + 8, &out.addr.to_le_bytes());
            // At least one extent exists; the list is written before the count.
            let expect = if max_extents > 0 && out.write_room < 8 { EFAULT } else { 0 };
            guarded(Call::new(nr::memory_op, args, Expect::Exact(expect)), &out)
        }
        XENMEM_MEMORY_MAP => {
            let p = structure(rng, l, 16);
            args[1] = p.addr;
            // No pseudo-physical map was set for a PV dom0 on either hypervisor.
            let expect = if p.scratch.is_some() { ENOSYS } else { EFAULT };
            Call::new(nr::memory_op, args, Expect::Exact(expect))
        }
        XENMEM_MACHINE_MEMORY_MAP => {
            let p = structure(rng, l, 16);
            args[1] = p.addr;
            let Some(offset) = p.scratch else { return Call::new(nr::memory_op, args, Expect::Exact(EFAULT)) };
            let n = facts.machine_map_entries;
            let room: u32 = rng.pick(&[0, n, n + 1, n + 5, 0xffff_ffff]);
            let size = u64::from(n) * 20;
            let buffer = if rng.percent(15) { Ptr::bad(0) } else { write_target(rng, l, size) };
            memory::poke_scratch(offset, &room.to_le_bytes());
            memory::poke_scratch(offset + 8, &buffer.addr.to_le_bytes());
            // Entries are written while they fit (-EINVAL at the first that does not,
            // -EFAULT at the first unwritable), then the spare entry is asked for.
            let fitting = u64::from(room.min(n)) * 20;
            let expect = if buffer.addr == 0 {
                0
            } else if room == 0 && n > 0 {
                EINVAL
            } else if buffer.write_room < fitting {
                EFAULT
            } else if room < n + 1 {
                EINVAL
            } else {
                0
            };
            guarded(Call::new(nr::memory_op, args, Expect::Exact(expect)), &buffer)
        }
        _ => Call::new(nr::memory_op, args, Expect::Exact(ENOSYS)),
    }
}

/// A reservation command that must do nothing: the answer is the extent it started at.
fn reservation(rng: &mut Rng, l: &Layout, mut args: [u64; 6]) -> Call {
    let op = rng.pick(&[XENMEM_DECREASE_RESERVATION, XENMEM_INCREASE_RESERVATION, XENMEM_POPULATE_PHYSMAP]);
    let start = if rng.percent(20) { rng.below(4) } else { 0 };
    args[0] = u64::from(op) | start << MEMOP_EXTENT_SHIFT;
    let p = structure(rng, l, 32);
    args[1] = p.addr;
    let Some(offset) = p.scratch else { return Call::new(nr::memory_op, args, Expect::Exact(start as i64)) };
    // Lists outside guest memory (both hypervisors check the range first), or for
    // decrease_reservation a scratch list of frames that are not ours.
    let outside = rng.pick(&[0xffff_8000_0000_0000u64, 0xffff_8300_0000_0000, 0x8000_0000_0000_0000, 0x0000_8000_0000_0000]);
    let list = if op == XENMEM_DECREASE_RESERVATION && rng.percent(60) {
        let list_offset = offset + 64;
        for i in 0..4 {
            let frame: u64 = rng.pick(&[0, 1, 0x7_ffff_ff00, 0xf_ffff_ffff]);
            memory::poke_scratch(list_offset + i * 8, &frame.to_le_bytes());
        }
        memory::scratch_address(list_offset)
    } else {
        outside
    };
    let nr_extents: u64 = rng.pick(&[0, 1, 2, 4, u64::from(u32::MAX >> MEMOP_EXTENT_SHIFT) + 1, u64::MAX]);
    let order: u32 = if op == XENMEM_DECREASE_RESERVATION { rng.pick(&[0, 0, 1]) } else { 0 };
    let domid = rng.pick(&[DOMID_SELF, DOMID_SELF, DOMID_SELF, 9]);
    // MemoryReservation's layout: extent_start @0, nr_extents @8, extent_order @16,
    // mem_flags @20, domid @24.
    memory::poke_scratch(offset, &list.to_le_bytes());
    memory::poke_scratch(offset + 8, &nr_extents.to_le_bytes());
    memory::poke_scratch(offset + 16, &order.to_le_bytes());
    memory::poke_scratch(offset + 20, &0u32.to_le_bytes());
    memory::poke_scratch(offset + 24, &domid.to_le_bytes());
    Call::new(nr::memory_op, args, Expect::Exact(start as i64))
}
