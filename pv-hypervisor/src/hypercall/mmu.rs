//! The PV MMU hypercalls: mmu_update, mmuext_op, update_va_mapping (xen.h). Every
//! change goes through `mm::pagetable`'s validation; a batch stops at its first
//! failing entry, whose errno is returned, after writing how many entries were done.
//! As on Xen, an update does not flush the TLB for the guest: it flushes when it needs
//! to (update_va_mapping's flags, mmuext's flush commands). What the hypervisor's own
//! rules need is the frame table's business: a frame that changes use while a dropped
//! entry may still be cached makes it ask for a flush before the guest runs again
//! (`FrameTable::flush_needed`), so no stale translation outlives a type change.

use super::HypercallContext;
use crate::mm::frame_table::PageType;
use crate::mm::guest_walk::MachineMemory;
use crate::mm::is_guest_range;
use crate::mm::pagetable::{fill_hypervisor_slots, M2pSlot, PageTables, PTE_ACCESSED, PTE_ADDRESS, PTE_DIRTY, PTE_PRESENT, PTE_PS_OR_PAT};
use crate::trap::ldt;
use hypercall_abi::ops::mmu::*;
use hypercall_abi::{Errno, GuestArray, GuestIn, GuestOut};

/// Entries between two looks at the clock in a long batch.
const PREEMPT_CHECK_ENTRIES: u32 = 64;

impl<M: MachineMemory> HypercallContext<'_, M> {
    pub(super) fn tables(&mut self) -> PageTables<'_, M> {
        PageTables { frames: &mut self.host.frames, memory: &mut self.host.memory, domain: self.domain.id }
    }

    /// Only DOMID_SELF: naming itself by number is refused like an unknown domain, as
    /// Xen 4.17 does ("cannot specify itself as foreign domain": -ESRCH), and mapping
    /// another domain's frames needs grant tables or a toolstack.
    fn check_foreign(&self, foreign: u16) -> Result<(), Errno> {
        if foreign == DOMID_SELF {
            Ok(())
        } else {
            Err(Errno::ESRCH)
        }
    }

    fn write_done(&mut self, done_out: GuestOut<u32>, done: u32) -> Result<(), Errno> {
        if done_out.is_null() {
            return Ok(());
        }
        done_out.write(self, &done)
    }

    /// Runs `count` entries of `T` through `each`, stopping at the first error. A long
    /// batch is preemptible as on Xen: when a timer is due it writes the entries done so
    /// far to `done_out` and continues later with the rest, its count marked
    /// MMU_UPDATE_PREEMPTED; entering with that mark, it first reads the total done so
    /// far back from `done_out` (Xen's protocol, so the guest's final count is the
    /// whole batch's).
    fn batch<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &mut self,
        items: GuestArray<T>,
        count: u32,
        done_out: GuestOut<u32>,
        foreign: u16,
        mut each: impl FnMut(&mut Self, T) -> Result<(), Errno>,
    ) -> Result<i64, Errno> {
        let mut done_before = 0;
        let mut count = count;
        if count & MMU_UPDATE_PREEMPTED != 0 {
            count &= !MMU_UPDATE_PREEMPTED;
            if !done_out.is_null() {
                // The total this hypercall's earlier parts wrote there.
                done_before = GuestIn::<u32>::from_raw(done_out.address()).read(self).unwrap_or(0);
            }
        }
        let start = items.address();
        let mut done = 0;
        let mut result = Ok(0);
        for item in items.elements(u64::from(count)) {
            if done > 0 && done % PREEMPT_CHECK_ENTRIES == 0 && self.preempt_wanted() {
                let next = start.wrapping_add(u64::from(done) * core::mem::size_of::<T>() as u64);
                let rest = [next, u64::from((count - done) | MMU_UPDATE_PREEMPTED), done_out.address(), u64::from(foreign), 0, 0];
                self.write_done(done_out, done_before.wrapping_add(done))?;
                return self.continue_later(rest);
            }
            if let Err(e) = item.into_in().read(self).and_then(|item| each(self, item)) {
                result = Err(e);
                break;
            }
            done += 1;
        }
        self.write_done(done_out, done_before.wrapping_add(done))?;
        result
    }
}

/// The page-table level a frame of the caller is typed as, if it is a page table.
fn table_level<M: MachineMemory>(ctx: &HypercallContext<'_, M>, mfn: u64) -> Result<u8, Errno> {
    if ctx.host.frames.owner(mfn) != Some(ctx.domain.id) {
        return Err(Errno::EINVAL);
    }
    ctx.host.frames.page_type(mfn).level().ok_or(Errno::EINVAL)
}

fn normal_update<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, request: MmuUpdate) -> Result<(), Errno> {
    let command = request.ptr & 3;
    let ptr = request.ptr & !3;
    match command {
        MMU_NORMAL_PT_UPDATE | MMU_PT_UPDATE_PRESERVE_AD => {
            if !ptr.is_multiple_of(8) {
                return Err(Errno::EINVAL);
            }
            let table = ptr >> 12;
            if ctx.host.frames.owner(table) != Some(ctx.domain.id) {
                return Err(Errno::EINVAL);
            }
            let Some(level) = ctx.host.frames.page_type(table).level() else {
                // Not a page table: an ordinary page of the guest's is simply written, as
                // Xen does (seen on 4.17); anything typed otherwise is refused.
                ctx.host.frames.get_type(table, PageType::Writable).map_err(|_| Errno::EINVAL)?;
                let written = ctx.host.memory.write_bytes(ptr, &request.val.to_le_bytes());
                let _ = ctx.host.frames.put_type(table);
                return written.ok_or(Errno::EFAULT);
            };
            let index = ((ptr & 0xfff) / 8) as usize;
            let mut value = request.val;
            if command == MMU_PT_UPDATE_PRESERVE_AD {
                let old = ctx.host.memory.read_u64(ptr).ok_or(Errno::EFAULT)?;
                value = (value & !(PTE_ACCESSED | PTE_DIRTY)) | (old & (PTE_ACCESSED | PTE_DIRTY));
            }
            // A frame that cannot be mapped writable (a page table, a descriptor page,
            // the M2P table) is -EBUSY, as update_va_mapping answers (seen on Xen 4.17
            // by `mmu-attack`).
            ctx.tables().update_entry(table, level, index, value)?;
            Ok(())
        }
        // The guest names the frame (any address in it) and the guest frame number it
        // now stands for; only its own frames, whatever their type (Xen 4.17: -EINVAL
        // for a frame it cannot take a reference to).
        MMU_MACHPHYS_UPDATE => {
            let mfn = ptr >> 12;
            if ctx.host.frames.owner(mfn) != Some(ctx.domain.id) {
                return Err(Errno::EINVAL);
            }
            ctx.host.machine.m2p.set(&mut ctx.host.memory, mfn, request.val)
        }
        _ => Err(Errno::EINVAL),
    }
}

pub fn mmu_update<M: MachineMemory>(
    ctx: &mut HypercallContext<'_, M>,
    requests: GuestArray<MmuUpdate>,
    count: u32,
    done_out: GuestOut<u32>,
    foreign: u16,
) -> Result<i64, Errno> {
    ctx.check_foreign(foreign)?;
    ctx.batch(requests, count, done_out, foreign, normal_update)
}

fn pin<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, mfn: u64, page_type: PageType) -> Result<(), Errno> {
    if ctx.host.frames.owner(mfn) != Some(ctx.domain.id) || ctx.host.frames.is_pinned(mfn) {
        return Err(Errno::EINVAL);
    }
    // Any reason the frame cannot take the type is -EINVAL here (Xen 4.17's answer).
    ctx.tables().get_page_and_type(mfn, page_type).map_err(|_| Errno::EINVAL)?;
    ctx.host.frames.set_pinned(mfn, true);
    if page_type == PageType::L4 {
        let m2p = if ctx.domain.traps.m2p_strict() { M2pSlot::Map } else { M2pSlot::Blank };
        fill_hypervisor_slots(&mut ctx.host.memory, mfn, &ctx.host.hypervisor_l4, m2p)?;
    }
    Ok(())
}

/// Takes a base-pointer reference on L4 `mfn` (validating it if needed) and gives up
/// `old`'s.
fn switch_base<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, mfn: u64, old: u64, user: bool) -> Result<(), Errno> {
    if mfn != 0 {
        if ctx.host.frames.owner(mfn) != Some(ctx.domain.id) {
            return Err(Errno::EINVAL);
        }
        ctx.tables().get_page_and_type(mfn, PageType::L4)?;
        let m2p = match (user, ctx.domain.traps.m2p_strict()) {
            (false, false) => M2pSlot::Map,
            (true, true) => M2pSlot::Blank,
            _ => M2pSlot::Keep,
        };
        fill_hypervisor_slots(&mut ctx.host.memory, mfn, &ctx.host.hypervisor_l4, m2p)?;
    }
    if old != 0 {
        ctx.tables().put_page_and_type(old);
    }
    // The exit path loads the new base (a CR3 write flushes) if it is the active one.
    Ok(())
}

fn extended<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, op: MmuextOp) -> Result<(), Errno> {
    let mfn = op.arg1;
    match op.cmd {
        MMUEXT_PIN_L1_TABLE => pin(ctx, mfn, PageType::L1),
        MMUEXT_PIN_L2_TABLE => pin(ctx, mfn, PageType::L2),
        MMUEXT_PIN_L3_TABLE => pin(ctx, mfn, PageType::L3),
        MMUEXT_PIN_L4_TABLE => pin(ctx, mfn, PageType::L4),
        MMUEXT_UNPIN_TABLE => {
            if ctx.host.frames.owner(mfn) != Some(ctx.domain.id) || !ctx.host.frames.is_pinned(mfn) {
                return Err(Errno::EINVAL);
            }
            ctx.host.frames.set_pinned(mfn, false);
            ctx.tables().put_page_and_type(mfn);
            Ok(())
        }
        MMUEXT_NEW_BASEPTR => {
            if mfn == 0 {
                return Err(Errno::EINVAL);
            }
            let old = ctx.domain.l4_maddr() / 4096;
            switch_base(ctx, mfn, old, false)?;
            ctx.domain.traps.set_kernel_l4(mfn * 4096);
            // The LDT's pages are looked up again, through the new tables, on next use.
            let mut tables = PageTables { frames: &mut ctx.host.frames, memory: &mut ctx.host.memory, domain: ctx.domain.id };
            if ldt::release(&mut ctx.domain.traps.ldt, &mut tables) {
                ctx.domain.traps.exit.ldt_dirty = true;
            }
            Ok(())
        }
        MMUEXT_NEW_USER_BASEPTR => {
            let old = ctx.domain.traps.user_l4() / 4096;
            switch_base(ctx, mfn, old, true)?;
            ctx.domain.traps.set_user_l4(mfn * 4096);
            Ok(())
        }
        // One CPU: every vCPU set is this one. arg1 is the linear address to invalidate.
        MMUEXT_INVLPG_LOCAL | MMUEXT_INVLPG_MULTI | MMUEXT_INVLPG_ALL => {
            ctx.flush_page(op.arg1);
            Ok(())
        }
        MMUEXT_TLB_FLUSH_LOCAL | MMUEXT_TLB_FLUSH_MULTI | MMUEXT_TLB_FLUSH_ALL => {
            ctx.flush_all();
            Ok(())
        }
        // Guest memory is write-back RAM; there is nothing a guest's cache flush must reach.
        MMUEXT_FLUSH_CACHE => Ok(()),
        MMUEXT_CLEAR_PAGE => with_writable_frame(ctx, mfn, |ctx| {
            for offset in (0..PAGE).step_by(CHUNK.len()) {
                ctx.host.memory.write_bytes(mfn * PAGE + offset, &CHUNK).ok_or(Errno::EFAULT)?;
            }
            Ok(())
        }),
        MMUEXT_COPY_PAGE => copy_page(ctx, mfn, op.arg2),
        // arg1 is the LDT's linear address, arg2's low half the entry count (nr_ents).
        MMUEXT_SET_LDT => {
            let mut tables = PageTables { frames: &mut ctx.host.frames, memory: &mut ctx.host.memory, domain: ctx.domain.id };
            ldt::set_ldt(ctx.domain, &mut tables, op.arg1, op.arg2 as u32)
        }
        _ => Err(Errno::ENOSYS),
    }
}

const PAGE: u64 = 4096;
/// CLEAR_PAGE and COPY_PAGE go through the page in pieces this size (on the stack).
const CHUNK: [u8; 512] = [0; 512];

/// Runs `f` while holding a writable type reference on the caller's frame `mfn`, as a
/// writable mapping would: a page table, descriptor page or the M2P table cannot be
/// cleared or copied into (-EINVAL, as on Xen 4.17).
fn with_writable_frame<M: MachineMemory>(
    ctx: &mut HypercallContext<'_, M>,
    mfn: u64,
    f: impl FnOnce(&mut HypercallContext<'_, M>) -> Result<(), Errno>,
) -> Result<(), Errno> {
    if ctx.host.frames.owner(mfn) != Some(ctx.domain.id) {
        return Err(Errno::EINVAL);
    }
    ctx.tables().get_page_and_type(mfn, PageType::Writable).map_err(|_| Errno::EINVAL)?;
    let result = f(ctx);
    ctx.tables().put_page_and_type(mfn);
    result
}

/// The source may be any frame of the caller's, whatever its type: it is only read.
fn copy_page<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, dst: u64, src: u64) -> Result<(), Errno> {
    if ctx.host.frames.owner(src) != Some(ctx.domain.id) {
        return Err(Errno::EINVAL);
    }
    with_writable_frame(ctx, dst, |ctx| {
        let mut chunk = CHUNK;
        for offset in (0..PAGE).step_by(chunk.len()) {
            ctx.host.memory.read_bytes(src * PAGE + offset, &mut chunk).ok_or(Errno::EFAULT)?;
            ctx.host.memory.write_bytes(dst * PAGE + offset, &chunk).ok_or(Errno::EFAULT)?;
        }
        Ok(())
    })
}

pub fn mmuext_op<M: MachineMemory>(
    ctx: &mut HypercallContext<'_, M>,
    ops: GuestArray<MmuextOp>,
    count: u32,
    done_out: GuestOut<u32>,
    foreign: u16,
) -> Result<i64, Errno> {
    ctx.check_foreign(foreign)?;
    ctx.batch(ops, count, done_out, foreign, extended)
}

/// The L1 table and index that map `va` in the kernel's address space.
fn l1_slot<M: MachineMemory>(ctx: &HypercallContext<'_, M>, va: u64) -> Result<(u64, usize), Errno> {
    if !is_guest_range(va, va.saturating_add(1)) {
        return Err(Errno::EINVAL);
    }
    let mut table = ctx.domain.l4_maddr() / 4096;
    for shift in [39u32, 30, 21] {
        let entry = ctx.host.memory.read_u64(table * 4096 + ((va >> shift) & 511) * 8).ok_or(Errno::EFAULT)?;
        if entry & PTE_PRESENT == 0 || entry & PTE_PS_OR_PAT != 0 {
            return Err(Errno::EINVAL);
        }
        table = (entry & PTE_ADDRESS) >> 12;
    }
    Ok((table, ((va >> 12) & 511) as usize))
}

/// `flags` choose the flush (xen.h UVMF_*): none, the whole TLB, or just `va`; flush
/// type 3 is not refused (seen on Xen 4.17) and flushes everything here.
pub fn update_va_mapping<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, va: u64, pte: u64, flags: u64) -> Result<i64, Errno> {
    let (table, index) = l1_slot(ctx, va)?;
    if table_level(ctx, table)? != 1 {
        return Err(Errno::EINVAL);
    }
    ctx.tables().update_entry(table, 1, index, pte)?;
    match flags & UVMF_FLUSHTYPE_MASK {
        UVMF_NONE => {}
        UVMF_INVLPG => ctx.flush_page(va),
        _ => ctx.flush_all(),
    }
    Ok(0)
}

#[cfg(test)]
mod tests;
