//! `sched_op`: yield and shutdown (sched.h).

use super::HypercallContext;
use crate::domain::DomainState;
use crate::mm::guest_walk::MachineMemory;
use hypercall_abi::ops::sched_op::{SchedShutdown, ShutdownReason, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD};
use hypercall_abi::{Errno, GuestHandle};

pub fn sched_op<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
    match cmd {
        // One domain per CPU for now: yielding returns straight away.
        SCHEDOP_YIELD => Ok(0),
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
