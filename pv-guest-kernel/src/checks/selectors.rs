//! `selectors [N]`: data segment registers holding selectors of the guest's own LDT
//! keep them across domain switches. DS and ES are loaded with an LDT data segment,
//! then the kernel yields N times (default 20) to whichever domain runs beside it
//! (a yield that takes more than a millisecond went to another domain) and checks the
//! registers after each. Needs another domain to switch to; run it beside `spin`.

use super::ldt::{set_ldt, DATA_DPL3};
use super::Tally;
use crate::console::println;
use crate::events::now_ns;
use crate::mm::{self, DATA, READ_ONLY};
use hypercall_abi::start_info::StartInfo;

/// LDT entry 0, RPL 3.
const LDT_DATA: u16 = 0x7;

fn ds_es() -> (u16, u16) {
    let (ds, es): (u16, u16);
    // SAFETY: reads segment registers.
    unsafe { core::arch::asm!("mov {0:x}, ds", "mov {1:x}, es", out(reg) ds, out(reg) es, options(nomem, nostack, preserves_flags)) };
    (ds, es)
}

fn load_ds_es(ds: u16, es: u16) {
    // SAFETY: selectors of present DPL 3 data segments (the LDT's, or the ones the
    // kernel started with); in 64-bit mode their bases and limits are not used.
    unsafe { core::arch::asm!("mov ds, {0:x}", "mov es, {1:x}", in(reg) ds, in(reg) es, options(nostack, preserves_flags)) };
}

pub fn run(info: &StartInfo, command: &str) {
    let mut tally = Tally::new("selectors");
    let Some(rounds) = super::numeric_argument("selectors", command, 20, 1..=10_000) else { return };
    let Some(shared) = crate::events::shared_info(info) else {
        println!("RESULT test=selectors status=fail reason=cannot-map-shared-info");
        return;
    };
    // One LDT page, read-only everywhere (the physmap is its only mapping).
    let page = mm::with(|m| {
        let (pfn, _) = m.take_frame()?;
        m.poke(pfn, 0, DATA_DPL3)?;
        let kernel = m.kernel_space().l4();
        m.protect(kernel, m.physmap_va(pfn), READ_ONLY)?;
        Ok((pfn, m.physmap_va(pfn), kernel))
    });
    let Ok((pfn, va, kernel)) = page else {
        println!("RESULT test=selectors status=fail reason=no-ldt-page");
        return;
    };
    tally.ret("set_ldt", set_ldt(va, 1), 0);
    let saved = ds_es();
    load_ds_es(LDT_DATA, LDT_DATA);
    let (mut switches, mut kept) = (0u64, true);
    for _ in 0..rounds {
        let before = now_ns(shared);
        crate::platform::yield_cpu();
        if now_ns(shared) - before > 1_000_000 {
            switches += 1;
        }
        kept &= ds_es() == (LDT_DATA, LDT_DATA);
    }
    load_ds_es(saved.0, saved.1);
    tally.line("kept_across_switches", kept && switches > 0, format_args!("switches={switches} kept={}", u8::from(kept)));
    tally.ret("clear_ldt", set_ldt(0, 0), 0);
    let _ = mm::with(|m| {
        m.protect(kernel, va, DATA)?;
        m.give_frame(pfn);
        Ok(())
    });
    tally.finish();
}
