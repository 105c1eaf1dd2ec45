//! `watch-domains N`: what dom0's toolstack does to learn that domains ended. It binds
//! VIRQ_DOM_EXC and blocks until the hypervisor has raised it N times (a domain crashed
//! or shut down), or 60 s of system time passed; reports how many it saw.

use super::evtchn_ops::{map_shared_info, op};
use crate::console::println;
use crate::events::{now_ns, SEEN_PER_PORT};
use core::sync::atomic::Ordering::SeqCst;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::event_channel::*;
use hypercall_abi::ops::sched_op::SCHEDOP_BLOCK;
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::GuestHandle;

const GIVE_UP_NS: u64 = 60_000_000_000;

pub fn run(info: &StartInfo, command: &str) {
    let Some(wanted) = super::numeric_argument("watch-domains", command, 1, 1..=64) else { return };
    let Some(shared) = map_shared_info(info) else {
        println!("RESULT test=watch-domains status=fail reason=cannot-map-shared-info");
        return;
    };
    if crate::traps::install() != 0 || crate::events::register_callback() != 0 {
        println!("RESULT test=watch-domains status=fail reason=callbacks");
        return;
    }
    let mut virq = EvtchnBindVirq { virq: VIRQ_DOM_EXC, vcpu: 0, port: 0 };
    let bound = op(EVTCHNOP_BIND_VIRQ, &mut virq);
    let mut timer = EvtchnBindVirq { virq: VIRQ_TIMER, vcpu: 0, port: 0 };
    let timer_bound = op(EVTCHNOP_BIND_VIRQ, &mut timer);
    let Some(seen) = SEEN_PER_PORT.get(virq.port as usize).filter(|_| bound == 0 && timer_bound == 0) else {
        println!("RESULT test=watch-domains status=fail reason=bind-virq ret={bound}");
        return;
    };
    let time = shared.0 as *const hypercall_abi::shared_info::SharedInfo;
    let give_up = now_ns(time) + GIVE_UP_NS;
    // Events masked while checking; SCHEDOP_block enables them and returns at once if
    // one came since (no lost wake-up).
    shared.set_upcall_mask(true);
    while seen.load(SeqCst) < wanted && now_ns(time) < give_up {
        // SAFETY: set_timer_op and block take no pointer; the timer bounds the wait.
        unsafe {
            calls::set_timer_op(give_up);
            calls::sched_op(SCHEDOP_BLOCK, GuestHandle::NULL);
        }
        shared.set_upcall_mask(true);
    }
    shared.set_upcall_mask(true);
    let got = seen.load(SeqCst);
    let status = if got >= wanted { "pass" } else { "fail" };
    println!("RESULT test=watch-domains status={status} dom_exc={got} wanted={wanted}");
}
