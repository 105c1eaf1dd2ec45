//! `descriptors`: the guest's own GDT. set_gdt with frames the guest fills itself, a
//! segment loaded from it, and the hostile cases: a frame still mapped writable, a
//! DPL 0 code segment, a call gate, a TSS, too many entries, and mapping a GDT frame
//! writable while it is in use. Each call's answer is printed for the conformance
//! comparison with Xen.

use super::{probe, Tally};
use crate::console::println;
use crate::platform;
use hypercall_abi::guest::calls;
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::GuestArray;

const WINDOW: u64 = 0x3f_f000;
const DATA_DPL3: u64 = 0x00cf_f200_0000_ffff;
const CODE64_DPL3: u64 = 0x00af_fa00_0000_ffff;
const CODE64_DPL0: u64 = 0x00af_9a00_0000_ffff;
const TSS: u64 = 0x0000_8900_0000_0067;
/// A 64-bit call gate to the flat 64-bit code selector, DPL 3 as written.
const CALL_GATE: u64 = 0x0000_ec00_e033_1000;
static KERNEL_WORD: u64 = 0;

/// Reads descriptor `index` of frame `mfn` through a read-only mapping of the window.
fn read_back(info: &StartInfo, mfn: u64, index: usize) -> Option<u64> {
    let window_mfn = platform::pfn_to_mfn(info, WINDOW >> 12)?;
    if platform::update_va_mapping(WINDOW, (mfn << 12) | 0x25) != 0 {
        return None;
    }
    // SAFETY: WINDOW maps `mfn` read-only right now.
    let value = unsafe { (WINDOW as *const u64).add(index).read_volatile() };
    (platform::update_va_mapping(WINDOW, (window_mfn << 12) | 0x67) == 0).then_some(value)
}

fn set_gdt(frames: &[u64], entries: u32) -> i64 {
    // SAFETY: the frame list is a readable array of frame numbers.
    unsafe { calls::set_gdt(GuestArray::from_slice(frames), entries) }
}

pub fn run(info: &StartInfo) {
    let mut tally = Tally::new("descriptors");
    tally.ret("set_trap_table", crate::traps::install(), 0);
    let mfn = |back: u64| platform::pfn_to_mfn(info, info.nr_pages - back).unwrap_or(0);
    let gdt = mfn(12);

    // A frame the kernel maps writable (its own data) cannot hold a GDT.
    let data_pfn = (core::ptr::addr_of!(KERNEL_WORD) as u64 - platform::virt_base()) >> 12;
    let data_mfn = platform::pfn_to_mfn(info, data_pfn).unwrap_or(0);
    tally.ret("set_gdt_writable_frame", set_gdt(&[data_mfn], 16), -22);

    // A GDT with a DPL 0 code segment (raised to DPL 3) and a data segment.
    // Entry 0 holds a data segment too: to the CPU it is still the null selector.
    let filled = super::usermode::fill_frame(info, gdt, &[(0, DATA_DPL3), (1, CODE64_DPL3), (2, CODE64_DPL0), (3, DATA_DPL3)]);
    tally.ret("fill_frame", i64::from(!filled), 0);
    tally.ret("set_gdt", set_gdt(&[gdt], 16), 0);
    let dpl = read_back(info, gdt, 2).map_or(99, |d| (d >> 45) & 3);
    println!("RESULT test=descriptors check=dpl0_code_becomes dpl={dpl} status={}", if dpl == 3 { "pass" } else { "fail" });
    tally.add(dpl == 3);
    // Load DS from it and back.
    let loaded: u64;
    // SAFETY: selector 0x1b is the DPL 3 data segment just installed; DS is restored
    // to null afterwards (the kernel never relies on DS in 64-bit mode).
    unsafe {
        core::arch::asm!("mov ax, 0x1b", "mov ds, ax", "mov ax, ds", "movzx {0}, ax", "xor eax, eax", "mov ds, ax", out(reg) loaded, out("rax") _);
    }
    println!("RESULT test=descriptors check=load_data_segment ds={loaded:#x} status={}", if loaded == 0x1b { "pass" } else { "fail" });
    tally.add(loaded == 0x1b);

    // Return (iret) into the guest's own 64-bit code segment (selector 0x0b), read CS
    // there, and far-return to the flat selector.
    let seen = run_on_own_code_segment();
    println!("RESULT test=descriptors check=iret_to_own_code_segment cs={seen:#x} status={}", if seen == 0x0b { "pass" } else { "fail" });
    tally.add(seen == 0x0b);

    // An iret with ss 0 (the null selector, made 3): whatever GDT entry 0 holds, the
    // CPU's iretq refuses it, so the guest gets #GP(0) at the frame's target.
    let p = probe!("mov rcx, rsp\npush 0\npush rcx\npushfq\npush 0xe030\nlea rax, [rip + 3f]\npush rax\npush 0", "jmp hypercall_page + 23 * 32");
    tally.add(super::report(
        "descriptors",
        "iret_null_ss_over_gdt_entry_0",
        &p,
        &super::Expect { rip: super::RipIs::Next, ..super::Expect::fault(13, 0) },
    ));

    // update_descriptor: a call gate (kept with DPL 0), a TSS (refused), misaligned.
    // SAFETY: plain values.
    unsafe {
        tally.ret("update_descriptor_call_gate", calls::update_descriptor((gdt << 12) + 4 * 8, CALL_GATE), 0);
        tally.ret("update_descriptor_tss", calls::update_descriptor((gdt << 12) + 6 * 8, TSS), -22);
        tally.ret("update_descriptor_misaligned", calls::update_descriptor((gdt << 12) + 3, 0), -22);
    }
    let gate_dpl = read_back(info, gdt, 4).map_or(99, |d| (d >> 45) & 3);
    println!("RESULT test=descriptors check=call_gate_dpl dpl={gate_dpl} status={}", if gate_dpl == 0 { "pass" } else { "fail" });
    tally.add(gate_dpl == 0);

    // While in use, the frame cannot be mapped writable.
    let window_mfn = platform::pfn_to_mfn(info, WINDOW >> 12).unwrap_or(0);
    let ret = platform::update_va_mapping(WINDOW, (gdt << 12) | 0x67);
    println!("RESULT test=descriptors check=map_gdt_frame_writable refused={} ret={ret}", u8::from(ret != 0));
    tally.add(ret != 0);
    platform::update_va_mapping(WINDOW, (window_mfn << 12) | 0x67);

    // A TSS anywhere in a new frame refuses the whole frame; too many entries.
    let bad = mfn(13);
    super::usermode::fill_frame(info, bad, &[(100, TSS)]);
    tally.ret("set_gdt_frame_with_tss", set_gdt(&[bad], 512), -22);
    tally.ret("set_gdt_too_many_entries", set_gdt(&[gdt], 7169), -22);
    // SAFETY: the hypervisor must refuse the unmapped list without touching anything.
    tally.ret("set_gdt_bad_list", unsafe { calls::set_gdt(GuestArray::from_raw(0x7fff_dead_0000), 16) }, -14);
    // Back to no GDT of its own; the frame is an ordinary page again.
    tally.ret("set_gdt_empty", set_gdt(&[], 0), 0);
    let ret = platform::update_va_mapping(WINDOW, (gdt << 12) | 0x67);
    tally.ret("map_former_gdt_frame_writable", ret, 0);
    platform::update_va_mapping(WINDOW, (window_mfn << 12) | 0x67);
    tally.finish();
}

/// Enters selector 0x0b (entry 1 of our GDT; the frame says 0x08, RPL 0 meaning the
/// kernel) through the iret hypercall and comes back
/// to 0xe033 with a far return; returns the CS seen in between (0 if the iret was
/// refused, which the armed trap handler turns into a resume after it all).
fn run_on_own_code_segment() -> u64 {
    super::arm();
    let seen: u64;
    // SAFETY: the iret frame resumes at label 2 on this stack; label 4 is where the trap
    // handler resumes if the hypervisor refuses the frame; every register used is
    // declared.
    unsafe {
        core::arch::asm!(
            "xor {seen:e}, {seen:e}",
            "lea rax, [rip + 4f]",
            "mov qword ptr [rip + {resume}], rax",
            "mov rcx, rsp",
            "push 0xe02b",
            "push rcx",
            "pushfq",
            "push 0x08", // RPL 0: stay in the kernel; the hypervisor makes it 0x0b
            "lea rax, [rip + 2f]",
            "push rax",
            "push 0",
            "jmp hypercall_page + 23 * 32",
            "2:",
            "mov {seen:e}, cs",
            "push 0xe033",
            "lea rax, [rip + 4f]",
            "push rax",
            "retfq",
            "4:",
            seen = out(reg) seen,
            resume = sym crate::traps::RESUME_RIP,
            out("rax") _,
            out("rcx") _,
        );
    }
    super::disarm(0, 0);
    seen
}
