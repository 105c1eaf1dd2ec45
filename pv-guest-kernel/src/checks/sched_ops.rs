//! `sched-ops`: SCHEDOP_poll (argument errors, a pending port, a timeout, no ports),
//! SCHEDOP_shutdown_code (declared, not done: this domain goes on), remote_shutdown of
//! a domain that does not exist, and the watchdogs (numbering, kick, free, errors).
//! One RESULT line per check, compared with Xen 4.17 by the conformance harness.

use super::evtchn_ops::{map_shared_info, op};
use super::Tally;
use crate::console::println;
use crate::events::now_ns;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::event_channel::*;
use hypercall_abi::ops::sched_op::*;
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::GuestHandle;

const UNMAPPED: u64 = 0x0000_7fff_dead_0000;

fn sched<T>(cmd: u32, arg: &T) -> i64 {
    // SAFETY: `arg` is the command's structure, readable for the call.
    unsafe { calls::sched_op(cmd, GuestHandle::from_ref(arg)) }
}

fn poll(ports: &[u32], nr_ports: u32, timeout: u64) -> i64 {
    sched(SCHEDOP_POLL, &SchedPoll { ports: ports.as_ptr() as u64, nr_ports, _pad: 0, timeout })
}

fn watchdog(id: u32, timeout: u32) -> i64 {
    sched(SCHEDOP_WATCHDOG, &SchedWatchdog { id, timeout })
}

pub fn run(info: &StartInfo) {
    let mut tally = Tally::new("sched-ops");
    let Some(shared) = map_shared_info(info) else {
        println!("RESULT test=sched-ops status=fail reason=cannot-map-shared-info");
        return;
    };
    // Events stay masked: poll does not need them, and nothing is delivered.
    shared.set_upcall_mask(true);
    shared.clear_upcall();
    let time = shared.0 as *const hypercall_abi::shared_info::SharedInfo;

    tally.ret("poll_too_many_ports", poll(&[], POLL_MAX_PORTS + 1, 0), -22);
    tally.ret("poll_unreadable_ports", sched(SCHEDOP_POLL, &SchedPoll { ports: UNMAPPED, nr_ports: 1, _pad: 0, timeout: 0 }), -14);
    tally.ret("poll_port_past_the_last", poll(&[4096], 1, 0), -22);
    let mut ipi = EvtchnBindIpi { vcpu: 0, port: 0 };
    tally.ret("bind_ipi", op(EVTCHNOP_BIND_IPI, &mut ipi), 0);
    let port = ipi.port;
    op(EVTCHNOP_SEND, &mut EvtchnPort { port });
    let started = now_ns(time);
    let ret = poll(&[port], 1, started + 5_000_000_000);
    let quick = now_ns(time) - started < 1_000_000_000;
    tally.line("poll_pending_returns_at_once", ret == 0 && quick, format_args!("ret={ret} at_once={}", u8::from(quick)));
    shared.clear_pending(port);
    shared.clear_upcall();
    for (check, ports, nr) in [("poll_times_out", &[port][..], 1), ("poll_no_ports_times_out", &[][..], 0)] {
        let started = now_ns(time);
        let ret = poll(ports, nr, started + 50_000_000);
        let waited = now_ns(time) - started;
        let ok = ret == 0 && (50_000_000..1_000_000_000).contains(&waited);
        tally.line(check, ok, format_args!("ret={ret} waited_for_the_timeout={}", u8::from(ok)));
    }
    op(EVTCHNOP_CLOSE, &mut EvtchnPort { port });

    // Declared now, it is what the poweroff at the end becomes: poweroff either way.
    tally.ret("shutdown_code", sched(SCHEDOP_SHUTDOWN_CODE, &SchedShutdown { reason: 0 }), 0);
    tally.ret("shutdown_code_again", sched(SCHEDOP_SHUTDOWN_CODE, &SchedShutdown { reason: 1 }), 0);
    tally.ret("remote_shutdown_no_such_domain", sched(SCHEDOP_REMOTE_SHUTDOWN, &SchedRemoteShutdown { domain_id: 77, _pad: 0, reason: 0 }), -3);

    tally.ret("watchdog_first", watchdog(0, 60), 1);
    tally.ret("watchdog_second", watchdog(0, 60), 2);
    // Xen 4.17 returns -ENOSPC through an unsigned int: 0xffffffe4, a positive value.
    tally.ret("watchdog_none_left", watchdog(0, 60), 0xffff_ffe4);
    tally.ret("watchdog_kick", watchdog(1, 60), 0);
    tally.ret("watchdog_kick_past_the_last", watchdog(3, 60), -22);
    tally.ret("watchdog_free", watchdog(1, 0), 0);
    tally.ret("watchdog_kick_freed", watchdog(1, 60), -22);
    tally.ret("watchdog_take_freed", watchdog(0, 60), 1);
    tally.ret("watchdog_free_first", watchdog(1, 0), 0);
    tally.ret("watchdog_free_second", watchdog(2, 0), 0);
    tally.ret("unknown_command", sched(99, &0u32), -38);
    tally.finish();
}

/// `watchdog-then-spin TIMEOUT SECONDS`: sets a TIMEOUT-second watchdog and spins for
/// SECONDS without kicking it: with SECONDS > TIMEOUT the hypervisor must shut the
/// domain down (reason watchdog) before it gets to report.
pub fn watchdog_then_spin(info: &StartInfo, command: &str) {
    let mut args = command.split_ascii_whitespace().skip(1).map(str::parse::<u32>);
    let (Some(Ok(timeout)), Some(Ok(seconds))) = (args.next(), args.next()) else {
        println!("RESULT test=watchdog-then-spin status=fail reason=usage-TIMEOUT-SECONDS");
        return;
    };
    let Some(shared) = crate::events::shared_info(info) else { return };
    let id = watchdog(0, timeout);
    println!("RESULT test=watchdog-then-spin check=armed id={id}");
    let until = now_ns(shared) + u64::from(seconds) * 1_000_000_000;
    while now_ns(shared) < until {
        core::hint::spin_loop();
    }
    println!("RESULT test=watchdog-then-spin status=pass");
}
