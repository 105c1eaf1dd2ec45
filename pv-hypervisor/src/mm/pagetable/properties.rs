//! Property tests of the PV MMU bookkeeping: random sequences of pins, unpins, entry
//! writes (mapping, unmapping, changing protection, hooking tables into tables) and
//! frame releases, through the same calls the hypercalls make. After every step the
//! counts must equal a recount from scratch, and the rules must hold: no page table is
//! mapped writable, every entry of a validated table points at a frame of the right
//! type, no frame is released while referenced.

use super::*;
use crate::mm::test_memory::SparseMemory;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::vec::Vec;

const DOM: DomainId = 1;
const OTHER: DomainId = 2;
/// Frames 1..=FRAMES are the domain's; OTHER_FRAME someone else's.
const FRAMES: u64 = 12;
const OTHER_FRAME: u64 = 20;
const ENTRIES: u64 = 4;
const FLAGS: [u64; 4] = [0, PTE_PRESENT | PTE_USER, PTE_PRESENT | PTE_USER | PTE_RW, PTE_PRESENT | PTE_USER | PTE_RW | PTE_ACCESSED];

#[derive(Clone, Debug)]
enum Step {
    /// mmuext PIN_Ln_TABLE.
    Pin { frame: u64, level: u8 },
    /// mmuext UNPIN_TABLE.
    Unpin { frame: u64 },
    /// mmu_update of entry `index` of `table` (at whatever level the table is now).
    Write { table: u64, index: u64, target: u64, flags: usize },
    /// Take a frame back (teardown): refused while referenced.
    Release { frame: u64 },
    /// The domain gives a frame back (decrease_reservation): freed now, or when its
    /// last reference goes.
    GiveBack { frame: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    let frame = prop_oneof![9 => 1..=FRAMES, 1 => Just(OTHER_FRAME)];
    prop_oneof![
        2 => (frame.clone(), 1u8..=4).prop_map(|(frame, level)| Step::Pin { frame, level }),
        1 => frame.clone().prop_map(|frame| Step::Unpin { frame }),
        6 => (1..=FRAMES, 0..ENTRIES, frame.clone(), 0..FLAGS.len()).prop_map(|(table, index, target, flags)| Step::Write { table, index, target, flags }),
        1 => frame.clone().prop_map(|frame| Step::Release { frame }),
        1 => frame.prop_map(|frame| Step::GiveBack { frame }),
    ]
}

struct Machine {
    frames: FrameTable,
    memory: SparseMemory,
    pinned: BTreeMap<u64, u8>,
}

impl Machine {
    fn new() -> Machine {
        let mut frames = FrameTable::new(32);
        let mut memory = SparseMemory::default();
        for mfn in 1..=FRAMES {
            frames.assign(mfn, DOM).unwrap();
            memory.add_frame(mfn, 0);
        }
        frames.assign(OTHER_FRAME, OTHER).unwrap();
        memory.add_frame(OTHER_FRAME, 0);
        Machine { frames, memory, pinned: BTreeMap::new() }
    }

    fn tables(&mut self) -> PageTables<'_, SparseMemory> {
        PageTables { frames: &mut self.frames, memory: &mut self.memory, domain: DOM }
    }

    fn apply(&mut self, step: &Step) {
        match *step {
            Step::Pin { frame, level } => {
                if self.frames.owner(frame) != Some(DOM) || self.frames.is_pinned(frame) {
                    return;
                }
                let page_type = PageType::table(level).unwrap();
                if self.tables().get_page_and_type(frame, page_type).is_ok() {
                    self.frames.set_pinned(frame, true);
                    self.pinned.insert(frame, level);
                }
            }
            Step::Unpin { frame } => {
                if self.pinned.remove(&frame).is_some() {
                    self.frames.set_pinned(frame, false);
                    self.tables().put_page_and_type(frame);
                }
            }
            Step::Write { table, index, target, flags } => {
                let Some(level) = self.frames.page_type(table).level() else { return };
                let _ = self.tables().update_entry(table, level, index as usize, (target << 12) | FLAGS[flags]);
            }
            Step::Release { frame } => {
                // As decrease_reservation: only our own frames are given back.
                if self.frames.owner(frame) != Some(DOM) {
                    return;
                }
                let referenced = self.frames.ref_count(frame) > 0 || self.frames.type_count(frame) > 0;
                let released = self.frames.release(frame).is_ok();
                assert_eq!(released, !referenced, "release of frame {frame}");
                if released {
                    // Another domain may have it now: it must never be named by us again.
                    self.frames.assign(frame, OTHER).unwrap();
                }
            }
            Step::GiveBack { frame } => {
                let referenced = self.frames.ref_count(frame) > 0 || self.frames.type_count(frame) > 0;
                match self.frames.give_back(frame, DOM) {
                    Ok(freed) => {
                        assert_eq!(freed, !referenced, "give back of frame {frame}");
                        if freed {
                            self.frames.assign(frame, OTHER).unwrap();
                        }
                    }
                    Err(_) => assert!(self.frames.owner(frame) != Some(DOM) || self.frames.is_given_back(frame)),
                }
            }
        }
        // What the exit path does after every hypercall: free what lost its last
        // reference (and hand it to someone else).
        while let Some((frame, owner)) = self.frames.take_unused_given_back() {
            assert_eq!(owner, DOM);
            self.frames.assign(frame, OTHER).unwrap();
        }
    }

    /// Recounts every reference and type from the pins and the entries of every
    /// validated table, and checks the rules.
    fn check(&self) {
        for frame in 1..=FRAMES {
            if self.frames.is_given_back(frame) {
                assert!(self.frames.ref_count(frame) > 0, "frame {frame} given back, unreferenced, yet not freed");
            }
        }
        let mut refs: BTreeMap<u64, u32> = BTreeMap::new();
        let mut types: BTreeMap<u64, u32> = BTreeMap::new();
        for &frame in self.pinned.keys() {
            *refs.entry(frame).or_default() += 1;
            *types.entry(frame).or_default() += 1;
        }
        for table in 1..=FRAMES {
            let Some(level) = self.frames.page_type(table).level() else { continue };
            // Steps write entries 0..ENTRIES only; the rest of every frame stays zero.
            for index in 0..ENTRIES {
                let entry = self.memory.read_u64((table << 12) + index * 8).unwrap();
                if entry & PTE_PRESENT == 0 {
                    continue;
                }
                let target = (entry & PTE_ADDRESS) >> 12;
                assert_eq!(self.frames.owner(target), Some(DOM), "L{level} {table}[{index}] maps frame {target}, not ours");
                *refs.entry(target).or_default() += 1;
                if level == 1 {
                    if entry & PTE_RW != 0 {
                        assert_eq!(self.frames.page_type(target), PageType::Writable, "L1 {table}[{index}] maps {target} writable");
                        *types.entry(target).or_default() += 1;
                    }
                } else {
                    assert_eq!(self.frames.page_type(target), PageType::table(level - 1).unwrap(), "L{level} {table}[{index}] -> {target}");
                    *types.entry(target).or_default() += 1;
                }
            }
        }
        for frame in 1..=FRAMES {
            assert_eq!(self.frames.ref_count(frame), refs.get(&frame).copied().unwrap_or(0), "references of {frame}");
            assert_eq!(self.frames.type_count(frame), types.get(&frame).copied().unwrap_or(0), "type count of {frame}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn counts_stay_exact_and_no_table_is_ever_writable(steps in proptest::collection::vec(step(), 1..120)) {
        let mut machine = Machine::new();
        for step in &steps {
            machine.apply(step);
            machine.check();
        }
        // Unpinning everything gives every reference back: nothing is left held.
        let pinned: Vec<u64> = machine.pinned.keys().copied().collect();
        for frame in pinned {
            machine.apply(&Step::Unpin { frame });
        }
        machine.check();
        for frame in 1..=FRAMES {
            prop_assert_eq!((machine.frames.ref_count(frame), machine.frames.type_count(frame)), (0, 0), "frame {} still held", frame);
        }
    }
}
