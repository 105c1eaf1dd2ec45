//! The frame table: for every machine frame, who owns it, what it is used as (its
//! type), and how many references hold it. This is the bookkeeping behind PV direct
//! paging (Xen's `struct page_info`): a frame is a page table only while nothing maps
//! it writable, is mapped writable only while it is no page table, and is never freed
//! while referenced. Pure logic; `pagetable` adds the validation that a type change to
//! a page-table type needs.

use crate::domain::DomainId;
use alloc::vec;
use alloc::vec::Vec;
use hypercall_abi::Errno;

/// What a frame is used as. A type holds while its type count is non-zero; it can
/// change only when the count is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    None = 0,
    /// Mapped writable somewhere (or shared with the hypervisor for writing).
    Writable = 1,
    L1 = 2,
    L2 = 3,
    L3 = 4,
    L4 = 5,
    /// Holds descriptors of a guest GDT/LDT.
    SegmentDescriptors = 6,
}

impl PageType {
    pub fn is_page_table(self) -> bool {
        matches!(self, PageType::L1 | PageType::L2 | PageType::L3 | PageType::L4)
    }

    /// The page-table type of level `level` (1-4).
    pub fn table(level: u8) -> Option<PageType> {
        Some(match level {
            1 => PageType::L1,
            2 => PageType::L2,
            3 => PageType::L3,
            4 => PageType::L4,
            _ => return None,
        })
    }

    pub fn level(self) -> Option<u8> {
        Some(match self {
            PageType::L1 => 1,
            PageType::L2 => 2,
            PageType::L3 => 3,
            PageType::L4 => 4,
            _ => return None,
        })
    }

    fn from_u8(v: u8) -> PageType {
        match v {
            1 => PageType::Writable,
            2 => PageType::L1,
            3 => PageType::L2,
            4 => PageType::L3,
            5 => PageType::L4,
            6 => PageType::SegmentDescriptors,
            _ => PageType::None,
        }
    }
}

const NO_OWNER: u16 = u16::MAX;
/// The hypervisor's own frames whose numbers guests learn (the M2P table's, from
/// machphys_mfn_list): never a domain's, never freed, never typed, never mapped.
const HYPERVISOR_OWNED: u16 = u16::MAX - 1;
const PINNED: u8 = 1;
/// The owner gave the frame back (decrease_reservation) while something still
/// referenced it: it is freed when the last reference goes (Xen's cleared
/// PGC_allocated).
const GIVEN_BACK: u8 = 2;

/// 12 bytes per frame: 1.5 MiB for 512 MiB of RAM.
#[derive(Clone, Copy, Debug)]
struct Frame {
    owner: u16,
    page_type: u8,
    flags: u8,
    type_count: u32,
    ref_count: u32,
}

const FREE: Frame = Frame { owner: NO_OWNER, page_type: 0, flags: 0, type_count: 0, ref_count: 0 };

/// The result of taking a type reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeRef {
    /// The frame already had this type: nothing to validate.
    Held,
    /// The frame just took this type (count 0 -> 1): the caller must validate its
    /// contents, and call [`FrameTable::drop_new_type`] if that fails.
    New,
}

/// What dropping a type reference left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeDrop {
    /// Others still hold the type.
    StillHeld,
    /// That was the last: a page table's entries must now release their references.
    Last(PageType),
}

pub struct FrameTable {
    frames: Vec<Frame>,
    tlb: TlbState,
    /// Frames given back whose last reference went: to be freed by the owner's code
    /// (domain::frames::free_given_back), which has the free pool and the M2P table.
    unused_given_back: Vec<u64>,
}

/// Whether the CPU may still translate through mappings the table no longer counts.
///
/// A guest's page-table update does not flush the TLB (as on Xen, the guest flushes
/// for its own sake), so after an entry is dropped the CPU may keep using it until the
/// next flush. That is harmless while the frame it reached keeps the use it had; it is
/// not once the frame changes use: a frame that was mapped writable becoming a page
/// table or descriptor page, a page table becoming writable (paging-structure caches
/// still walk through it), or a frame leaving the domain. Each of those, while stale
/// translations may exist, asks for a flush before the guest runs again. One flag for
/// all frames: coarser than Xen's per-page TLB clock, and enough for one CPU.
#[derive(Clone, Copy, Debug, Default)]
struct TlbState {
    /// An entry was dropped since the last flush.
    may_hold_dropped: bool,
    /// A frame changed use while `may_hold_dropped`: flush before the guest runs.
    flush_before_guest: bool,
}

impl FrameTable {
    /// A table for machine frames `0..nr_frames`, all unowned.
    pub fn new(nr_frames: u64) -> FrameTable {
        FrameTable { frames: vec![FREE; nr_frames as usize], tlb: TlbState::default(), unused_given_back: Vec::new() }
    }

    /// As `new`, but `None` when the heap cannot hold it (boot reports that).
    pub fn try_new(nr_frames: u64) -> Option<FrameTable> {
        let mut frames = alloc::vec::Vec::new();
        frames.try_reserve_exact(usize::try_from(nr_frames).ok()?).ok()?;
        frames.resize(nr_frames as usize, FREE);
        Some(FrameTable { frames, tlb: TlbState::default(), unused_given_back: Vec::new() })
    }

    pub fn len(&self) -> u64 {
        self.frames.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn frame(&self, mfn: u64) -> Option<&Frame> {
        self.frames.get(usize::try_from(mfn).ok()?)
    }

    fn frame_mut(&mut self, mfn: u64) -> Option<&mut Frame> {
        self.frames.get_mut(usize::try_from(mfn).ok()?)
    }

    /// Gives a free frame to `owner` (domain building, populate_physmap).
    pub fn assign(&mut self, mfn: u64, owner: DomainId) -> Result<(), Errno> {
        let frame = self.frame_mut(mfn).ok_or(Errno::EINVAL)?;
        if frame.owner != NO_OWNER {
            return Err(Errno::EBUSY);
        }
        *frame = Frame { owner, ..FREE };
        Ok(())
    }

    /// Makes a free frame the hypervisor's own: a guest naming it in a page-table entry
    /// gets -EBUSY, as on Xen 4.17 for a frame someone else owns (seen for the M2P
    /// table's frames, read-only or writable).
    pub fn own_for_hypervisor(&mut self, mfn: u64) -> Result<(), Errno> {
        self.assign(mfn, HYPERVISOR_OWNED)
    }

    pub fn is_hypervisor_owned(&self, mfn: u64) -> bool {
        self.frame(mfn).is_some_and(|f| f.owner == HYPERVISOR_OWNED)
    }

    /// Takes a frame back from its owner. Refused while anything references it.
    pub fn release(&mut self, mfn: u64) -> Result<(), Errno> {
        let stale = self.tlb.may_hold_dropped;
        let frame = self.frame_mut(mfn).ok_or(Errno::EINVAL)?;
        if frame.ref_count != 0 || frame.type_count != 0 {
            return Err(Errno::EBUSY);
        }
        *frame = FREE;
        self.tlb.flush_before_guest |= stale;
        Ok(())
    }

    /// A present page-table entry was dropped (its references given back): the CPU may
    /// keep translating through it until the next flush.
    pub fn note_entry_dropped(&mut self) {
        self.tlb.may_hold_dropped = true;
    }

    /// Whether a frame changed use while stale translations may reach it: the TLB must
    /// be flushed before the guest runs again.
    pub fn flush_needed(&self) -> bool {
        self.tlb.flush_before_guest
    }

    /// The whole TLB was flushed (or CR3 reloaded): no stale translation is left.
    pub fn note_tlb_flushed(&mut self) {
        self.tlb = TlbState::default();
    }

    /// Whether `domain` owns `mfn` (the guest-memory check on every access: one load).
    #[inline]
    pub fn is_owned_by(&self, mfn: u64, domain: DomainId) -> bool {
        self.frame(mfn).is_some_and(|f| f.owner == domain)
    }

    /// The domain that owns `mfn` (None for a free frame or one of the hypervisor's).
    pub fn owner(&self, mfn: u64) -> Option<DomainId> {
        self.frame(mfn).map(|f| f.owner).filter(|&o| o != NO_OWNER && o != HYPERVISOR_OWNED)
    }

    pub fn page_type(&self, mfn: u64) -> PageType {
        self.frame(mfn).filter(|f| f.type_count > 0).map_or(PageType::None, |f| PageType::from_u8(f.page_type))
    }

    pub fn type_count(&self, mfn: u64) -> u32 {
        self.frame(mfn).map_or(0, |f| f.type_count)
    }

    pub fn ref_count(&self, mfn: u64) -> u32 {
        self.frame(mfn).map_or(0, |f| f.ref_count)
    }

    pub fn is_pinned(&self, mfn: u64) -> bool {
        self.frame(mfn).is_some_and(|f| f.flags & PINNED != 0)
    }

    /// A general reference: `domain` may map the frame (read-only) or name it.
    pub fn get_ref(&mut self, mfn: u64, domain: DomainId) -> Result<(), Errno> {
        let frame = self.frame_mut(mfn).filter(|f| f.owner == domain).ok_or(Errno::EINVAL)?;
        frame.ref_count = frame.ref_count.checked_add(1).ok_or(Errno::EBUSY)?;
        Ok(())
    }

    pub fn put_ref(&mut self, mfn: u64) {
        if let Some(frame) = self.frame_mut(mfn) {
            debug_assert!(frame.ref_count > 0, "reference count underflow on {mfn:#x}");
            frame.ref_count = frame.ref_count.saturating_sub(1);
            // If the heap cannot hold the note, the frame stays the owner's until its
            // teardown: a frame kept, never a hypervisor panic.
            if frame.ref_count == 0 && frame.flags & GIVEN_BACK != 0 && self.unused_given_back.try_reserve(1).is_ok() {
                self.unused_given_back.push(mfn);
            }
        }
    }

    /// The owner gives `mfn` back. Unreferenced, it is released at once (`Ok(true)`);
    /// otherwise it is marked and freed when its last reference goes (`Ok(false)`; see
    /// [`take_unused_given_back`](Self::take_unused_given_back)). A frame not the
    /// owner's, or given back already, is refused.
    pub fn give_back(&mut self, mfn: u64, owner: DomainId) -> Result<bool, Errno> {
        let frame = self.frame_mut(mfn).filter(|f| f.owner == owner && f.flags & GIVEN_BACK == 0).ok_or(Errno::EINVAL)?;
        if frame.ref_count == 0 && frame.type_count == 0 {
            self.release(mfn)?;
            return Ok(true);
        }
        frame.flags |= GIVEN_BACK;
        Ok(false)
    }

    pub fn is_given_back(&self, mfn: u64) -> bool {
        self.frame(mfn).is_some_and(|f| f.flags & GIVEN_BACK != 0)
    }

    /// Nonzero while the exit path has work here: given-back frames to free or a flush
    /// due. A word rather than a bool, so the hypercall path ORs it with its own into
    /// one test (the compiler branches on each bool of an `|`).
    #[inline(always)]
    pub fn exit_work(&self) -> u64 {
        self.unused_given_back.len() as u64 | u64::from(self.tlb.flush_before_guest)
    }

    /// Whether a given-back frame lost its last reference since the last call to
    /// [`take_unused_given_back`](Self::take_unused_given_back).
    pub fn has_unused_given_back(&self) -> bool {
        !self.unused_given_back.is_empty()
    }

    /// A given-back frame with no reference left, released now (its owner, for the
    /// caller's accounting, with it). Frames that took a reference again meanwhile
    /// are skipped.
    pub fn take_unused_given_back(&mut self) -> Option<(u64, DomainId)> {
        while let Some(mfn) = self.unused_given_back.pop() {
            let Some(frame) = self.frame(mfn) else { continue };
            let owner = frame.owner;
            if frame.flags & GIVEN_BACK != 0 && frame.ref_count == 0 && frame.type_count == 0 && self.release(mfn).is_ok() {
                return Some((mfn, owner));
            }
        }
        // Nothing pending: the list's memory goes back too (the heap leak check counts it).
        self.unused_given_back = Vec::new();
        None
    }

    /// A type reference (the caller holds a general reference). Fails with -EBUSY when
    /// the frame is in use as another type.
    pub fn get_type(&mut self, mfn: u64, wanted: PageType) -> Result<TypeRef, Errno> {
        let stale = self.tlb.may_hold_dropped;
        let frame = self.frame_mut(mfn).ok_or(Errno::EINVAL)?;
        if frame.type_count == 0 {
            // The type it had last (kept while the count is 0): a different one now is
            // a change of use, unless it never had one (then nothing mapped it writable
            // or walked it as a table).
            let last = PageType::from_u8(frame.page_type);
            let changed_use = last != PageType::None && last != wanted;
            frame.page_type = wanted as u8;
            frame.type_count = 1;
            let needs_validation = wanted.is_page_table() || wanted == PageType::SegmentDescriptors;
            self.tlb.flush_before_guest |= stale && changed_use;
            return Ok(if needs_validation { TypeRef::New } else { TypeRef::Held });
        }
        if PageType::from_u8(frame.page_type) != wanted {
            return Err(Errno::EBUSY);
        }
        frame.type_count = frame.type_count.checked_add(1).ok_or(Errno::EBUSY)?;
        Ok(TypeRef::Held)
    }

    /// Undoes a [`TypeRef::New`] whose validation failed.
    pub fn drop_new_type(&mut self, mfn: u64) {
        if let Some(frame) = self.frame_mut(mfn) {
            frame.type_count = frame.type_count.saturating_sub(1);
        }
    }

    pub fn put_type(&mut self, mfn: u64) -> TypeDrop {
        let Some(frame) = self.frame_mut(mfn) else { return TypeDrop::StillHeld };
        debug_assert!(frame.type_count > 0, "type count underflow on {mfn:#x}");
        frame.type_count = frame.type_count.saturating_sub(1);
        if frame.type_count > 0 {
            return TypeDrop::StillHeld;
        }
        // page_type stays: get_type compares the next type with it.
        frame.flags &= !PINNED;
        TypeDrop::Last(PageType::from_u8(frame.page_type))
    }

    pub fn set_pinned(&mut self, mfn: u64, pinned: bool) {
        if let Some(frame) = self.frame_mut(mfn) {
            if pinned {
                frame.flags |= PINNED;
            } else {
                frame.flags &= !PINNED;
            }
        }
    }

    /// Every frame `owner` holds, for teardown and leak checks.
    pub fn frames_of(&self, owner: DomainId) -> impl Iterator<Item = u64> + '_ {
        self.frames.iter().enumerate().filter(move |(_, f)| f.owner == owner).map(|(mfn, _)| mfn as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_and_references() {
        let mut t = FrameTable::new(16);
        assert_eq!(t.get_ref(3, 0), Err(Errno::EINVAL), "unowned");
        t.assign(3, 7).unwrap();
        assert_eq!(t.assign(3, 8), Err(Errno::EBUSY));
        assert_eq!(t.get_ref(3, 8), Err(Errno::EINVAL), "another domain's");
        assert_eq!(t.get_ref(99, 7), Err(Errno::EINVAL), "beyond RAM");
        t.get_ref(3, 7).unwrap();
        assert_eq!(t.release(3), Err(Errno::EBUSY), "referenced");
        t.put_ref(3);
        t.release(3).unwrap();
        assert_eq!(t.owner(3), None);
    }

    #[test]
    fn types_change_only_at_count_zero() {
        let mut t = FrameTable::new(4);
        t.assign(1, 0).unwrap();
        assert_eq!(t.get_type(1, PageType::Writable), Ok(TypeRef::Held));
        assert_eq!(t.get_type(1, PageType::L1), Err(Errno::EBUSY), "mapped writable: cannot be a page table");
        assert_eq!(t.put_type(1), TypeDrop::Last(PageType::Writable));
        assert_eq!(t.get_type(1, PageType::L1), Ok(TypeRef::New));
        assert_eq!(t.get_type(1, PageType::L1), Ok(TypeRef::Held));
        assert_eq!(t.get_type(1, PageType::Writable), Err(Errno::EBUSY), "a page table is never writable");
        assert_eq!(t.get_type(1, PageType::L2), Err(Errno::EBUSY), "no level confusion");
        t.set_pinned(1, true);
        assert!(t.is_pinned(1));
        assert_eq!(t.put_type(1), TypeDrop::StillHeld);
        assert_eq!(t.put_type(1), TypeDrop::Last(PageType::L1));
        assert!(!t.is_pinned(1));
        assert_eq!(t.page_type(1), PageType::None);
        assert_eq!(t.get_type(1, PageType::L3), Ok(TypeRef::New));
        t.drop_new_type(1);
        assert_eq!(t.page_type(1), PageType::None);
    }

    #[test]
    fn a_change_of_use_after_a_dropped_entry_needs_a_flush() {
        let mut t = FrameTable::new(8);
        for mfn in 0..8 {
            t.assign(mfn, 0).unwrap();
        }
        // Nothing dropped yet: a fresh frame may take any type.
        assert_eq!(t.get_type(1, PageType::L1), Ok(TypeRef::New));
        assert!(!t.flush_needed());
        let _ = t.put_type(1);
        // Writable, an entry dropped, then the same use again: no flush.
        t.get_type(2, PageType::Writable).unwrap();
        let _ = t.put_type(2);
        t.note_entry_dropped();
        t.get_type(2, PageType::Writable).unwrap();
        assert!(!t.flush_needed());
        let _ = t.put_type(2);
        // Now another use: a flush, until the TLB is flushed.
        t.get_type(2, PageType::SegmentDescriptors).unwrap();
        assert!(t.flush_needed());
        t.note_tlb_flushed();
        assert!(!t.flush_needed());
        let _ = t.put_type(2);
        t.get_type(2, PageType::L2).unwrap();
        assert!(!t.flush_needed(), "no entry dropped since the flush");
        // A page table (frame 1 was L1) becoming writable after a dropped entry, and a
        // frame released.
        t.note_entry_dropped();
        t.get_type(1, PageType::Writable).unwrap();
        assert!(t.flush_needed());
        t.note_tlb_flushed();
        t.note_entry_dropped();
        t.release(3).unwrap();
        assert!(t.flush_needed());
    }
}
