//! `sched_op` (sched.h): yield, block, shutdown, poll, remote_shutdown, shutdown_code
//! and watchdog; and `set_timer_op` (xen.h), the single-shot timer a blocked vCPU
//! usually waits for. Semantics of Xen 4.17's common/sched/core.c, in our words.

use super::HypercallContext;
use crate::domain::Poll;
use crate::evtchn::{EventBits, SharedInfoBits, NR_PORTS};
use crate::mm::guest_walk::MachineMemory;
use crate::trap::deliver::{upcall_deliverable, write_event_mask};
use alloc::vec::Vec;
use hypercall_abi::ops::sched_op::*;
use hypercall_abi::{Errno, GuestArray, GuestHandle};

const NS_PER_SECOND: u64 = 1_000_000_000;

pub fn sched_op<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
    match cmd {
        // The scheduler looks again on the way out, this vCPU behind every other
        // runnable one.
        SCHEDOP_YIELD => {
            ctx.domain.traps.exit.reschedule = true;
            ctx.domain.traps.yielded = true;
            Ok(0)
        }
        // Events are enabled first (Xen's local_event_delivery_enable); with one already
        // deliverable the call returns and the upcall comes on the way out, otherwise
        // the vCPU waits (the exit path idles) until one is.
        SCHEDOP_BLOCK => {
            write_event_mask(ctx.domain, &mut ctx.host.memory, 0).map_err(|_| Errno::EFAULT)?;
            if !upcall_deliverable(ctx.domain, &ctx.host.memory) {
                ctx.domain.traps.exit.blocked = true;
            }
            Ok(0)
        }
        SCHEDOP_SHUTDOWN => {
            let request: SchedShutdown = arg.into_in().read(ctx)?;
            let reason = ShutdownReason::from_u32(request.reason).ok_or(Errno::EINVAL)?;
            // The dispatcher sees the state change and never resumes this vCPU.
            ctx.domain.shut_down(reason);
            Ok(0)
        }
        SCHEDOP_POLL => poll(ctx, arg),
        SCHEDOP_REMOTE_SHUTDOWN => {
            let request: SchedRemoteShutdown = arg.into_in().read(ctx)?;
            let reason = ShutdownReason::from_u32(request.reason).ok_or(Errno::EINVAL)?;
            if request.domain_id == ctx.domain.id {
                if !ctx.domain.privileged {
                    return Err(Errno::EPERM);
                }
                ctx.domain.shut_down(reason);
                return Ok(0);
            }
            let privileged = ctx.domain.privileged;
            let target = ctx.others.get_mut(request.domain_id).ok_or(Errno::ESRCH)?;
            if !privileged {
                return Err(Errno::EPERM);
            }
            // It stops the next time the scheduler looks at it; make that now.
            target.shut_down(reason);
            target.traps.exit.blocked = false;
            ctx.domain.traps.exit.reschedule = true;
            Ok(0)
        }
        // Only the first declaration counts (Xen keeps the first code).
        SCHEDOP_SHUTDOWN_CODE => {
            let request: SchedShutdown = arg.into_in().read(ctx)?;
            let reason = ShutdownReason::from_u32(request.reason).ok_or(Errno::EINVAL)?;
            ctx.domain.shutdown_code.get_or_insert(reason);
            Ok(0)
        }
        SCHEDOP_WATCHDOG => {
            let request: SchedWatchdog = arg.into_in().read(ctx)?;
            let now = ctx.host.machine.clock.now_ns();
            let result = watchdog(&mut ctx.domain.watchdogs, request, now);
            ctx.domain.traps.exit.timer_changed = true;
            result
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// SCHEDOP_poll: returns at once if an upcall is deliverable or a named port is
/// pending; otherwise the vCPU blocks until one of the ports becomes pending (masked
/// or not), an upcall becomes pending, or the timeout passes. Always 0 once the
/// arguments are good, as on Xen.
fn poll<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, arg: GuestHandle) -> Result<i64, Errno> {
    let request: SchedPoll = arg.into_in().read(ctx)?;
    if request.nr_ports > POLL_MAX_PORTS {
        return Err(Errno::EINVAL);
    }
    let mut ports = Vec::new();
    ports.try_reserve(request.nr_ports as usize).map_err(|_| Errno::ENOMEM)?;
    for entry in GuestArray::<u32>::from_raw(request.ports).elements(u64::from(request.nr_ports)) {
        ports.push(entry.into_in().read(ctx)?);
    }
    if upcall_deliverable(ctx.domain, &ctx.host.memory) {
        return Ok(0);
    }
    let bits = SharedInfoBits { memory: &mut ctx.host.memory, shared_info_mfn: ctx.domain.shared_info_mfn };
    for &port in &ports {
        if port >= NR_PORTS {
            return Err(Errno::EINVAL);
        }
        if bits.is_pending(port) {
            return Ok(0);
        }
    }
    ctx.domain.poll = Some(Poll { ports, timeout_ns: request.timeout });
    ctx.domain.traps.exit.blocked = true;
    ctx.domain.traps.exit.timer_changed = true;
    Ok(0)
}

/// Whether a polling vCPU may run again at `now`: a polled port is pending, an upcall
/// is pending (even masked: Xen wakes any blocked vCPU then), or the timeout passed.
pub fn poll_satisfied<M: MachineMemory>(domain: &crate::domain::Domain, memory: &mut M, now: u64) -> bool {
    let Some(poll) = &domain.poll else { return false };
    if poll.timeout_ns != 0 && poll.timeout_ns <= now {
        return true;
    }
    if memory.read_u64(domain.vcpu_info_maddr()).is_some_and(|word| word & 0xff != 0) {
        return true;
    }
    let bits = SharedInfoBits { memory, shared_info_mfn: domain.shared_info_mfn };
    poll.ports.iter().any(|&port| bits.is_pending(port))
}

/// Xen's domain_watchdog: id 0 takes a free watchdog and returns its id; when both are
/// in use Xen 4.17 answers -ENOSPC as a 32-bit unsigned value, 0xffffffe4, which the
/// guest sees as a positive 4294967268 (seen on Xen; matched). Another id kicks that one for `timeout` seconds from now, or with
/// timeout 0 frees it; an id not in use (or past the last) is -EINVAL.
pub fn watchdog(watchdogs: &mut [Option<u64>], request: SchedWatchdog, now: u64) -> Result<i64, Errno> {
    let expiry = now.saturating_add(u64::from(request.timeout) * NS_PER_SECOND);
    if request.id == 0 {
        let Some((index, slot)) = watchdogs.iter_mut().enumerate().find(|(_, w)| w.is_none()) else {
            return Ok(i64::from(Errno::ENOSPC.to_return_value() as u32));
        };
        *slot = Some(expiry);
        return Ok(index as i64 + 1);
    }
    let slot = watchdogs.get_mut(request.id as usize - 1).filter(|w| w.is_some()).ok_or(Errno::EINVAL)?;
    *slot = (request.timeout != 0).then_some(expiry);
    Ok(0)
}

/// Arms (or with 0 cancels) the single-shot timer; a deadline already past fires now.
pub fn set_timer_op<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, timeout_ns: u64) -> Result<i64, Errno> {
    ctx.domain.timer_deadline = (timeout_ns != 0).then_some(timeout_ns);
    ctx.domain.traps.exit.timer_changed = true;
    let now = ctx.host.machine.clock.now_ns();
    crate::time::fire_if_due(ctx.domain, &mut ctx.host.memory, now);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{TestGuest, GUEST_DATA_VA};
    use crate::domain::DomainState;
    use hypercall_abi::nr;
    use hypercall_abi::ops::sched_op::ShutdownReason;

    #[test]
    fn shutdown_records_the_reason() {
        let mut guest = TestGuest::new();
        guest.poke(GUEST_DATA_VA, &3u32.to_le_bytes());
        assert_eq!(guest.call(nr::sched_op, [2, GUEST_DATA_VA, 0, 0, 0, 0]), 0);
        assert_eq!(guest.domain.state, DomainState::Shutdown(ShutdownReason::Crash));
    }

    #[test]
    fn bad_reason_or_pointer_leaves_the_domain_running() {
        let mut guest = TestGuest::new();
        guest.poke(GUEST_DATA_VA, &99u32.to_le_bytes());
        assert_eq!(guest.call(nr::sched_op, [2, GUEST_DATA_VA, 0, 0, 0, 0]), -22);
        assert_eq!(guest.call(nr::sched_op, [2, 0x10, 0, 0, 0, 0]), -14);
        assert_eq!(guest.domain.state, DomainState::Running);
        assert_eq!(guest.call(nr::sched_op, [0, 0, 0, 0, 0, 0]), 0);
        assert_eq!(guest.call(nr::sched_op, [42, 0, 0, 0, 0, 0]), -38);
    }
}

#[cfg(test)]
mod timer_tests {
    use super::super::test_support::{set_fake_tsc, TestGuest, SHARED_INFO};
    use crate::mm::guest_walk::MachineMemory;
    use hypercall_abi::nr;
    use hypercall_abi::ops::event_channel::VIRQ_TIMER;

    fn timer_pending(g: &TestGuest, port: u32) -> bool {
        g.host.memory.read_u64(SHARED_INFO + 2048).unwrap() & (1 << port) != 0
    }

    #[test]
    fn the_timer_fires_once_at_its_deadline_or_at_once_if_past() {
        let mut g = TestGuest::new();
        let port = g.domain.events.bind_virq(VIRQ_TIMER, 0).unwrap();
        // The test clock: 1 ns per tick.
        set_fake_tsc(1_000);
        assert_eq!(g.call(nr::set_timer_op, [5_000, 0, 0, 0, 0, 0]), 0);
        assert_eq!(g.domain.timer_deadline, Some(5_000));
        assert!(g.domain.traps.exit.timer_changed, "arch arms the hardware timer");
        assert!(!timer_pending(&g, port));
        set_fake_tsc(6_000);
        assert!(crate::time::fire_if_due(&mut g.domain, &mut g.host.memory, 6_000));
        assert!(timer_pending(&g, port));
        assert!(!crate::time::fire_if_due(&mut g.domain, &mut g.host.memory, 7_000), "once");
        // A deadline in the past fires during the call; 0 cancels.
        g.host.memory.write_bytes(SHARED_INFO + 2048, &[0; 8]).unwrap();
        assert_eq!(g.call(nr::set_timer_op, [10, 0, 0, 0, 0, 0]), 0);
        assert!(timer_pending(&g, port) && g.domain.timer_deadline.is_none());
        assert_eq!(g.call(nr::set_timer_op, [9_000, 0, 0, 0, 0, 0]), 0);
        assert_eq!(g.call(nr::set_timer_op, [0, 0, 0, 0, 0, 0]), 0);
        assert_eq!(g.domain.timer_deadline, None);
    }

    #[test]
    fn block_enables_events_and_waits_only_when_nothing_is_deliverable() {
        let mut g = TestGuest::new();
        g.host.memory.write_bytes(SHARED_INFO, &[0, 1]).unwrap();
        assert_eq!(g.call(nr::sched_op, [1, 0, 0, 0, 0, 0]), 0);
        assert_eq!(g.host.memory.read_u64(SHARED_INFO).unwrap() & 0xffff, 0, "mask cleared");
        assert!(g.domain.traps.exit.blocked);
        g.domain.traps.exit.blocked = false;
        g.host.memory.write_bytes(SHARED_INFO, &[1, 1]).unwrap();
        assert_eq!(g.call(nr::sched_op, [1, 0, 0, 0, 0, 0]), 0);
        assert!(!g.domain.traps.exit.blocked, "an event was pending: the upcall comes on the way out");
    }
}

#[cfg(test)]
mod poll_and_watchdog_tests {
    use super::super::test_support::{set_fake_tsc, TestGuest, GUEST_DATA_VA};
    use super::*;
    use crate::domain::DomainState;
    use hypercall_abi::nr;
    use zerocopy::IntoBytes;

    fn poll_call(g: &mut TestGuest, ports: &[u32], timeout: u64) -> i64 {
        let request = SchedPoll { ports: GUEST_DATA_VA + 64, nr_ports: ports.len() as u32, _pad: 0, timeout };
        g.poke(GUEST_DATA_VA, request.as_bytes());
        g.poke(GUEST_DATA_VA + 64, ports.as_bytes());
        g.call(nr::sched_op, [u64::from(SCHEDOP_POLL), GUEST_DATA_VA, 0, 0, 0, 0])
    }

    #[test]
    fn poll_checks_its_arguments_then_waits_for_a_port_or_the_timeout() {
        let mut g = TestGuest::new();
        set_fake_tsc(1_000);
        let too_many = SchedPoll { ports: GUEST_DATA_VA + 64, nr_ports: 129, _pad: 0, timeout: 0 };
        g.poke(GUEST_DATA_VA, too_many.as_bytes());
        assert_eq!(g.call(nr::sched_op, [3, GUEST_DATA_VA, 0, 0, 0, 0]), -22);
        let unreadable = SchedPoll { ports: 0x7fff_dead_0000, nr_ports: 1, _pad: 0, timeout: 0 };
        g.poke(GUEST_DATA_VA, unreadable.as_bytes());
        assert_eq!(g.call(nr::sched_op, [3, GUEST_DATA_VA, 0, 0, 0, 0]), -14);
        assert_eq!(poll_call(&mut g, &[4096], 0), -22, "a port past the last");
        assert!(!g.domain.traps.exit.blocked);
        // Nothing pending: blocked, until the port is raised (even masked) or time passes.
        let port = g.domain.events.bind_ipi(0).unwrap();
        assert_eq!(poll_call(&mut g, &[port], 5_000), 0);
        assert!(g.domain.traps.exit.blocked && g.domain.poll.is_some());
        assert!(!poll_satisfied(&g.domain, &mut g.host.memory, 2_000));
        assert!(poll_satisfied(&g.domain, &mut g.host.memory, 5_000), "the timeout");
        let mut bits = SharedInfoBits { memory: &mut g.host.memory, shared_info_mfn: g.domain.shared_info_mfn };
        bits.test_and_set_pending(port);
        assert!(poll_satisfied(&g.domain, &mut g.host.memory, 2_000), "the port");
        // Already pending: returns without blocking.
        g.domain.traps.exit.blocked = false;
        assert_eq!(poll_call(&mut g, &[port], 0), 0);
        assert!(!g.domain.traps.exit.blocked);
    }

    #[test]
    fn watchdogs_are_numbered_kicked_and_freed_as_on_xen() {
        let mut w = [None; WATCHDOGS_PER_DOMAIN];
        let req = |id, timeout| SchedWatchdog { id, timeout };
        assert_eq!(watchdog(&mut w, req(0, 10), 0), Ok(1));
        assert_eq!(watchdog(&mut w, req(0, 10), 0), Ok(2));
        assert_eq!(watchdog(&mut w, req(0, 10), 0), Ok(0xffff_ffe4), "-ENOSPC as Xen 4.17 returns it");
        assert_eq!(watchdog(&mut w, req(1, 20), 5), Ok(0));
        assert_eq!(w[0], Some(5 + 20 * NS_PER_SECOND));
        assert_eq!(watchdog(&mut w, req(3, 1), 0), Err(Errno::EINVAL));
        assert_eq!(watchdog(&mut w, req(1, 0), 0), Ok(0), "timeout 0 frees it");
        assert_eq!(watchdog(&mut w, req(1, 5), 0), Err(Errno::EINVAL));
        assert_eq!(watchdog(&mut w, req(0, 10), 0), Ok(1), "the freed one is taken again");
    }

    #[test]
    fn the_first_shutdown_code_decides_the_reason() {
        let mut g = TestGuest::new();
        g.poke(GUEST_DATA_VA, &1u32.to_le_bytes());
        assert_eq!(g.call(nr::sched_op, [5, GUEST_DATA_VA, 0, 0, 0, 0]), 0);
        g.poke(GUEST_DATA_VA, &0u32.to_le_bytes());
        assert_eq!(g.call(nr::sched_op, [5, GUEST_DATA_VA, 0, 0, 0, 0]), 0);
        assert_eq!(g.domain.state, DomainState::Running, "declared, not done");
        assert_eq!(g.call(nr::sched_op, [2, GUEST_DATA_VA, 0, 0, 0, 0]), 0);
        assert_eq!(g.domain.state, DomainState::Shutdown(ShutdownReason::Reboot));
        // A remote shutdown of a domain that does not exist; of itself by a domU.
        let mut g = TestGuest::new();
        g.poke(GUEST_DATA_VA, SchedRemoteShutdown { domain_id: 77, _pad: 0, reason: 0 }.as_bytes());
        assert_eq!(g.call(nr::sched_op, [4, GUEST_DATA_VA, 0, 0, 0, 0]), -3);
        g.domain.privileged = false;
        g.poke(GUEST_DATA_VA, SchedRemoteShutdown { domain_id: 0, _pad: 0, reason: 0 }.as_bytes());
        assert_eq!(g.call(nr::sched_op, [4, GUEST_DATA_VA, 0, 0, 0, 0]), -1);
    }
}
