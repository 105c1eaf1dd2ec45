//! COM1, the hypervisor's console, and the `log` sink that prints to it.

use core::fmt::{self, Write};
use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

const COM1: u16 = 0x3f8;

static PORT: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);

pub fn init() {
    // SAFETY: 0x3f8-0x3ff is COM1 on a PC; nothing else in the hypervisor touches it.
    let Ok(mut uart) = (unsafe { Uart16550::new_port(COM1) }) else {
        return;
    };
    let config = Config { check_cts_before_sending: false, ..Config::default() };
    if uart.init(config).is_ok() {
        *PORT.lock() = Some(uart);
    }
}

/// Writes raw bytes to the console (dropped if there is no serial port).
pub fn write_bytes(bytes: &[u8]) {
    if let Some(uart) = PORT.lock().as_mut() {
        for &b in bytes {
            if b == b'\n' {
                uart.send_bytes_exact(b"\r");
            }
            uart.send_bytes_exact(&[b]);
        }
    }
}

struct SerialWriter;

impl Write for SerialWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

pub fn write_fmt(args: fmt::Arguments<'_>) {
    let _ = SerialWriter.write_fmt(args);
}

/// Writes without taking the console lock, polling the UART directly: for NMIs and fatal
/// paths, which may interrupt a holder of the lock. Output may interleave with a line
/// in progress; it never waits for a lock that will not be released.
pub fn write_emergency(args: fmt::Arguments<'_>) {
    struct Raw;
    impl Write for Raw {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for &b in s.as_bytes() {
                if b == b'\n' {
                    raw_send(b'\r');
                }
                raw_send(b);
            }
            Ok(())
        }
    }
    let _ = Raw.write_fmt(args);
}

/// Sends one byte on COM1 once its transmitter is empty (line status bit 5), giving up
/// after a bounded wait so a missing UART cannot hang a fatal path.
fn raw_send(byte: u8) {
    use x86_64::instructions::port::Port;
    let mut status: Port<u8> = Port::new(COM1 + 5);
    let mut data: Port<u8> = Port::new(COM1);
    // SAFETY: COM1's data and line-status registers; reading status and writing one
    // byte have no other effect.
    unsafe {
        for _ in 0..100_000 {
            if status.read() & 0x20 != 0 {
                break;
            }
        }
        data.write(byte);
    }
}

/// A byte typed on COM1, if one waits (line status bit 0): the debug keys. Polled at
/// scheduling points, so no interrupt is needed.
pub fn try_receive() -> Option<u8> {
    use x86_64::instructions::port::Port;
    let mut status: Port<u8> = Port::new(COM1 + 5);
    let mut data: Port<u8> = Port::new(COM1);
    // SAFETY: COM1's line-status and receive registers; reading them only takes the byte.
    unsafe { (status.read() & 1 != 0).then(|| data.read()) }
}
