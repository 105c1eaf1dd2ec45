//! `memory`: what memory_op tells a PV kernel and the machine-to-phys table it reads
//! directly, one RESULT line per check, so the conformance harness compares the answers
//! with Xen's: the machine's and the domain's sizes, where the M2P table is, that it
//! maps our frames back to our frame numbers, that it is read-only to us, and that
//! MMU_MACHPHYS_UPDATE changes our own entries and no one else's.

use super::{probe, report, Expect, Tally};
use crate::console::println;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::memory::*;
use hypercall_abi::ops::mmu::{MmuUpdate, DOMID_SELF, MMU_MACHPHYS_UPDATE};
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::{GuestArray, GuestHandle, GuestOut};

const ESRCH: i64 = -3;
const EFAULT: i64 = -14;
const EINVAL: i64 = -22;
const ENOSYS: i64 = -38;
const UNMAPPED: u64 = 0x7fff_dead_0000;

fn memory_op(cmd: u64, arg: u64) -> i64 {
    // SAFETY: every caller passes a pointer to a live, correctly sized local, NULL, or
    // an address that is not mapped (which the hypervisor must refuse).
    unsafe { calls::memory_op(cmd, GuestHandle::from_raw(arg)) }
}

fn reservation_query(cmd: u32, domid: u16) -> i64 {
    memory_op(cmd.into(), &domid as *const u16 as u64)
}

/// Entry `mfn` of the M2P table, read as a PV kernel reads it: a plain load.
fn m2p(mfn: u64) -> u64 {
    let entry = (MACH2PHYS_VIRT_START + mfn * 8) as *const u64;
    // SAFETY: both hypervisors map the table read-only at this address in every
    // guest, for every machine frame of RAM, and our frames are RAM.
    unsafe { entry.read_volatile() }
}

fn machphys_update(mfn: u64, pfn: u64) -> i64 {
    let request = MmuUpdate { ptr: (mfn << 12) | MMU_MACHPHYS_UPDATE, val: pfn };
    // SAFETY: one readable request; MACHPHYS_UPDATE changes only the M2P table.
    unsafe { calls::mmu_update(GuestArray::from_slice(&[request]), 1, GuestOut::NULL, DOMID_SELF) }
}

/// A reservation command on `extents` (frame numbers in or out), for ourselves.
fn reservation(op: u32, extents: &mut [u64]) -> i64 {
    reservation_at(op, extents.len() as u64, extents.as_mut_ptr() as u64)
}

fn reservation_at(op: u32, nr_extents: u64, list: u64) -> i64 {
    let r = MemoryReservation { extent_start: list, nr_extents, domid: DOMID_SELF, ..Default::default() };
    memory_op(op.into(), &r as *const MemoryReservation as u64)
}

/// Ballooning: our last frames (outside the initial mapping, so nothing maps them) go
/// back and come again, and the counts and M2P entries follow.
fn balloon(tally: &mut Tally, info: &StartInfo, m2p_frame: u64, max_page: i64) {
    // SAFETY: the p2m list is ours, mapped writable, nr_pages entries; we keep it
    // current as a PV kernel must when its frames change.
    let p2m = unsafe { core::slice::from_raw_parts_mut(info.mfn_list as *mut u64, info.nr_pages as usize) };
    let n = p2m.len();
    let current = || reservation_of(XENMEM_CURRENT_RESERVATION);
    let before = current();
    let mut one = [p2m[n - 1]];
    tally.ret("decrease_reservation", reservation(XENMEM_DECREASE_RESERVATION, &mut one), 1);
    let pass = current() == before - 1;
    println!("RESULT test=memory check=decrease_reservation_counts one_less={} status={}", u8::from(pass), if pass { "pass" } else { "fail" });
    tally.add(pass);
    tally.ret("decrease_reservation_again", reservation(XENMEM_DECREASE_RESERVATION, &mut one), 0);
    tally.ret("decrease_reservation_not_ours", reservation(XENMEM_DECREASE_RESERVATION, &mut [m2p_frame]), 0);
    tally.ret("decrease_reservation_unmapped_list", reservation_at(XENMEM_DECREASE_RESERVATION, 1, UNMAPPED), 0);
    tally.ret("decrease_reservation_unreadable", memory_op(XENMEM_DECREASE_RESERVATION.into(), UNMAPPED), 0);

    let mut new = [0u64];
    tally.ret("increase_reservation", reservation(XENMEM_INCREASE_RESERVATION, &mut new), 1);
    let pass = current() == before && (new[0] as i64) < max_page;
    println!("RESULT test=memory check=increase_reservation_counts back_to_start={} status={}", u8::from(pass), if pass { "pass" } else { "fail" });
    tally.add(pass);
    tally.ret("machphys_update_new_frame", machphys_update(new[0], (n - 1) as u64), 0);
    p2m[n - 1] = new[0];
    tally.add(m2p(new[0]) == (n - 1) as u64);

    let mut second = [p2m[n - 2]];
    tally.ret("decrease_before_populate", reservation(XENMEM_DECREASE_RESERVATION, &mut second), 1);
    second[0] = (n - 2) as u64;
    tally.ret("populate_physmap", reservation(XENMEM_POPULATE_PHYSMAP, &mut second), 1);
    let populated = second[0];
    let pass = m2p(populated) == (n - 2) as u64 && current() == before;
    println!("RESULT test=memory check=populate_physmap_sets_m2p m2p_set={} status={}", u8::from(pass), if pass { "pass" } else { "fail" });
    tally.add(pass);
    p2m[n - 2] = populated;
    let maximum = reservation_of(XENMEM_MAXIMUM_RESERVATION);
    println!("RESULT test=memory check=reservation_room more_allowed={} maximum={maximum}", u8::from(maximum > current()));
    larger_extents(tally, &current);
}

/// Extents of more than one page (extent_order): runs of 2^order contiguous frames,
/// aligned to their size, counted page by page.
fn larger_extents(tally: &mut Tally, current: &dyn Fn() -> i64) {
    let before = current();
    let mut run = [0u64];
    tally.ret("increase_reservation_order_1", ordered(XENMEM_INCREASE_RESERVATION, 1, &mut run), 1);
    let pass = run[0].is_multiple_of(2) && current() == before + 2;
    println!("RESULT test=memory check=increase_order_1_aligned_and_counted pass={} status={}", u8::from(pass), if pass { "pass" } else { "fail" });
    tally.add(pass);
    tally.ret("decrease_reservation_order_1", ordered(XENMEM_DECREASE_RESERVATION, 1, &mut run), 1);
    let pass = current() == before;
    println!("RESULT test=memory check=decrease_order_1_counted pass={} status={}", u8::from(pass), if pass { "pass" } else { "fail" });
    tally.add(pass);
    // Guest frames far past our memory: a PV guest names them freely.
    let gpfn = 0x10_0000u64;
    let mut populate = [gpfn];
    tally.ret("populate_physmap_order_2", ordered(XENMEM_POPULATE_PHYSMAP, 2, &mut populate), 1);
    let mfn = populate[0];
    let pass = mfn.is_multiple_of(4) && (0..4).all(|i| m2p(mfn + i) == gpfn + i) && current() == before + 4;
    println!("RESULT test=memory check=populate_order_2_sets_m2p pass={} status={}", u8::from(pass), if pass { "pass" } else { "fail" });
    tally.add(pass);
    tally.ret("decrease_reservation_order_2", ordered(XENMEM_DECREASE_RESERVATION, 2, &mut populate), 1);
    // Frames given back already are not ours any more.
    let mut misaligned = [run[0] | 1];
    tally.ret("decrease_reservation_order_1_not_ours", ordered(XENMEM_DECREASE_RESERVATION, 1, &mut misaligned), 0);
    // 32 MiB in one extent: dom0 may (Xen 4.17 allows it; domUs get less).
    let mut huge = [0u64];
    tally.ret("increase_reservation_order_13", ordered(XENMEM_INCREASE_RESERVATION, 13, &mut huge), 1);
    tally.ret("decrease_reservation_order_13", ordered(XENMEM_DECREASE_RESERVATION, 13, &mut huge), 1);
    let pass = current() == before;
    println!("RESULT test=memory check=larger_extents_all_back pass={} status={}", u8::from(pass), if pass { "pass" } else { "fail" });
    tally.add(pass);
}

fn ordered(op: u32, order: u32, list: &mut [u64]) -> i64 {
    let r = MemoryReservation {
        extent_start: list.as_mut_ptr() as u64,
        nr_extents: list.len() as u64,
        extent_order: order,
        domid: DOMID_SELF,
        ..Default::default()
    };
    memory_op(op.into(), &r as *const MemoryReservation as u64)
}

fn reservation_of(cmd: u32) -> i64 {
    reservation_query(cmd, DOMID_SELF)
}

pub fn run(info: &StartInfo) {
    let mut tally = Tally::new("memory");
    if crate::traps::install() != 0 {
        tally.add(false);
        tally.finish();
        return;
    }
    // SAFETY: the builder maps the p2m list (nr_pages entries) at mfn_list.
    let p2m = unsafe { core::slice::from_raw_parts(info.mfn_list as *const u64, info.nr_pages as usize) };

    let max_page = memory_op(XENMEM_MAXIMUM_RAM_PAGE.into(), 0);
    let ours_below = p2m.iter().all(|&mfn| (mfn as i64) < max_page);
    println!("RESULT test=memory check=maximum_ram_page ret={max_page} above_our_frames={}", u8::from(ours_below));
    tally.add(ours_below);
    tally.ret("maximum_ram_page_with_extent", memory_op(u64::from(XENMEM_MAXIMUM_RAM_PAGE) | 1 << MEMOP_EXTENT_SHIFT, 0), EINVAL);

    let current = reservation_query(XENMEM_CURRENT_RESERVATION, DOMID_SELF);
    let pass = current == info.nr_pages as i64;
    println!("RESULT test=memory check=current_reservation is_nr_pages={} status={}", u8::from(pass), if pass { "pass" } else { "fail" });
    tally.add(pass);
    tally.ret("current_reservation_own_id", reservation_query(XENMEM_CURRENT_RESERVATION, 0), current);
    tally.ret("current_reservation_no_such_domain", reservation_query(XENMEM_CURRENT_RESERVATION, 9), ESRCH);
    tally.ret("current_reservation_domid_io", reservation_query(XENMEM_CURRENT_RESERVATION, 0x7ff1), ESRCH);
    tally.ret("current_reservation_unmapped", memory_op(XENMEM_CURRENT_RESERVATION.into(), UNMAPPED), EFAULT);
    let maximum = reservation_query(XENMEM_MAXIMUM_RESERVATION, DOMID_SELF);
    let pass = maximum >= current;
    println!("RESULT test=memory check=maximum_reservation at_least_current={} status={}", u8::from(pass), if pass { "pass" } else { "fail" });
    tally.add(pass);

    let mut mapping = MachphysMapping::default();
    let ret = memory_op(XENMEM_MACHPHYS_MAPPING.into(), &mut mapping as *mut _ as u64);
    let pass = ret == 0 && mapping.v_start == MACH2PHYS_VIRT_START;
    println!(
        "RESULT test=memory check=machphys_mapping ret={ret} v_start={:#x} v_end={:#x} max_mfn={:#x} status={}",
        mapping.v_start,
        mapping.v_end,
        mapping.max_mfn,
        if pass { "pass" } else { "fail" }
    );
    tally.add(pass);
    let with_extent = u64::from(XENMEM_MACHPHYS_MAPPING) | 3 << MEMOP_EXTENT_SHIFT;
    // Xen's x86 commands take no extent: with one they are commands it does not know.
    tally.ret("machphys_mapping_with_extent", memory_op(with_extent, &mut mapping as *mut _ as u64), ENOSYS);
    let mut count = MemoryMap::default();
    let with_extent = u64::from(XENMEM_MACHINE_MEMORY_MAP) | 1 << MEMOP_EXTENT_SHIFT;
    tally.ret("machine_memory_map_with_extent", memory_op(with_extent, &mut count as *mut _ as u64), ENOSYS);
    let mut list = MachphysMfnList::default();
    let with_extent = u64::from(XENMEM_MACHPHYS_MFN_LIST) | 1 << MEMOP_EXTENT_SHIFT;
    tally.ret("machphys_mfn_list_with_extent", memory_op(with_extent, &mut list as *mut _ as u64), ENOSYS);
    tally.ret("machphys_mapping_unmapped", memory_op(XENMEM_MACHPHYS_MAPPING.into(), UNMAPPED), EFAULT);

    // Every frame of ours maps back to its frame number (sampled: first, last, some).
    let n = p2m.len();
    let samples = [0, 1, n / 3, n / 2, n - 2, n - 1];
    let consistent = samples.iter().all(|&pfn| m2p(p2m[pfn]) == pfn as u64);
    println!(
        "RESULT test=memory check=m2p_maps_our_frames_back consistent={} status={}",
        u8::from(consistent),
        if consistent { "pass" } else { "fail" }
    );
    tally.add(consistent);
    // Entry 0 (machine frame 0 is RAM on both), so the fault address is the same.
    let p = probe!("", "mov qword ptr [rdi], rsi", MACH2PHYS_VIRT_START, 0u64);
    tally.add(report("memory", "m2p_is_read_only", &p, &Expect { cr2: Some(MACH2PHYS_VIRT_START), ..Expect::fault(14, 3) }));

    // MMU_MACHPHYS_UPDATE: our own frame's entry changes and reads back; then restored.
    let pfn = n / 2;
    let mfn = p2m[pfn];
    tally.ret("machphys_update_own_frame", machphys_update(mfn, 0x1234_5678), 0);
    let seen = m2p(mfn);
    let pass = seen == 0x1234_5678;
    println!("RESULT test=memory check=machphys_update_reads_back value={seen:#x} status={}", if pass { "pass" } else { "fail" });
    tally.add(pass);
    tally.ret("machphys_update_restore", machphys_update(mfn, pfn as u64), 0);
    tally.add(m2p(mfn) == pfn as u64);

    let mut list_mfns = [0u64; 4];
    let mut list = MachphysMfnList { max_extents: 4, extent_start: list_mfns.as_mut_ptr() as u64, ..Default::default() };
    let ret = memory_op(XENMEM_MACHPHYS_MFN_LIST.into(), &mut list as *mut _ as u64);
    let pass = ret == 0 && list.nr_extents >= 1;
    println!("RESULT test=memory check=machphys_mfn_list ret={ret} nr_extents={} status={}", list.nr_extents, if pass { "pass" } else { "fail" });
    tally.add(pass);
    // Not ours: the M2P table's own first frame, and a frame far beyond RAM.
    tally.ret("machphys_update_m2p_frame", machphys_update(list_mfns[0], 0), EINVAL);
    tally.ret("machphys_update_beyond_ram", machphys_update(0x7_ffff_ff00, 0), EINVAL);

    // The pseudo-physical map: none was set for a PV dom0.
    let mut map = MemoryMap::default();
    tally.ret("memory_map", memory_op(XENMEM_MEMORY_MAP.into(), &mut map as *mut _ as u64), ENOSYS);
    // The machine's map: dom0 may read it.
    let mut count = MemoryMap::default();
    tally.ret("machine_memory_map_count", memory_op(XENMEM_MACHINE_MEMORY_MAP.into(), &mut count as *mut _ as u64), 0);
    let mut entries = [E820Entry::default(); 32];
    let mut small = MemoryMap { nr_entries: count.nr_entries, _pad: 0, buffer: entries.as_mut_ptr() as u64 };
    tally.ret("machine_memory_map_no_spare_entry", memory_op(XENMEM_MACHINE_MEMORY_MAP.into(), &mut small as *mut _ as u64), EINVAL);
    let mut full = MemoryMap { nr_entries: entries.len() as u32, _pad: 0, buffer: entries.as_mut_ptr() as u64 };
    let ret = memory_op(XENMEM_MACHINE_MEMORY_MAP.into(), &mut full as *mut _ as u64);
    let written = (full.nr_entries as usize).min(entries.len());
    let ram_frames: u64 = entries[..written].iter().filter(|e| e.kind == E820_RAM).map(|e| e.size / 4096).sum();
    let pass = ret == 0 && full.nr_entries == count.nr_entries && ram_frames >= info.nr_pages;
    println!(
        "RESULT test=memory check=machine_memory_map ret={ret} same_count={} ram_holds_us={} status={}",
        u8::from(full.nr_entries == count.nr_entries),
        u8::from(ram_frames >= info.nr_pages),
        if pass { "pass" } else { "fail" }
    );
    tally.add(pass);

    // The order of Xen's answers: entries are written while they fit, then the spare
    // one is asked for, so a bad buffer is -EINVAL with no room and -EFAULT with room.
    let bad_map = |room: u32, buffer: u64| {
        let mut m = MemoryMap { nr_entries: room, _pad: 0, buffer };
        memory_op(XENMEM_MACHINE_MEMORY_MAP.into(), &mut m as *mut _ as u64)
    };
    let n = count.nr_entries;
    tally.ret("machine_memory_map_no_room_bad_buffer", bad_map(0, 0xffff_8000_0000_0000), EINVAL);
    tally.ret("machine_memory_map_unmapped_buffer", bad_map(n, UNMAPPED), EFAULT);
    tally.ret("machine_memory_map_hypervisor_buffer", bad_map(n + 1, 0xffff_8000_0000_0000), EFAULT);
    tally.ret("machine_memory_map_read_only_buffer", bad_map(n + 1, info.pt_base), EFAULT);
    balloon(&mut tally, info, list_mfns[0], max_page);
    tally.ret("unknown_command", memory_op(63, 0), ENOSYS);
    tally.finish();
}
