//! `hypercalls`: the trap-related hypercalls' answers, good and bad arguments alike
//! (set_segment_base, set/get_debugreg with a real breakpoint, multicall, callback_op,
//! vm_assist, stack_switch, fpu_taskswitch), one RESULT line each with the value
//! returned, so the conformance harness compares errnos with Xen's.

use super::{probe, report, Expect, Tally};
use crate::console::println;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::callback::{CallbackUnregister, CALLBACKOP_UNREGISTER, CALLBACKTYPE_EVENT, CALLBACKTYPE_NMI};
use hypercall_abi::ops::multicall::MulticallEntry;
use hypercall_abi::ops::traps::{SEGBASE_FS, SEGBASE_GS_USER_SEL};
use hypercall_abi::{nr, GuestArray, GuestHandle};

static WATCHED: u64 = 0;
static FS_WORD: u64 = 0x0123_4567_89ab_cdef;

pub fn run() {
    let mut tally = Tally::new("hypercalls");
    if crate::traps::install() != 0 {
        tally.add(false);
        tally.finish();
        return;
    }
    let fs_word = core::ptr::addr_of!(FS_WORD) as u64;
    // SAFETY (this and every call below): the arguments are plain values or pointers
    // to live, correctly typed locals and statics.
    unsafe {
        tally.ret("set_segment_base_fs", calls::set_segment_base(SEGBASE_FS, fs_word), 0);
        tally.ret("set_segment_base_noncanonical", calls::set_segment_base(SEGBASE_FS, 0x8000_0000_0000), -22);
        tally.ret("set_segment_base_bad_which", calls::set_segment_base(4, 0), -22);
        tally.ret("set_segment_base_user_gs_selector", calls::set_segment_base(SEGBASE_GS_USER_SEL, 0), 0);
    }
    let p = probe!("", "mov rax, qword ptr fs:[0]");
    let pass = report("hypercalls", "fs_base_in_use", &p, &Expect::none()) && p.rax == FS_WORD;
    println!("RESULT test=hypercalls check=fs_base_reads matches={} status={}", u8::from(p.rax == FS_WORD), if pass { "pass" } else { "fail" });
    tally.add(pass);

    // A write breakpoint (DR0, 8 bytes, enabled locally) on a kernel word: the store
    // raises #DB after it, and DR6 says B0.
    let watched = core::ptr::addr_of!(WATCHED) as u64;
    // SAFETY: the arguments are values, NULL, unmapped addresses the hypervisor must
    // refuse, or live locals the hypercall may read and write.
    unsafe {
        tally.ret("set_debugreg_dr0", calls::set_debugreg(0, watched), 0);
        tally.ret("set_debugreg_dr7", calls::set_debugreg(7, 1 | (1 << 16) | (2 << 18)), 0);
        tally.ret("get_debugreg_dr0", calls::get_debugreg(0), watched as i64);
    }
    let p = probe!("", "mov qword ptr [rdi], rsi", watched, 1u64);
    tally.add(report("hypercalls", "data_breakpoint", &p, &Expect::trap(1)));
    // SAFETY: the arguments are values, NULL, unmapped addresses the hypervisor must
    // refuse, or live locals the hypercall may read and write.
    unsafe {
        tally.ret("get_debugreg_dr6_b0", calls::get_debugreg(6) & 0xf, 1);
        tally.ret("set_debugreg_dr7_off", calls::set_debugreg(7, 0x400), 0);
        tally.ret("set_debugreg_hypervisor_address", calls::set_debugreg(1, 0xffff_8300_0000_0000), -1);
        tally.ret("set_debugreg_general_detect", calls::set_debugreg(7, 1 << 13), -1);
        tally.ret("set_debugreg_dr6_high_bits", calls::set_debugreg(6, 1 << 32), -22);
        tally.ret("get_debugreg_dr8", calls::get_debugreg(8), -19);
        tally.ret("get_debugreg_dr7", calls::get_debugreg(7), 0x400);
    }
    let p = probe!("", "mov rax, dr6");
    tally.add(report("hypercalls", "mov_from_dr6", &p, &Expect::none()));
    let p = probe!("", "mov dr0, rdi", 0xffff_8300_0000_0000u64, 0u64);
    tally.add(report("hypercalls", "mov_to_dr0_hypervisor_address", &p, &Expect::fault(13, 0)));

    // multicall: results written back in order; a nested multicall gets -EINVAL.
    let mut batch = [
        MulticallEntry { op: nr::xen_version, result: 0xdead, args: [0; 6] },
        MulticallEntry { op: nr::vm_assist, result: 0xdead, args: [0, 6, 0, 0, 0, 0] },
        MulticallEntry { op: 11, result: 0xdead, args: [0; 6] },
        MulticallEntry { op: nr::multicall, result: 0xdead, args: [0; 6] },
        MulticallEntry { op: nr::fpu_taskswitch, result: 0xdead, args: [0; 6] },
    ];
    // SAFETY: the arguments are values, NULL, unmapped addresses the hypervisor must
    // refuse, or live locals the hypercall may read and write.
    let ret = unsafe { calls::multicall(GuestArray::from_mut_slice(&mut batch), batch.len() as u32) };
    tally.ret("multicall", ret, 0);
    for (i, entry) in batch.iter().enumerate() {
        let result = entry.result as i64;
        println!("RESULT test=hypercalls check=multicall_entry_{i} op={} result={result}", entry.op);
    }
    let expected = [(4 << 16) | 17, -22, -38, -22, 0];
    tally.add(batch.iter().zip(expected).all(|(e, x)| e.result as i64 == x));
    // SAFETY: the arguments are values, NULL, unmapped addresses the hypervisor must
    // refuse, or live locals the hypercall may read and write.
    unsafe {
        tally.ret("multicall_unreadable", calls::multicall(GuestArray::from_raw(0x7fff_dead_0000), 1), -14);
    }

    // callback_op, vm_assist, stack_switch, fpu_taskswitch: the error cases.
    let unregister = |t: u16| {
        let request = CallbackUnregister { callback_type: t, _pad: 0 };
        // SAFETY: the arguments are values, NULL, unmapped addresses the hypervisor must
        // refuse, or live locals the hypercall may read and write.
        unsafe { calls::callback_op(CALLBACKOP_UNREGISTER, GuestHandle::from_ref(&request)) }
    };
    tally.ret("callback_unregister_event", unregister(CALLBACKTYPE_EVENT), -22);
    tally.ret("callback_unregister_nmi", unregister(CALLBACKTYPE_NMI), 0);
    tally.ret("callback_unregister_unknown", unregister(9), -38);
    // SAFETY: the arguments are values, NULL, unmapped addresses the hypervisor must
    // refuse, or live locals the hypercall may read and write.
    unsafe {
        tally.ret("callback_op_bad_cmd", calls::callback_op(5, GuestHandle::NULL), -38);
        tally.ret("callback_op_bad_pointer", calls::callback_op(0, GuestHandle::from_raw(0x7fff_dead_0000)), -14);
        tally.ret("vm_assist_bad_type", calls::vm_assist(0, 6), -22);
        tally.ret("vm_assist_bad_cmd", calls::vm_assist(7, 2), -38);
        tally.ret("vm_assist_m2p_strict", calls::vm_assist(0, 32), 0);
        tally.ret("set_trap_table_bad_pointer", calls::set_trap_table(GuestArray::from_raw(0x7fff_dead_0000)), -14);
        tally.ret("fpu_taskswitch_clear", calls::fpu_taskswitch(0), 0);
        let mut features = [0u32, 0];
        let ret = calls::xen_version(6, GuestHandle::from_mut(&mut features));
        tally.line("xen_version_get_features_submap_0", ret == 0, format_args!("ret={ret} submap={:#x}", features[1]));
        let mut features = [1u32, 0];
        tally.ret("xen_version_get_features_submap_1", calls::xen_version(6, GuestHandle::from_mut(&mut features)), -22);
        tally.ret("xen_version_pagesize_with_handle", calls::xen_version(7, GuestHandle::from_mut(&mut features)), -22);
        tally.ret("xen_version_pagesize", calls::xen_version(7, GuestHandle::NULL), 4096);
        tally.ret("console_io_unknown_cmd", calls::console_io(7, 0, GuestArray::NULL), -38);
    }
    tally.finish();
}
