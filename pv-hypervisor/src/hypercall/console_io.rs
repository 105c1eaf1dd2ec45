//! `console_io`: guests write to the hypervisor console. (xen.h: CONSOLEIO_write 0,
//! CONSOLEIO_read 1.)

use super::HypercallContext;
use crate::console::guest_line::print_guest_line;
use crate::mm::guest_walk::MachineMemory;
use hypercall_abi::ops::console_io::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use hypercall_abi::{Errno, GuestArray};

/// Bytes copied from the guest per step: a stack buffer, so a huge `count` costs time
/// proportional to the guest's own (mapped) memory, never hypervisor memory.
const CHUNK: usize = 1024;

pub fn console_io<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u32, count: u32, buffer: GuestArray<u8>) -> Result<i64, Errno> {
    match cmd {
        CONSOLEIO_WRITE => write(ctx, count, buffer),
        // Reading the console is dom0's: what was typed while input went to it.
        CONSOLEIO_READ if ctx.domain.privileged => read(ctx, count, buffer),
        CONSOLEIO_READ => Err(Errno::EPERM),
        // Xen answers an unknown console command with -ENOSYS.
        _ => Err(Errno::ENOSYS),
    }
}

/// Up to `count` queued input bytes into the guest's buffer; how many (0: none).
fn read<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, count: u32, buffer: GuestArray<u8>) -> Result<i64, Errno> {
    let mut bytes = [0u8; crate::console::input::RING_BYTES];
    let wanted = (count as usize).min(bytes.len());
    // Taken from the queue only once they are in the guest's buffer (as on Xen, a
    // bad buffer loses nothing).
    let n = ctx.host.console_input.peek(&mut bytes[..wanted]);
    buffer.write_from(ctx, &bytes[..n])?;
    ctx.host.console_input.consume(n);
    Ok(n as i64)
}

/// Bytes written between two looks at the clock (a long write continues later once a
/// timer is due: Xen's hypercall continuation).
const PREEMPT_CHECK_BYTES: u64 = 4096;

fn write<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, count: u32, mut buffer: GuestArray<u8>) -> Result<i64, Errno> {
    let mut chunk = [0u8; CHUNK];
    let mut done: u64 = 0;
    let count = count as u64;
    while done < count {
        if done > 0 && done.is_multiple_of(PREEMPT_CHECK_BYTES) && ctx.preempt_wanted() {
            let rest = [u64::from(CONSOLEIO_WRITE), count - done, buffer.address(), 0, 0, 0];
            return ctx.continue_later(rest);
        }
        let len = (count - done).min(CHUNK as u64) as usize;
        // A bad pointer anywhere fails the call; what came before it was printed, as on Xen.
        buffer = buffer.read_into(ctx, &mut chunk[..len])?;
        let domid = ctx.domain.id;
        ctx.domain.console.push(&chunk[..len], &mut |line| print_guest_line(domid, line));
        done += len as u64;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{TestGuest, GUEST_DATA_VA};
    use hypercall_abi::nr;

    #[test]
    fn a_write_reaches_the_domains_console_line() {
        // Without a newline the bytes wait in the domain's line buffer, where the test can
        // see them: a handler that answered 0 and wrote nothing would leave it empty.
        let mut guest = TestGuest::new();
        guest.poke(GUEST_DATA_VA, b"hello, world");
        assert_eq!(guest.call(nr::console_io, [0, 12, GUEST_DATA_VA, 0, 0, 0]), 0);
        let mut lines = std::vec::Vec::new();
        guest.domain.console.flush(&mut |line| lines.push(std::string::String::from(line)));
        assert_eq!(lines, ["hello, world"]);
        // Exactly `count` bytes: a shorter count cuts the text.
        assert_eq!(guest.call(nr::console_io, [0, 5, GUEST_DATA_VA, 0, 0, 0]), 0);
        guest.domain.console.flush(&mut |line| lines.push(std::string::String::from(line)));
        assert_eq!(lines, ["hello, world", "hello"]);
        // With the newline the line goes out at once and nothing stays behind.
        guest.poke(GUEST_DATA_VA, b"bye\n");
        assert_eq!(guest.call(nr::console_io, [0, 4, GUEST_DATA_VA, 0, 0, 0]), 0);
        assert!(guest.domain.console.is_empty());
    }

    #[test]
    fn wild_pointers_get_efault() {
        let mut guest = TestGuest::new();
        for wild in [0u64, 0xdead_0000, 0xffff_8300_0000_0000, 0x8000_0000_0000_0000, u64::MAX - 2] {
            assert_eq!(guest.call(nr::console_io, [0, 16, wild, 0, 0, 0]), -14, "{wild:#x}");
        }
    }

    #[test]
    fn a_buffer_running_off_the_mapping_gets_efault() {
        let mut guest = TestGuest::new();
        let last_page_end = GUEST_DATA_VA + TestGuest::MAPPED_BYTES;
        assert_eq!(guest.call(nr::console_io, [0, 64, last_page_end - 32, 0, 0, 0]), -14);
    }

    #[test]
    fn unknown_commands_and_unprivileged_reads_are_refused() {
        let mut guest = TestGuest::new();
        assert_eq!(guest.call(nr::console_io, [7, 1, GUEST_DATA_VA, 0, 0, 0]), -38);
        guest.domain.privileged = false;
        assert_eq!(guest.call(nr::console_io, [1, 1, GUEST_DATA_VA, 0, 0, 0]), -1);
    }

    #[test]
    fn a_long_write_continues_later_where_it_stopped() {
        let mut guest = TestGuest::new();
        for page in 0..2 {
            guest.poke(GUEST_DATA_VA + page * 4096, &[b'x'; 4096]);
        }
        guest.regs.rip = 0x10_0102;
        // A timer is due: the write stops after its first 4 KiB and asks to be run
        // again (syscall re-executed, count and buffer advanced).
        guest.host.next_interrupt_at = 0;
        assert_eq!(guest.call(nr::console_io, [0, 8000, GUEST_DATA_VA, 0, 0, 0]), nr::console_io as i64);
        assert_eq!((guest.regs.rip, guest.regs.rdi, guest.regs.rsi, guest.regs.rdx), (0x10_0100, 0, 8000 - 4096, GUEST_DATA_VA + 4096));
        assert!(guest.domain.traps.exit.reschedule, "the exit path runs the timers");
        // Run again (as the guest's syscall would): it finishes.
        guest.host.next_interrupt_at = u64::MAX;
        let args = [guest.regs.rdi, guest.regs.rsi, guest.regs.rdx, 0, 0, 0];
        assert_eq!(guest.call(nr::console_io, args), 0);
        // Full lines went out as they filled; what waits is the rest of 8000 bytes, once.
        let mut tail = 0;
        guest.domain.console.flush(&mut |line| tail += line.len());
        assert_eq!(tail, 8000 % crate::console::guest_line::MAX_LINE, "every byte, once");
    }

    #[test]
    fn dom0_reads_what_was_typed_and_a_bad_buffer_loses_nothing() {
        let mut guest = TestGuest::new();
        for &b in b"ls -l" {
            guest.host.console_input.feed(b);
        }
        assert_eq!(guest.call(nr::console_io, [1, 3, 0x7fff_dead_0000, 0, 0, 0]), -14);
        assert_eq!(guest.call(nr::console_io, [1, 3, GUEST_DATA_VA, 0, 0, 0]), 3);
        assert_eq!(guest.peek(GUEST_DATA_VA, 3), b"ls ");
        assert_eq!(guest.call(nr::console_io, [1, 100, GUEST_DATA_VA, 0, 0, 0]), 2);
        assert_eq!(guest.peek(GUEST_DATA_VA, 2), b"-l");
        assert_eq!(guest.call(nr::console_io, [1, 100, GUEST_DATA_VA, 0, 0, 0]), 0, "nothing left");
    }
}
