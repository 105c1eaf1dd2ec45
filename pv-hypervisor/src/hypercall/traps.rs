//! Trap registration: set_trap_table, stack_switch, set_callbacks, callback_op,
//! fpu_taskswitch, vm_assist (arch-x86/xen.h, callback.h, xen.h; semantics of Xen's
//! pv/callback.c and pv/traps.c).

use super::HypercallContext;
use crate::mm::guest_walk::MachineMemory;
use crate::mm::is_canonical;
use crate::trap::state::Callback;
use hypercall_abi::ops::callback::{
    CallbackRegister, CallbackUnregister, CALLBACKF_MASK_EVENTS, CALLBACKOP_REGISTER, CALLBACKOP_UNREGISTER, CALLBACKTYPE_EVENT,
    CALLBACKTYPE_FAILSAFE, CALLBACKTYPE_NMI, CALLBACKTYPE_SYSCALL,
};
use hypercall_abi::ops::nmi::{XennmiCallback, XENNMI_REGISTER_CALLBACK, XENNMI_UNREGISTER_CALLBACK};
use hypercall_abi::ops::traps::TrapInfo;
use hypercall_abi::ops::vm_assist::*;
use hypercall_abi::{Errno, GuestArray, GuestHandle};

/// Copies entries until one with address 0. Entries before a failing one stay
/// installed, as in Xen.
pub fn set_trap_table<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, traps: GuestArray<TrapInfo>) -> Result<i64, Errno> {
    if traps.is_null() {
        ctx.domain.traps.clear_traps();
        return Ok(0);
    }
    // At most one entry per vector and a terminator; a longer array repeats vectors,
    // which Xen accepts too, so only guest memory bounds the walk (an array running
    // past the top of the address space faults).
    for entry in traps.elements(u64::MAX) {
        let info = entry.into_in().read(ctx)?;
        if info.address == 0 {
            return Ok(0);
        }
        if !is_canonical(info.address) {
            return Err(Errno::EINVAL);
        }
        ctx.domain.traps.set_trap(&info);
    }
    Err(Errno::EFAULT)
}

pub fn stack_switch<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, ss: u64, rsp: u64) -> Result<i64, Errno> {
    ctx.domain.traps.kernel_ss = (ss as u16) | 3;
    ctx.domain.traps.kernel_sp = rsp;
    Ok(0)
}

fn register(ctx: &mut HypercallContext<'_, impl MachineMemory>, request: &CallbackRegister) -> Result<i64, Errno> {
    if !is_canonical(request.address) {
        return Err(Errno::EINVAL);
    }
    if request.callback_type == CALLBACKTYPE_NMI {
        // Trap-table entry 2, events always masked: CALLBACKF_mask_events plays no part.
        ctx.domain.traps.set_nmi_callback(request.address);
        return Ok(0);
    }
    let callback = Callback { address: request.address, mask_events: request.flags & CALLBACKF_MASK_EVENTS != 0 };
    let slot = ctx.domain.traps.callbacks.slot(request.callback_type).ok_or(Errno::ENOSYS)?;
    *slot = Some(callback);
    Ok(0)
}

/// The older form: event, failsafe and syscall entry points at once, none masking
/// events. Like Xen, it always succeeds: an address that cannot be registered
/// (non-canonical) is skipped.
pub fn set_callbacks<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, event: u64, failsafe: u64, syscall: u64) -> Result<i64, Errno> {
    for (callback_type, address) in [(CALLBACKTYPE_EVENT, event), (CALLBACKTYPE_FAILSAFE, failsafe), (CALLBACKTYPE_SYSCALL, syscall)] {
        let _ = register(ctx, &CallbackRegister { callback_type, flags: 0, _pad: 0, address });
    }
    Ok(0)
}

pub fn callback_op<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
    match cmd {
        CALLBACKOP_REGISTER => {
            let request: CallbackRegister = arg.into_in().read(ctx)?;
            register(ctx, &request)
        }
        CALLBACKOP_UNREGISTER => {
            let request: CallbackUnregister = arg.into_in().read(ctx)?;
            // Only the NMI callback can be taken back; the others stay once set.
            match request.callback_type {
                CALLBACKTYPE_NMI => {
                    ctx.domain.traps.clear_nmi_callback();
                    Ok(0)
                }
                t if ctx.domain.traps.callbacks.slot(t).is_some() => Err(Errno::EINVAL),
                _ => Err(Errno::ENOSYS),
            }
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// nmi_op (nmi.h): the NMI callback's older interface, the same trap-table entry 2.
pub fn nmi_op<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
    match cmd {
        XENNMI_REGISTER_CALLBACK => {
            let request: XennmiCallback = arg.into_in().read(ctx)?;
            if !is_canonical(request.handler_address) {
                return Err(Errno::EINVAL);
            }
            ctx.domain.traps.set_nmi_callback(request.handler_address);
            Ok(0)
        }
        XENNMI_UNREGISTER_CALLBACK => {
            ctx.domain.traps.clear_nmi_callback();
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// Sets or clears the guest's CR0.TS; `arch` mirrors it into the real CR0 on return.
pub fn fpu_taskswitch<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, set: u32) -> Result<i64, Errno> {
    ctx.domain.traps.set_fpu_ts(set != 0);
    Ok(0)
}

/// The assists a 64-bit PV guest may turn on (xen.h VMASST_TYPE_*, plus
/// runstate_update_flag 5).
const VALID_ASSISTS: u64 = (1 << VMASST_TYPE_4GB_SEGMENTS)
    | (1 << VMASST_TYPE_4GB_SEGMENTS_NOTIFY)
    | (1 << VMASST_TYPE_WRITABLE_PAGETABLES)
    | (1 << VMASST_TYPE_PAE_EXTENDED_CR3)
    | (1 << VMASST_TYPE_ARCHITECTURAL_IOPL)
    | (1 << 5)
    | (1 << VMASST_TYPE_M2P_STRICT);

pub fn vm_assist<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u32, assist_type: u32) -> Result<i64, Errno> {
    let bit = 1u64.checked_shl(assist_type).filter(|b| b & VALID_ASSISTS != 0).ok_or(Errno::EINVAL)?;
    match cmd {
        VMASST_CMD_ENABLE => ctx.domain.traps.vm_assist |= bit,
        VMASST_CMD_DISABLE => ctx.domain.traps.vm_assist &= !bit,
        _ => return Err(Errno::ENOSYS),
    }
    Ok(0)
}

#[cfg(test)]
mod tests;
