//! `ldt`: the guest's local descriptor table (MMUEXT_SET_LDT). The hypervisor checks
//! only the arguments when the LDT is set; a page of it is checked and mapped for the
//! CPU the first time a selector load touches it. One RESULT line per check: argument
//! errors, loads of each kind of descriptor (a DPL 0 data segment is raised to DPL 3,
//! a not-present one is #NP, an index past the count #GP), the page kept from being
//! mapped writable while in use and released by the next SET_LDT, and LDT pages that
//! cannot be used (a system descriptor in them, not mapped at all). The conformance
//! harness compares each line with Xen's.

use super::{probe, report, Expect, Probed, Tally};
use crate::console::println;
use crate::mm::{self, MmError, DATA, READ_ONLY};
use hypercall_abi::guest::calls;
use hypercall_abi::ops::mmu::{MmuextOp, DOMID_SELF, MMUEXT_SET_LDT};
use hypercall_abi::{GuestArray, GuestOut};

pub(super) const DATA_DPL3: u64 = 0x00cf_f200_0000_ffff;
const DATA_DPL0: u64 = 0x00cf_9200_0000_ffff;
const DATA_NOT_PRESENT: u64 = 0x00cf_7200_0000_ffff;
const CODE64_DPL3: u64 = 0x00af_fa00_0000_ffff;
const TSS: u64 = 0x0000_8900_0000_0067;
/// LDT selectors (TI set, RPL 3) of entries 0-4.
const fn selector(index: u64) -> u64 {
    (index << 3) | 4 | 3
}

pub(super) fn set_ldt(base: u64, entries: u64) -> i64 {
    let op = MmuextOp { cmd: MMUEXT_SET_LDT, _pad: 0, arg1: base, arg2: entries };
    // SAFETY: one readable MmuextOp; SET_LDT changes only which LDT the CPU uses.
    unsafe { calls::mmuext_op(GuestArray::from_slice(&[op]), 1, GuestOut::NULL, DOMID_SELF) }
}

/// Loads `selector` into ES (unused in 64-bit mode, so nothing else minds).
fn load_es(selector: u64) -> Probed {
    probe!("", "mov es, edi", selector, 0u64)
}

fn es() -> u64 {
    let value: u64;
    // SAFETY: reads a segment register.
    unsafe { core::arch::asm!("mov {0:e}, es", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value & 0xffff
}

fn restore_es(value: u64) {
    // SAFETY: the value ES had when the command started, loadable then and now.
    unsafe { core::arch::asm!("mov es, {0:e}", in(reg) value, options(nomem, nostack, preserves_flags)) };
}

pub fn run() {
    let mut tally = Tally::new("ldt");
    if crate::traps::install() != 0 {
        println!("RESULT test=ldt status=fail reason=trap-table");
        return;
    }
    let saved_es = es();
    tally.ret("misaligned", set_ldt(0x40_0008, 4), -22);
    tally.ret("too_many_entries", set_ldt(0x40_0000, 8193), -22);
    tally.ret("hypervisor_range", set_ldt(0xffff_8000_0000_0000, 4), -22);
    tally.ret("end_past_the_lower_half", set_ldt(0x7fff_ffff_f000, 8192), 0);
    tally.ret("no_entries_any_address", set_ldt(0xffff_8000_0000_0008, 0), 0);

    // One LDT page of ours: four descriptors, mapped read-only (the physmap is its
    // only mapping).
    let page = mm::with(|m| {
        let (pfn, _) = m.take_frame()?;
        for (index, descriptor) in [DATA_DPL3, DATA_DPL0, DATA_NOT_PRESENT, CODE64_DPL3].into_iter().enumerate() {
            m.poke(pfn, index as u64, descriptor)?;
        }
        let kernel = m.kernel_space().l4();
        m.protect(kernel, m.physmap_va(pfn), READ_ONLY)?;
        Ok((pfn, m.physmap_va(pfn), kernel))
    });
    let Ok((pfn, va, kernel)) = page else {
        println!("RESULT test=ldt check=setup ret={} status=fail", page.err().map_or(0, MmError::code));
        tally.add(false);
        return tally.finish();
    };
    tally.ret("set", set_ldt(va, 4), 0);
    // The first use of the page: an iret hypercall to its 64-bit code segment (entry
    // 3). The hypervisor maps the page for the iretq, the kernel runs on with cs naming
    // the LDT (it reads cs into rdx there), and a second iret takes it back to 0xe030.
    let p = probe!(
        "mov rcx, rsp\npush 0xe02b\npush rcx\npushfq\npush rdi\nlea rax, [rip + 4f]\npush rax\npush 0",
        "jmp hypercall_page + 23 * 32\n4:\nmov edx, cs\nmov rcx, rsp\npush 0xe02b\npush rcx\npushfq\npush 0xe030\nlea rax, [rip + 3f]\npush rax\npush 0\njmp hypercall_page + 23 * 32",
        selector(3) & !3,
        0u64
    );
    let cs_inside = p.rdx & 0xffff;
    let pass = report("ldt", "iret_to_ldt_code", &p, &Expect::none()) && cs_inside == selector(3);
    println!("RESULT test=ldt check=ran_on_ldt_code cs={cs_inside:#x} status={}", if pass { "pass" } else { "fail" });
    tally.add(pass);
    tally.add(report("ldt", "load_data_dpl3", &load_es(selector(0)), &Expect::none()));
    let loaded = es();
    let pass = loaded == selector(0);
    println!("RESULT test=ldt check=es_holds_the_selector value_ok={} status={}", u8::from(pass), if pass { "pass" } else { "fail" });
    tally.add(pass);
    tally.add(report("ldt", "load_data_dpl0_raised", &load_es(selector(1)), &Expect::none()));
    tally.add(report("ldt", "load_not_present", &load_es(selector(2)), &Expect::fault(11, selector(2) & !3)));
    tally.add(report("ldt", "load_readable_code", &load_es(selector(3)), &Expect::none()));
    tally.add(report("ldt", "load_past_the_count", &load_es(selector(4)), &Expect::fault(13, selector(4) & !3)));
    restore_es(saved_es);
    // In use, the page holds descriptors: it cannot be mapped writable.
    tally.ret("map_writable_in_use", mm::with(|m| m.protect(kernel, va, DATA)).err().map_or(0, MmError::code), -16);
    tally.ret("clear", set_ldt(0, 0), 0);
    tally.add(report("ldt", "load_without_ldt", &load_es(selector(0)), &Expect::fault(13, selector(0) & !3)));
    tally.ret("map_writable_after", mm::with(|m| m.protect(kernel, va, DATA)).err().map_or(0, MmError::code), 0);

    // Pages that cannot be used: a TSS descriptor in it, or nothing mapped there.
    let _ = mm::with(|m| {
        m.poke(pfn, 5, TSS)?;
        m.protect(kernel, va, READ_ONLY)
    });
    tally.ret("set_with_system_descriptor", set_ldt(va, 8), 0);
    // Xen 4.17 hands the guest a #PF at the entry's address (error code 0) when the
    // page cannot serve as an LDT page.
    let at_entry = |address: u64| Expect { cr2: Some(address), ..Expect::fault(14, 0) };
    tally.add(report("ldt", "load_from_page_with_system_descriptor", &load_es(selector(0)), &at_entry(va)));
    tally.ret("set_unmapped", set_ldt(0x7fff_dead_0000, 8), 0);
    tally.add(report("ldt", "load_from_unmapped_page", &load_es(selector(1)), &at_entry(0x7fff_dead_0008)));
    tally.ret("clear_again", set_ldt(0, 0), 0);
    restore_es(saved_es);
    let _ = mm::with(|m| {
        m.protect(kernel, va, DATA)?;
        m.give_frame(pfn);
        Ok(())
    });
    tally.finish();
}
