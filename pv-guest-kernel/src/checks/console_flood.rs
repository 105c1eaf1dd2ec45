//! `console-flood MIB [DELAY_MS]`: one console_io write of MIB MiB (4096: 4 GiB - 1, the most a
//! count can say) from a window where one page of carriage returns (which the console
//! drops) is mapped over and over. The hypervisor has to copy every byte; what it must
//! not do is hold the CPU for the whole call: the write continues later (Xen's
//! hypercall continuation) whenever a timer is due. Reports the time it took.

use crate::console::println;
use crate::events::now_ns;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::console_io::CONSOLEIO_WRITE;
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::GuestArray;

/// An unused 4 GiB of the lower half.
const WINDOW: u64 = 0x0000_6000_0000_0000;

pub fn run(info: &StartInfo, command: &str) {
    let Some(mib) = super::numeric_argument("console-flood", command, 256, 1..=4096) else { return };
    let Some(shared) = crate::events::shared_info(info) else {
        println!("RESULT test=console-flood status=fail reason=cannot-map-shared-info");
        return;
    };
    let mapped = crate::mm::with(|m| {
        let (pfn, mfn) = m.take_frame()?;
        for index in 0..512 {
            m.poke(pfn, index, u64::from_ne_bytes([b'\r'; 8]))?;
        }
        let kernel = m.kernel_space().l4();
        m.map_repeated(kernel, WINDOW, mfn, mib.div_ceil(2))
    });
    if let Err(e) = mapped {
        println!("RESULT test=console-flood status=fail reason=map code={}", e.code());
        return;
    }
    let count = (mib << 20).min(u64::from(u32::MAX)) as u32;
    // `console-flood MIB DELAY_MS`: start that late (after another domain began
    // something the write must not hold up).
    let delay_ms = command.split_ascii_whitespace().nth(2).and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
    let begin = now_ns(shared) + delay_ms * 1_000_000;
    while now_ns(shared) < begin {
        core::hint::spin_loop();
    }
    let started = now_ns(shared);
    // SAFETY: the window is mapped readable for `count` bytes; the hypervisor only reads.
    let ret = unsafe { calls::console_io(CONSOLEIO_WRITE, count, GuestArray::from_raw(WINDOW)) };
    let elapsed_ms = (now_ns(shared) - started) / 1_000_000;
    let status = if ret == 0 { "pass" } else { "fail" };
    println!(
        "RESULT test=console-flood status={status} ret={ret} bytes={count} elapsed_ms={elapsed_ms} from_ms={} until_ms={}",
        started / 1_000_000,
        started / 1_000_000 + elapsed_ms
    );
}
