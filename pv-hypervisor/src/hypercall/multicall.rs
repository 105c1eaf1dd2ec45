//! `multicall`: a batch of hypercalls in one entry (xen.h `multicall_entry`). Each runs
//! through the same dispatch as a direct call, in order, and its result is written back
//! into its entry. `iret` cannot be part of one (it would not return into the batch):
//! like Xen, the domain is crashed. A nested multicall gets -EINVAL as its result.

use super::HypercallContext;
use crate::mm::guest_walk::MachineMemory;
use hypercall_abi::ops::multicall::MulticallEntry;
use hypercall_abi::{nr, Errno, GuestArray};

pub const IRET_IN_MULTICALL: &str = "multicall: iret inside a multicall";

pub fn multicall<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, calls: GuestArray<MulticallEntry>, count: u32) -> Result<i64, Errno> {
    for slot in calls.elements(u64::from(count)) {
        let (entry, entry_out) = slot.read(ctx)?;
        let result = match entry.op {
            nr::iret => {
                ctx.crash(IRET_IN_MULTICALL);
                return Err(Errno::EINVAL);
            }
            nr::multicall => Errno::EINVAL.to_return_value(),
            op => {
                ctx.domain.count_hypercall(op);
                hypercall_abi::dispatch(ctx, op, entry.args)
            }
        };
        // Only the result goes back: the entry's other fields stay as the guest has them.
        entry_out.field::<u64>(core::mem::offset_of!(MulticallEntry, result)).write(ctx, &(result as u64))?;
        if !ctx.domain.state.is_running() {
            break;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{TestGuest, GUEST_DATA_VA};
    use crate::domain::DomainState;
    use hypercall_abi::nr;
    use hypercall_abi::ops::multicall::MulticallEntry;
    use zerocopy::{FromBytes, IntoBytes};

    fn entries(g: &mut TestGuest, calls: &[(u64, [u64; 6])]) {
        let bytes: std::vec::Vec<u8> = calls.iter().flat_map(|&(op, args)| MulticallEntry { op, result: 0xdead, args }.as_bytes().to_vec()).collect();
        g.poke(GUEST_DATA_VA, &bytes);
    }

    fn result(g: &TestGuest, i: u64) -> i64 {
        MulticallEntry::read_from_bytes(&g.peek(GUEST_DATA_VA + i * 64, 64)).unwrap().result as i64
    }

    #[test]
    fn runs_in_order_and_writes_each_result() {
        let mut g = TestGuest::new();
        entries(
            &mut g,
            &[
                (nr::xen_version, [0; 6]),
                (nr::vm_assist, [0, 6, 0, 0, 0, 0]),
                (999, [0; 6]),
                (nr::multicall, [0; 6]),
                (nr::hypercall_count, [nr::xen_version, 0, 0, 0, 0, 0]),
            ],
        );
        assert_eq!(g.call(nr::multicall, [GUEST_DATA_VA, 5, 0, 0, 0, 0]), 0);
        assert_eq!((result(&g, 0), result(&g, 1), result(&g, 2), result(&g, 3)), ((4 << 16) | 17, -22, -38, -22));
        assert_eq!(result(&g, 4), 1, "the inner call was counted");
        assert_eq!(g.call(nr::multicall, [0x10, 1, 0, 0, 0, 0]), -14);
    }

    #[test]
    fn iret_inside_crashes_the_domain() {
        let mut g = TestGuest::new();
        entries(&mut g, &[(nr::iret, [0; 6]), (nr::xen_version, [0; 6])]);
        g.call(nr::multicall, [GUEST_DATA_VA, 2, 0, 0, 0, 0]);
        assert_eq!(g.domain.state, DomainState::Crashed);
        assert_eq!(result(&g, 1), 0xdead, "nothing after it ran");
    }
}
