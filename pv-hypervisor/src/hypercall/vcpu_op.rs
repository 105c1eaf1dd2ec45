//! `vcpu_op` (vcpu.h): whether a vCPU is up, and its single-shot and periodic timers,
//! which raise VIRQ_TIMER like set_timer_op's (`crate::time::fire_if_due`).

use super::HypercallContext;
use crate::evtchn::VCPUS;
use crate::mm::guest_walk::MachineMemory;
use hypercall_abi::ops::vcpu::*;
use hypercall_abi::{Errno, GuestHandle};

/// Shorter periods are refused, as on Xen ("periods smaller than one millisecond may
/// not be supported", vcpu.h).
const MIN_PERIOD_NS: u64 = 1_000_000;

pub fn vcpu_op<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u32, vcpu_id: u32, arg: GuestHandle) -> Result<i64, Errno> {
    if vcpu_id >= VCPUS {
        return Err(Errno::ENOENT);
    }
    let now = ctx.host.machine.clock.now_ns();
    match cmd {
        VCPUOP_IS_UP => return Ok(1),
        VCPUOP_SEND_NMI => {
            if !arg.is_null() {
                return Err(Errno::EINVAL);
            }
            // Delivered on the way back to the guest (arch's exit path), once it is
            // not in an NMI handler already; a second one while one waits is the same.
            ctx.domain.traps.exit.nmi_pending = true;
            return Ok(0);
        }
        VCPUOP_SET_PERIODIC_TIMER => {
            let set: VcpuSetPeriodicTimer = arg.into_in().read(&*ctx)?;
            if set.period_ns < MIN_PERIOD_NS {
                return Err(Errno::EINVAL);
            }
            // As on Xen, the first tick comes at once unless the last one was less than
            // a period ago (fire_if_due below sends it).
            let first = ctx.domain.periodic_last_event.saturating_add(set.period_ns);
            ctx.domain.periodic_timer = Some((set.period_ns, first));
        }
        VCPUOP_STOP_PERIODIC_TIMER => ctx.domain.periodic_timer = None,
        VCPUOP_SET_SINGLESHOT_TIMER => {
            // VCPU_SSHOTTMR_future is ignored, as Xen 4.17 ignores it (seen: a past
            // deadline with the flag is 0 and fires at once, not -ETIME).
            let set: VcpuSetSingleshotTimer = arg.into_in().read(&*ctx)?;
            ctx.domain.timer_deadline = Some(set.timeout_abs_ns);
        }
        VCPUOP_STOP_SINGLESHOT_TIMER => ctx.domain.timer_deadline = None,
        _ => return Err(Errno::ENOSYS),
    }
    ctx.domain.traps.exit.timer_changed = true;
    crate::time::fire_if_due(ctx.domain, &mut ctx.host.memory, now);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{set_fake_tsc, TestGuest, GUEST_DATA_VA};
    use hypercall_abi::nr;
    use hypercall_abi::ops::vcpu::*;

    fn call(g: &mut TestGuest, cmd: u32, vcpu: u64, arg: &[u8]) -> i64 {
        g.poke(GUEST_DATA_VA, arg);
        g.call(nr::vcpu_op, [u64::from(cmd), vcpu, GUEST_DATA_VA, 0, 0, 0])
    }

    #[test]
    fn timers_and_their_errors() {
        let mut g = TestGuest::new();
        // System time 50 ms (the test clock counts nanoseconds).
        set_fake_tsc(50_000_000);
        assert_eq!(call(&mut g, VCPUOP_IS_UP, 0, &[]), 1);
        assert_eq!(call(&mut g, VCPUOP_IS_UP, 1, &[]), -2, "no such vCPU");
        assert_eq!(call(&mut g, VCPUOP_SET_PERIODIC_TIMER, 0, &999_999u64.to_le_bytes()), -22);
        assert_eq!(call(&mut g, VCPUOP_SET_PERIODIC_TIMER, 0, &10_000_000u64.to_le_bytes()), 0);
        assert_eq!(g.domain.periodic_timer, Some((10_000_000, 60_000_000)), "the first tick came at once");
        assert_eq!(g.domain.periodic_last_event, 50_000_000);
        // Set again within the period: no extra tick, the period runs on from the last.
        assert_eq!(call(&mut g, VCPUOP_SET_PERIODIC_TIMER, 0, &20_000_000u64.to_le_bytes()), 0);
        assert_eq!(g.domain.periodic_timer, Some((20_000_000, 70_000_000)));
        let past = [500u64.to_le_bytes(), (1u64).to_le_bytes()].concat();
        assert_eq!(call(&mut g, VCPUOP_SET_SINGLESHOT_TIMER, 0, &past), 0, "the future flag is ignored, as on Xen");
        assert_eq!(g.domain.timer_deadline, None, "fired at once");
        let later = [65_000_000u64.to_le_bytes(), 0u64.to_le_bytes()].concat();
        assert_eq!(call(&mut g, VCPUOP_SET_SINGLESHOT_TIMER, 0, &later), 0);
        assert_eq!(crate::time::next_expiry(&g.domain), Some(65_000_000));
        assert_eq!(call(&mut g, VCPUOP_STOP_SINGLESHOT_TIMER, 0, &[]), 0);
        assert_eq!(crate::time::next_expiry(&g.domain), Some(70_000_000));
        // Blocked, the periodic timer does not fire; running, a late tick starts the
        // next period from itself.
        assert!(!crate::time::fire_if_due_while_blocked(&mut g.domain, &mut g.host.memory, 95_000_000));
        assert!(crate::time::fire_if_due(&mut g.domain, &mut g.host.memory, 95_000_000));
        assert_eq!(g.domain.periodic_timer, Some((20_000_000, 115_000_000)));
        assert_eq!(call(&mut g, VCPUOP_STOP_PERIODIC_TIMER, 0, &[]), 0);
        assert_eq!(crate::time::next_expiry(&g.domain), None);
        assert_eq!(call(&mut g, VCPUOP_INITIALISE, 0, &[]), -38);
    }
}
