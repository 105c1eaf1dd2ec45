//! memory_op's reservation commands (memory.h): a PV domain gives frames back
//! (decrease_reservation, ballooning down) and takes new ones up to its maximum
//! (increase_reservation, or populate_physmap, which also sets their M2P entries).
//!
//! As on Xen, the answer is the number of extents done: a bad structure, domain or
//! list is not an errno but "0 more done", and the first extent that fails stops the
//! batch. An extent is 2^extent_order frames in a row, aligned to their size (Xen 4.17
//! lets dom0 take 32 MiB extents, order 13, and more: we stop at MAX_ORDER).

use super::HypercallContext;
use crate::mm::guest_walk::MachineMemory;
use crate::mm::is_guest_range;
use hypercall_abi::ops::memory::*;
use hypercall_abi::ops::mmu::DOMID_SELF;
use hypercall_abi::{GuestArray, GuestHandle};

const PAGE: u64 = 4096;
/// The largest extent: 2^18 pages, 1 GiB (Xen's own allocator cannot do more).
const MAX_ORDER: u32 = 18;

pub fn reservation_op<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, op: u32, start_extent: u64, arg: GuestHandle) -> i64 {
    let done = start_extent;
    let arg_address = arg.address();
    let Ok(r) = arg.into_in::<MemoryReservation>().read(ctx) else { return done as i64 };
    // Too many to encode a continuation, already done, another domain, larger extents.
    let too_many = r.nr_extents > u64::from(u32::MAX >> MEMOP_EXTENT_SHIFT);
    let other_domain = r.domid != DOMID_SELF && r.domid != ctx.domain.id;
    if too_many || start_extent >= r.nr_extents || other_domain || r.extent_order > MAX_ORDER {
        return done as i64;
    }
    let order = r.extent_order;
    let list = r.extent_start;
    // The list must lie in guest memory as a whole (Xen's guest_handle_subrange_okay);
    // increase_reservation alone may pass none (frames allocated but not reported).
    let list_ok = is_guest_range(list.wrapping_add(start_extent * 8), list.wrapping_add(r.nr_extents * 8));
    let unreported = op == XENMEM_INCREASE_RESERVATION && list == 0;
    if !list_ok && !unreported {
        return done as i64;
    }
    // The address width the frames must fit (XENMEMF_address_bits, the low 8 bits).
    let limit = match r.mem_flags & 0xff {
        0 | 64.. => u64::MAX,
        bits if bits <= 12 => return done as i64,
        bits => 1u64 << (bits - 12),
    };
    let mut i = start_extent;
    for slot in GuestArray::<u64>::from_raw(list).skip(start_extent).elements(r.nr_extents - start_extent) {
        // Between extents, a due timer makes it continue later from extent i (encoded
        // above the command's low bits, as Xen does).
        if i > start_extent && ctx.preempt_wanted() {
            let _ = ctx.continue_later([(i << MEMOP_EXTENT_SHIFT) | u64::from(op), arg_address, 0, 0, 0, 0]);
            return 0;
        }
        let ok = match op {
            XENMEM_DECREASE_RESERVATION => slot.into_in().read(ctx).is_ok_and(|mfn| give_back(ctx, mfn, order)),
            XENMEM_INCREASE_RESERVATION => take(ctx, order, limit).is_some_and(|mfn| unreported || slot.into_out().write(ctx, &mfn).is_ok()),
            _ => match slot.read(ctx) {
                Ok((pfn, slot)) => take(ctx, order, limit).is_some_and(|mfn| {
                    for i in 0..1u64 << order {
                        let _ = ctx.host.machine.m2p.set(&mut ctx.host.memory, mfn + i, pfn.wrapping_add(i));
                    }
                    slot.write(ctx, &mfn).is_ok()
                }),
                Err(_) => false,
            },
        };
        if !ok {
            break;
        }
        i += 1;
    }
    i as i64
}

/// 2^order new, zeroed frames in a row for the caller, within its maximum: the first.
fn take<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, order: u32, limit: u64) -> Option<u64> {
    let count = 1u64 << order;
    if ctx.domain.tot_pages.checked_add(count)? > ctx.domain.max_pages {
        return None;
    }
    let first = ctx.frame_source.take_run_below(order, limit)?;
    // Nothing of a frame's last owner may reach its next one.
    for mfn in first..first + count {
        if ctx.host.memory.write_bytes(mfn * PAGE, &[0u8; PAGE as usize]).is_none() || ctx.host.frames.assign(mfn, ctx.domain.id).is_err() {
            for taken in first..mfn {
                let _ = ctx.host.frames.release(taken);
            }
            for back in first..first + count {
                ctx.frame_source.give_back(back);
            }
            return None;
        }
    }
    ctx.domain.tot_pages += count;
    Some(first)
}

/// Takes back 2^order of the caller's frames from `first` on (all must be its own and
/// not given back already). As on Xen 4.17, a frame still mapped or typed is taken at
/// once but freed only when its last reference goes (domain::frames::free_given_back):
/// the reservation shrinks then, and the guest may use its mappings until it drops
/// them. A pinned table is unpinned first, as Xen does.
fn give_back<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, first: u64, order: u32) -> bool {
    let count = 1u64 << order;
    let Some(end) = first.checked_add(count) else { return false };
    let id = ctx.domain.id;
    let ours = |mfn: u64| ctx.host.frames.owner(mfn) == Some(id) && mfn != ctx.domain.shared_info_mfn && !ctx.host.frames.is_given_back(mfn);
    if !(first..end).all(ours) {
        return false;
    }
    for mfn in first..end {
        if ctx.host.frames.is_pinned(mfn) {
            ctx.host.frames.set_pinned(mfn, false);
            ctx.tables().put_page_and_type(mfn);
        }
        match ctx.host.frames.give_back(mfn, id) {
            Ok(true) => {
                ctx.host.machine.m2p.invalidate(&mut ctx.host.memory, mfn);
                ctx.frame_source.give_back(mfn);
                ctx.domain.tot_pages -= 1;
            }
            Ok(false) => {}
            Err(_) => return false,
        }
    }
    true
}
