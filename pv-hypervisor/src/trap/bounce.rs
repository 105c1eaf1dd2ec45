//! The exception bounce: the frame the hypervisor pushes on the guest kernel's stack
//! before entering a guest handler, as Xen lays it out for a 64-bit PV guest
//! (arch-x86/xen-x86_64.h; semantics of Xen's create_bounce_frame).
//!
//! From high to low address, starting at the old stack rounded down to 16 bytes:
//! ss, rsp, rflags, cs (with the saved event mask in bits 32-39), rip, [error code],
//! r11, rcx. The handler starts with rsp pointing at the rcx slot.

use crate::domain::vcpu::GuestRegisters;
use crate::mm::is_guest_range;
use hypercall_abi::arch_x86_64::{FLAT_KERNEL_CS64, FLAT_KERNEL_SS64};
use hypercall_abi::ops::traps::SAVED_UPCALL_MASK_SHIFT;

pub const RFLAGS_TF: u64 = 1 << 8;
pub const RFLAGS_IF: u64 = 1 << 9;
pub const RFLAGS_IOPL: u64 = 3 << 12;
pub const RFLAGS_NT: u64 = 1 << 14;
pub const RFLAGS_RF: u64 = 1 << 16;
pub const RFLAGS_VM: u64 = 1 << 17;
pub const RFLAGS_AC: u64 = 1 << 18;

/// What to enter: a trap-table handler or a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BounceTarget {
    pub handler: u64,
    pub mask_events: bool,
    pub error_code: Option<u64>,
}

/// Where the guest was when the event hit it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted {
    /// It ran its kernel (else its user mode).
    pub in_kernel: bool,
    /// Its event mask at the time (vcpu_info.evtchn_upcall_mask).
    pub event_mask: u8,
    /// Virtual IOPL to show in the saved rflags (only with vm_assist
    /// architectural_iopl; 0 otherwise).
    pub visible_iopl: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BounceError {
    /// The guest registered no handler for this event.
    NoHandler,
    /// The frame would not lie in guest memory (non-canonical, or the hypervisor's
    /// reserved range).
    BadStack,
}

/// The frame to write, lowest address first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BounceFrame {
    /// Guest virtual address of the lowest word: the handler's rsp.
    pub address: u64,
    words: [u64; 8],
    len: usize,
}

impl BounceFrame {
    pub fn words(&self) -> &[u64] {
        &self.words[..self.len]
    }

    /// The frame as the bytes to write (x86 is little-endian, like the words).
    pub fn bytes(&self) -> &[u8] {
        zerocopy::IntoBytes::as_bytes(self.words())
    }

    pub fn byte_len(&self) -> usize {
        self.len * 8
    }
}

/// Builds the frame for `target` on the stack whose top is `stack_top` (the current
/// rsp in guest kernel mode, the stack_switch stack from user mode).
#[inline]
pub fn build_bounce(regs: &GuestRegisters, stack_top: u64, interrupted: Interrupted, target: &BounceTarget) -> Result<BounceFrame, BounceError> {
    if target.handler == 0 {
        return Err(BounceError::NoHandler);
    }
    let top = stack_top & !0xf;
    let len = if target.error_code.is_some() { 8 } else { 7 };
    let address = top.wrapping_sub(len as u64 * 8);
    if address > top || !is_guest_range(address, top) {
        return Err(BounceError::BadStack);
    }

    let mut cs = regs.cs & 0xffff;
    if interrupted.in_kernel {
        cs &= !3; // tells the guest it interrupted its own kernel
    }
    let saved_cs = cs | ((interrupted.event_mask as u64) << SAVED_UPCALL_MASK_SHIFT);
    let mut saved_rflags = regs.rflags & !(RFLAGS_IF | RFLAGS_IOPL);
    if interrupted.event_mask == 0 {
        saved_rflags |= RFLAGS_IF;
    }
    saved_rflags |= ((interrupted.visible_iopl & 3) as u64) << 12;

    let mut words = [0u64; 8];
    let mut at = 0;
    let mut push = |w: u64| {
        words[at] = w;
        at += 1;
    };
    push(regs.rcx);
    push(regs.r11);
    if let Some(code) = target.error_code {
        push(code);
    }
    for w in [regs.rip, saved_cs, saved_rflags, regs.rsp, regs.ss] {
        push(w);
    }

    Ok(BounceFrame { address, words, len })
}

/// The registers the handler starts with, once `frame` is written. Registers other than
/// rip, rsp, rflags, cs, ss, rcx and r11 are left as they were: the handler sees the
/// interrupted context's values.
#[inline]
pub fn enter_handler(regs: &mut GuestRegisters, frame: &BounceFrame, target: &BounceTarget) {
    regs.rip = target.handler;
    regs.cs = FLAT_KERNEL_CS64 as u64;
    regs.ss = FLAT_KERNEL_SS64 as u64;
    regs.rsp = frame.address;
    // Like a hardware exception: no single-stepping, task nesting, resume or alignment
    // checks in the handler. The real IF stays on: the guest's interrupt flag is its
    // event mask.
    regs.rflags = (regs.rflags & !(RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | RFLAGS_AC | RFLAGS_VM | RFLAGS_IOPL)) | RFLAGS_IF;
    // rcx and r11 are saved in the frame, so the handler starts with them holding its own
    // rip and rflags, as after `sysret` (Xen enters handlers that way too; here it lets
    // the exit path use `sysretq`).
    regs.rcx = regs.rip;
    regs.r11 = regs.rflags;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interrupted_kernel() -> GuestRegisters {
        GuestRegisters {
            rip: 0x10_2345,
            cs: 0xe033,
            rflags: 0x202 | RFLAGS_TF | RFLAGS_AC,
            rsp: 0x12_3458,
            ss: 0xe02b,
            rcx: 0xc,
            r11: 0x11,
            rax: 0xaa,
            ..Default::default()
        }
    }

    const HANDLER: BounceTarget = BounceTarget { handler: 0x10_9000, mask_events: true, error_code: None };

    #[test]
    fn kernel_mode_frame_without_error_code() {
        let regs = interrupted_kernel();
        let from = Interrupted { in_kernel: true, event_mask: 0, visible_iopl: 0 };
        let frame = build_bounce(&regs, regs.rsp, from, &HANDLER).unwrap();
        let mut next = regs;
        enter_handler(&mut next, &frame, &HANDLER);
        // 0x123458 rounds down to 0x123450; seven words below it.
        assert_eq!(frame.address, 0x12_3450 - 7 * 8);
        let saved_rflags = (0x202 | RFLAGS_TF | RFLAGS_AC) & !RFLAGS_IOPL;
        assert_eq!(frame.words(), &[0xc, 0x11, 0x10_2345, 0xe030, saved_rflags, 0x12_3458, 0xe02b]);
        assert_eq!(next.rip, HANDLER.handler);
        assert_eq!(next.rsp, frame.address);
        assert_eq!((next.cs, next.ss), (0xe033, 0xe02b));
        assert_eq!(next.rflags & (RFLAGS_TF | RFLAGS_AC), 0);
        assert_ne!(next.rflags & RFLAGS_IF, 0);
        assert_eq!(next.rax, 0xaa, "other registers pass through");
        assert_eq!((next.rcx, next.r11), (next.rip, next.rflags), "rcx and r11 as after sysret");
    }

    #[test]
    fn error_code_and_saved_mask() {
        let regs = interrupted_kernel();
        let from = Interrupted { in_kernel: true, event_mask: 1, visible_iopl: 0 };
        let target = BounceTarget { error_code: Some(0x6a), ..HANDLER };
        let frame = build_bounce(&regs, 0x12_3460, from, &target).unwrap();
        assert_eq!(frame.address, 0x12_3460 - 64);
        let w = frame.words();
        assert_eq!(w[2], 0x6a);
        assert_eq!(w[4], 0xe030 | (1 << 32), "mask travels in cs bits 32-39");
        assert_eq!(w[5] & RFLAGS_IF, 0, "IF mirrors the mask");
        assert_eq!(frame.bytes()[16], 0x6a);
        assert_eq!((frame.byte_len(), frame.bytes().len()), (64, 64));
    }

    #[test]
    fn user_mode_keeps_rpl3_and_shows_virtual_iopl() {
        let regs = GuestRegisters { cs: 0xe033, rflags: 0x202 | RFLAGS_IOPL, ..interrupted_kernel() };
        let from = Interrupted { in_kernel: false, event_mask: 0, visible_iopl: 1 };
        let frame = build_bounce(&regs, 0x20_0000, from, &HANDLER).unwrap();
        assert_eq!(frame.words()[3], 0xe033);
        assert_eq!(frame.words()[4] & RFLAGS_IOPL, 1 << 12);
        assert_eq!(frame.address, 0x20_0000 - 56);
    }

    #[test]
    fn refuses_missing_handlers_and_bad_stacks() {
        let regs = interrupted_kernel();
        let from = Interrupted { in_kernel: true, event_mask: 0, visible_iopl: 0 };
        let none = BounceTarget { handler: 0, ..HANDLER };
        assert_eq!(build_bounce(&regs, regs.rsp, from, &none), Err(BounceError::NoHandler));
        for top in [0x10, 0xffff_8000_0000_0040, 0xffff_8800_0000_0010, 0x8000_0000_0020, 0] {
            assert_eq!(build_bounce(&regs, top, from, &HANDLER), Err(BounceError::BadStack), "stack {top:#x}");
        }
        // Right above the hypervisor's range is guest memory again.
        assert!(build_bounce(&regs, 0xffff_8800_0000_1000, from, &HANDLER).is_ok());
    }
}
