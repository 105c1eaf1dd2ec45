//! `bench-mmu [N]`: what a guest pays to change one of its page-table entries, each way
//! the PV MMU offers; `cargo xtask bench mmu` runs it on both hypervisors. Every
//! iteration really changes the entry (it alternates between a read-only and a
//! writable mapping of one data page), so each one is validated.
//!
//! The ops: `mmu_update_one` (one MMU_NORMAL_PT_UPDATE), `mmu_update_batch64` (one
//! call with 64 updates, to 64 entries: cycles are per call), `update_va_mapping` (the
//! entry named by the address it maps, with UVMF_INVLPG) and `ptwr_write` (a plain
//! store into the read-only L1: the writable page-table assist).
//!
//! The tables are the `ptwr` check's kind, under L4 slot 253: an L3, L2 and L1 of our
//! last frames, the L1 mapping itself read-only at entry 1.

use super::bench::{iterations, measure, report_calibration, report_op, report_overhead};
use crate::console::println;
use crate::platform;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::mmu::{MmuUpdate, DOMID_SELF, UVMF_INVLPG};
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::{GuestArray, GuestOut};

const TEST: &str = "bench-mmu";
const SLOT: u64 = 253;
const BASE: u64 = SLOT << 39;
const L1_VA: u64 = BASE + 0x1000;
/// The entries the ops change: 64 from index 64 up, mapping pages from BASE + 256 KiB.
const FIRST: u64 = 64;
const BATCH: usize = 64;
const READ_ONLY: u64 = 0x25;
const WRITABLE: u64 = 0x27;
const TABLE: u64 = 0x27;

fn l4_entry(info: &StartInfo, value: u64) -> i64 {
    let l4 = platform::pfn_to_mfn(info, (info.pt_base - platform::virt_base()) >> 12).unwrap_or(0);
    let update = MmuUpdate { ptr: (l4 << 12) + SLOT * 8, val: value };
    // SAFETY: one readable request for an L4 slot nothing else uses.
    unsafe { calls::mmu_update(GuestArray::from_slice(&[update]), 1, GuestOut::NULL, DOMID_SELF) }
}

fn mmu_update(requests: &[MmuUpdate]) -> i64 {
    // SAFETY: readable requests for entries of our own L1 under slot 253.
    unsafe { calls::mmu_update(GuestArray::from_slice(requests), requests.len() as u32, GuestOut::NULL, DOMID_SELF) }
}

pub fn run(info: &StartInfo, command: &str) {
    let Some(iterations) = iterations(TEST, command) else { return };
    let mfn = |back: u64| platform::pfn_to_mfn(info, info.nr_pages - back).unwrap_or(0);
    let (l3, l2, l1, data) = (mfn(20), mfn(21), mfn(22), mfn(23));
    let built = super::usermode::fill_frame(info, data, &[])
        && super::usermode::fill_frame(info, l1, &[(1, (l1 << 12) | READ_ONLY)])
        && super::usermode::fill_frame(info, l2, &[(0, (l1 << 12) | TABLE)])
        && super::usermode::fill_frame(info, l3, &[(0, (l2 << 12) | TABLE)])
        && l4_entry(info, (l3 << 12) | TABLE) == 0;
    if !built {
        println!("RESULT test={TEST} status=fail reason=setup");
        return;
    }
    let entry = |i: u64| (l1 << 12) + (FIRST + i) * 8;
    let value = |n: u64| (data << 12) | if n.is_multiple_of(2) { READ_ONLY } else { WRITABLE };
    let mut failed = 0u64;
    let mut count = 0u64;

    report_overhead(TEST, iterations);
    let one = measure(iterations, || {
        count += 1;
        let request = [MmuUpdate { ptr: entry(0), val: value(count) }];
        failed += u64::from(mmu_update(&request) != 0);
    });
    report_op(TEST, "mmu_update_one", iterations, one);
    let mut batch = [MmuUpdate::default(); BATCH];
    let batched = measure(iterations, || {
        count += 1;
        for (i, request) in batch.iter_mut().enumerate() {
            *request = MmuUpdate { ptr: entry(i as u64), val: value(count) };
        }
        failed += u64::from(mmu_update(&batch) != 0);
    });
    report_op(TEST, "mmu_update_batch64", iterations, batched);
    let va = BASE + FIRST * 4096;
    let by_va = measure(iterations, || {
        count += 1;
        // SAFETY: remaps a page of ours that nothing else uses.
        failed += u64::from(unsafe { calls::update_va_mapping(va, value(count), UVMF_INVLPG) } != 0);
    });
    report_op(TEST, "update_va_mapping", iterations, by_va);
    let slot = (L1_VA + FIRST * 8) as *mut u64;
    let stored = measure(iterations, || {
        count += 1;
        // SAFETY: the store faults (the L1 is mapped read-only) and the hypervisor
        // writes the entry for us, checked; the entry maps our own data page.
        unsafe { slot.write_volatile(value(count)) };
    });
    // The last store must be there: a store the hypervisor dropped would be cheap.
    // SAFETY: the L1 is readable at L1_VA.
    let last = unsafe { slot.read_volatile() } & !0x160;
    failed += u64::from(last != value(count) & !0x160);
    report_op(TEST, "ptwr_write", iterations, stored);

    report_calibration(TEST);
    failed += u64::from(l4_entry(info, 0) != 0);
    let status = if failed == 0 { "pass" } else { "fail" };
    println!("RESULT test={TEST} status={status} failed_ops={failed}");
}
