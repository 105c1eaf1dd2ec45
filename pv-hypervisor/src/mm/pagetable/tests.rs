use super::*;
use crate::mm::test_memory::SparseMemory;

const DOM: DomainId = 1;
const OTHER: DomainId = 2;
const TABLE: u64 = PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED;
const DATA_RW: u64 = TABLE | PTE_DIRTY;
const DATA_RO: u64 = PTE_PRESENT | PTE_USER;

/// Frames 1..=32 belong to DOM, 40 to OTHER. L4 = 1, L3 = 2, L2 = 3, L1 = 4, data 10-20.
fn setup() -> (FrameTable, SparseMemory) {
    let mut frames = FrameTable::new(64);
    let mut memory = SparseMemory::default();
    for mfn in 1..=32 {
        frames.assign(mfn, DOM).unwrap();
        memory.add_frame(mfn, 0);
    }
    frames.assign(40, OTHER).unwrap();
    memory.add_frame(40, 0);
    memory.set_entry(1 << 12, 0, (2 << 12) | TABLE);
    memory.set_entry(2 << 12, 0, (3 << 12) | TABLE);
    memory.set_entry(3 << 12, 0, (4 << 12) | TABLE);
    memory.set_entry(4 << 12, 0, (10 << 12) | DATA_RW);
    memory.set_entry(4 << 12, 1, (11 << 12) | DATA_RO);
    (frames, memory)
}

fn pin_l4(frames: &mut FrameTable, memory: &mut SparseMemory, mfn: u64) -> Result<(), Errno> {
    PageTables { frames, memory, domain: DOM }.get_page_and_type(mfn, PageType::L4)
}

#[test]
fn a_valid_tree_takes_types_and_references_all_the_way_down() {
    let (mut frames, mut memory) = setup();
    pin_l4(&mut frames, &mut memory, 1).unwrap();
    assert_eq!(frames.page_type(1), PageType::L4);
    assert_eq!(frames.page_type(2), PageType::L3);
    assert_eq!(frames.page_type(3), PageType::L2);
    assert_eq!(frames.page_type(4), PageType::L1);
    assert_eq!(frames.page_type(10), PageType::Writable);
    assert_eq!((frames.ref_count(11), frames.page_type(11)), (1, PageType::None), "read-only: a reference, no type");
    // Releasing the root releases everything.
    PageTables { frames: &mut frames, memory: &mut memory, domain: DOM }.put_page_and_type(1);
    for mfn in [1, 2, 3, 4, 10, 11] {
        assert_eq!((frames.type_count(mfn), frames.ref_count(mfn)), (0, 0), "frame {mfn}");
    }
}

#[test]
fn the_classic_attacks_are_refused_and_leave_nothing_behind() {
    let cases: &[(&str, u64, u64, u64)] = &[
        ("map another domain's frame", 4, 2, (40 << 12) | DATA_RO),
        ("map a frame beyond RAM", 4, 2, (63_000 << 12) | DATA_RO),
        ("map its own L4 writable", 4, 2, (1 << 12) | DATA_RW),
        ("map its own L1 writable", 4, 2, (4 << 12) | DATA_RW),
        ("L2 entry naming an L2 (level confusion)", 3, 1, (3 << 12) | TABLE),
        ("L4 entry naming itself (linear page table)", 1, 1, (1 << 12) | TABLE),
        ("a 2 MiB page", 3, 1, (10 << 12) | TABLE | PTE_PS_OR_PAT),
        ("a 1 GiB page", 2, 1, (10 << 12) | TABLE | PTE_PS_OR_PAT),
        ("reserved bit 62 (a protection key)", 4, 2, (12 << 12) | DATA_RO | (1 << 62)),
        ("bit 52 in an L2", 3, 1, (5 << 12) | TABLE | (1 << 52)),
        ("global bit in an L2", 3, 1, (5 << 12) | TABLE | PTE_GLOBAL),
    ];
    for &(what, table, index, entry) in cases {
        let (mut frames, mut memory) = setup();
        memory.set_entry(table << 12, index, entry);
        assert!(pin_l4(&mut frames, &mut memory, 1).is_err(), "{what} was accepted");
        for mfn in 1..=40 {
            assert_eq!((frames.type_count(mfn), frames.ref_count(mfn)), (0, 0), "{what}: frame {mfn} still held");
        }
    }
}

#[test]
fn a_frame_mapped_writable_cannot_become_a_table_and_back() {
    let (mut frames, mut memory) = setup();
    pin_l4(&mut frames, &mut memory, 1).unwrap();
    let mut pt = PageTables { frames: &mut frames, memory: &mut memory, domain: DOM };
    // Frame 10 is mapped writable: it cannot be pinned as an L1.
    assert_eq!(pt.get_page_and_type(10, PageType::L1), Err(Errno::EBUSY));
    // Unmap it through an update; now it can.
    pt.update_entry(4, 1, 0, 0).unwrap();
    pt.get_page_and_type(10, PageType::L1).unwrap();
    // And a mapping of it with RW is refused while it is a table.
    assert_eq!(pt.update_entry(4, 1, 5, (10 << 12) | DATA_RW), Err(Errno::EBUSY));
    pt.update_entry(4, 1, 5, (10 << 12) | DATA_RO).unwrap();
}

#[test]
fn hypervisor_slots_are_never_the_guests() {
    let (mut frames, mut memory) = setup();
    // Whatever sits in slot 262 (the hypervisor's own entry, not a guest frame) is ignored
    // by validation, and the guest cannot write there.
    memory.set_entry(1 << 12, 262, (40 << 12) | TABLE);
    pin_l4(&mut frames, &mut memory, 1).unwrap();
    let mut pt = PageTables { frames: &mut frames, memory: &mut memory, domain: DOM };
    assert_eq!(pt.update_entry(1, 4, 262, (2 << 12) | TABLE), Err(Errno::EINVAL));
    assert_eq!(pt.update_entry(1, 4, 256, 0), Err(Errno::EINVAL));
    let mut hv = [0u64; 512];
    hv[262] = 0xabc_d000 | 3;
    fill_hypervisor_slots(&mut memory, 1, &hv, M2pSlot::Map).unwrap();
    assert_eq!(memory.read_u64((1 << 12) + 262 * 8), Some(0xabc_d003));
}

#[test]
fn the_hypervisors_own_frames_are_never_mapped() {
    let (mut frames, mut memory) = setup();
    memory.add_frame(41, 0);
    frames.own_for_hypervisor(41).unwrap();
    let mut tables = PageTables { frames: &mut frames, memory: &mut memory, domain: DOM };
    assert_eq!(tables.get_entry((41 << 12) | DATA_RW, 1), Err(Errno::EBUSY), "writable");
    assert_eq!(tables.get_entry((41 << 12) | DATA_RO, 1), Err(Errno::EBUSY), "read-only");
    assert_eq!(tables.get_entry((41 << 12) | TABLE, 2), Err(Errno::EINVAL), "as a table");
    assert_eq!(frames.owner(41), None);
    assert_eq!((frames.ref_count(41), frames.type_count(41)), (0, 0));
}
