//! `console_io(cmd, count, buffer)` commands (xen.h).

/// Write `count` bytes from `buffer` to the hypervisor console.
pub const CONSOLEIO_WRITE: u32 = 0;
/// Read up to `count` bytes of console input into `buffer` (dom0 only); returns the count.
pub const CONSOLEIO_READ: u32 = 1;
