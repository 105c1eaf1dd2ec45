use super::super::test_support::{TestGuest, DATA, GUEST_DATA_VA, L1, L4, SPARE_FRAMES};
use super::super::TlbFlush;
use crate::mm::frame_table::PageType;
use crate::mm::guest_walk::{translate, Access, MachineMemory};
use hypercall_abi::nr;
use hypercall_abi::ops::mmu::*;
use zerocopy::IntoBytes;

const RW: u64 = 0x67;
const RO: u64 = 0x65;
const SCRATCH: u64 = GUEST_DATA_VA + 0x800;
const DONE: u64 = GUEST_DATA_VA + 0xff0;

fn mmu_update(g: &mut TestGuest, requests: &[MmuUpdate]) -> (i64, u32) {
    let bytes: std::vec::Vec<u8> = requests.iter().flat_map(|r| r.as_bytes().to_vec()).collect();
    g.poke(SCRATCH, &bytes);
    let ret = g.call(nr::mmu_update, [SCRATCH, requests.len() as u64, DONE, DOMID_SELF as u64, 0, 0]);
    (ret, u32::from_le_bytes(g.peek(DONE, 4).try_into().unwrap()))
}

fn mmuext(g: &mut TestGuest, cmd: u32, arg1: u64) -> i64 {
    g.poke(SCRATCH, MmuextOp { cmd, _pad: 0, arg1, arg2: 0 }.as_bytes());
    g.call(nr::mmuext_op, [SCRATCH, 1, 0, DOMID_SELF as u64, 0, 0])
}

/// The L1 entry's machine address that maps GUEST_DATA_VA + page * 4096.
fn pte(page: u64) -> u64 {
    L1 + ((GUEST_DATA_VA >> 12) & 511) * 8 + page * 8
}

#[test]
fn mmu_update_maps_unmaps_and_counts() {
    let mut g = TestGuest::new();
    let spare = SPARE_FRAMES.start;
    // Map a spare frame read-only at the 5th page, then writable, then unmap it.
    let (ret, done) = mmu_update(&mut g, &[MmuUpdate { ptr: pte(4), val: (spare << 12) | RO }]);
    assert_eq!((ret, done), (0, 1));
    assert_eq!(translate(&g.host.memory, L4, GUEST_DATA_VA + 0x4000, Access::Read), Ok(spare << 12));
    assert_eq!(g.host.frames.ref_count(spare), 1);
    let (ret, _) = mmu_update(&mut g, &[MmuUpdate { ptr: pte(4), val: (spare << 12) | RW }]);
    assert_eq!(ret, 0);
    assert_eq!(g.host.frames.page_type(spare), PageType::Writable);
    let (ret, _) = mmu_update(&mut g, &[MmuUpdate { ptr: pte(4), val: 0 }]);
    assert_eq!(ret, 0);
    assert_eq!((g.host.frames.ref_count(spare), g.host.frames.type_count(spare)), (0, 0));
}

#[test]
fn a_batch_stops_at_its_first_bad_entry() {
    let mut g = TestGuest::new();
    let spare = SPARE_FRAMES.start;
    let requests = [
        MmuUpdate { ptr: pte(4), val: (spare << 12) | RO },
        MmuUpdate { ptr: pte(5), val: (L1 >> 12 << 12) | RW }, // the L1 itself, writable
        MmuUpdate { ptr: pte(6), val: ((spare + 1) << 12) | RO },
    ];
    assert_eq!(mmu_update(&mut g, &requests), (-16, 1), "EBUSY (a page table mapped writable) after one done");
    assert_eq!(g.host.frames.ref_count(spare + 1), 0, "the third never ran");
    // Not a page table at all, another domain's frame, a misaligned pointer, a bad command.
    // A plain page of the guest's is just written (as on Xen).
    assert_eq!(mmu_update(&mut g, &[MmuUpdate { ptr: DATA + 8, val: 0x1234 }]).0, 0);
    assert_eq!(g.host.memory.read_u64(DATA + 8), Some(0x1234));
    assert_eq!(mmu_update(&mut g, &[MmuUpdate { ptr: pte(4), val: (50 << 12) | RO }]).0, -22);
    assert_eq!(mmu_update(&mut g, &[MmuUpdate { ptr: pte(4) + 4, val: 0 }]).0, -22);
    assert_eq!(mmu_update(&mut g, &[MmuUpdate { ptr: pte(4) | 3, val: 0 }]).0, -22);
    assert_eq!(mmu_update(&mut g, &[MmuUpdate { ptr: pte(4) | 1, val: 0 }]).0, 0, "an M2P update of its own L1");
    // The hypervisor's slots.
    assert_eq!(mmu_update(&mut g, &[MmuUpdate { ptr: L4 + 262 * 8, val: 0 }]).0, -22);
    assert_eq!(g.host.memory.read_u64(L4 + 262 * 8), Some(0), "unchanged");
    assert_eq!(g.call(nr::mmu_update, [SCRATCH, 1, DONE, 5, 0, 0]), -3, "foreign domain");
    assert_eq!(g.call(nr::mmu_update, [SCRATCH, 1, DONE, 0, 0, 0]), -3, "itself by number");
}

#[test]
fn update_va_mapping_walks_the_kernel_tables() {
    let mut g = TestGuest::new();
    let spare = SPARE_FRAMES.start + 2;
    assert_eq!(g.call(nr::update_va_mapping, [GUEST_DATA_VA + 0x5000, (spare << 12) | RW, UVMF_INVLPG, 0, 0, 0]), 0);
    assert_eq!(translate(&g.host.memory, L4, GUEST_DATA_VA + 0x5000, Access::Write), Ok(spare << 12));
    assert_eq!(g.call(nr::update_va_mapping, [0x7fff_0000_0000, 0, 0, 0, 0, 0]), -22, "no L1 there");
    assert_eq!(g.call(nr::update_va_mapping, [0xffff_8300_0000_0000, 0, 0, 0, 0, 0]), -22, "hypervisor range");
}

#[test]
fn pin_and_base_pointers() {
    let mut g = TestGuest::new();
    let (l4, l1) = (SPARE_FRAMES.start, SPARE_FRAMES.start + 1);
    // A new L4 whose slot 0 reuses the kernel's L3; it must be unmapped to be a table.
    g.host.memory.set_entry(l4 << 12, 0, g.host.memory.read_u64(L4).unwrap());
    assert_eq!(mmuext(&mut g, MMUEXT_PIN_L4_TABLE, l4), 0);
    assert_eq!(g.host.frames.page_type(l4), PageType::L4);
    assert_eq!(g.host.memory.read_u64((l4 << 12) + 262 * 8), Some(0xdead_0003), "hypervisor slots filled");
    assert_eq!(mmuext(&mut g, MMUEXT_PIN_L4_TABLE, l4), -22, "already pinned");
    assert_eq!(mmuext(&mut g, MMUEXT_PIN_L1_TABLE, l4), -22, "pinned as another type");
    assert_eq!(mmuext(&mut g, MMUEXT_NEW_USER_BASEPTR, l4), 0);
    assert_eq!(g.domain.traps.user_l4(), l4 << 12);
    // A mapped-writable frame cannot be pinned; an empty L1 can, and then it cannot be
    // mapped writable.
    assert_eq!(mmuext(&mut g, MMUEXT_PIN_L1_TABLE, DATA >> 12), -22);
    assert_eq!(mmuext(&mut g, MMUEXT_PIN_L1_TABLE, l1), 0);
    assert_eq!(g.call(nr::update_va_mapping, [GUEST_DATA_VA + 0x5000, (l1 << 12) | RW, 0, 0, 0, 0]), -16, "a page table, writable");
    assert_eq!(mmuext(&mut g, MMUEXT_UNPIN_TABLE, l1), 0);
    assert_eq!(mmuext(&mut g, MMUEXT_UNPIN_TABLE, l1), -22, "not pinned");
    assert_eq!(mmuext(&mut g, MMUEXT_NEW_BASEPTR, 0), -22);
    assert_eq!(mmuext(&mut g, 99, 0), -38);
    // Dropping the user base pointer and the pin leaves nothing held.
    assert_eq!(mmuext(&mut g, MMUEXT_NEW_USER_BASEPTR, 0), 0);
    assert_eq!(mmuext(&mut g, MMUEXT_UNPIN_TABLE, l4), 0);
    assert_eq!((g.host.frames.type_count(l4), g.host.frames.ref_count(l4)), (0, 0));
}

#[test]
fn updates_flush_only_what_the_guest_asks_for() {
    let mut g = TestGuest::new();
    let spare = SPARE_FRAMES.start;
    mmu_update(&mut g, &[MmuUpdate { ptr: pte(4), val: (spare << 12) | RW }]);
    assert_eq!(g.last_flush, TlbFlush::None);
    mmu_update(&mut g, &[MmuUpdate { ptr: pte(4), val: (spare << 12) | RO }]);
    assert_eq!(g.last_flush, TlbFlush::None, "a downgrade is the guest's to flush");
    let va = GUEST_DATA_VA + 0x4000;
    for (flags, flush) in [(UVMF_NONE, TlbFlush::None), (UVMF_INVLPG, TlbFlush::Page(va)), (UVMF_TLB_FLUSH, TlbFlush::All), (3, TlbFlush::All)] {
        assert_eq!(g.call(nr::update_va_mapping, [va, (spare << 12) | RO, flags, 0, 0, 0]), 0);
        assert_eq!(g.last_flush, flush, "flags {flags}");
    }
    assert_eq!(mmuext(&mut g, MMUEXT_INVLPG_LOCAL, va), 0);
    assert_eq!(g.last_flush, TlbFlush::Page(va));
    assert_eq!(mmuext(&mut g, MMUEXT_TLB_FLUSH_LOCAL, 0), 0);
    assert_eq!(g.last_flush, TlbFlush::All);
    // Two different pages in one batch: everything.
    let ops: std::vec::Vec<u8> =
        [va, va + 0x1000].iter().flat_map(|&a| MmuextOp { cmd: MMUEXT_INVLPG_LOCAL, _pad: 0, arg1: a, arg2: 0 }.as_bytes().to_vec()).collect();
    g.poke(SCRATCH, &ops);
    assert_eq!(g.call(nr::mmuext_op, [SCRATCH, 2, 0, DOMID_SELF as u64, 0, 0]), 0);
    assert_eq!(g.last_flush, TlbFlush::All);
}

/// The attack a missing flush would allow: keep a writable translation of a frame,
/// drop its entry, make the frame a page table, write forged entries through the stale
/// translation. The type change must flush first.
#[test]
fn a_frame_that_changes_use_under_a_stale_entry_forces_a_flush() {
    let mut g = TestGuest::new();
    let spare = SPARE_FRAMES.start;
    mmu_update(&mut g, &[MmuUpdate { ptr: pte(4), val: (spare << 12) | RW }]);
    mmu_update(&mut g, &[MmuUpdate { ptr: pte(4), val: 0 }]);
    assert_eq!(g.last_flush, TlbFlush::None);
    assert_eq!(mmuext(&mut g, MMUEXT_PIN_L1_TABLE, spare), 0);
    assert_eq!(g.last_flush, TlbFlush::All, "writable -> L1 with a stale writable entry");
    // Flushed since: unpinning and mapping it writable again needs nothing more (no
    // table entry ever pointed at it, so nothing cached walks through it).
    assert_eq!(mmuext(&mut g, MMUEXT_UNPIN_TABLE, spare), 0);
    mmu_update(&mut g, &[MmuUpdate { ptr: pte(4), val: (spare << 12) | RW }]);
    assert_eq!(g.last_flush, TlbFlush::None);
    // The same use again after a drop (writable, dropped, writable): no flush.
    mmu_update(&mut g, &[MmuUpdate { ptr: pte(4), val: 0 }]);
    mmu_update(&mut g, &[MmuUpdate { ptr: pte(4), val: (spare << 12) | RW }]);
    assert_eq!(g.last_flush, TlbFlush::None);
    // Unmapped and given back to the hypervisor (ballooned out) while stale: flush.
    mmu_update(&mut g, &[MmuUpdate { ptr: pte(4), val: 0 }]);
    let list = GUEST_DATA_VA + 0x700;
    g.poke(list, &spare.to_le_bytes());
    let reservation = hypercall_abi::ops::memory::MemoryReservation { extent_start: list, nr_extents: 1, domid: DOMID_SELF, ..Default::default() };
    g.poke(SCRATCH, reservation.as_bytes());
    assert_eq!(g.call(nr::memory_op, [hypercall_abi::ops::memory::XENMEM_DECREASE_RESERVATION.into(), SCRATCH, 0, 0, 0, 0]), 1);
    assert_eq!(g.last_flush, TlbFlush::All, "a frame leaving the domain under a stale entry");
}

#[test]
fn clear_and_copy_page_write_only_frames_that_could_be_mapped_writable() {
    let mut g = TestGuest::new();
    let (spare, data) = (SPARE_FRAMES.start, DATA >> 12);
    g.poke(GUEST_DATA_VA + 0x100, b"copied");
    let copy = |g: &mut TestGuest, dst: u64, src: u64| {
        g.poke(SCRATCH, MmuextOp { cmd: MMUEXT_COPY_PAGE, _pad: 0, arg1: dst, arg2: src }.as_bytes());
        g.call(nr::mmuext_op, [SCRATCH, 1, 0, DOMID_SELF as u64, 0, 0])
    };
    let spare_bytes = |g: &TestGuest, offset: u64, len: usize| {
        let mut out = std::vec![0; len];
        g.host.memory.read_bytes(spare * 4096 + offset, &mut out).unwrap();
        out
    };
    // The scratch area is in the data frame too: copy first, then look past it.
    assert_eq!(copy(&mut g, spare, data), 0);
    assert_eq!(spare_bytes(&g, 0x100, 6), b"copied");
    assert_eq!(mmuext(&mut g, MMUEXT_CLEAR_PAGE, spare), 0);
    assert!(spare_bytes(&g, 0, 4096).iter().all(|&b| b == 0));
    assert_eq!((g.host.frames.ref_count(spare), g.host.frames.type_count(spare)), (0, 0), "nothing kept");
    // A page table can be read from, never written; other owners' frames neither.
    assert_eq!(copy(&mut g, spare, L1 >> 12), 0, "copying from a page table");
    assert_eq!(mmuext(&mut g, MMUEXT_CLEAR_PAGE, L1 >> 12), -22);
    assert_eq!(copy(&mut g, L4 >> 12, spare), -22);
    assert_eq!(mmuext(&mut g, MMUEXT_CLEAR_PAGE, 0x3f), -22, "a free frame, not the caller's");
    assert_eq!(copy(&mut g, spare, 0x3f), -22);
}

#[test]
fn a_long_batch_continues_later_and_counts_the_whole_batch() {
    let mut g = TestGuest::new();
    let spare = SPARE_FRAMES.start;
    // 100 updates of one entry (map, unmap, map, ...): a timer is due, so it stops after
    // the first 64 with the rest marked preempted, and the guest re-executes it.
    let requests: std::vec::Vec<MmuUpdate> =
        (0..100).map(|i| MmuUpdate { ptr: pte(4), val: if i % 2 == 0 { (spare << 12) | RO } else { 0 } }).collect();
    let bytes: std::vec::Vec<u8> = requests.iter().flat_map(|r| r.as_bytes().to_vec()).collect();
    g.poke(SCRATCH, &bytes);
    g.regs.rip = 0x10_0102;
    g.host.next_interrupt_at = 0;
    let ret = g.call(nr::mmu_update, [SCRATCH, 100, DONE, DOMID_SELF as u64, 0, 0]);
    assert_eq!(ret, nr::mmu_update as i64, "continued: rax holds the number again");
    assert_eq!(g.regs.rip, 0x10_0100);
    assert_eq!((g.regs.rdi, g.regs.rsi, g.regs.rdx), (SCRATCH + 64 * 16, u64::from(36 | MMU_UPDATE_PREEMPTED), DONE));
    assert_eq!(u32::from_le_bytes(g.peek(DONE, 4).try_into().unwrap()), 64, "done so far, for the next part");
    // The next part (no timer due) finishes; the count is the whole batch's.
    g.host.next_interrupt_at = u64::MAX;
    let args = [g.regs.rdi, g.regs.rsi, g.regs.rdx, g.regs.r10, 0, 0];
    assert_eq!(g.call(nr::mmu_update, args), 0);
    assert_eq!(u32::from_le_bytes(g.peek(DONE, 4).try_into().unwrap()), 100);
    assert_eq!(g.host.frames.ref_count(spare), 0, "the last update unmapped it");
}
