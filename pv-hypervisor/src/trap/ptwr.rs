//! The writable page-table assist (xen.h VMASST_TYPE_writable_pagetables): a guest
//! kernel may write its own L1 page-table entries with plain stores. Xen 4.17 does this
//! whether or not the guest turned the assist on (seen by the `ptwr` check, which turns
//! it off and still gets its store emulated), and so do we.
//! Its L1 pages are mapped read-only (a page table is never mapped writable), so the
//! store faults; the hypervisor decodes it, checks the new entry exactly as
//! MMU_NORMAL_PT_UPDATE would, writes it and resumes after the instruction. Anything it
//! cannot take (not an L1 page of the guest, an unaligned or partial store, an entry
//! the rules refuse) stays the guest's #PF.
//!
//! The scope is Xen's (semantics read from arch/x86/pv/ro-page-fault.c, not its code):
//! L1 tables only; naturally aligned `mov`, `xchg` and `cmpxchg` of 1, 2, 4 or 8 bytes
//! within the page that faulted, a store smaller than an entry replacing its part of it.

use super::decode::{decode_store, Gpr, Store, StoreKind};
use super::emulate::{effective_address, gpr};
use super::entry::fetch_instruction;
use crate::domain::vcpu::GuestRegisters;
use crate::domain::Domain;
use crate::mm::frame_table::{FrameTable, PageType};
use crate::mm::guest_walk::{translate, Access, MachineMemory};
use crate::mm::pagetable::PageTables;

/// #PF error-code bits (Intel SDM Vol. 3A, 4.7).
const PF_PRESENT: u64 = 1 << 0;
const PF_WRITE: u64 = 1 << 1;
const PF_RESERVED: u64 = 1 << 3;
const PF_FETCH: u64 = 1 << 4;

const RFLAGS_ARITHMETIC: u64 = 0x8d5; // CF, PF, AF, ZF, SF, OF

/// Emulates the store that raised this #PF if it is a page-table write the assist
/// covers. True: done (the entry is written, rip is past the store); false: the guest
/// takes its #PF. As with mmu_update, flushing the old entry is the guest's business.
pub fn emulate_page_table_write<M: MachineMemory>(
    domain: &mut Domain,
    memory: &mut M,
    frames: &mut FrameTable,
    regs: &mut GuestRegisters,
    cr2: u64,
    error_code: u64,
) -> bool {
    if error_code & (PF_PRESENT | PF_WRITE | PF_RESERVED | PF_FETCH) != PF_PRESENT | PF_WRITE {
        return false;
    }
    let l4 = domain.active_l4();
    let Ok(maddr) = translate(&*memory, l4, cr2, Access::Read) else { return false };
    let table = maddr >> 12;
    if frames.owner(table) != Some(domain.id) || frames.page_type(table) != PageType::L1 {
        return false;
    }
    let (bytes, len, _) = fetch_instruction(&*memory, l4, regs.rip);
    let Ok(Some(store)) = decode_store(&bytes[..len]) else { return false };
    let next_rip = regs.rip.wrapping_add(store.length as u64);
    let address = effective_address(regs, &domain.traps, &store.destination, next_rip);
    let size = u64::from(store.size);
    if !address.is_multiple_of(size) || (address ^ cr2) & !0xfff != 0 {
        return false;
    }
    let index = ((address & 0xfff) / 8) as usize;
    let Some(old) = memory.read_u64((table << 12) + index as u64 * 8) else { return false };
    let written = Written { rex: store.rex, ..Written::new(old, address, store.size) };
    let mut tables = PageTables { frames, memory, domain: domain.id };
    match apply(&store, &written, regs, &mut tables, table, index) {
        Some(()) => {
            regs.rip = next_rip;
            true
        }
        None => false,
    }
}

/// Which part of the 8-byte entry a store writes.
struct Written {
    old: u64,
    /// Where the store's bits go: 8 times the offset in the entry.
    shift: u32,
    /// The store's width, as a mask of its bits.
    mask: u64,
    rex: bool,
}

impl Written {
    fn new(old: u64, address: u64, size: u8) -> Self {
        let mask = if size == 8 { u64::MAX } else { (1u64 << (u32::from(size) * 8)) - 1 };
        Written { old, shift: ((address & 7) * 8) as u32, mask, rex: false }
    }

    /// The part the store replaces, as the instruction sees it (zero-extended).
    fn current(&self) -> u64 {
        (self.old >> self.shift) & self.mask
    }

    /// The whole entry after storing `value` (truncated to the store's size).
    fn entry_with(&self, value: u64) -> u64 {
        (self.old & !(self.mask << self.shift)) | ((value & self.mask) << self.shift)
    }

    /// A register operand of the store's width: without REX, byte registers 4-7 are
    /// ah, ch, dh and bh (bits 8-15 of rax, rcx, rdx, rbx).
    fn register(&self, source: Gpr) -> (Gpr, u32) {
        let index = source as u8;
        if self.mask == 0xff && !self.rex && (4..8).contains(&index) {
            (Gpr::from_index(index - 4).unwrap_or(Gpr::Rax), 8)
        } else {
            (source, 0)
        }
    }

    fn read(&self, regs: &mut GuestRegisters, source: Gpr) -> u64 {
        let (gpr_, shift) = self.register(source);
        (*gpr(regs, gpr_) >> shift) & self.mask
    }

    /// Writes `value` into a register operand as the CPU does: a 32-bit write clears
    /// the upper half, 8- and 16-bit writes keep the rest.
    fn write(&self, regs: &mut GuestRegisters, target: Gpr, value: u64) {
        let (gpr_, shift) = self.register(target);
        let slot = gpr(regs, gpr_);
        *slot = match self.mask {
            u64::MAX | 0xffff_ffff => value & self.mask,
            mask => (*slot & !(mask << shift)) | ((value & mask) << shift),
        };
    }
}

fn apply<M: MachineMemory>(
    store: &Store,
    written: &Written,
    regs: &mut GuestRegisters,
    tables: &mut PageTables<'_, M>,
    table: u64,
    index: usize,
) -> Option<()> {
    let new = match store.kind {
        StoreKind::MovRegister(source) | StoreKind::Xchg(source) => written.read(regs, source),
        StoreKind::MovImmediate(value) => value as u64,
        StoreKind::Cmpxchg(source) => {
            if written.read(regs, Gpr::Rax) != written.current() {
                // The accumulator gets what memory holds; memory is not written.
                set_compare_flags(regs, written);
                written.write(regs, Gpr::Rax, written.current());
                return Some(());
            }
            written.read(regs, source)
        }
    };
    tables.update_entry(table, 1, index, written.entry_with(new)).ok()?;
    match store.kind {
        StoreKind::Xchg(source) => written.write(regs, source, written.current()),
        StoreKind::Cmpxchg(_) => set_compare_flags(regs, written),
        StoreKind::MovRegister(_) | StoreKind::MovImmediate(_) => {}
    }
    Some(())
}

/// RFLAGS' arithmetic bits as `cmp accumulator, memory` leaves them, as cmpxchg does.
fn set_compare_flags(regs: &mut GuestRegisters, written: &Written) {
    let flags = compare_flags(written.read(regs, Gpr::Rax), written.current(), written.mask);
    regs.rflags = (regs.rflags & !RFLAGS_ARITHMETIC) | flags;
}

/// The arithmetic flags of `expected - current` in the operand's width.
fn compare_flags(expected: u64, current: u64, mask: u64) -> u64 {
    let difference = expected.wrapping_sub(current) & mask;
    let sign = (mask >> 1) + 1;
    let mut flags = 0;
    if expected < current {
        flags |= 1 << 0; // CF
    }
    if (difference as u8).count_ones().is_multiple_of(2) {
        flags |= 1 << 2; // PF
    }
    if (expected ^ current ^ difference) & 0x10 != 0 {
        flags |= 1 << 4; // AF
    }
    if difference == 0 {
        flags |= 1 << 6; // ZF
    }
    if difference & sign != 0 {
        flags |= 1 << 7; // SF
    }
    if (expected ^ current) & (expected ^ difference) & sign != 0 {
        flags |= 1 << 11; // OF
    }
    flags
}

#[cfg(test)]
mod tests;
