use super::super::test_support::{TestGuest, GUEST_DATA_VA, L1, M2P_MFN, MACHINE_FRAMES, SPARE_FRAMES};
use crate::mm::guest_walk::MachineMemory;
use hypercall_abi::nr;
use hypercall_abi::ops::memory::*;
use hypercall_abi::ops::mmu::{MmuUpdate, DOMID_SELF, MMU_MACHPHYS_UPDATE};
use zerocopy::{FromBytes, IntoBytes};

const ARG: u64 = GUEST_DATA_VA + 0x100;
const BUFFER: u64 = GUEST_DATA_VA + 0x400;
const EINVAL: i64 = -22;
const ESRCH: i64 = -3;
const EPERM: i64 = -1;
const EFAULT: i64 = -14;
const ENOSYS: i64 = -38;

fn memory_op(g: &mut TestGuest, cmd: u64, arg: u64) -> i64 {
    g.call(nr::memory_op, [cmd, arg, 0, 0, 0, 0])
}

fn read<T: FromBytes>(g: &TestGuest, va: u64) -> T {
    T::read_from_bytes(&g.peek(va, core::mem::size_of::<T>())).unwrap()
}

#[test]
fn sizes_of_the_machine_and_of_the_domain() {
    let mut g = TestGuest::new();
    assert_eq!(memory_op(&mut g, XENMEM_MAXIMUM_RAM_PAGE.into(), 0), MACHINE_FRAMES as i64);
    // A continuation extent means nothing to the commands that are not reservations.
    assert_eq!(memory_op(&mut g, u64::from(XENMEM_MAXIMUM_RAM_PAGE) | 1 << MEMOP_EXTENT_SHIFT, 0), EINVAL);
    g.poke(ARG, &DOMID_SELF.to_le_bytes());
    assert_eq!(memory_op(&mut g, XENMEM_CURRENT_RESERVATION.into(), ARG), 16);
    assert_eq!(memory_op(&mut g, XENMEM_MAXIMUM_RESERVATION.into(), ARG), 16);
    g.poke(ARG, &0u16.to_le_bytes());
    assert_eq!(memory_op(&mut g, XENMEM_CURRENT_RESERVATION.into(), ARG), 16, "its own id");
    g.poke(ARG, &7u16.to_le_bytes());
    assert_eq!(memory_op(&mut g, XENMEM_CURRENT_RESERVATION.into(), ARG), ESRCH);
    assert_eq!(memory_op(&mut g, XENMEM_CURRENT_RESERVATION.into(), 0x10), EFAULT);
    assert_eq!(memory_op(&mut g, 63, ARG), ENOSYS);
}

#[test]
fn where_the_m2p_table_is() {
    let mut g = TestGuest::new();
    assert_eq!(memory_op(&mut g, XENMEM_MACHPHYS_MAPPING.into(), ARG), 0);
    let mapping: MachphysMapping = read(&g, ARG);
    assert_eq!(mapping, MachphysMapping { v_start: 0xffff_8000_0000_0000, v_end: 0xffff_8040_0000_0000, max_mfn: MACHINE_FRAMES - 1 });
    assert_eq!(memory_op(&mut g, XENMEM_MACHPHYS_MAPPING.into(), 0xffff_8000_0000_0000), EFAULT);

    let with_extent = u64::from(XENMEM_MACHPHYS_MAPPING) | 1 << MEMOP_EXTENT_SHIFT;
    assert_eq!(memory_op(&mut g, with_extent, ARG), ENOSYS, "as Xen's x86 code answers");
    let ask = MachphysMfnList { max_extents: 4, extent_start: BUFFER, ..Default::default() };
    g.poke(ARG, ask.as_bytes());
    assert_eq!(memory_op(&mut g, XENMEM_MACHPHYS_MFN_LIST.into(), ARG), 0);
    assert_eq!(read::<MachphysMfnList>(&g, ARG).nr_extents, 1);
    assert_eq!(read::<u64>(&g, BUFFER), M2P_MFN);
    let none = MachphysMfnList { max_extents: 0, extent_start: BUFFER, ..Default::default() };
    g.poke(ARG, none.as_bytes());
    assert_eq!(memory_op(&mut g, XENMEM_MACHPHYS_MFN_LIST.into(), ARG), 0);
    assert_eq!(read::<MachphysMfnList>(&g, ARG).nr_extents, 0);
}

#[test]
fn the_machine_memory_map_is_dom0s_and_needs_room_for_one_more() {
    let mut g = TestGuest::new();
    g.poke(ARG, MemoryMap { nr_entries: 0, _pad: 0, buffer: 0 }.as_bytes());
    assert_eq!(memory_op(&mut g, XENMEM_MACHINE_MEMORY_MAP.into(), ARG), 0);
    assert_eq!(read::<MemoryMap>(&g, ARG).nr_entries, 3, "a NULL buffer asks for the count");
    g.poke(ARG, MemoryMap { nr_entries: 3, _pad: 0, buffer: BUFFER }.as_bytes());
    assert_eq!(memory_op(&mut g, XENMEM_MACHINE_MEMORY_MAP.into(), ARG), EINVAL);
    // The entries are written before the spare room is asked for: a bad buffer with
    // room for them all is -EFAULT, with room for none -EINVAL.
    g.poke(ARG, MemoryMap { nr_entries: 3, _pad: 0, buffer: 0xffff_8000_0000_0000 }.as_bytes());
    assert_eq!(memory_op(&mut g, XENMEM_MACHINE_MEMORY_MAP.into(), ARG), EFAULT);
    g.poke(ARG, MemoryMap { nr_entries: 0, _pad: 0, buffer: 0xffff_8000_0000_0000 }.as_bytes());
    assert_eq!(memory_op(&mut g, XENMEM_MACHINE_MEMORY_MAP.into(), ARG), EINVAL);
    g.poke(ARG, MemoryMap { nr_entries: 4, _pad: 0, buffer: BUFFER }.as_bytes());
    assert_eq!(memory_op(&mut g, XENMEM_MACHINE_MEMORY_MAP.into(), ARG), 0);
    assert_eq!(read::<MemoryMap>(&g, ARG).nr_entries, 3);
    let second: E820Entry = read(&g, BUFFER + 20);
    assert_eq!(second, E820Entry { addr: 0x2_0000, size: 0x1000, kind: E820_RESERVED });
    // The pseudo-physical map: none was set for this domain.
    assert_eq!(memory_op(&mut g, XENMEM_MEMORY_MAP.into(), ARG), ENOSYS);
    g.domain.privileged = false;
    assert_eq!(memory_op(&mut g, XENMEM_MACHINE_MEMORY_MAP.into(), ARG), EPERM);
}

#[test]
fn machphys_update_sets_entries_of_own_frames_only() {
    let mut g = TestGuest::new();
    let spare = SPARE_FRAMES.start;
    let update = |g: &mut TestGuest, ptr: u64, val: u64| {
        g.poke(ARG, MmuUpdate { ptr: ptr | MMU_MACHPHYS_UPDATE, val }.as_bytes());
        g.call(nr::mmu_update, [ARG, 1, 0, DOMID_SELF.into(), 0, 0])
    };
    assert_eq!(update(&mut g, (spare << 12) + 0x120, 0x42), 0);
    assert_eq!(g.host.machine.m2p.get(&g.host.memory, spare), Some(0x42));
    // A page table of its own is still its own frame.
    assert_eq!(update(&mut g, L1, 7), 0);
    assert_eq!(g.host.machine.m2p.get(&g.host.memory, L1 >> 12), Some(7));
    // The M2P table's own frame, and a frame nobody owns.
    assert_eq!(update(&mut g, M2P_MFN << 12, 1), EINVAL);
    assert_eq!(update(&mut g, 0x3f << 12, 1), EINVAL);
    assert_eq!(update(&mut g, 0x1000 << 12, 1), EINVAL);
    assert_eq!(g.host.machine.m2p.get(&g.host.memory, 0x3f), Some(INVALID_M2P_ENTRY));
}

fn reservation(g: &mut TestGuest, op: u32, extents: &[u64], list_va: u64, domid: u16, order: u32) -> i64 {
    let list: std::vec::Vec<u8> = extents.iter().flat_map(|e| e.to_le_bytes()).collect();
    g.poke(BUFFER, &list);
    let r = MemoryReservation { extent_start: list_va, nr_extents: extents.len() as u64, extent_order: order, domid, ..Default::default() };
    g.poke(ARG, r.as_bytes());
    memory_op(g, op.into(), ARG)
}

fn extent(g: &TestGuest, i: u64) -> u64 {
    read(g, BUFFER + i * 8)
}

#[test]
fn ballooning_down_and_up_within_the_maximum() {
    let mut g = TestGuest::new();
    let spare = SPARE_FRAMES.start;
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[spare, spare + 1], BUFFER, DOMID_SELF, 0), 2);
    assert_eq!(g.domain.tot_pages, 14);
    assert_eq!(g.host.frames.owner(spare), None);
    // Not ours any more; the shared_info page: none done.
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[spare], BUFFER, DOMID_SELF, 0), 0);
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[super::super::test_support::SHARED_INFO >> 12], BUFFER, DOMID_SELF, 0), 0);
    assert_eq!(g.domain.tot_pages, 14);

    // Three asked, two fit under the maximum; each new frame is zeroed and ours.
    assert_eq!(reservation(&mut g, XENMEM_INCREASE_RESERVATION, &[0, 0, 0], BUFFER, DOMID_SELF, 0), 2);
    assert_eq!(g.domain.tot_pages, 16);
    let new = extent(&g, 0);
    assert_eq!(g.host.frames.owner(new), Some(0));
    let mut page = [0xffu8; 4096];
    g.host.memory.read_bytes(new << 12, &mut page).unwrap();
    assert!(page.iter().all(|&b| b == 0), "a new frame carries nothing of its last owner");

    // populate_physmap: the frame takes the guest frame number given, M2P included.
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[spare + 2], BUFFER, DOMID_SELF, 0), 1);
    assert_eq!(reservation(&mut g, XENMEM_POPULATE_PHYSMAP, &[9], BUFFER, DOMID_SELF, 0), 1);
    let populated = extent(&g, 0);
    assert_eq!(g.host.machine.m2p.get(&g.host.memory, populated), Some(9));
    assert_eq!(g.host.frames.owner(populated), Some(0));
}

#[test]
fn a_bad_reservation_is_no_extent_done() {
    let mut g = TestGuest::new();
    let spare = SPARE_FRAMES.start;
    // Another domain, an extent past MAX_ORDER, an unreadable structure or list: 0 done.
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[spare], BUFFER, 9, 0), 0);
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[spare], BUFFER, DOMID_SELF, 19), 0);
    assert_eq!(memory_op(&mut g, XENMEM_DECREASE_RESERVATION.into(), 0x10), 0);
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[spare], 0xffff_8000_0000_0000, DOMID_SELF, 0), 0);
    assert_eq!(g.domain.tot_pages, 16);
    // A continuation past the end answers where it stands.
    g.poke(ARG, MemoryReservation { extent_start: BUFFER, nr_extents: 1, ..Default::default() }.as_bytes());
    assert_eq!(memory_op(&mut g, u64::from(XENMEM_DECREASE_RESERVATION) | 5 << MEMOP_EXTENT_SHIFT, ARG), 5);
    // increase_reservation with no list allocates without telling (Xen does the same).
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[spare], BUFFER, DOMID_SELF, 0), 1);
    assert_eq!(reservation(&mut g, XENMEM_INCREASE_RESERVATION, &[0], 0, DOMID_SELF, 0), 1);
    assert_eq!(g.domain.tot_pages, 16);
    // Frames that must fit in 12 bits of address cannot exist.
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[spare + 1], BUFFER, DOMID_SELF, 0), 1);
    g.poke(ARG, MemoryReservation { extent_start: BUFFER, nr_extents: 1, mem_flags: 12, domid: DOMID_SELF, ..Default::default() }.as_bytes());
    assert_eq!(memory_op(&mut g, XENMEM_INCREASE_RESERVATION.into(), ARG), 0);
}

#[test]
fn extents_of_several_frames_are_aligned_runs() {
    let mut g = TestGuest::new();
    let spare = SPARE_FRAMES.start;
    // Giving back two of ours at once; then the shared_info frame's run: all or nothing.
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[spare], BUFFER, DOMID_SELF, 1), 1);
    assert_eq!(g.domain.tot_pages, 14);
    assert_eq!((g.host.frames.owner(spare), g.host.frames.owner(spare + 1)), (None, None));
    let shared = g.domain.shared_info_mfn;
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[shared & !1], BUFFER, DOMID_SELF, 1), 0);
    assert_eq!(g.host.frames.owner(shared & !1), Some(0), "nothing of a refused extent is given back");
    // Past the maximum (16 pages) by one extent of four: refused whole.
    assert_eq!(reservation(&mut g, XENMEM_POPULATE_PHYSMAP, &[100], BUFFER, DOMID_SELF, 2), 0);
    assert_eq!(g.domain.tot_pages, 14);
    // Two new frames in a row, aligned to 2, ours and counted, each with its M2P entry.
    assert_eq!(reservation(&mut g, XENMEM_POPULATE_PHYSMAP, &[100], BUFFER, DOMID_SELF, 1), 1);
    let first = extent(&g, 0);
    assert_eq!(first % 2, 0);
    for i in 0..2 {
        assert_eq!(g.host.frames.owner(first + i), Some(0));
        assert_eq!(g.host.machine.m2p.get(&g.host.memory, first + i), Some(100 + i));
    }
    assert_eq!(g.domain.tot_pages, 16);
}

#[test]
fn a_frame_given_back_while_mapped_is_freed_when_unmapped() {
    let mut g = TestGuest::new();
    // The data area's last page: mapped writable, and not where the arguments are.
    let page = 3;
    let frame = (super::super::test_support::DATA >> 12) + page;
    let free_before = g.free_frames.0.len();
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[frame], BUFFER, DOMID_SELF, 0), 1, "taken, as on Xen");
    assert_eq!(g.domain.tot_pages, 16, "but not freed while mapped");
    assert_eq!(g.host.frames.owner(frame), Some(0));
    assert!(g.host.frames.is_given_back(frame));
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[frame], BUFFER, DOMID_SELF, 0), 0, "not twice");
    // Dropping the mapping drops the last reference: the frame goes.
    let pte = L1 + ((GUEST_DATA_VA >> 12) & 511) * 8 + page * 8;
    g.poke(BUFFER, MmuUpdate { ptr: pte, val: 0 }.as_bytes());
    assert_eq!(g.call(nr::mmu_update, [BUFFER, 1, 0, DOMID_SELF as u64, 0, 0]), 0);
    assert_eq!(g.domain.tot_pages, 15);
    assert_eq!(g.host.frames.owner(frame), None);
    assert_eq!(g.free_frames.0.len(), free_before + 1);
    assert_eq!(g.host.machine.m2p.get(&g.host.memory, frame), Some(INVALID_M2P_ENTRY));
}

#[test]
fn a_pinned_table_given_back_is_unpinned_first() {
    let mut g = TestGuest::new();
    let spare = SPARE_FRAMES.start;
    g.poke(BUFFER, hypercall_abi::ops::mmu::MmuextOp { cmd: hypercall_abi::ops::mmu::MMUEXT_PIN_L1_TABLE, _pad: 0, arg1: spare, arg2: 0 }.as_bytes());
    assert_eq!(g.call(nr::mmuext_op, [BUFFER, 1, 0, DOMID_SELF as u64, 0, 0]), 0);
    assert_eq!(reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[spare], BUFFER, DOMID_SELF, 0), 1);
    assert_eq!((g.host.frames.owner(spare), g.domain.tot_pages), (None, 15), "nothing else held it: freed at once");
}

#[test]
fn a_long_reservation_continues_from_the_extent_it_reached() {
    let mut g = TestGuest::new();
    let spare = SPARE_FRAMES.start;
    g.regs.rip = 0x10_0102;
    g.host.next_interrupt_at = 0;
    // A timer is due: one extent is done, then the call continues from extent 1.
    let ret = reservation(&mut g, XENMEM_DECREASE_RESERVATION, &[spare, spare + 1, spare + 2], BUFFER, DOMID_SELF, 0);
    assert_eq!(ret, nr::memory_op as i64);
    assert_eq!((g.regs.rip, g.regs.rdi, g.regs.rsi), (0x10_0100, (1 << MEMOP_EXTENT_SHIFT) | u64::from(XENMEM_DECREASE_RESERVATION), ARG));
    assert_eq!(g.domain.tot_pages, 15);
    g.host.next_interrupt_at = u64::MAX;
    let args = [g.regs.rdi, g.regs.rsi, 0, 0, 0, 0];
    assert_eq!(g.call(nr::memory_op, args), 3, "the answer counts every extent, from the first");
    assert_eq!(g.domain.tot_pages, 13);
}
