//! `bench-events [N]`: the single-domain event costs, on both hypervisors (`cargo xtask
//! bench events`): `evtchn_send_masked` (EVTCHNOP_send to our own IPI port with events
//! masked, then clearing what it set: the hypercall and the pending bits),
//! `evtchn_send_upcall` (the same with events enabled: the hypercall, the upcall into
//! the event callback on its way out, and the callback's iret), and `set_timer_op`
//! (arming a timer one hour ahead, the cost of rearming).
//!
//! `bench-switch [N]`: SCHEDOP_yield N times and the time per call; two domains
//! running it take turns, so each yield is one domain switch.

use super::bench::{iterations, measure, report_calibration, report_op, report_overhead};
use super::evtchn_ops::{map_shared_info, op};
use crate::console::println;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::event_channel::*;
use hypercall_abi::ops::sched_op::SCHEDOP_YIELD;
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::GuestHandle;

const TEST: &str = "bench-events";

pub fn run(info: &StartInfo, command: &str) {
    let Some(iterations) = iterations(TEST, command) else { return };
    let Some(shared) = map_shared_info(info) else {
        println!("RESULT test={TEST} status=fail reason=cannot-map-shared-info");
        return;
    };
    if crate::traps::install() != 0 || crate::events::register_callback() != 0 {
        println!("RESULT test={TEST} status=fail reason=callbacks");
        return;
    }
    let mut ipi = EvtchnBindIpi { vcpu: 0, port: 0 };
    if op(EVTCHNOP_BIND_IPI, &mut ipi) != 0 {
        println!("RESULT test={TEST} status=fail reason=bind-ipi");
        return;
    }
    let port = ipi.port;
    report_overhead(TEST, iterations);
    shared.set_upcall_mask(true);
    let masked = measure(iterations, || {
        op(EVTCHNOP_SEND, &mut EvtchnPort { port });
        shared.clear_pending(port);
        shared.clear_upcall();
    });
    report_op(TEST, "evtchn_send_masked", iterations, masked);
    let upcalls_before = crate::events::UPCALLS.load(core::sync::atomic::Ordering::SeqCst);
    shared.set_upcall_mask(false);
    let upcall = measure(iterations, || {
        op(EVTCHNOP_SEND, &mut EvtchnPort { port });
    });
    shared.set_upcall_mask(true);
    let upcalls = crate::events::UPCALLS.load(core::sync::atomic::Ordering::SeqCst) - upcalls_before;
    report_op(TEST, "evtchn_send_upcall", iterations, upcall);
    // An hour from boot: far ahead of any run.
    let timer = measure(iterations, || {
        // SAFETY: set_timer_op takes no pointer.
        unsafe { calls::set_timer_op(3_600_000_000_000) };
    });
    // SAFETY: as above; 0 cancels.
    unsafe { calls::set_timer_op(0) };
    report_op(TEST, "set_timer_op", iterations, timer);
    report_calibration(TEST);
    // Every enabled send must have come back as an upcall (warm-up included).
    if upcalls < iterations {
        println!("RESULT test={TEST} status=fail reason=missing-upcalls upcalls={upcalls}");
        return;
    }
    println!("RESULT test={TEST} status=pass");
}

pub fn switch(command: &str) {
    let Some(iterations) = iterations("bench-switch", command) else { return };
    report_overhead("bench-switch", iterations);
    let cycles = measure(iterations, || {
        // SAFETY: SCHEDOP_yield takes no argument.
        unsafe { calls::sched_op(SCHEDOP_YIELD, GuestHandle::NULL) };
    });
    report_op("bench-switch", "yield", iterations, cycles);
    report_calibration("bench-switch");
    println!("RESULT test=bench-switch status=pass");
}
