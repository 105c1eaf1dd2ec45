//! Console output through the `console_io` hypercall.

use crate::platform;
use core::fmt::{self, Write};

/// Prints one line. Lines are formatted into a stack buffer first so each reaches the
/// console in one hypercall and cannot interleave with another domain's output.
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut line = LineBuffer { bytes: [0; 512], len: 0 };
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    let _ = platform::console_write(&line.bytes[..line.len]);
}

struct LineBuffer {
    bytes: [u8; 512],
    len: usize,
}

impl Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.bytes.len() - self.len;
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

macro_rules! println {
    ($($arg:tt)*) => { $crate::console::print_line(format_args!($($arg)*)) };
}
pub(crate) use println;
