//! The hypervisor's console: its own log lines, `RESULT` lines for the test harness, and
//! guests' console output, each line prefixed with who wrote it.
//!
//! The arch layer installs the output function at boot; before that (and in host tests)
//! output goes nowhere.

pub mod domu_ring;
pub mod guest_line;
pub mod input;

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

/// Shows a value inside a quoted RESULT field: its double quotes become single ones.
/// Formats straight through, so it works before the heap exists (boot errors).
pub struct InQuotes<'a>(pub &'a dyn fmt::Display);

impl fmt::Display for InQuotes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Replacing<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl fmt::Write for Replacing<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                for piece in s.split_inclusive('"') {
                    match piece.strip_suffix('"') {
                        Some(text) => {
                            self.0.write_str(text)?;
                            self.0.write_str("'")?;
                        }
                        None => self.0.write_str(piece)?,
                    }
                }
                Ok(())
            }
        }
        fmt::write(&mut Replacing(f), format_args!("{}", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::InQuotes;
    use std::format;

    #[test]
    fn quotes_inside_a_field_become_single() {
        assert_eq!(format!("{}", InQuotes(&"a \"b\" c\"")), "a 'b' c'");
        assert_eq!(format!("{}", InQuotes(&42)), "42");
    }
}
