//! A fake guest for host tests of hypercall handlers: machine memory as a byte array
//! with a 4-level page table mapping a few data pages.

use super::{Host, HypercallContext, MachineInfo, TlbFlush};
use crate::domain::vcpu::GuestRegisters;
use crate::domain::{Domain, DomainState, COUNTED_HYPERCALLS};
use crate::mm::frame_table::{FrameTable, PageType};
use crate::mm::guest_walk::MachineMemory;
use crate::mm::m2p::MachToPhys;
use crate::mm::pagetable::PageTables;
pub use crate::mm::test_memory::SparseMemory as FakeMemory;
use hypercall_abi::ops::memory::{E820Entry, E820_RAM, E820_RESERVED};
use std::vec;
use std::vec::Vec;

pub const GUEST_DATA_VA: u64 = 0x40_0000;
pub const L4: u64 = 0x1000;
const L3: u64 = 0x2000;
const L2: u64 = 0x3000;
pub const L1: u64 = 0x4000;
pub const DATA: u64 = 0x10000;
pub const SHARED_INFO: u64 = 0x8000;
/// Frames the test domain owns but nothing maps: material for new page tables.
pub const SPARE_FRAMES: core::ops::Range<u64> = 0x20..0x28;
/// What the fake hypervisor keeps in its own L4 slot 262.
pub const HYPERVISOR_L4: [u64; 512] = {
    let mut l4 = [0u64; 512];
    l4[262] = 0xdead_0003;
    l4
};
const PAGES: u64 = 4;
const PTE: u64 = 0x67; // present, writable, user, accessed, dirty

pub struct TestGuest {
    pub domain: Domain,
    /// Memory, frame table, machine, console input; `next_interrupt_at` is when calls
    /// should stop and continue later (system time; never by default).
    pub host: Host<FakeMemory>,
    /// The registers of the vCPU making the calls (what the entry code saved).
    pub regs: GuestRegisters,
    /// Free frames for reservations (the fake machine's frames 0x38-0x3f).
    pub free_frames: FreeList,
    /// The flush the last call left for the exit path.
    pub last_flush: TlbFlush,
}

/// A frame source over a plain list, lowest frame first.
pub struct FreeList(pub Vec<u64>);

impl crate::mm::frame_alloc::FrameSource for FreeList {
    fn take_below(&mut self, limit: u64) -> Option<u64> {
        let at = self.0.iter().position(|&mfn| mfn < limit)?;
        Some(self.0.remove(at))
    }

    fn take_run_below(&mut self, order: u32, limit: u64) -> Option<u64> {
        let size = 1u64 << order;
        let start = *self.0.iter().find(|&&m| m % size == 0 && m + size <= limit && (m..m + size).all(|f| self.0.contains(&f)))?;
        self.0.retain(|&f| !(start..start + size).contains(&f));
        Some(start)
    }

    fn give_back(&mut self, mfn: u64) {
        self.0.push(mfn);
        self.0.sort_unstable();
    }
}

std::thread_local! {
    /// The fake machine's TSC, per test thread: one tick per nanosecond (the test
    /// clock's scale).
    static FAKE_TSC: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

/// Sets the test thread's TSC (and so its system time, in ns).
pub fn set_fake_tsc(ticks: u64) {
    FAKE_TSC.with(|t| t.set(ticks));
}

fn fake_tsc() -> u64 {
    FAKE_TSC.with(|t| t.get())
}

/// The fake machine's M2P table: one hypervisor frame, describing all 64 frames.
pub const M2P_MFN: u64 = 0x30;
pub const MACHINE_FRAMES: u64 = 64;

impl TestGuest {
    pub const MAPPED_BYTES: u64 = PAGES * 4096;

    pub fn new() -> Self {
        let mut memory = FakeMemory::default();
        for frame in [L4, L3, L2, L1, SHARED_INFO].into_iter().chain((0..PAGES).map(|p| DATA + p * 4096)) {
            memory.add_frame(frame >> 12, 0);
        }
        let mut set = |table: u64, index: u64, value: u64| memory.set_entry(table, index, value);
        let (l4i, l3i, l2i, l1i) =
            ((GUEST_DATA_VA >> 39) & 511, (GUEST_DATA_VA >> 30) & 511, (GUEST_DATA_VA >> 21) & 511, (GUEST_DATA_VA >> 12) & 511);
        set(L4, l4i, L3 | 0x27);
        set(L3, l3i, L2 | 0x27);
        set(L2, l2i, L1 | 0x27);
        for page in 0..PAGES {
            set(L1, l1i + page, (DATA + page * 4096) | PTE);
        }
        let domain = Domain {
            id: 0,
            name: "test".into(),
            privileged: true,
            state: DomainState::Running,
            p2m: vec![0; 16],
            max_pages: 16,
            tot_pages: 16,
            shared_info_mfn: SHARED_INFO >> 12,
            vcpu: GuestRegisters::default(),
            traps: crate::trap::state::TrapState::new(L4),
            hypercall_counts: [0; COUNTED_HYPERCALLS + 1],
            hypercall_cycles: [0; COUNTED_HYPERCALLS],
            hypercalls_traced: false,
            crash_reason: None,
            console: Default::default(),
            events: crate::evtchn::EventChannels::new(0),
            rings: None,
            timer_deadline: None,
            periodic_timer: None,
            periodic_last_event: 0,
            sched: Default::default(),
            sched_state: Default::default(),
            fpu: Default::default(),
            data_selectors: [0; 4],
            poll: None,
            shutdown_code: None,
            watchdogs: [None; hypercall_abi::ops::sched_op::WATCHDOGS_PER_DOMAIN],
        };
        let mut frames = FrameTable::new(64);
        for mfn in (1..=4).chain([SHARED_INFO >> 12]).chain((0..PAGES).map(|p| (DATA >> 12) + p)) {
            frames.assign(mfn, 0).expect("free frame");
        }
        for mfn in SPARE_FRAMES {
            frames.assign(mfn, 0).expect("free frame");
            memory.add_frame(mfn, 0);
        }
        frames.get_ref(SHARED_INFO >> 12, 0).unwrap();
        frames.get_type(SHARED_INFO >> 12, PageType::Writable).unwrap();
        let mut tables = PageTables { frames: &mut frames, memory: &mut memory, domain: 0 };
        tables.get_page_and_type(L4 >> 12, PageType::L4).expect("the test tables validate");
        tables.get_page_and_type(L4 >> 12, PageType::L4).expect("the test tables validate");
        frames.set_pinned(L4 >> 12, true);
        let regs =
            GuestRegisters { rip: 0x10_0000, cs: 0xe033, rflags: 0x202, rsp: GUEST_DATA_VA + Self::MAPPED_BYTES, ss: 0xe02b, ..Default::default() };
        memory.add_frame(M2P_MFN, 0);
        let m2p = MachToPhys::init(&mut memory, M2P_MFN, MACHINE_FRAMES).expect("the M2P frame exists");
        let memory_map = vec![
            E820Entry { addr: 0, size: 0x2_0000, kind: E820_RAM },
            E820Entry { addr: 0x2_0000, size: 0x1000, kind: E820_RESERVED },
            E820Entry { addr: 0x2_1000, size: MACHINE_FRAMES * 4096 - 0x2_1000, kind: E820_RAM },
        ];
        let clock =
            crate::time::Clock { boot_tsc: 0, scale: crate::time::TscScale { mul: 1 << 31, shift: 1 }, wallclock: (0, 0), read_tsc: fake_tsc };
        let machine = MachineInfo { m2p, max_page: MACHINE_FRAMES, memory_map, clock };
        let free: Vec<u64> = (0x38..0x40).collect();
        for &mfn in &free {
            memory.add_frame(mfn, 0xee);
        }
        TestGuest {
            domain,
            host: Host {
                memory,
                frames,
                hypervisor_l4: Box::new(HYPERVISOR_L4),
                machine,
                console_input: Default::default(),
                next_interrupt_at: u64::MAX,
            },
            regs,
            free_frames: FreeList(free),
            last_flush: TlbFlush::None,
        }
    }

    fn data_maddr(va: u64) -> u64 {
        DATA + (va - GUEST_DATA_VA)
    }

    /// Writes guest data (within one page).
    pub fn poke(&mut self, va: u64, bytes: &[u8]) {
        self.host.memory.write_bytes(Self::data_maddr(va), bytes).expect("inside the data pages");
    }

    /// Reads guest data (within one page).
    pub fn peek(&self, va: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.host.memory.read_bytes(Self::data_maddr(va), &mut out).expect("inside the data pages");
        out
    }

    /// Makes a hypercall the way the runtime does: count, then dispatch.
    pub fn call(&mut self, number: u64, args: [u64; 6]) -> i64 {
        self.domain.count_hypercall(number);
        let mut ctx = HypercallContext {
            others: crate::domain::Others::none(),
            domain: &mut self.domain,
            host: &mut self.host,
            regs: super::CallerRegisters::new(&mut self.regs),
            frame_source: &mut self.free_frames,
            flush: TlbFlush::None,
            continuation: None,
        };
        let result = hypercall_abi::dispatch(&mut ctx, number, args);
        // What the exit path would flush, and the frame table told so, as arch does.
        let (result, flush) = ctx.finish(number, result);
        self.last_flush = flush;
        if self.last_flush == TlbFlush::All {
            self.host.frames.note_tlb_flushed();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercall_abi::arch_x86_64::{FLAT_RING3_CS64, FLAT_RING3_SS64};
    use hypercall_abi::nr;

    /// The hypercall exit resumes an unreplaced frame with sysretq after checking only
    /// rcx and r11 (arch start.rs): so no handler may change the frame but through
    /// `CallerRegisters::replace`. Every number, with arguments that reach guest memory
    /// and ones that do not.
    #[test]
    fn no_handler_changes_the_frame_without_replacing_it() {
        let argument_sets: [[u64; 6]; 6] = [
            [0; 6],
            [1; 6],
            [GUEST_DATA_VA, 1, GUEST_DATA_VA, 0, 0, 0],
            [0, GUEST_DATA_VA, 1, 0, 0, 0],
            [2, GUEST_DATA_VA, 0, 0, 0, 0],
            [u64::MAX; 6],
        ];
        let mut replaced_by_iret = false;
        for number in 0..=64u64 {
            for args in argument_sets {
                let mut g = TestGuest::new();
                (g.regs.rip, g.regs.rcx, g.regs.rflags, g.regs.r11) = (0x10_0102, 0x10_0102, 0x246, 0x246);
                (g.regs.cs, g.regs.ss, g.regs.rsp) = (FLAT_RING3_CS64 as u64, FLAT_RING3_SS64 as u64, GUEST_DATA_VA + 0x800);
                let before = g.regs;
                let mut ctx = HypercallContext {
                    others: crate::domain::Others::none(),
                    domain: &mut g.domain,
                    host: &mut g.host,
                    regs: super::super::CallerRegisters::new(&mut g.regs),
                    frame_source: &mut g.free_frames,
                    flush: TlbFlush::None,
                    continuation: None,
                };
                let result = hypercall_abi::dispatch(&mut ctx, number, args);
                let _ = ctx.finish(number, result);
                let replaced = ctx.regs.replaced();
                replaced_by_iret |= replaced && number == nr::iret;
                let after = GuestRegisters { rax: before.rax, ..g.regs };
                assert!(replaced || after == before, "hypercall {number} with {args:x?} changed the frame without replacing it");
            }
        }
        assert!(replaced_by_iret, "iret replaces the frame");
    }
}
