//! `hypercall_count` (arch_0, ours): the worked example of docs/adding-a-hypercall.md.

use super::HypercallContext;
use crate::mm::guest_walk::MachineMemory;
use hypercall_abi::Errno;

pub fn hypercall_count<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, number: u32) -> Result<i64, Errno> {
    let count = ctx.domain.hypercall_count(u64::from(number)).ok_or(Errno::EINVAL)?;
    Ok(count as i64)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::TestGuest;
    use hypercall_abi::nr;

    #[test]
    fn counts_what_the_domain_did() {
        let mut guest = TestGuest::new();
        guest.domain.count_hypercall(nr::console_io);
        guest.domain.count_hypercall(nr::console_io);
        assert_eq!(guest.call(nr::hypercall_count, [nr::console_io, 0, 0, 0, 0, 0]), 2);
        assert_eq!(guest.call(nr::hypercall_count, [nr::sched_op, 0, 0, 0, 0, 0]), 0);
        assert_eq!(guest.call(nr::hypercall_count, [64, 0, 0, 0, 0, 0]), -22);
    }

    #[test]
    fn numbers_past_the_counted_ones_are_gathered_apart_and_never_reported() {
        let mut guest = TestGuest::new();
        guest.domain.count_hypercall(63);
        guest.domain.count_hypercall(64);
        guest.domain.count_hypercall(u64::MAX);
        assert_eq!(guest.call(nr::hypercall_count, [63, 0, 0, 0, 0, 0]), 1);
        assert_eq!(guest.call(nr::hypercall_count, [64, 0, 0, 0, 0, 0]), -22);
        assert_eq!(guest.domain.hypercall_count(64), None);
    }
}
