//! `mmu-attack`: a hostile guest kernel tries to get around the PV MMU rules with its
//! own page tables, one RESULT line per attack with the errno (or the fault) it got,
//! compared with Xen's by the conformance harness. Every attack must be refused and the
//! domain must keep running; the line after each refused update checks that the entry
//! it aimed at did not change.
//!
//! The playground is the `ptwr` check's kind, under L4 slot 252: L3, L2 and L1 tables
//! from our last frames, the L1 mapping a data page writable (entry 0) and itself
//! read-only (entry 1).

use super::{probe, report, Expect, Tally};
use crate::console::println;
use crate::platform;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::memory::{MachphysMfnList, XENMEM_MACHPHYS_MFN_LIST};
use hypercall_abi::ops::mmu::*;
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::{GuestArray, GuestHandle, GuestOut};

const SLOT: u64 = 252;
const BASE: u64 = SLOT << 39;
const L1_VA: u64 = BASE + 0x1000;
/// Where the L2 gets mapped read-only for the store attack (L1 entry 2).
const L2_VA: u64 = BASE + 0x2000;
const DATA_RW: u64 = 0x67;
const READ_ONLY: u64 = 0x25;
const TABLE: u64 = 0x27;
/// Page size bit in an L2 entry: a 2 MiB page.
const LARGE: u64 = 1 << 7;
const EINVAL: i64 = -22;
const EBUSY: i64 = -16;
const EPERM: i64 = -1;

struct Playground {
    l4: u64,
    l3: u64,
    l2: u64,
    l1: u64,
    data: u64,
    spare: u64,
}

fn update(requests: &[MmuUpdate]) -> (i64, u32) {
    let mut done = 0u32;
    // SAFETY: readable requests; `done` is a live u32. Every request targets our own
    // playground tables or is an attack the hypervisor must refuse.
    let ret = unsafe { calls::mmu_update(GuestArray::from_slice(requests), requests.len() as u32, GuestOut::from_mut(&mut done), DOMID_SELF) };
    (ret, done)
}

fn one(ptr: u64, val: u64) -> i64 {
    update(&[MmuUpdate { ptr, val }]).0
}

fn read_entry(table_va: u64, index: u64) -> u64 {
    // SAFETY: table_va maps one of our tables read-only.
    unsafe { ((table_va + index * 8) as *const u64).read_volatile() }
}

fn m2p_frame() -> u64 {
    let mut frames = [0u64; 1];
    let mut list = MachphysMfnList { max_extents: 1, extent_start: frames.as_mut_ptr() as u64, ..Default::default() };
    // SAFETY: a live MachphysMfnList with room for one frame number.
    unsafe { calls::memory_op(XENMEM_MACHPHYS_MFN_LIST.into(), GuestHandle::from_mut(&mut list)) };
    frames[0]
}

fn unchanged(tally: &mut Tally, check: &str, before: u64, after: u64) {
    let pass = before == after;
    println!("RESULT test=mmu-attack check={check}_left_entry unchanged={} status={}", u8::from(pass), if pass { "pass" } else { "fail" });
    tally.add(pass);
}

fn build(info: &StartInfo) -> Option<Playground> {
    let mfn = |back: u64| platform::pfn_to_mfn(info, info.nr_pages - back);
    let p = Playground {
        l4: platform::pfn_to_mfn(info, (info.pt_base - platform::virt_base()) >> 12)?,
        l3: mfn(24)?,
        l2: mfn(25)?,
        l1: mfn(26)?,
        data: mfn(27)?,
        spare: mfn(28)?,
    };
    let built = super::usermode::fill_frame(info, p.data, &[])
        && super::usermode::fill_frame(info, p.spare, &[])
        && super::usermode::fill_frame(info, p.l1, &[(0, (p.data << 12) | DATA_RW), (1, (p.l1 << 12) | READ_ONLY)])
        && super::usermode::fill_frame(info, p.l2, &[(0, (p.l1 << 12) | TABLE)])
        && super::usermode::fill_frame(info, p.l3, &[(0, (p.l2 << 12) | TABLE)])
        && one((p.l4 << 12) + SLOT * 8, (p.l3 << 12) | TABLE) == 0;
    built.then_some(p)
}

pub fn run(info: &StartInfo) {
    let mut tally = Tally::new("mmu-attack");
    if crate::traps::install() != 0 {
        println!("RESULT test=mmu-attack status=fail reason=no-trap-table");
        return;
    }
    let Some(p) = build(info) else {
        println!("RESULT test=mmu-attack check=setup status=fail");
        tally.add(false);
        tally.finish();
        return;
    };
    let entry = |table: u64, index: u64| (table << 12) + index * 8;
    let target = entry(p.l1, 3);

    // What is not ours: the hypervisor's M2P frame (its number comes from
    // machphys_mfn_list), writable or read-only; memory past RAM.
    let m2p = m2p_frame();
    tally.ret("map_hypervisor_frame_writable", one(target, (m2p << 12) | DATA_RW), EBUSY);
    tally.ret("map_hypervisor_frame_readonly", one(target, (m2p << 12) | READ_ONLY), EBUSY);
    unchanged(&mut tally, "map_hypervisor_frame", 0, read_entry(L1_VA, 3));
    tally.ret("map_beyond_ram", one(target, (0x7_ffff_f000u64 << 12) | READ_ONLY), EPERM);
    // A page table mapped writable: our L1 itself, our L2, the live L4.
    for (check, frame) in [("map_own_l1_writable", p.l1), ("map_own_l2_writable", p.l2), ("map_current_l4_writable", p.l4)] {
        tally.ret(check, one(target, (frame << 12) | DATA_RW), EBUSY);
        unchanged(&mut tally, check, 0, read_entry(L1_VA, 3));
    }
    // Level confusion: an L4 entry pointing at the L4 itself, writable (a
    // self-map that would hand out every table writable); an L2 entry naming a data
    // page as if it were an L1; a frame mapped writable pinned as a table; an L2 pinned
    // as an L1.
    tally.ret("l4_maps_itself_writable", one(entry(p.l4, 251), (p.l4 << 12) | TABLE), EINVAL);
    tally.ret("l2_entry_to_writable_data", one(entry(p.l2, 1), (p.data << 12) | TABLE), EINVAL);
    tally.ret("pin_writable_frame_as_l1", platform::mmuext(MMUEXT_PIN_L1_TABLE, p.data), EINVAL);
    tally.ret("pin_l2_as_l1", platform::mmuext(MMUEXT_PIN_L1_TABLE, p.l2), EINVAL);
    // A 2 MiB page (superpages are not offered) and reserved bits.
    tally.ret("large_page_in_l2", one(entry(p.l2, 1), (p.spare << 12) | TABLE | LARGE), EINVAL);
    tally.ret("reserved_bit_in_l2", one(entry(p.l2, 1), (p.spare << 12) | TABLE | (1 << 51)), EINVAL);
    // The hypervisor's own L4 slots: neither writable nor clearable.
    for slot in [256u64, 262, 271] {
        let check = match slot {
            256 => "write_hypervisor_slot_256",
            262 => "write_hypervisor_slot_262",
            _ => "write_hypervisor_slot_271",
        };
        tally.ret(check, one(entry(p.l4, slot), 0), EINVAL);
    }
    tally.ret("update_va_mapping_hypervisor_address", platform::update_va_mapping(0xffff_8300_0000_0000, 0), EINVAL);
    // A batch whose second entry is bad: the first is applied, the third is not.
    let (ret, done) = update(&[
        MmuUpdate { ptr: entry(p.l1, 4), val: (p.spare << 12) | READ_ONLY },
        MmuUpdate { ptr: entry(p.l1, 5), val: (p.l1 << 12) | DATA_RW },
        MmuUpdate { ptr: entry(p.l1, 6), val: (p.spare << 12) | READ_ONLY },
    ]);
    let pass = ret == EBUSY && done == 1;
    println!("RESULT test=mmu-attack check=batch_stops_at_bad_entry ret={ret} done={done} status={}", if pass { "pass" } else { "fail" });
    tally.add(pass);
    let applied = (read_entry(L1_VA, 4) >> 12 == p.spare, read_entry(L1_VA, 5), read_entry(L1_VA, 6));
    let pass = applied == (true, 0, 0);
    println!(
        "RESULT test=mmu-attack check=batch_applied_only_the_first first={} second={:#x} third={:#x} status={}",
        u8::from(applied.0),
        applied.1,
        applied.2,
        if pass { "pass" } else { "fail" }
    );
    tally.add(pass);
    // A store into the L2 through a read-only mapping: only L1 stores are emulated.
    tally.ret("map_own_l2_readonly", one(entry(p.l1, 2), (p.l2 << 12) | READ_ONLY), 0);
    let probe = probe!("", "mov [rdi], rsi", L2_VA + 8, (p.spare << 12) | TABLE);
    tally.add(report("mmu-attack", "store_into_l2", &probe, &Expect { cr2: Some(L2_VA + 8), ..Expect::fault(14, 3) }));
    unchanged(&mut tally, "store_into_l2", 0, read_entry(L2_VA, 1));
    // Unpinning the live L4 works (the base pointer still holds it) and changes
    // nothing the guest can use: it can be pinned again.
    tally.ret("unpin_current_l4", platform::mmuext(MMUEXT_UNPIN_TABLE, p.l4), 0);
    tally.ret("map_unpinned_current_l4_writable", one(target, (p.l4 << 12) | DATA_RW), EBUSY);
    tally.ret("pin_current_l4_again", platform::mmuext(MMUEXT_PIN_L4_TABLE, p.l4), 0);

    tally.ret("teardown", one((p.l4 << 12) + SLOT * 8, 0), 0);
    tally.finish();
}
