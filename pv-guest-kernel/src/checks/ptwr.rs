//! `ptwr`: the writable page-table assist (xen.h VMASST_TYPE_writable_pagetables). With
//! it on, a PV kernel may write an entry of one of its L1 page tables with a plain
//! store, although that table is mapped read-only: the hypervisor checks the entry as
//! mmu_update would and writes it. One RESULT line per check, compared with Xen's by
//! the conformance harness: stores that must work (mov, xchg, cmpxchg, 4- and 2-byte
//! parts of an entry) and stores that must stay #PF (an entry the rules refuse, a
//! misaligned store, the assist off).
//!
//! The test builds its own corner of the address space under L4 slot 254 (nothing else
//! uses it): L3, L2 and L1 tables from our last frames, the L1 mapping a data page and,
//! read-only, itself.

use super::{probe, report, Expect, Tally};
use crate::console::println;
use crate::platform;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::memory::{MachphysMfnList, XENMEM_MACHPHYS_MFN_LIST};
use hypercall_abi::ops::mmu::{MmuUpdate, DOMID_SELF};
use hypercall_abi::ops::vm_assist::{VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_WRITABLE_PAGETABLES};
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::{GuestArray, GuestHandle, GuestOut};

const SLOT: u64 = 254;
const BASE: u64 = SLOT << 39;
/// The L1 table itself, read-only, at entry 1 of the region.
const L1_VA: u64 = BASE + 0x1000;
/// The entry the stores aim at (index 2), and the page it maps.
const ENTRY_VA: u64 = L1_VA + 2 * 8;
const PAGE_VA: u64 = BASE + 2 * 0x1000;
const DATA_RW: u64 = 0x67;
const READ_ONLY: u64 = 0x25;
const TABLE: u64 = 0x27;
const MARKER: u64 = 0x5054_5752_2d6f_6b21;
/// #PF error code of a write to a present read-only page. The kernel runs in ring 3,
/// but the error code it gets does not say "user": the hypervisor clears that bit for
/// faults the guest kernel takes.
const WRITE_FAULT: u64 = 3;
/// Bits of an entry the checks do not compare: accessed and dirty (the CPU's), and
/// global, which Xen 4.17 adds to present entries when its pv-global-pages option is
/// on (a tunable, not ABI; docs/xen-abi.md).
const NOT_COMPARED: u64 = 0x160;

/// Entry 2 of our L1, without the bits the checks do not compare.
fn entry() -> u64 {
    read(ENTRY_VA) & !NOT_COMPARED
}

fn set_assist(cmd: u32) -> i64 {
    // SAFETY: vm_assist only changes how the hypervisor treats our own writes.
    unsafe { calls::vm_assist(cmd, VMASST_TYPE_WRITABLE_PAGETABLES) }
}

fn l4_entry(mfn_and_flags: u64, info: &StartInfo) -> i64 {
    let l4 = platform::pfn_to_mfn(info, (info.pt_base - platform::virt_base()) >> 12).unwrap_or(0);
    let update = MmuUpdate { ptr: (l4 << 12) + SLOT * 8, val: mfn_and_flags };
    // SAFETY: one readable request for an L4 slot nothing else uses.
    unsafe { calls::mmu_update(GuestArray::from_slice(&[update]), 1, GuestOut::NULL, DOMID_SELF) }
}

/// The first frame of the M2P table: the hypervisor's, never ours to map writable.
fn m2p_frame() -> u64 {
    let mut frames = [0u64; 1];
    let mut list = MachphysMfnList { max_extents: 1, extent_start: frames.as_mut_ptr() as u64, ..Default::default() };
    // SAFETY: a live MachphysMfnList with room for one frame number.
    unsafe { calls::memory_op(XENMEM_MACHPHYS_MFN_LIST.into(), GuestHandle::from_mut(&mut list)) };
    frames[0]
}

fn read(va: u64) -> u64 {
    // SAFETY: callers read addresses this test mapped (the L1, read-only, and the data
    // page).
    unsafe { (va as *const u64).read_volatile() }
}

fn value_line(tally: &mut Tally, check: &str, pass: bool, value: u64) {
    println!("RESULT test=ptwr check={check} value={value:#x} status={}", if pass { "pass" } else { "fail" });
    tally.add(pass);
}

pub fn run(info: &StartInfo) {
    let mut tally = Tally::new("ptwr");
    if crate::traps::install() != 0 {
        println!("RESULT test=ptwr status=fail reason=no-trap-table");
        return;
    }
    let mfn = |back: u64| platform::pfn_to_mfn(info, info.nr_pages - back).unwrap_or(0);
    let (l3, l2, l1, data) = (mfn(16), mfn(17), mfn(18), mfn(19));
    let built = super::usermode::fill_frame(info, data, &[(0, MARKER)])
        && super::usermode::fill_frame(info, l1, &[(1, (l1 << 12) | READ_ONLY)])
        && super::usermode::fill_frame(info, l2, &[(0, (l1 << 12) | TABLE)])
        && super::usermode::fill_frame(info, l3, &[(0, (l2 << 12) | TABLE)])
        && l4_entry((l3 << 12) | TABLE, info) == 0;
    println!("RESULT test=ptwr check=setup built={} status={}", u8::from(built), if built { "pass" } else { "fail" });
    tally.add(built);
    if !built {
        tally.finish();
        return;
    }
    let ret = set_assist(VMASST_CMD_ENABLE);
    println!("RESULT test=ptwr check=vm_assist_enable ret={ret} status={}", if ret == 0 { "pass" } else { "fail" });
    tally.add(ret == 0);
    let fault_at_entry = Expect { cr2: Some(ENTRY_VA), ..Expect::fault(14, WRITE_FAULT) };

    // A plain 8-byte store of a valid entry: the page appears.
    let p = probe!("", "mov [rdi], rsi", ENTRY_VA, (data << 12) | DATA_RW);
    tally.add(report("ptwr", "store_entry", &p, &Expect::none()));
    value_line(&mut tally, "store_entry_maps_the_page", read(PAGE_VA) == MARKER, u64::from(read(PAGE_VA) == MARKER));
    // Entries the rules refuse: the L1 itself writable, the M2P table's frame writable.
    let p = probe!("", "mov [rdi], rsi", ENTRY_VA, (l1 << 12) | DATA_RW);
    tally.add(report("ptwr", "store_table_writable", &p, &fault_at_entry));
    let p = probe!("", "mov [rdi], rsi", ENTRY_VA, (m2p_frame() << 12) | DATA_RW);
    tally.add(report("ptwr", "store_foreign_frame_writable", &p, &fault_at_entry));
    value_line(&mut tally, "refused_stores_change_nothing", entry() == (data << 12) | 0x07, entry() & 0xfff);
    // xchg hands back the old entry (what matters: its frame; A/D are the CPU's).
    let p = probe!("mov rax, rsi", "xchg [rdi], rax", ENTRY_VA, 0u64);
    tally.add(report("ptwr", "xchg_entry", &p, &Expect::none()));
    value_line(&mut tally, "xchg_returns_old_entry", p.rax >> 12 == data, u64::from(p.rax >> 12 == data));
    value_line(&mut tally, "xchg_cleared_entry", read(ENTRY_VA) == 0, read(ENTRY_VA));
    // cmpxchg: expecting 1 where 0 is fails and loads 0; expecting 0 succeeds.
    let p = probe!("mov eax, 1", "lock cmpxchg [rdi], rsi", ENTRY_VA, (data << 12) | READ_ONLY);
    tally.add(report("ptwr", "cmpxchg_mismatch", &p, &Expect::none()));
    value_line(&mut tally, "cmpxchg_mismatch_loads_entry", p.rax == 0 && read(ENTRY_VA) == 0, p.rax);
    let p = probe!("xor eax, eax", "lock cmpxchg [rdi], rsi", ENTRY_VA, (data << 12) | READ_ONLY);
    tally.add(report("ptwr", "cmpxchg_match", &p, &Expect::none()));
    value_line(&mut tally, "cmpxchg_match_writes_entry", entry() == (data << 12) | (READ_ONLY & !NOT_COMPARED), entry() & 0xfff);
    // A 4-byte store replaces the upper half only: NX on, the frame kept.
    let p = probe!("", "mov dword ptr [rdi + 4], 0x80000000", ENTRY_VA, 0u64);
    tally.add(report("ptwr", "store_upper_half", &p, &Expect::none()));
    let expected = (1 << 63) | (data << 12) | (READ_ONLY & !NOT_COMPARED);
    value_line(&mut tally, "store_upper_half_keeps_lower", entry() == expected, entry() >> 32);
    // A 2-byte store replaces the low flags and frame bits: the mapping turns writable.
    let p = probe!("", "mov word ptr [rdi], si", ENTRY_VA, ((data << 12) | TABLE) & 0xffff);
    tally.add(report("ptwr", "store_two_bytes", &p, &Expect::none()));
    let expected = (1 << 63) | (data << 12) | 0x07;
    value_line(&mut tally, "store_two_bytes_keeps_the_rest", entry() == expected, entry() & 0xfff);
    // What the assist does not cover: a misaligned store.
    let p = probe!("", "mov [rdi + 4], rsi", ENTRY_VA, 0u64);
    tally.add(report("ptwr", "store_misaligned", &p, &Expect { cr2: Some(ENTRY_VA + 4), ..Expect::fault(14, WRITE_FAULT) }));
    let ret = set_assist(VMASST_CMD_DISABLE);
    println!("RESULT test=ptwr check=vm_assist_disable ret={ret} status={}", if ret == 0 { "pass" } else { "fail" });
    tally.add(ret == 0);
    // Xen 4.17 emulates the store all the same.
    let p = probe!("", "mov [rdi], rsi", ENTRY_VA, 0u64);
    tally.add(report("ptwr", "store_without_assist", &p, &Expect::none()));
    value_line(&mut tally, "store_without_assist_cleared_entry", read(ENTRY_VA) == 0, read(ENTRY_VA));

    let ret = l4_entry(0, info);
    println!("RESULT test=ptwr check=teardown ret={ret} status={}", if ret == 0 { "pass" } else { "fail" });
    tally.add(ret == 0);
    tally.finish();
}
