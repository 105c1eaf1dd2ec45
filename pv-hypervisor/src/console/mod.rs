//! The hypervisor's console: its own log lines, `RESULT` lines for the test harness, and
//! guests' console output, each line prefixed with who wrote it.
//!
//! The arch layer installs the output function at boot; before that (and in host tests)
//! output goes nowhere.

pub mod guest_line;

use core::fmt;
use spin::Once;

static OUTPUT: Once<fn(fmt::Arguments<'_>)> = Once::new();

/// Installs the function that puts text on the console.
pub fn set_output(output: fn(fmt::Arguments<'_>)) {
    OUTPUT.call_once(|| output);
}

pub fn print(args: fmt::Arguments<'_>) {
    if let Some(output) = OUTPUT.get() {
        output(args);
    }
}

/// A line from the hypervisor itself, printed whatever the log level: `(hv) ...`.
#[macro_export]
macro_rules! hv_println {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("(hv) {}\n", format_args!($($arg)*)))
    };
}

/// A machine-readable line for the test harness: `(hv) RESULT key=value ...`.
#[macro_export]
macro_rules! hv_result {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("(hv) RESULT {}\n", format_args!($($arg)*)))
    };
}

/// The `log` sink: `(hv) LEVEL message`, filtered by the `loglvl=` option.
pub struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            print(format_args!("(hv) {:<5} {}\n", record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}

pub static LOGGER: Logger = Logger;
