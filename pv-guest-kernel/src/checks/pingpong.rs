//! `evtchn-pingpong PEER N`: two domains bounce an interdomain event N times. The one
//! with the lower domain id offers a port (EVTCHNOP_alloc_unbound for PEER: the lowest
//! free one, 1 in dom0, 3 in a domU whose toolstack ports are 1 and 2), the other binds
//! to it (trying the low ports until one is offered to it), sends first,
//! and times the N round trips; each side waits for the other's event blocked
//! (SCHEDOP_block with events enabled). Both report what they sent and received.

use super::evtchn_ops::{map_shared_info, op};
use crate::console::println;
use crate::events::{now_ns, SEEN_PER_PORT};
use core::sync::atomic::Ordering::SeqCst;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::event_channel::*;
use hypercall_abi::ops::sched_op::{SCHEDOP_BLOCK, SCHEDOP_YIELD};
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::GuestHandle;

const DOMID_SELF: u16 = hypercall_abi::ops::mmu::DOMID_SELF;
/// The offered port is among the lowest few of a fresh kernel: the binding side tries
/// these (binding to a port not offered to it is -EINVAL).
const OFFERED_PORTS: core::ops::RangeInclusive<u32> = 1..=8;

/// Our own domain id: what EVTCHNOP_status reports as the remote end of a port offered
/// to DOMID_SELF.
fn own_domid() -> Option<u16> {
    let mut probe = EvtchnAllocUnbound { dom: DOMID_SELF, remote_dom: DOMID_SELF, port: 0 };
    if op(EVTCHNOP_ALLOC_UNBOUND, &mut probe) != 0 {
        return None;
    }
    let mut status = EvtchnStatus { dom: DOMID_SELF, port: probe.port, ..Default::default() };
    let ok = op(EVTCHNOP_STATUS, &mut status) == 0;
    op(EVTCHNOP_CLOSE, &mut EvtchnPort { port: probe.port });
    ok.then_some(status.u[0] as u16)
}

fn block() {
    // SAFETY: SCHEDOP_block takes no argument.
    unsafe { calls::sched_op(SCHEDOP_BLOCK, GuestHandle::NULL) };
}

pub fn run(info: &StartInfo, command: &str) {
    let mut args = command.split_ascii_whitespace().skip(1).map(str::parse::<u64>);
    let (Some(Ok(peer)), Some(Ok(rounds))) = (args.next(), args.next()) else {
        println!("RESULT test=evtchn-pingpong status=fail reason=usage-PEER-N");
        return;
    };
    let Some(shared) = map_shared_info(info) else {
        println!("RESULT test=evtchn-pingpong status=fail reason=cannot-map-shared-info");
        return;
    };
    if crate::traps::install() != 0 || crate::events::register_callback() != 0 {
        println!("RESULT test=evtchn-pingpong status=fail reason=callbacks");
        return;
    }
    let Some(me) = own_domid() else {
        println!("RESULT test=evtchn-pingpong status=fail reason=own-domid");
        return;
    };
    let peer = peer as u16;
    let offering = me < peer;
    let port = if offering {
        let mut offer = EvtchnAllocUnbound { dom: DOMID_SELF, remote_dom: peer, port: 0 };
        let ret = op(EVTCHNOP_ALLOC_UNBOUND, &mut offer);
        if ret != 0 || !OFFERED_PORTS.contains(&offer.port) {
            println!("RESULT test=evtchn-pingpong status=fail reason=alloc-unbound ret={ret} port={}", offer.port);
            return;
        }
        offer.port
    } else {
        let mut bind = EvtchnBindInterdomain { remote_dom: peer, remote_port: 0, local_port: 0, ..Default::default() };
        let mut tries = 0u64;
        'offered: loop {
            let mut ret = 0;
            for remote_port in OFFERED_PORTS {
                bind.remote_port = remote_port;
                ret = op(EVTCHNOP_BIND_INTERDOMAIN, &mut bind);
                if ret == 0 {
                    break 'offered;
                }
                if ret != -22 {
                    break;
                }
            }
            tries += 1;
            if ret != -22 || tries > 100_000 {
                println!("RESULT test=evtchn-pingpong status=fail reason=bind-interdomain ret={ret} tries={tries}");
                return;
            }
            // SAFETY: SCHEDOP_yield takes no argument.
            unsafe { calls::sched_op(SCHEDOP_YIELD, GuestHandle::NULL) };
        }
        // A new binding starts pending (Xen's rule): that is not the peer's event.
        shared.clear_pending(bind.local_port);
        bind.local_port
    };
    let Some(seen) = SEEN_PER_PORT.get(port as usize) else {
        println!("RESULT test=evtchn-pingpong status=fail reason=port-out-of-range port={port}");
        return;
    };
    let time = shared.0 as *const hypercall_abi::shared_info::SharedInfo;
    shared.clear_upcall();
    // Events stay masked while we look at the count: SCHEDOP_block enables them and
    // returns at once if the peer's event came since (no lost wake-up).
    shared.set_upcall_mask(true);
    let mut sent = 0u64;
    let started = now_ns(time);
    for round in 0..rounds {
        if !offering {
            op(EVTCHNOP_SEND, &mut EvtchnPort { port });
            sent += 1;
        }
        // The other side's event for this round.
        while seen.load(SeqCst) <= round {
            block();
            shared.set_upcall_mask(true);
        }
        if offering {
            op(EVTCHNOP_SEND, &mut EvtchnPort { port });
            sent += 1;
        }
    }
    let elapsed = now_ns(time) - started;
    shared.set_upcall_mask(true);
    let received = seen.load(SeqCst);
    let pass = sent == rounds && received == rounds;
    println!(
        "RESULT test=evtchn-pingpong role={} me={me} peer={peer} port={port} rounds={rounds} sent={sent} received={received} ns_per_round_trip={} status={}",
        if offering { "offer" } else { "bind" },
        elapsed / rounds.max(1),
        if pass { "pass" } else { "fail" }
    );
}
