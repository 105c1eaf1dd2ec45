//! `mmu-stress [ROUNDS]`: maps, writes, reads back and unmaps pages by the tens of
//! thousands through the PV MMU, half of them with mmu_update batches and half with
//! plain stores into a read-only L1 (the writable page-table assist), and verifies
//! every page. Each round maps 1024 slots to 1024 of our frames in a new order, flushes
//! the TLB (as a PV kernel must after changing present entries), writes a tag naming
//! the round and the slot into each page, reads every tag back, then unmaps them all.
//! A stale translation, a lost or misapplied update, or a store the hypervisor got
//! wrong shows as a tag that does not match. RESULT lines carry counts only, so the
//! conformance harness compares them with Xen's.
//!
//! Layout under L4 slot 250: one L3, one L2, two L1 tables of data slots (L1 `a` for
//! mmu_update, L1 `b` for stores) and a third L1 that maps `b` read-only.

use crate::console::println;
use crate::platform;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::mmu::{MmuUpdate, DOMID_SELF, MMUEXT_TLB_FLUSH_LOCAL};
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::{GuestArray, GuestOut};

const SLOT: u64 = 250;
const BASE: u64 = SLOT << 39;
const SLOTS: u64 = 1024;
const PER_TABLE: u64 = 512;
/// Where L1 `b` is mapped read-only: the first page of the third 2 MiB region.
const L1B_VA: u64 = BASE + 2 * (2 << 20);
const BATCH: usize = 64;
const DATA_RW: u64 = 0x67;
const READ_ONLY: u64 = 0x25;
const TABLE: u64 = 0x27;
const DEFAULT_ROUNDS: u64 = 32;
/// Our frames counted back from the last one: tables, then the data pool (other
/// checks use the last 30).
const FIRST_TABLE_BACK: u64 = 31;
const FIRST_DATA_BACK: u64 = 40;
/// Each round shifts which frame a slot gets by this much (coprime with SLOTS).
const SHIFT: u64 = 37;

#[derive(Default)]
struct Counts {
    mapped: u64,
    by_update: u64,
    by_store: u64,
    verified: u64,
    unmapped: u64,
    errors: u64,
    first_error: Option<(u64, u64, i64)>,
}

impl Counts {
    fn error(&mut self, round: u64, slot: u64, what: i64) {
        self.errors += 1;
        self.first_error.get_or_insert((round, slot, what));
    }
}

fn mmu_update(requests: &[MmuUpdate]) -> i64 {
    // SAFETY: readable requests for entries of our own tables under slot 250.
    unsafe { calls::mmu_update(GuestArray::from_slice(requests), requests.len() as u32, GuestOut::NULL, DOMID_SELF) }
}

fn tag(round: u64, slot: u64) -> u64 {
    0x5354_0000_0000_0000 | (round << 16) | slot
}

pub fn run(info: &StartInfo, command: &str) {
    let rounds = match command.split_ascii_whitespace().nth(1).map(str::parse::<u64>) {
        None => DEFAULT_ROUNDS,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            println!("RESULT test=mmu-stress status=fail reason=bad-round-count");
            return;
        }
    };
    let mfn = |back: u64| platform::pfn_to_mfn(info, info.nr_pages - back).unwrap_or(0);
    let (l3, l2, l1a, l1b, l1meta) =
        (mfn(FIRST_TABLE_BACK), mfn(FIRST_TABLE_BACK + 1), mfn(FIRST_TABLE_BACK + 2), mfn(FIRST_TABLE_BACK + 3), mfn(FIRST_TABLE_BACK + 4));
    let data = |i: u64| mfn(FIRST_DATA_BACK + i);
    let l4 = platform::pfn_to_mfn(info, (info.pt_base - platform::virt_base()) >> 12).unwrap_or(0);
    let built = super::usermode::fill_frame(info, l1a, &[])
        && super::usermode::fill_frame(info, l1b, &[])
        && super::usermode::fill_frame(info, l1meta, &[(0, (l1b << 12) | READ_ONLY)])
        && super::usermode::fill_frame(info, l2, &[(0, (l1a << 12) | TABLE), (1, (l1b << 12) | TABLE), (2, (l1meta << 12) | TABLE)])
        && super::usermode::fill_frame(info, l3, &[(0, (l2 << 12) | TABLE)])
        && mmu_update(&[MmuUpdate { ptr: (l4 << 12) + SLOT * 8, val: (l3 << 12) | TABLE }]) == 0;
    println!("RESULT test=mmu-stress check=setup built={} status={}", u8::from(built), if built { "pass" } else { "fail" });
    if !built {
        println!("RESULT test=mmu-stress status=fail");
        return;
    }
    let l1b_entries = L1B_VA as *mut u64;
    let mut counts = Counts::default();
    let mut batch = [MmuUpdate::default(); BATCH];
    for round in 0..rounds {
        let frame_of = |slot: u64| data((slot + round * SHIFT) % SLOTS);
        // Map: L1 a through mmu_update batches, L1 b through plain stores.
        for chunk in 0..PER_TABLE / BATCH as u64 {
            for (i, request) in batch.iter_mut().enumerate() {
                let slot = chunk * BATCH as u64 + i as u64;
                *request = MmuUpdate { ptr: (l1a << 12) + slot * 8, val: (frame_of(slot) << 12) | DATA_RW };
            }
            let ret = mmu_update(&batch);
            if ret == 0 {
                counts.mapped += BATCH as u64;
                counts.by_update += BATCH as u64;
            } else {
                counts.error(round, chunk * BATCH as u64, ret);
            }
        }
        for index in 0..PER_TABLE {
            // SAFETY: the store faults (L1 b is mapped read-only) and the hypervisor
            // writes the entry, checked: it maps one of our own frames.
            unsafe { l1b_entries.add(index as usize).write_volatile((frame_of(PER_TABLE + index) << 12) | DATA_RW) };
            counts.mapped += 1;
            counts.by_store += 1;
        }
        if platform::mmuext(MMUEXT_TLB_FLUSH_LOCAL, 0) != 0 {
            counts.error(round, 0, -1);
        }
        // Write every page's tag, then read every one back.
        for slot in 0..SLOTS {
            // SAFETY: the slot maps one of our data frames, writable, as just set up.
            unsafe { ((BASE + slot * 4096) as *mut u64).write_volatile(tag(round, slot)) };
        }
        for slot in 0..SLOTS {
            // SAFETY: as above.
            let seen = unsafe { ((BASE + slot * 4096) as *const u64).read_volatile() };
            if seen == tag(round, slot) {
                counts.verified += 1;
            } else {
                counts.error(round, slot, (seen >> 16 & 0xffff) as i64);
            }
        }
        // Unmap the same two ways, and flush before the next round reuses the frames.
        for chunk in 0..PER_TABLE / BATCH as u64 {
            for (i, request) in batch.iter_mut().enumerate() {
                *request = MmuUpdate { ptr: (l1a << 12) + (chunk * BATCH as u64 + i as u64) * 8, val: 0 };
            }
            if mmu_update(&batch) == 0 {
                counts.unmapped += BATCH as u64;
            } else {
                counts.error(round, chunk * BATCH as u64, -2);
            }
        }
        for index in 0..PER_TABLE {
            // SAFETY: as for the mapping stores; 0 is always a valid entry.
            unsafe { l1b_entries.add(index as usize).write_volatile(0) };
            counts.unmapped += 1;
        }
        if platform::mmuext(MMUEXT_TLB_FLUSH_LOCAL, 0) != 0 {
            counts.error(round, 0, -3);
        }
    }
    // Every entry must be empty again (read through the read-only mapping of L1 b;
    // L1 a through the hypervisor: an mmu_update of 0 over 0 must succeed).
    // SAFETY: L1 b is readable at L1B_VA.
    let left = (0..PER_TABLE).filter(|&i| unsafe { l1b_entries.add(i as usize).read_volatile() } != 0).count();
    let teardown = mmu_update(&[MmuUpdate { ptr: (l4 << 12) + SLOT * 8, val: 0 }]);
    let pass = counts.errors == 0 && left == 0 && teardown == 0 && counts.verified == rounds * SLOTS;
    println!(
        "RESULT test=mmu-stress check=totals rounds={rounds} mapped={} by_update={} by_store={} verified={} unmapped={} errors={} status={}",
        counts.mapped,
        counts.by_update,
        counts.by_store,
        counts.verified,
        counts.unmapped,
        counts.errors,
        if pass { "pass" } else { "fail" }
    );
    if let Some((round, slot, what)) = counts.first_error {
        println!("first error: round {round} slot {slot} value {what}");
    }
    println!(
        "RESULT test=mmu-stress check=teardown entries_left={left} ret={teardown} status={}",
        if left == 0 && teardown == 0 { "pass" } else { "fail" }
    );
    println!("RESULT test=mmu-stress status={}", if pass { "pass" } else { "fail" });
}
