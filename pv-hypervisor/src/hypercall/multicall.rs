//! `multicall`: a batch of hypercalls in one entry (xen.h `multicall_entry`). Each runs
//! through the same dispatch as a direct call, in order, and its result is written back
//! into its entry. `iret` cannot be part of one (it would not return into the batch):
//! like Xen, the domain is crashed. A nested multicall gets -EINVAL as its result.
//!
//! A batch is preemptible as Xen's is (common/multicall.c): when a timer is due before
//! an entry (not the first, so every run makes progress), or when an entry's own call
//! stops early, the multicall continues later from that entry, which in the second case
//! first gets the arguments its call continues with.

use super::HypercallContext;
use crate::mm::guest_walk::MachineMemory;
use hypercall_abi::ops::multicall::MulticallEntry;
use hypercall_abi::{nr, Errno, GuestArray};

pub const IRET_IN_MULTICALL: &str = "multicall: iret inside a multicall";

const ENTRY_SIZE: u64 = core::mem::size_of::<MulticallEntry>() as u64;

pub fn multicall<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, calls: GuestArray<MulticallEntry>, count: u32) -> Result<i64, Errno> {
    // The multicall again, from entry `index` on (entries up to it were read, so the
    // address does not wrap).
    let base = calls.address();
    let from = |index: u64| [base.wrapping_add(index * ENTRY_SIZE), u64::from(count) - index, 0, 0, 0, 0];
    for (index, slot) in (0u64..).zip(calls.elements(u64::from(count))) {
        if index > 0 && ctx.preempt_wanted() {
            return ctx.continue_later(from(index));
        }
        let (entry, entry_out) = slot.read(ctx)?;
        let result = match entry.op {
            nr::iret => {
                ctx.crash(IRET_IN_MULTICALL);
                return Err(Errno::EINVAL);
            }
            nr::multicall => Errno::EINVAL.to_return_value(),
            op => {
                ctx.domain.count_hypercall(op);
                let result = hypercall_abi::dispatch(ctx, op, entry.args);
                if let Some(args) = ctx.continuation.take() {
                    // The call stopped early: its entry holds what it continues with.
                    entry_out.write(ctx, &MulticallEntry { args, ..entry })?;
                    return ctx.continue_later(from(index));
                }
                result
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
    fn a_call_that_stops_early_continues_with_the_batch_from_its_entry() {
        use hypercall_abi::ops::console_io::CONSOLEIO_WRITE;
        let mut g = TestGuest::new();
        let text = GUEST_DATA_VA + 4096;
        g.poke(text, &[b'x'; 4096]);
        g.poke(text + 4096, &[b'y'; 4096]);
        let write = (nr::console_io, [u64::from(CONSOLEIO_WRITE), 8192, text, 0, 0, 0]);
        entries(&mut g, &[write, (nr::hypercall_count, [nr::console_io, 0, 0, 0, 0, 0])]);
        // A timer is due from the start: the first entry still runs (every run makes
        // progress), and its write stops after 4 KiB.
        g.host.next_interrupt_at = 0;
        assert_eq!(g.call(nr::multicall, [GUEST_DATA_VA, 2, 0, 0, 0, 0]), nr::multicall as i64, "continues later");
        let entry = MulticallEntry::read_from_bytes(&g.peek(GUEST_DATA_VA, 64)).unwrap();
        assert_eq!((entry.op, entry.args[..3].to_vec()), (nr::console_io, std::vec![u64::from(CONSOLEIO_WRITE), 4096, text + 4096]));
        assert_eq!((g.regs.rdi, g.regs.rsi), (GUEST_DATA_VA, 2), "from the stopped entry on");
        assert_eq!(result(&g, 1), 0xdead, "nothing after it ran");
        // Run again (as the guest's re-executed syscall does) with no timer due.
        g.host.next_interrupt_at = u64::MAX;
        assert_eq!(g.call(nr::multicall, [g.regs.rdi, g.regs.rsi, 0, 0, 0, 0]), 0);
        assert_eq!((result(&g, 0), result(&g, 1)), (0, 2), "the write finished; console_io counted twice");
    }

    #[test]
    fn a_due_timer_stops_the_batch_between_entries() {
        let mut g = TestGuest::new();
        entries(&mut g, &[(nr::xen_version, [0; 6]), (nr::xen_version, [0; 6])]);
        g.host.next_interrupt_at = 0;
        assert_eq!(g.call(nr::multicall, [GUEST_DATA_VA, 2, 0, 0, 0, 0]), nr::multicall as i64);
        assert_eq!((result(&g, 0), result(&g, 1)), ((4 << 16) | 17, 0xdead));
        assert_eq!((g.regs.rdi, g.regs.rsi), (GUEST_DATA_VA + 64, 1));
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
