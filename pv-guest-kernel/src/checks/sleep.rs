//! `sleep MS`: the single-shot timer and blocking. The kernel binds VIRQ_TIMER, sets the
//! timer (set_timer_op) MS milliseconds ahead and blocks (SCHEDOP_block) until the
//! timer's upcall arrives, then reports the time it slept as system time measured
//! around it (the milliseconds are printed too, as a hypervisor-specific field). A
//! deadline already past fires during set_timer_op itself, and 0 cancels a timer.

use super::evtchn_ops::{map_shared_info, op};
use super::Tally;
use crate::console::println;
use crate::events::{now_ns, LAST_PORT, UPCALLS};
use core::sync::atomic::Ordering::SeqCst;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::event_channel::*;
use hypercall_abi::ops::sched_op::SCHEDOP_BLOCK;
use hypercall_abi::shared_info::SharedInfo;
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::GuestHandle;

fn set_timer(deadline: u64) -> i64 {
    // SAFETY: set_timer_op takes no pointer.
    unsafe { calls::set_timer_op(deadline) }
}

pub fn run(info: &StartInfo, command: &str) {
    let mut tally = Tally::new("sleep");
    let Some(ms) = super::numeric_argument("sleep", command, 100, 1..=60_000) else { return };
    if crate::traps::install() != 0 {
        println!("RESULT test=sleep status=fail reason=trap-table");
        return;
    }
    let Some(shared) = map_shared_info(info) else {
        println!("RESULT test=sleep status=fail reason=cannot-map-shared-info");
        return;
    };
    shared.set_upcall_mask(true);
    tally.line("register_event_callback", crate::events::register_callback() == 0, format_args!("ok=1"));
    let mut virq = EvtchnBindVirq { virq: VIRQ_TIMER, vcpu: 0, port: 0 };
    let bound = op(EVTCHNOP_BIND_VIRQ, &mut virq);
    tally.line("bind_virq_timer", bound == 0, format_args!("ret={bound}"));
    let timer_port = u64::from(virq.port);
    let time = shared.0 as *const SharedInfo;

    // A deadline already past: the timer fires during the call; with events enabled
    // the upcall comes on its way out.
    shared.set_upcall_mask(false);
    let upcalls = UPCALLS.load(SeqCst);
    let ret = set_timer(1);
    let fired = UPCALLS.load(SeqCst) > upcalls && LAST_PORT.load(SeqCst) == timer_port;
    tally.line("past_deadline_fires_at_once", ret == 0 && fired, format_args!("ret={ret} fired={}", u8::from(fired)));

    // A cancelled timer never fires: set ahead, cancel, and sleep on another, longer.
    // 50 ms ahead: a loaded host can stall QEMU for a few ms between the two calls, and
    // a timer that fired before its cancel is not the hypervisor's fault.
    let ret = set_timer(now_ns(time) + 50_000_000);
    let cancelled = set_timer(0);
    tally.line("cancel", ret == 0 && cancelled == 0, format_args!("ret={cancelled}"));

    let start = now_ns(time);
    let upcalls = UPCALLS.load(SeqCst);
    let ret = set_timer(start + ms * 1_000_000);
    let mut blocks = 0;
    while UPCALLS.load(SeqCst) == upcalls && blocks < 1000 {
        // SAFETY: block takes no argument.
        unsafe { calls::sched_op(SCHEDOP_BLOCK, GuestHandle::NULL) };
        blocks += 1;
    }
    let slept_ns = now_ns(time) - start;
    let woken_by_timer = UPCALLS.load(SeqCst) > upcalls && LAST_PORT.load(SeqCst) == timer_port;
    tally.line("woken_by_the_timer", ret == 0 && woken_by_timer, format_args!("woken={}", u8::from(woken_by_timer)));
    let at_least = slept_ns >= ms * 1_000_000;
    tally.line("slept_at_least_the_time", at_least, format_args!("ok={}", u8::from(at_least)));
    // Timer slack under QEMU's emulation: generous, but a timer that fires a second
    // late (or waits for something else) fails.
    let on_time = slept_ns < ms * 1_000_000 + 200_000_000;
    tally.line("woke_on_time", on_time, format_args!("ok={}", u8::from(on_time)));
    println!(
        "RESULT test=sleep check=slept elapsed_ms={} from_ms={} until_ms={}",
        slept_ns / 1_000_000,
        start / 1_000_000,
        (start + slept_ns) / 1_000_000
    );
    vcpu_timers(&mut tally, time, timer_port);
    shared.set_upcall_mask(true);
    tally.finish();
}

fn vcpu_op<T>(cmd: u32, vcpu: u32, arg: &mut T) -> i64 {
    // SAFETY: `arg` is the command's structure (or unused), live for the call.
    unsafe { calls::vcpu_op(cmd, vcpu, GuestHandle::from_mut(arg)) }
}

/// Blocks until the timer's upcall has come `count` more times (at most 1000 blocks).
fn block_for_timer(count: u64, timer_port: u64) -> bool {
    let target = UPCALLS.load(SeqCst) + count;
    for _ in 0..1000 {
        if UPCALLS.load(SeqCst) >= target {
            break;
        }
        // SAFETY: block takes no argument.
        unsafe { calls::sched_op(SCHEDOP_BLOCK, GuestHandle::NULL) };
    }
    UPCALLS.load(SeqCst) >= target && LAST_PORT.load(SeqCst) == timer_port
}

/// vcpu_op's timers: the periodic one ticks until stopped, the single-shot one with
/// VCPU_SSHOTTMR_future refuses the past (-ETIME).
fn vcpu_timers(tally: &mut Tally, time: *const SharedInfo, timer_port: u64) {
    use hypercall_abi::ops::vcpu::*;
    tally.line("vcpu_is_up", vcpu_op(VCPUOP_IS_UP, 0, &mut ()) == 1, format_args!("ok=1"));
    let ret = vcpu_op(VCPUOP_IS_UP, 7, &mut ());
    tally.line("vcpu_is_up_no_vcpu", ret == -2, format_args!("ret={ret}"));
    let ret = vcpu_op(VCPUOP_SET_PERIODIC_TIMER, 0, &mut VcpuSetPeriodicTimer { period_ns: 999_999 });
    tally.line("periodic_below_1ms", ret == -22, format_args!("ret={ret}"));
    // The periodic timer ticks while the vCPU runs (a blocked one is not woken by it, on
    // Xen as here): spin, events enabled, until three ticks or half a second.
    let start = now_ns(time);
    let ret = vcpu_op(VCPUOP_SET_PERIODIC_TIMER, 0, &mut VcpuSetPeriodicTimer { period_ns: 10_000_000 });
    let target = UPCALLS.load(SeqCst) + 3;
    while UPCALLS.load(SeqCst) < target && now_ns(time) - start < 500_000_000 {
        core::hint::spin_loop();
    }
    let ticked = UPCALLS.load(SeqCst) >= target && LAST_PORT.load(SeqCst) == timer_port;
    let elapsed = now_ns(time) - start;
    let stopped = vcpu_op(VCPUOP_STOP_PERIODIC_TIMER, 0, &mut ());
    // The first tick comes at once (on Xen too), the next two a period apart each.
    let paced = (20_000_000..250_000_000).contains(&elapsed);
    tally.line(
        "periodic_ticks",
        ret == 0 && ticked && stopped == 0 && paced,
        format_args!("set={ret} three_ticks={} stop={stopped}", u8::from(ticked)),
    );
    // Xen 4.17 ignores VCPU_SSHOTTMR_future: a past deadline fires at once, no -ETIME.
    let upcalls = UPCALLS.load(SeqCst);
    let mut past = VcpuSetSingleshotTimer { timeout_abs_ns: 1, flags: VCPU_SSHOTTMR_FUTURE, _pad: 0 };
    let ret = vcpu_op(VCPUOP_SET_SINGLESHOT_TIMER, 0, &mut past);
    let fired = UPCALLS.load(SeqCst) > upcalls;
    tally.line("singleshot_past_with_future_flag", ret == 0 && fired, format_args!("ret={ret} fired={}", u8::from(fired)));
    let mut soon = VcpuSetSingleshotTimer { timeout_abs_ns: now_ns(time) + 20_000_000, flags: VCPU_SSHOTTMR_FUTURE, _pad: 0 };
    let ret = vcpu_op(VCPUOP_SET_SINGLESHOT_TIMER, 0, &mut soon);
    let woken = block_for_timer(1, timer_port);
    tally.line("singleshot_fires", ret == 0 && woken, format_args!("ret={ret} woken={}", u8::from(woken)));
    let ret = vcpu_op(VCPUOP_STOP_SINGLESHOT_TIMER, 0, &mut ());
    tally.line("singleshot_stop", ret == 0, format_args!("ret={ret}"));
}
