use super::*;
use crate::hypercall::test_support::{TestGuest, GUEST_DATA_VA, L1, SPARE_FRAMES};
use crate::trap::cpuid::CpuidPolicy;
use crate::trap::emulate::HostView;
use crate::trap::entry::{guest_exception, ExceptionContext};
use hypercall_abi::ops::traps::TrapInfo;

/// Where the guest sees its own L1 table, read-only: entry 4 of that L1.
const L1_VA: u64 = GUEST_DATA_VA + 4 * 4096;
const PAGE_FAULT_HANDLER: u64 = 0x10_e000;
/// A present, user, accessed, read-only entry; and the same writable and dirty.
const READ_ONLY: u64 = 0x25;
const WRITABLE: u64 = 0x67;
/// The entry the stores below aim at (index 5: nothing mapped there yet).
const TARGET: u64 = L1_VA + 5 * 8;

fn guest() -> TestGuest {
    let mut g = TestGuest::new();
    g.domain.traps.set_trap(&TrapInfo { vector: 14, flags: 0, cs: 0xe033, _pad: 0, address: PAGE_FAULT_HANDLER });
    let mut tables = PageTables { frames: &mut g.host.frames, memory: &mut g.host.memory, domain: 0 };
    tables.update_entry(L1 >> 12, 1, 4, L1 | READ_ONLY).unwrap();
    g.regs.rsp = GUEST_DATA_VA + TestGuest::MAPPED_BYTES - 8;
    g
}

/// Runs `code` at the start of the guest's data page as if it had just faulted on a
/// write to `cr2`, and says what the exception path decided.
fn store(g: &mut TestGuest, code: &[u8], cr2: u64) {
    g.poke(GUEST_DATA_VA, code);
    g.regs.rip = GUEST_DATA_VA;
    g.regs.vector = 14;
    g.regs.error_code = PF_PRESENT | PF_WRITE | 4;
    let hw = ExceptionContext { cr2, debug_status: 0, host: HostView { cr0: 0, cr4: 0, efer: 0 } };
    let cpuid = CpuidPolicy::from_host(|_, _| [0; 4], 0x4_0011, 36);
    guest_exception(&mut g.domain, &mut g.host.memory, &mut g.host.frames, &cpuid, &mut crate::trap::ports::NoPorts, &mut g.regs, &hw)
}

fn entry(g: &TestGuest, index: u64) -> u64 {
    g.host.memory.read_u64(L1 + index * 8).unwrap()
}

const SPARE: u64 = SPARE_FRAMES.start << 12;

#[test]
fn a_plain_store_to_an_l1_entry_is_checked_and_applied() {
    let mut g = guest();
    g.regs.rdi = TARGET;
    g.regs.rsi = SPARE | WRITABLE;
    store(&mut g, &[0x48, 0x89, 0x37], TARGET); // mov [rdi], rsi
    assert_eq!(g.regs.rip, GUEST_DATA_VA + 3);
    assert_eq!(entry(&g, 5), SPARE | WRITABLE);
    // The new entry holds its references like any validated one.
    assert_eq!((g.host.frames.page_type(SPARE >> 12), g.host.frames.ref_count(SPARE >> 12)), (PageType::Writable, 1));
}

#[test]
fn an_entry_the_rules_refuse_stays_the_guests_page_fault() {
    let mut g = guest();
    // The L1 itself, writable: a page table is never mapped writable.
    g.regs.rdi = TARGET;
    g.regs.rsi = L1 | WRITABLE;
    store(&mut g, &[0x48, 0x89, 0x37], TARGET);
    assert_eq!((g.regs.rip, g.domain.traps.cr2), (PAGE_FAULT_HANDLER, TARGET));
    assert_eq!(entry(&g, 5), 0);
}

#[test]
fn the_assist_need_not_be_on_as_on_xen_4_17() {
    let mut g = guest();
    g.domain.traps.vm_assist = 0;
    g.regs.rdi = TARGET;
    g.regs.rsi = SPARE | WRITABLE;
    store(&mut g, &[0x48, 0x89, 0x37], TARGET);
    assert_eq!((g.regs.rip, entry(&g, 5)), (GUEST_DATA_VA + 3, SPARE | WRITABLE));
}

#[test]
fn outside_an_l1_or_for_other_faults_nothing_is_emulated() {
    // A read-only data page of the guest.
    let mut g = guest();
    let mut tables = PageTables { frames: &mut g.host.frames, memory: &mut g.host.memory, domain: 0 };
    tables.update_entry(L1 >> 12, 1, 6, SPARE | READ_ONLY).unwrap();
    let va = GUEST_DATA_VA + 6 * 4096;
    g.regs.rdi = va;
    store(&mut g, &[0x48, 0x89, 0x37], va);
    assert_eq!(g.regs.rip, PAGE_FAULT_HANDLER);
    // A write to the L1 that was not a protection fault (not present, or a fetch).
    for error_code in [PF_WRITE | 4, PF_PRESENT | PF_WRITE | PF_FETCH] {
        let mut g = guest();
        g.regs.rdi = TARGET;
        g.regs.rsi = SPARE | WRITABLE;
        g.poke(GUEST_DATA_VA, &[0x48, 0x89, 0x37]);
        g.regs.rip = GUEST_DATA_VA;
        g.regs.vector = 14;
        g.regs.error_code = error_code;
        assert!(!emulate_page_table_write(&mut g.domain, &mut g.host.memory, &mut g.host.frames, &mut g.regs, TARGET, error_code));
        assert_eq!(entry(&g, 5), 0);
    }
}

#[test]
fn only_naturally_aligned_stores_in_the_faulting_page() {
    for (code, rdi) in [
        (&[0x66, 0x89, 0x37][..], TARGET + 1), // 2 bytes, odd address
        (&[0x48, 0x89, 0x37], TARGET + 4),     // 8 bytes, misaligned
        (&[0x48, 0x89, 0x37], TARGET + 4096),  // not the page that faulted
    ] {
        let mut g = guest();
        g.regs.rdi = rdi;
        g.regs.rsi = SPARE | WRITABLE;
        store(&mut g, code, TARGET);
        assert_eq!(g.regs.rip, PAGE_FAULT_HANDLER, "{code:x?} at {rdi:#x}");
        assert_eq!(entry(&g, 5), 0);
    }
}

#[test]
fn four_byte_stores_replace_one_half() {
    let mut g = guest();
    g.regs.rdi = TARGET;
    g.regs.rsi = SPARE | WRITABLE;
    store(&mut g, &[0x89, 0x37], TARGET); // mov [rdi], esi: the low half
    assert_eq!(entry(&g, 5), SPARE | WRITABLE);
    // The high half: NX (bit 63) on.
    g.regs.rdi = TARGET + 4;
    g.regs.rsi = 0x8000_0000;
    store(&mut g, &[0x89, 0x37], TARGET + 4);
    assert_eq!((g.regs.rip, entry(&g, 5)), (GUEST_DATA_VA + 2, SPARE | WRITABLE | (1 << 63)));
}

#[test]
fn byte_and_word_stores_replace_their_part() {
    let mut g = guest();
    g.regs.rdi = TARGET;
    g.regs.rsi = SPARE | READ_ONLY;
    store(&mut g, &[0x48, 0x89, 0x37], TARGET);
    // mov word [rdi], si: the flags and the frame's low bits.
    g.regs.rsi = 0xdead_0000 | (SPARE & 0xffff) | WRITABLE;
    store(&mut g, &[0x66, 0x89, 0x37], TARGET);
    assert_eq!((g.regs.rip, entry(&g, 5)), (GUEST_DATA_VA + 3, SPARE | WRITABLE));
    // mov [rdi + 7], ah: the top byte (NX and the software bits) from rax's bits 8-15.
    g.regs.rax = 0x80_00;
    store(&mut g, &[0x88, 0x67, 0x07], TARGET + 7);
    assert_eq!(entry(&g, 5), SPARE | WRITABLE | (1 << 63));
    // With REX, byte register 4 is spl: xchg [rdi], spl swaps the low byte.
    g.regs.rsp = 0x1000_0025;
    store(&mut g, &[0x40, 0x86, 0x27], TARGET);
    assert_eq!((entry(&g, 5), g.regs.rsp), (SPARE | READ_ONLY | (1 << 63), 0x1000_0067));
}

#[test]
fn xchg_and_cmpxchg_behave_as_on_memory() {
    let mut g = guest();
    g.regs.rdi = TARGET;
    g.regs.rax = SPARE | WRITABLE;
    store(&mut g, &[0x48, 0x87, 0x07], TARGET); // xchg [rdi], rax
    assert_eq!((entry(&g, 5), g.regs.rax), (SPARE | WRITABLE, 0));
    // cmpxchg that fails: rax gets the entry, ZF clear, nothing written.
    g.regs.rax = 0x1234;
    g.regs.rcx = 0;
    g.regs.rflags = 0x202 | (1 << 6);
    store(&mut g, &[0xf0, 0x48, 0x0f, 0xb1, 0x0f], TARGET); // lock cmpxchg [rdi], rcx
    assert_eq!((g.regs.rax, g.regs.rflags & (1 << 6), entry(&g, 5)), (SPARE | WRITABLE, 0, SPARE | WRITABLE));
    assert_eq!(g.regs.rip, GUEST_DATA_VA + 5);
    // cmpxchg that succeeds (clearing the entry): ZF set, the old frame's reference gone.
    store(&mut g, &[0xf0, 0x48, 0x0f, 0xb1, 0x0f], TARGET);
    assert_eq!((entry(&g, 5), g.regs.rflags & (1 << 6)), (0, 1 << 6));
    assert_eq!(g.host.frames.ref_count(SPARE >> 12), 0);
}

#[test]
fn compare_flags_match_the_cpu() {
    // cmp 1, 2 (64-bit): borrow, negative, PF of 0xff (8 bits set: even).
    assert_eq!(compare_flags(1, 2, u64::MAX), (1 << 0) | (1 << 2) | (1 << 4) | (1 << 7));
    // cmp 0x8000_0000, 1 (32-bit): signed overflow, result 0x7fff_ffff (low byte
    // 0xff: even parity), a borrow out of bit 3.
    assert_eq!(compare_flags(0x8000_0000, 1, 0xffff_ffff), (1 << 2) | (1 << 4) | (1 << 11));
    assert_eq!(compare_flags(5, 5, u64::MAX), (1 << 2) | (1 << 6));
}
