//! `traps`: provokes every exception a kernel can raise on itself and checks how the
//! hypervisor delivered it (vector, error code, saved rip and cs, event mask, CR2).

use super::{probe, report, Expect, RipIs, Tally};
use crate::platform;
use hypercall_abi::start_info::StartInfo;

/// Mapped nowhere in a fresh PV guest (below the hypervisor's range, far above the
/// kernel's initial mapping).
const UNMAPPED: u64 = 0x0000_7fff_dead_0000;
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;

pub fn run(info: &StartInfo) {
    let mut tally = Tally::new("traps");
    let installed = crate::traps::install();
    crate::console::println!("RESULT test=traps check=set_trap_table ret={installed} status={}", if installed == 0 { "pass" } else { "fail" });
    tally.add(installed == 0);
    if installed != 0 {
        tally.finish();
        return;
    }

    let p = probe!("xor edx, edx", "div rdx");
    tally.add(report("traps", "divide_error", &p, &Expect::fault(0, 0)));

    // popfq sets TF; the single-step trap comes after the next instruction.
    let p = probe!("pushfq\nor qword ptr [rsp], 0x100\npopfq", "nop");
    tally.add(report("traps", "single_step", &p, &Expect::trap(1)));

    let p = probe!("", "int3");
    tally.add(report("traps", "breakpoint", &p, &Expect::trap(3)));

    let p = probe!("", ".byte 0xcd, 0x03");
    tally.add(report("traps", "int_3_long_form", &p, &Expect::trap(3)));

    let p = probe!("", "ud2");
    tally.add(report("traps", "invalid_opcode", &p, &Expect::fault(6, 0)));

    let p = probe!("", "mov rax, qword ptr [rdi]", NON_CANONICAL, 0u64);
    tally.add(report("traps", "general_protection_noncanonical", &p, &Expect::fault(13, 0)));

    // Page faults. The CPU ran at CPL 3, but the guest kernel is told its kernel faulted
    // (error-code bit 2 clear).
    let p = probe!("", "mov rax, qword ptr [rdi]", UNMAPPED, 0u64);
    tally.add(report("traps", "page_fault_read_unmapped", &p, &Expect { cr2: Some(UNMAPPED), ..Expect::fault(14, 0) }));

    let p = probe!("", "mov qword ptr [rdi], rax", UNMAPPED, 0u64);
    tally.add(report("traps", "page_fault_write_unmapped", &p, &Expect { cr2: Some(UNMAPPED), ..Expect::fault(14, 2) }));

    // The initial page tables are mapped read-only; write back what is there.
    let l4 = info.pt_base;
    let p = probe!("mov rcx, qword ptr [rdi]", "mov qword ptr [rdi], rcx", l4, 0u64);
    tally.add(report("traps", "page_fault_write_readonly", &p, &Expect { cr2: Some(l4), ..Expect::fault(14, 3) }));

    let p = probe!("", "jmp rdi", UNMAPPED, 0u64);
    let exec = Expect { vector: Some(14), error_code: 0x10, rip: RipIs::Address(UNMAPPED), cr2: Some(UNMAPPED), from_user: false };
    tally.add(report("traps", "page_fault_execute_unmapped", &p, &exec));

    // Lazy FPU: with the virtual TS set, the first SSE instruction raises #NM; taking
    // it clears TS (Xen does so), so the second does not.
    platform::fpu_taskswitch(true);
    let p = probe!("", "movaps xmm0, xmm0");
    tally.add(report("traps", "device_not_available", &p, &Expect::fault(7, 0)));
    let p = probe!("", "movaps xmm1, xmm1");
    tally.add(report("traps", "device_available_after_nm", &p, &Expect::none()));
    platform::fpu_taskswitch(false);

    // Software interrupts: the trap table's DPL decides (3 and 1 reach the kernel from
    // its own mode, 0 or no entry is a #GP naming the vector).
    let p = probe!("", "int 0x83");
    tally.add(report("traps", "int_dpl3", &p, &Expect::trap(0x83)));
    let p = probe!("", "int 0x84");
    tally.add(report("traps", "int_dpl1_from_kernel", &p, &Expect::trap(0x84)));
    let p = probe!("", "int 0x81");
    tally.add(report("traps", "int_dpl0", &p, &Expect::fault(13, (0x81 << 3) | 2)));
    let p = probe!("", "int 0x85");
    tally.add(report("traps", "int_unregistered", &p, &Expect::fault(13, (0x85 << 3) | 2)));
    let p = probe!("", "int 0x80");
    tally.add(report("traps", "int80", &p, &Expect::trap(0x80)));
    let p = probe!("", "int 0x0e");
    tally.add(report("traps", "int_exception_vector", &p, &Expect::fault(13, (0x0e << 3) | 2)));

    gates_and_the_event_mask(&mut tally, info);
    flags_through_a_hypercall(&mut tally);
    tally.finish();
}

/// A hypercall made with DF and AC set: the hypervisor must run with both clear (its
/// copies would run backwards, and AC would switch SMAP off in ring 0), and the guest
/// gets its own flags back. `syscall` clears them (SFMASK) on both hypervisors; the
/// hypercall writes the 16-byte extraversion, which a backwards copy would mangle.
fn flags_through_a_hypercall(tally: &mut Tally) {
    const DF_AC: u64 = (1 << 10) | (1 << 18);
    let mut text = [0xffu8; 16];
    let entry = hypercall_abi::guest::hypercall_page_address() + hypercall_abi::nr::xen_version * 32;
    let (ret, flags_after): (i64, u64);
    // SAFETY: DF and AC are set only inside this block (Rust code never sees them): the
    // hypercall page entry is two instructions, and cld plus the popfq of the saved
    // flags undo both before the block ends. The hypercall writes 16 bytes to `text`.
    unsafe {
        core::arch::asm!(
            "pushfq",
            "pushfq",
            "or qword ptr [rsp], {df_ac}",
            "popfq",
            "call {entry}",
            "pushfq",
            "pop {flags}",
            "cld",
            "popfq",
            entry = in(reg) entry,
            df_ac = const DF_AC,
            flags = out(reg) flags_after,
            inout("rax") 0u64 => ret,
            inout("rdi") u64::from(hypercall_abi::ops::xen_version::XENVER_EXTRAVERSION) => _,
            inout("rsi") text.as_mut_ptr() as u64 => _,
            out("rcx") _, out("r11") _, out("rdx") _, out("r10") _, out("r8") _, out("r9") _,
        );
    }
    let intact = text.iter().position(|&b| b == 0).is_some_and(|end| end > 0 && text[..end].iter().all(u8::is_ascii_graphic));
    let kept = flags_after & DF_AC == DF_AC;
    tally.line("df_ac_through_hypercall", ret == 0 && intact && kept, format_args!("ret={ret} text_intact={intact} flags_kept={kept}"));
}

/// trap_info flags bit 2: with events enabled, an interrupt gate's handler finds them
/// masked; a trap gate's finds them as they were. (The stub's iret restores them.)
fn gates_and_the_event_mask(tally: &mut Tally, info: &StartInfo) {
    let Some(shared) = super::evtchn_ops::map_shared_info(info) else {
        tally.line("gates", false, format_args!("reason=cannot-map-shared-info"));
        return;
    };
    // Nothing is bound, so nothing can become pending while events are enabled.
    shared.clear_upcall();
    shared.set_upcall_mask(false);
    let p = probe!("", "int 0x86");
    let interrupt_gate = p.trap.map_or(u64::MAX, |t| t.mask_at_entry);
    let p80 = probe!("", "int 0x80");
    let trap_gate = p80.trap.map_or(u64::MAX, |t| t.mask_at_entry);
    let p_ud = probe!("", "ud2");
    let flags_zero = p_ud.trap.map_or(u64::MAX, |t| t.mask_at_entry);
    let after = shared.get().vcpu_info[0].evtchn_upcall_mask;
    shared.set_upcall_mask(true);
    tally.line("interrupt_gate_masks_events", interrupt_gate == 1, format_args!("mask_at_entry={interrupt_gate}"));
    tally.line("trap_gate_keeps_events", trap_gate == 0, format_args!("mask_at_entry={trap_gate}"));
    tally.line("exception_flags_0_keeps_events", flags_zero == 0, format_args!("mask_at_entry={flags_zero}"));
    tally.line("iret_restores_events", after == 0, format_args!("mask={after}"));
}
