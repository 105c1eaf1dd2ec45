//! `console_io`: guests write to the hypervisor console. (xen.h: CONSOLEIO_write 0,
//! CONSOLEIO_read 1.)

use super::HypercallContext;
use crate::console::guest_line::print_guest_line;
use crate::mm::guest_walk::MachineMemory;
use hypercall_abi::ops::console_io::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use hypercall_abi::{Errno, GuestArray};

/// Bytes copied from the guest per step: a stack buffer, so a huge `count` costs time
/// proportional to the guest's own (mapped) memory, never hypervisor memory.
const CHUNK: usize = 128;

pub fn console_io<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u32, count: u32, buffer: GuestArray<u8>) -> Result<i64, Errno> {
    match cmd {
        CONSOLEIO_WRITE => write(ctx, count, buffer),
        // Reading the console is dom0's and needs the input path; not offered yet.
        CONSOLEIO_READ if ctx.domain.privileged => Err(Errno::ENOSYS),
        CONSOLEIO_READ => Err(Errno::EPERM),
        // Xen answers an unknown console command with -ENOSYS.
        _ => Err(Errno::ENOSYS),
    }
}

fn write<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, count: u32, mut buffer: GuestArray<u8>) -> Result<i64, Errno> {
    let mut chunk = [0u8; CHUNK];
    let mut done: u64 = 0;
    let count = count as u64;
    while done < count {
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
}
