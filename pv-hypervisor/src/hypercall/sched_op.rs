//! `sched_op`: yield, block and shutdown (sched.h), and `set_timer_op` (xen.h), the
//! single-shot timer a blocked vCPU usually waits for.

use super::HypercallContext;
use crate::domain::DomainState;
use crate::mm::guest_walk::MachineMemory;
use crate::trap::deliver::{upcall_deliverable, write_event_mask};
use hypercall_abi::ops::sched_op::{SchedShutdown, ShutdownReason, SCHEDOP_BLOCK, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD};
use hypercall_abi::{Errno, GuestHandle};

pub fn sched_op<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
    match cmd {
        // The scheduler looks again on the way out, this vCPU behind every other
        // runnable one.
        SCHEDOP_YIELD => {
            ctx.domain.traps.reschedule = true;
            ctx.domain.traps.yielded = true;
            Ok(0)
        }
        // Events are enabled first (Xen's local_event_delivery_enable); with one already
        // deliverable the call returns and the upcall comes on the way out, otherwise
        // the vCPU waits (the exit path idles) until one is.
        SCHEDOP_BLOCK => {
            write_event_mask(ctx.domain, ctx.memory, 0).map_err(|_| Errno::EFAULT)?;
            if !upcall_deliverable(ctx.domain, &*ctx.memory) {
                ctx.domain.traps.blocked = true;
            }
            Ok(0)
        }
        SCHEDOP_SHUTDOWN => {
            let request: SchedShutdown = arg.into_in().read(ctx)?;
            let reason = ShutdownReason::from_u32(request.reason).ok_or(Errno::EINVAL)?;
            // The dispatcher sees the state change and never resumes this vCPU.
            ctx.domain.state = DomainState::Shutdown(reason);
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// Arms (or with 0 cancels) the single-shot timer; a deadline already past fires now.
pub fn set_timer_op<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, timeout_ns: u64) -> Result<i64, Errno> {
    ctx.domain.timer_deadline = (timeout_ns != 0).then_some(timeout_ns);
    ctx.domain.traps.timer_changed = true;
    let now = ctx.machine.clock.now_ns();
    crate::time::fire_if_due(ctx.domain, ctx.memory, now);
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
        g.memory.read_u64(SHARED_INFO + 2048).unwrap() & (1 << port) != 0
    }

    #[test]
    fn the_timer_fires_once_at_its_deadline_or_at_once_if_past() {
        let mut g = TestGuest::new();
        let port = g.domain.events.bind_virq(VIRQ_TIMER, 0).unwrap();
        // The test clock: 1 ns per tick.
        set_fake_tsc(1_000);
        assert_eq!(g.call(nr::set_timer_op, [5_000, 0, 0, 0, 0, 0]), 0);
        assert_eq!(g.domain.timer_deadline, Some(5_000));
        assert!(g.domain.traps.timer_changed, "arch arms the hardware timer");
        assert!(!timer_pending(&g, port));
        set_fake_tsc(6_000);
        assert!(crate::time::fire_if_due(&mut g.domain, &mut g.memory, 6_000));
        assert!(timer_pending(&g, port));
        assert!(!crate::time::fire_if_due(&mut g.domain, &mut g.memory, 7_000), "once");
        // A deadline in the past fires during the call; 0 cancels.
        g.memory.write_bytes(SHARED_INFO + 2048, &[0; 8]).unwrap();
        assert_eq!(g.call(nr::set_timer_op, [10, 0, 0, 0, 0, 0]), 0);
        assert!(timer_pending(&g, port) && g.domain.timer_deadline.is_none());
        assert_eq!(g.call(nr::set_timer_op, [9_000, 0, 0, 0, 0, 0]), 0);
        assert_eq!(g.call(nr::set_timer_op, [0, 0, 0, 0, 0, 0]), 0);
        assert_eq!(g.domain.timer_deadline, None);
    }

    #[test]
    fn block_enables_events_and_waits_only_when_nothing_is_deliverable() {
        let mut g = TestGuest::new();
        g.memory.write_bytes(SHARED_INFO, &[0, 1]).unwrap();
        assert_eq!(g.call(nr::sched_op, [1, 0, 0, 0, 0, 0]), 0);
        assert_eq!(g.memory.read_u64(SHARED_INFO).unwrap() & 0xffff, 0, "mask cleared");
        assert!(g.domain.traps.blocked);
        g.domain.traps.blocked = false;
        g.memory.write_bytes(SHARED_INFO, &[1, 1]).unwrap();
        assert_eq!(g.call(nr::sched_op, [1, 0, 0, 0, 0, 0]), 0);
        assert!(!g.domain.traps.blocked, "an event was pending: the upcall comes on the way out");
    }
}
