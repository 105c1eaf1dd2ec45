//! `event_channel_op` (event_channel.h): the 2-level event channels of `crate::evtchn`.
//! Each command reads its structure once and writes back only its OUT field. The FIFO
//! ABI is not offered: its commands answer as Xen 4.17 does for a domain that has not
//! switched to it, except that a well-formed init_control (which would switch it on
//! Xen) is -ENOSYS, the answer a guest takes as "2-level only".

use super::HypercallContext;
use crate::domain::DomainId;
use crate::evtchn::{EventChannels, SharedInfoBits, VCPUS};
use crate::mm::guest_walk::MachineMemory;
use hypercall_abi::ops::event_channel::*;
use hypercall_abi::{Errno, GuestHandle};

const DOMID_SELF: u16 = hypercall_abi::ops::mmu::DOMID_SELF;

/// The FIFO control block: ready (u32), a reserved u32, 16 queue heads (u32).
const FIFO_CONTROL_BLOCK: u32 = 72;

/// The domain's ports and its shared_info bits, borrowed together.
fn split<'c, M: MachineMemory>(ctx: &'c mut HypercallContext<'_, M>) -> (&'c mut EventChannels, SharedInfoBits<'c, M>) {
    let shared_info_mfn = ctx.domain.shared_info_mfn;
    (&mut ctx.domain.events, SharedInfoBits { memory: &mut ctx.host.memory, shared_info_mfn })
}

/// Raises `port` of domain `remote` (an interdomain send). A blocked peer that can take
/// the upcall now is woken by the scheduler, which the slow exit path runs: this
/// domain's exit takes it (`reschedule`), so the peer can preempt at once.
fn raise_in<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, remote: DomainId, port: u32) {
    if let Some(peer) = ctx.others.get_mut(remote) {
        peer.events.raise(&mut SharedInfoBits { memory: &mut ctx.host.memory, shared_info_mfn: peer.shared_info_mfn }, port);
        ctx.domain.traps.exit.reschedule |= peer.traps.exit.blocked;
    }
}

/// A domU notified its console ring's port: the hypervisor is that ring's back end for
/// now (console::domu_ring).
fn drain_console_ring<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>) {
    crate::console::domu_ring::drain_into_console(ctx.domain, &mut ctx.host.memory, &ctx.host.frames);
}

/// The far end of a port we closed waits for us again.
fn disconnect<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, (remote, port): (DomainId, u32)) {
    let me = ctx.domain.id;
    if let Some(peer) = ctx.others.get_mut(remote) {
        peer.events.disconnect(port, me);
    }
}

pub fn event_channel_op<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
    match cmd {
        EVTCHNOP_ALLOC_UNBOUND => {
            let (mut op, out) = arg.into_in_out::<EvtchnAllocUnbound>().read(&*ctx)?;
            op.port = ctx.domain.events.alloc_unbound(op.dom, op.remote_dom)?;
            out.field::<u32>(core::mem::offset_of!(EvtchnAllocUnbound, port)).write(ctx, &op.port)?;
        }
        EVTCHNOP_BIND_INTERDOMAIN => {
            let (op, out) = arg.into_in_out::<EvtchnBindInterdomain>().read(&*ctx)?;
            let me = ctx.domain.id;
            let port = if op.remote_dom == DOMID_SELF || op.remote_dom == me {
                let (events, mut bits) = split(ctx);
                events.bind_interdomain(&mut bits, op.remote_dom, op.remote_port)?
            } else {
                let peer = ctx.others.get_mut(op.remote_dom).ok_or(Errno::ESRCH)?;
                if !peer.events.waits_for(op.remote_port, me)? {
                    return Err(Errno::EINVAL);
                }
                let shared_info_mfn = ctx.domain.shared_info_mfn;
                let local = ctx.domain.events.bind_to(
                    &mut SharedInfoBits { memory: &mut ctx.host.memory, shared_info_mfn },
                    op.remote_dom,
                    op.remote_port,
                )?;
                if let Some(peer) = ctx.others.get_mut(op.remote_dom) {
                    peer.events.connect(op.remote_port, me, local);
                }
                local
            };
            out.field::<u32>(core::mem::offset_of!(EvtchnBindInterdomain, local_port)).write(ctx, &port)?;
        }
        EVTCHNOP_BIND_VIRQ => {
            let (op, out) = arg.into_in_out::<EvtchnBindVirq>().read(&*ctx)?;
            let port = ctx.domain.events.bind_virq(op.virq, op.vcpu)?;
            out.field::<u32>(core::mem::offset_of!(EvtchnBindVirq, port)).write(ctx, &port)?;
        }
        EVTCHNOP_BIND_IPI => {
            let (op, out) = arg.into_in_out::<EvtchnBindIpi>().read(&*ctx)?;
            let port = ctx.domain.events.bind_ipi(op.vcpu)?;
            out.field::<u32>(core::mem::offset_of!(EvtchnBindIpi, port)).write(ctx, &port)?;
        }
        // No physical IRQ is routed to any domain yet.
        EVTCHNOP_BIND_PIRQ => {
            let _: EvtchnBindPirq = arg.into_in().read(&*ctx)?;
            return Err(Errno::EINVAL);
        }
        EVTCHNOP_CLOSE => {
            let op: EvtchnPort = arg.into_in().read(&*ctx)?;
            let (events, mut bits) = split(ctx);
            if let Some(far_end) = events.close(&mut bits, op.port)? {
                disconnect(ctx, far_end);
            }
        }
        EVTCHNOP_SEND => {
            let op: EvtchnPort = arg.into_in().read(&*ctx)?;
            let (events, mut bits) = split(ctx);
            if let Some((remote, remote_port)) = events.send(&mut bits, op.port)? {
                raise_in(ctx, remote, remote_port);
            }
            if ctx.domain.rings.is_some_and(|r| r.console_port == op.port) {
                drain_console_ring(ctx);
            }
        }
        EVTCHNOP_UNMASK => {
            let op: EvtchnPort = arg.into_in().read(&*ctx)?;
            let (events, mut bits) = split(ctx);
            events.unmask(&mut bits, op.port)?;
        }
        EVTCHNOP_STATUS => {
            let (op, out) = arg.into_in_out::<EvtchnStatus>().read(&*ctx)?;
            let answer = ctx.domain.events.status(op.dom, op.port)?;
            out.write(ctx, &answer)?;
        }
        EVTCHNOP_BIND_VCPU => {
            let op: EvtchnBindVcpu = arg.into_in().read(&*ctx)?;
            ctx.domain.events.bind_vcpu(op.port, op.vcpu)?;
        }
        EVTCHNOP_RESET => {
            let op: EvtchnReset = arg.into_in().read(&*ctx)?;
            let (events, mut bits) = split(ctx);
            for far_end in events.reset_all(&mut bits, op.dom)? {
                disconnect(ctx, far_end);
            }
        }
        EVTCHNOP_INIT_CONTROL => {
            let op: EvtchnInitControl = arg.into_in().read(&*ctx)?;
            if !op.offset.is_multiple_of(8) || op.offset > 4096 - FIFO_CONTROL_BLOCK {
                return Err(Errno::EINVAL);
            }
            if op.vcpu >= VCPUS {
                return Err(Errno::ENOENT);
            }
            return Err(Errno::ENOSYS);
        }
        EVTCHNOP_EXPAND_ARRAY => return Err(Errno::EOPNOTSUPP),
        EVTCHNOP_SET_PRIORITY => return Err(Errno::ENOSYS),
        _ => return Err(Errno::ENOSYS),
    }
    Ok(0)
}
