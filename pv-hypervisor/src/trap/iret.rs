//! The `iret` hypercall: the guest hands back an `iret_context` and resumes it
//! (arch-x86/xen-x86_64.h; semantics of Xen's do_iret).

use super::bounce::{RFLAGS_IF, RFLAGS_IOPL, RFLAGS_VM};
use super::state::GuestMode;
use crate::domain::vcpu::GuestRegisters;
use hypercall_abi::ops::traps::{IretContext, VGCF_IN_SYSCALL};

/// What the resumed context asks of the hypervisor besides its registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IretOutcome {
    pub mode: GuestMode,
    /// The event mask to restore, from the saved rflags.IF.
    pub event_mask: u8,
    /// The IOPL the frame asked for (kept as the virtual IOPL only with
    /// vm_assist architectural_iopl).
    pub requested_iopl: u8,
}

/// Applies `ctx` to `regs`. A cs with RPL 3 returns to guest user mode; anything else
/// to the guest kernel. Selectors get RPL 3 forced (the guest runs in ring 3 whatever it
/// asks), rflags loses IOPL and VM and keeps IF on (the real interrupt flag is never the
/// guest's). With VGCF_in_syscall, rcx and r11 keep their current values.
#[inline]
pub fn apply_iret(ctx: &IretContext, regs: &mut GuestRegisters) -> IretOutcome {
    let mode = if ctx.cs & 3 == 3 { GuestMode::User } else { GuestMode::Kernel };
    regs.rax = ctx.rax;
    regs.rip = ctx.rip;
    // Selectors are 16 bits: the cs slot of a bounce frame also carries the saved event
    // mask in bits 32-39, which a guest hands straight back.
    regs.cs = (ctx.cs & 0xffff) | 3;
    regs.rflags = (ctx.rflags & !(RFLAGS_IOPL | RFLAGS_VM)) | RFLAGS_IF;
    regs.rsp = ctx.rsp;
    regs.ss = (ctx.ss & 0xffff) | 3;
    if ctx.flags & VGCF_IN_SYSCALL == 0 {
        regs.r11 = ctx.r11;
        regs.rcx = ctx.rcx;
    }
    IretOutcome { mode, event_mask: u8::from(ctx.rflags & RFLAGS_IF == 0), requested_iopl: ((ctx.rflags & RFLAGS_IOPL) >> 12) as u8 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> IretContext {
        IretContext { rax: 7, r11: 0x246, rcx: 0x1234, flags: 0, rip: 0x10_2000, cs: 0xe030, rflags: 0x3246 | RFLAGS_VM, rsp: 0x12_0000, ss: 0xe02b }
    }

    #[test]
    fn back_to_the_kernel_with_forced_guest_privilege() {
        let mut regs = GuestRegisters { rcx: 1, r11: 2, rbx: 3, ..Default::default() };
        let out = apply_iret(&context(), &mut regs);
        assert_eq!(out, IretOutcome { mode: GuestMode::Kernel, event_mask: 0, requested_iopl: 3 });
        assert_eq!((regs.rip, regs.cs, regs.rsp, regs.ss), (0x10_2000, 0xe033, 0x12_0000, 0xe02b));
        assert_eq!(regs.rflags, 0x246);
        assert_eq!((regs.rax, regs.rcx, regs.r11, regs.rbx), (7, 0x1234, 0x246, 3));
    }

    #[test]
    fn user_mode_in_syscall_and_masked() {
        let ctx = IretContext { cs: 0x1_0000_e033, flags: VGCF_IN_SYSCALL, rflags: 0x2, ..context() };
        let mut regs = GuestRegisters { rcx: 1, r11: 2, ..Default::default() };
        let out = apply_iret(&ctx, &mut regs);
        assert_eq!(out.mode, GuestMode::User);
        assert_eq!(regs.cs, 0xe033, "the saved mask in cs bits 32-39 is not part of the selector");
        assert_eq!(out.event_mask, 1, "IF clear in the frame masks events");
        assert_eq!((regs.rcx, regs.r11), (1, 2), "VGCF_in_syscall keeps rcx/r11");
        assert_eq!(regs.rflags, 0x202, "the real IF stays on");
    }
}
