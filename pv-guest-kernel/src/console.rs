//! Console output. dom0 writes through the `console_io` hypercall; a domU writes into
//! the console ring start_info gives it (io/console.h) and notifies its event channel,
//! as a real domU must (Xen's release builds refuse CONSOLEIO_write from a domU).

use crate::platform;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use hypercall_abi::start_info::{StartInfo, SIF_INITDOMAIN};

/// The console ring's address in the initial mapping (0: none, use console_io), its
/// event channel, and a guard against a line printed from inside another (an upcall
/// handler's): that one goes through console_io.
static RING: AtomicU64 = AtomicU64::new(0);
static RING_PORT: AtomicU32 = AtomicU32::new(0);
static RING_BUSY: AtomicBool = AtomicBool::new(false);
/// Yields while the ring stays full before a line is given up.
const FULL_RING_YIELDS: u32 = 1000;

/// A domU: output goes to its console ring from now on.
pub fn init(info: &StartInfo) {
    let (mfn, port) = info.domu_console();
    if info.flags & SIF_INITDOMAIN != 0 || mfn == 0 {
        return;
    }
    // The ring page is one of ours, mapped with the rest of the initial mapping.
    let Some(pfn) = crate::mm::m2p(mfn).filter(|&pfn| pfn < info.nr_pages) else { return };
    RING_PORT.store(port, SeqCst);
    RING.store(platform::virt_base() + pfn * 4096, SeqCst);
}

/// Prints one line. Lines are formatted into a stack buffer first so each reaches the
/// console whole and cannot interleave with another domain's output.
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut line = LineBuffer { bytes: [0; 512], len: 0 };
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    let bytes = &line.bytes[..line.len];
    if !RING_BUSY.swap(true, SeqCst) {
        let written = write_ring(bytes);
        RING_BUSY.store(false, SeqCst);
        if written {
            return;
        }
    }
    let _ = platform::console_write(bytes);
}

/// Writes `bytes` into the console ring and notifies the back end after each piece;
/// false if there is no ring, it is broken, or it stayed full.
fn write_ring(mut bytes: &[u8]) -> bool {
    let va = RING.load(SeqCst);
    if va == 0 {
        return false;
    }
    // SAFETY: a page of our own memory in the initial mapping, 4-byte aligned, mapped
    // for as long as the kernel runs, which this module reaches only through the view
    // (the back end writes it concurrently: allowed).
    let page = unsafe { ring_buffers::shared::SharedWords::from_raw(va as *mut u8, 4096) };
    let Ok(mut ring) = ring_buffers::console::front(page) else { return false };
    let mut yields = 0;
    while !bytes.is_empty() {
        let Ok(n) = ring.write(bytes) else { return false };
        bytes = &bytes[n..];
        platform::evtchn_send(RING_PORT.load(SeqCst));
        if n == 0 {
            yields += 1;
            if yields > FULL_RING_YIELDS {
                return false;
            }
            platform::yield_cpu();
        }
    }
    true
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
