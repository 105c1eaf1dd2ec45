//! The `iret` hypercall (arch-x86/xen-x86_64.h): resume the `iret_context` on the guest
//! kernel stack. Its result is the frame's rax, so the dispatcher's write-back of the
//! return value restores it.

use super::HypercallContext;
use crate::mm::guest_walk::MachineMemory;
use crate::trap::deliver::write_event_mask;
use crate::trap::iret::apply_iret;
use crate::trap::state::GuestMode;
use hypercall_abi::ops::traps::IretContext;
use hypercall_abi::{Errno, GuestIn};

/// Why an `iret` cannot resume anything: the domain is crashed, like Xen does.
pub const IRET_UNREADABLE: &str = "iret: the iret_context on the guest stack is unreadable";
pub const IRET_NO_USER_TABLE: &str = "iret: return to user mode without a user page table";

pub fn iret<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>) -> Result<i64, Errno> {
    // The hypercall's one argument is the frame on the guest's stack.
    let Ok(frame) = GuestIn::<IretContext>::from_raw(ctx.regs.rsp).read(ctx) else {
        ctx.crash(IRET_UNREADABLE);
        return Err(Errno::EFAULT);
    };
    if frame.cs & 3 == 3 && ctx.domain.traps.user_l4() == 0 {
        ctx.crash(IRET_NO_USER_TABLE);
        return Err(Errno::EINVAL);
    }
    let outcome = apply_iret(&frame, ctx.regs.replace());
    // The NMI handler's iret ends it: the next NMI may come (Xen 4.17 likewise unmasks
    // NMIs on every iret, whatever it returns from).
    ctx.domain.traps.nmi_masked = false;
    ctx.domain.traps.set_mode(outcome.mode);
    if ctx.domain.traps.architectural_iopl() {
        ctx.domain.traps.iopl = outcome.requested_iopl;
    }
    if write_event_mask(ctx.domain, &mut ctx.host.memory, outcome.event_mask).is_err() {
        ctx.crash("iret: shared_info not accessible");
    }
    debug_assert!(outcome.mode == GuestMode::Kernel || ctx.domain.traps.user_l4() != 0);
    Ok(frame.rax as i64)
}
