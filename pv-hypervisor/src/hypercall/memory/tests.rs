use super::super::test_support::{TestGuest, GUEST_DATA_VA, L1, M2P_MFN, MACHINE_FRAMES, SPARE_FRAMES};
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
    assert_eq!(g.machine.m2p.get(&g.memory, spare), Some(0x42));
    // A page table of its own is still its own frame.
    assert_eq!(update(&mut g, L1, 7), 0);
    assert_eq!(g.machine.m2p.get(&g.memory, L1 >> 12), Some(7));
    // The M2P table's own frame, and a frame nobody owns.
    assert_eq!(update(&mut g, M2P_MFN << 12, 1), EINVAL);
    assert_eq!(update(&mut g, 0x3f << 12, 1), EINVAL);
    assert_eq!(update(&mut g, 0x1000 << 12, 1), EINVAL);
    assert_eq!(g.machine.m2p.get(&g.memory, 0x3f), Some(INVALID_M2P_ENTRY));
}
