use super::*;
use crate::hypercall::test_support::{TestGuest, GUEST_DATA_VA, SHARED_INFO};
use crate::mm::guest_walk::read_guest;
use crate::trap::bounce::RFLAGS_IF;
use hypercall_abi::ops::traps::TrapInfo;

const STACK_TOP: u64 = GUEST_DATA_VA + TestGuest::MAPPED_BYTES;

fn guest_with_traps(entries: &[(u8, u8, u64)]) -> TestGuest {
    let mut g = TestGuest::new();
    for &(vector, flags, address) in entries {
        g.domain.traps.set_trap(&TrapInfo { vector, flags, cs: 0xe033, _pad: 0, address });
    }
    g.regs.rsp = STACK_TOP - 8;
    g
}

fn stack_words(g: &TestGuest, count: usize) -> std::vec::Vec<u64> {
    (0..count).map(|i| read_guest::<u64>(&g.host.memory, g.domain.l4_maddr(), g.regs.rsp + 8 * i as u64).unwrap()).collect()
}

fn mask(g: &TestGuest) -> u8 {
    let mut b = [0u8];
    g.host.memory.read_bytes(SHARED_INFO + 1, &mut b).unwrap();
    b[0]
}

#[test]
fn page_fault_reaches_the_handler_with_cr2_and_kernel_error_code() {
    let mut g = guest_with_traps(&[(14, 4, 0x10_e000)]);
    let before = g.regs;
    let fault = GuestException { vector: 14, error_code: 0x7, cr2: 0xdead_b000 };
    deliver_exception(&mut g.domain, &mut g.host.memory, &mut g.regs, fault).unwrap();
    assert_eq!(g.regs.rip, 0x10_e000);
    let w = stack_words(&g, 8);
    assert_eq!(w[2], 0x3, "U cleared: the guest kernel faulted");
    assert_eq!((w[3], w[4], w[6]), (before.rip, 0xe030, before.rsp));
    assert_eq!(g.domain.traps.cr2, 0xdead_b000);
    let cr2 = g.host.memory.read_u64(SHARED_INFO + 16).unwrap();
    assert_eq!(cr2, 0xdead_b000, "vcpu_info.arch.cr2");
    assert_eq!(mask(&g), 1, "interrupt gate masks events");
    assert_ne!(w[5] & RFLAGS_IF, 0, "events were enabled before");
}

#[test]
fn soft_interrupts_follow_the_dpl_rule() {
    let mut g = guest_with_traps(&[(13, 0, 0x10_d000), (0x81, 0, 0x10_8100), (0x82, 1, 0x10_8200)]);
    let rip = g.regs.rip;
    // int 0x82, DPL 1: allowed from the guest kernel, past the instruction.
    deliver_exception(&mut g.domain, &mut g.host.memory, &mut g.regs, GuestException { vector: 13, error_code: 0x412, cr2: 0 }).unwrap();
    assert_eq!(g.regs.rip, 0x10_8200);
    assert_eq!(stack_words(&g, 3)[2], rip + 2);
    assert_eq!(mask(&g), 0, "trap gate leaves events alone");
    // int 0x81, DPL 0: #GP with the IDT error code, at the instruction.
    let mut g = guest_with_traps(&[(13, 0, 0x10_d000), (0x81, 0, 0x10_8100)]);
    deliver_exception(&mut g.domain, &mut g.host.memory, &mut g.regs, GuestException { vector: 13, error_code: 0x40a, cr2: 0 }).unwrap();
    assert_eq!(g.regs.rip, 0x10_d000);
    assert_eq!(&stack_words(&g, 4)[2..], &[0x40a, rip]);
    // From user mode DPL 1 is not enough.
    let mut g = guest_with_traps(&[(13, 0, 0x10_d000), (0x82, 1, 0x10_8200)]);
    g.domain.traps.set_mode(GuestMode::User);
    g.domain.traps.kernel_sp = STACK_TOP;
    deliver_exception(&mut g.domain, &mut g.host.memory, &mut g.regs, GuestException { vector: 13, error_code: 0x412, cr2: 0 }).unwrap();
    assert_eq!(g.regs.rip, 0x10_d000);
    assert_eq!(g.domain.traps.mode(), GuestMode::Kernel);
}

#[test]
fn int80_fast_path_and_its_fallback() {
    let mut g = guest_with_traps(&[(0x80, 0, 0x10_8000), (13, 0, 0x10_d000)]);
    let rip = g.regs.rip;
    int80(&mut g.domain, &mut g.host.memory, &mut g.regs).unwrap();
    assert_eq!((g.regs.rip, stack_words(&g, 3)[2]), (0x10_8000, rip));
    let mut g = guest_with_traps(&[(13, 0, 0x10_d000)]);
    int80(&mut g.domain, &mut g.host.memory, &mut g.regs).unwrap();
    assert_eq!(&stack_words(&g, 4)[2..], &[0x402, rip - 2]);
}

#[test]
fn undeliverable_events_name_their_reason() {
    let mut g = guest_with_traps(&[(6, 0, 0x10_6000)]);
    let ud = GuestException { vector: 6, error_code: 0, cr2: 0 };
    let de = GuestException { vector: 0, error_code: 0, cr2: 0 };
    assert_eq!(deliver_exception(&mut g.domain, &mut g.host.memory, &mut g.regs, de), Err(Undeliverable::NoHandler { vector: 0 }));
    let saved = g.regs;
    g.regs.rsp = 0x10; // below any mapping
    assert_eq!(deliver_exception(&mut g.domain, &mut g.host.memory, &mut g.regs, ud), Err(Undeliverable::BadStack));
    g.regs.rsp = 0x7000_0000; // canonical but unmapped
    assert_eq!(deliver_exception(&mut g.domain, &mut g.host.memory, &mut g.regs, ud), Err(Undeliverable::StackNotWritable));
    g.regs = saved;
    g.domain.traps.set_mode(GuestMode::User);
    g.domain.traps.kernel_sp = 0xffff_8000_0000_1000;
    assert_eq!(deliver_exception(&mut g.domain, &mut g.host.memory, &mut g.regs, ud), Err(Undeliverable::BadStack));
}

#[test]
fn user_syscall_enters_the_callback_on_the_kernel_stack() {
    use crate::trap::state::Callback;
    let mut g = guest_with_traps(&[(6, 0, 0x10_6000)]);
    g.domain.traps.set_mode(GuestMode::User);
    g.domain.traps.kernel_sp = STACK_TOP;
    g.regs.rsp = 0x7000_0000; // the user stack, not mapped in the kernel's tables
    g.regs.rcx = 0x40_1002; // syscall put the return rip and rflags here
    g.regs.r11 = 0x646;
    g.regs.rflags = 0x646;
    g.domain.traps.callbacks.syscall = Some(Callback { address: 0x10_5000, mask_events: true });
    user_syscall(&mut g.domain, &mut g.host.memory, &mut g.regs).unwrap();
    assert_eq!(g.domain.traps.mode(), GuestMode::Kernel);
    assert_eq!((g.regs.rip, g.regs.rsp), (0x10_5000, STACK_TOP - 56));
    assert_eq!(g.regs.rflags & (1 << 10), 0, "DF clear in the handler");
    let w = stack_words(&g, 7);
    assert_eq!((w[0], w[1], w[3]), (0x40_1002, 0x646, 0xe033), "rcx, r11, user cs with RPL 3");
    assert_eq!(w[5], 0x7000_0000, "the user rsp");
    assert_eq!(mask(&g), 1);
    // No callback: #UD at the syscall instruction.
    let mut g = guest_with_traps(&[(6, 0, 0x10_6000)]);
    g.domain.traps.set_mode(GuestMode::User);
    g.domain.traps.kernel_sp = STACK_TOP;
    g.regs.rip = 0x40_1002;
    user_syscall(&mut g.domain, &mut g.host.memory, &mut g.regs).unwrap();
    assert_eq!((g.regs.rip, stack_words(&g, 3)[2]), (0x10_6000, 0x40_1000));
}

#[test]
fn an_upcall_is_delivered_only_when_pending_unmasked_and_registered() {
    use crate::trap::state::Callback;
    let mut g = guest_with_traps(&[]);
    let before = g.regs;
    // Pending, but masked: nothing.
    g.host.memory.write_bytes(SHARED_INFO, &[1, 1]).unwrap();
    assert_eq!(deliver_upcall(&mut g.domain, &mut g.host.memory, &mut g.regs), Ok(false));
    // Unmasked, but no event callback: nothing either (the event stays pending).
    g.host.memory.write_bytes(SHARED_INFO, &[1, 0]).unwrap();
    assert_eq!(deliver_upcall(&mut g.domain, &mut g.host.memory, &mut g.regs), Ok(false));
    assert_eq!(g.regs, before);
    g.domain.traps.callbacks.event = Some(Callback { address: 0x10_e700, mask_events: false });
    assert_eq!(deliver_upcall(&mut g.domain, &mut g.host.memory, &mut g.regs), Ok(true));
    assert_eq!(g.regs.rip, 0x10_e700);
    let w = stack_words(&g, 7);
    assert_eq!((w[2], w[3] & 0xffff, w[5]), (before.rip, 0xe030, before.rsp), "interrupted where it was, no error code");
    assert_ne!(w[4] & RFLAGS_IF, 0, "events were enabled");
    assert_eq!(mask(&g), 1, "the callback runs with events masked, whatever its flag");
    assert!(!upcall_deliverable(&g.domain, &g.host.memory));
}
