//! Validating guest page tables (PV direct paging): a frame becomes a page table of
//! level N only if every entry in it is allowed, and each entry holds references on
//! what it maps for as long as it is there. The rules (semantics of Xen's
//! arch/x86/mm.c, in our own words):
//! - every frame an entry names belongs to the domain;
//! - an L1 entry with RW takes a Writable type reference on its frame, so a frame
//!   mapped writable can never become a page table and a page table never mapped
//!   writable; a read-only L1 entry takes a plain reference;
//! - an L2/L3/L4 entry takes a type reference of the next level down (no level
//!   confusion, no linear page tables), and large pages (PS) are refused: no
//!   superpages are offered;
//! - reserved bits and flags a guest may not use are refused;
//! - the hypervisor's L4 slots (256-271) are never the guest's: validation ignores
//!   them and [`fill_hypervisor_slots`] writes the hypervisor's own entries there.

use super::frame_table::{FrameTable, PageType, TypeDrop, TypeRef};
use super::guest_walk::MachineMemory;
use crate::domain::DomainId;
use core::ops::Range;
use hypercall_abi::Errno;

pub const PTE_PRESENT: u64 = 1 << 0;
pub const PTE_RW: u64 = 1 << 1;
pub const PTE_USER: u64 = 1 << 2;
pub const PTE_PWT: u64 = 1 << 3;
pub const PTE_PCD: u64 = 1 << 4;
pub const PTE_ACCESSED: u64 = 1 << 5;
pub const PTE_DIRTY: u64 = 1 << 6;
/// PS in L2/L3 entries (a large page), PAT in L1 entries.
pub const PTE_PS_OR_PAT: u64 = 1 << 7;
pub const PTE_GLOBAL: u64 = 1 << 8;
pub const PTE_NX: u64 = 1 << 63;
pub const PTE_ADDRESS: u64 = 0x000f_ffff_ffff_f000;
/// Bits 9-11: free for the guest's own use.
const PTE_AVAILABLE: u64 = 7 << 9;
/// Bits 52-58 of an L1 entry: ignored by the CPU, the guest's to use (Xen accepts them).
const PTE_HIGH_AVAILABLE: u64 = 0x7f << 52;

/// The L4 slots that belong to the hypervisor in every address space
/// (0xFFFF800000000000-0xFFFF880000000000, arch-x86/xen-x86_64.h).
pub const HYPERVISOR_L4_SLOTS: Range<usize> = 256..272;

/// Flags an entry of each level may carry (everything else is refused).
fn allowed_flags(level: u8) -> u64 {
    let common = PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED | PTE_AVAILABLE | PTE_NX;
    match level {
        1 => common | PTE_PWT | PTE_PCD | PTE_DIRTY | PTE_PS_OR_PAT | PTE_GLOBAL | PTE_HIGH_AVAILABLE,
        _ => common | PTE_PWT | PTE_PCD,
    }
}

/// Everything validation needs: the frame table, machine memory, and the domain whose
/// tables these are.
pub struct PageTables<'a, M: MachineMemory> {
    pub frames: &'a mut FrameTable,
    pub memory: &'a mut M,
    pub domain: DomainId,
}

fn entry_target(entry: u64) -> u64 {
    (entry & PTE_ADDRESS) >> 12
}

impl<M: MachineMemory> PageTables<'_, M> {
    /// Checks an entry of a level-`level` table and takes the references it needs.
    pub fn get_entry(&mut self, entry: u64, level: u8) -> Result<(), Errno> {
        if entry & PTE_PRESENT == 0 {
            return Ok(());
        }
        if entry & !(PTE_ADDRESS | allowed_flags(level)) != 0 {
            return Err(Errno::EINVAL);
        }
        let target = entry_target(entry);
        if level == 1 {
            // A frame beyond RAM is I/O memory, which this domain may not map (Xen:
            // -EPERM); a RAM frame of someone else's is -EINVAL.
            if target >= self.frames.len() {
                return Err(Errno::EPERM);
            }
            if self.frames.is_hypervisor_owned(target) {
                return Err(Errno::EBUSY);
            }
            self.frames.get_ref(target, self.domain)?;
            if entry & PTE_RW != 0 {
                if let Err(e) = self.frames.get_type(target, PageType::Writable) {
                    self.frames.put_ref(target);
                    return Err(e);
                }
            }
            return Ok(());
        }
        // A frame that cannot take the lower table's type: -EINVAL at these levels, where
        // an L1 entry's writable frame is -EBUSY (both seen on Xen 4.17, `mmu-attack`).
        let below = PageType::table(level - 1).ok_or(Errno::EINVAL)?;
        self.get_page_and_type(target, below).map_err(|e| if e == Errno::EBUSY { Errno::EINVAL } else { e })
    }

    /// Releases what [`get_entry`](Self::get_entry) took for a valid entry.
    pub fn put_entry(&mut self, entry: u64, level: u8) {
        if entry & PTE_PRESENT == 0 {
            return;
        }
        self.frames.note_entry_dropped();
        let target = entry_target(entry);
        if level == 1 {
            if entry & PTE_RW != 0 {
                let _ = self.frames.put_type(target);
            }
            self.frames.put_ref(target);
            return;
        }
        self.put_page_and_type(target);
    }

    /// A reference plus a type reference, validating the frame's contents when it
    /// takes a page-table type for the first time.
    pub fn get_page_and_type(&mut self, mfn: u64, page_type: PageType) -> Result<(), Errno> {
        self.frames.get_ref(mfn, self.domain)?;
        match self.frames.get_type(mfn, page_type) {
            Ok(TypeRef::Held) => Ok(()),
            Ok(TypeRef::New) => {
                let validated = match page_type.level() {
                    Some(level) => self.validate(mfn, level),
                    None => super::descriptors::validate_descriptor_frame(&mut *self.memory, mfn),
                };
                if let Err(e) = validated {
                    self.frames.drop_new_type(mfn);
                    self.frames.put_ref(mfn);
                    return Err(e);
                }
                Ok(())
            }
            Err(e) => {
                self.frames.put_ref(mfn);
                Err(e)
            }
        }
    }

    pub fn put_page_and_type(&mut self, mfn: u64) {
        if let TypeDrop::Last(old) = self.frames.put_type(mfn) {
            if let Some(level) = old.level() {
                self.devalidate(mfn, level);
            }
        }
        self.frames.put_ref(mfn);
    }

    fn read_entry(&self, mfn: u64, index: usize) -> Result<u64, Errno> {
        self.memory.read_u64(mfn * 4096 + index as u64 * 8).ok_or(Errno::EFAULT)
    }

    fn guest_slots(level: u8) -> impl Iterator<Item = usize> {
        (0..512).filter(move |i| level != 4 || !HYPERVISOR_L4_SLOTS.contains(i))
    }

    /// Takes the references of every entry of table `mfn`; on failure, gives back the
    /// ones already taken.
    fn validate(&mut self, mfn: u64, level: u8) -> Result<(), Errno> {
        for index in Self::guest_slots(level) {
            let entry = self.read_entry(mfn, index)?;
            if let Err(e) = self.get_entry(entry, level) {
                for done in Self::guest_slots(level).take_while(|&i| i < index) {
                    if let Ok(entry) = self.read_entry(mfn, done) {
                        self.put_entry(entry, level);
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn devalidate(&mut self, mfn: u64, level: u8) {
        for index in Self::guest_slots(level) {
            if let Ok(entry) = self.read_entry(mfn, index) {
                self.put_entry(entry, level);
            }
        }
    }

    /// Replaces entry `index` of the level-`level` table `table` (which the domain holds
    /// as that type) with `new`, moving the references from the old entry to the new.
    pub fn update_entry(&mut self, table: u64, level: u8, index: usize, new: u64) -> Result<(), Errno> {
        if level == 4 && HYPERVISOR_L4_SLOTS.contains(&index) {
            return Err(Errno::EINVAL);
        }
        let old = self.read_entry(table, index)?;
        self.get_entry(new, level)?;
        if self.memory.write_bytes(table * 4096 + index as u64 * 8, &new.to_le_bytes()).is_none() {
            self.put_entry(new, level);
            return Err(Errno::EFAULT);
        }
        self.put_entry(old, level);
        Ok(())
    }
}

/// What an L4's M2P slot (256, the read-only machine-to-phys table) gets when the
/// hypervisor's slots are filled. Xen's rules (xen.h VMASST_TYPE_m2p_strict): without
/// the assist an L4 is created with the slot blank and gets the table when used as a
/// kernel base pointer; with it, an L4 is created with the table and loses it when used
/// as a user base pointer. So guest user mode never reads the M2P unless it runs on an
/// L4 that also served as a kernel one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum M2pSlot {
    Map,
    Blank,
    /// As it is, if it holds the table (the slot is the hypervisor's: anything else
    /// there is cleared).
    Keep,
}

/// The M2P table's L4 slot (MACH2PHYS_VIRT_START, arch-x86/xen-x86_64.h).
pub const M2P_L4_SLOT: usize = super::m2p::L4_SLOT;

/// Writes the hypervisor's L4 entries into a guest L4 (its own slots are never valid
/// guest entries, so nothing is overwritten that the guest owns).
pub fn fill_hypervisor_slots(memory: &mut impl MachineMemory, l4_mfn: u64, hypervisor_l4: &[u64; 512], m2p: M2pSlot) -> Result<(), Errno> {
    let keep = memory.read_u64(l4_mfn * 4096 + M2P_L4_SLOT as u64 * 8) == Some(hypervisor_l4[M2P_L4_SLOT]);
    for slot in HYPERVISOR_L4_SLOTS {
        let mapped = match m2p {
            M2pSlot::Map => true,
            M2pSlot::Blank => false,
            M2pSlot::Keep => keep,
        };
        let value = if slot == M2P_L4_SLOT && !mapped { 0 } else { hypervisor_l4.get(slot).copied().unwrap_or(0) };
        memory.write_bytes(l4_mfn * 4096 + slot as u64 * 8, &value.to_le_bytes()).ok_or(Errno::EFAULT)?;
    }
    Ok(())
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
