//! What the kernel does at boot, chosen by its command line. Each command ends with a
//! machine-readable `RESULT` line for the test harness.

use crate::console::println;
use crate::platform::{self, ShutdownReason};
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::{nr, Errno};

pub fn greet(info: &StartInfo, cmdline: &str) {
    let (major, minor) = platform::hypervisor_version();
    let extra = platform::hypervisor_extraversion();
    let extra_len = extra.iter().position(|&b| b == 0).unwrap_or(extra.len());
    let extra = core::str::from_utf8(&extra[..extra_len]).unwrap_or("");
    println!("pv-guest-kernel: hello from a PV guest on Xen interface {major}.{minor}{extra}");
    println!(
        "RESULT event=greeting nr_pages={} flags={:#x} pt_base={:#x} nr_pt_frames={} cmd_line=\"{}\"",
        info.nr_pages, info.flags, info.pt_base, info.nr_pt_frames, cmdline
    );
    if info.flags & hypercall_abi::start_info::SIF_INITDOMAIN == 0 {
        // What the toolstack gave a domU (this line itself went through the console ring).
        let (console_mfn, console_evtchn) = info.domu_console();
        let (store_mfn, store_evtchn) = (info.store_mfn, info.store_evtchn);
        let store_pfn = crate::mm::m2p(store_mfn).unwrap_or(u64::MAX);
        let console_pfn = crate::mm::m2p(console_mfn).unwrap_or(u64::MAX);
        println!("RESULT event=domu_rings store_pfn={store_pfn:#x} store_evtchn={store_evtchn} console_pfn={console_pfn:#x} console_evtchn={console_evtchn}");
    }
}

/// Every command `run` knows, for the help line.
pub const COMMANDS: &str =
    "hello, fault [MS], badptr, hypercall-count, traps, privops, usermode, hypercalls, memory, ptwr, mmu-attack, mmu-stress [ROUNDS], pagetables, balloon [MIB], heap [MIB], descriptors, ldt, selectors [N], evtchn-ops, evtchn-upcall, evtchn-pingpong PEER N, nmi, nmi-wait [MS], initrd, sched-ops, watchdog-then-spin TIMEOUT SECONDS, time, sleep [MS], threads [N], xsave, avx-keep [MS], spin [SECONDS], spin-until MS, console-flood [MIB [DELAY_MS]], console-echo [N], watch-domains [N], entry-attacks, entry-attack NAME, bench-hypercall [N], bench-mmu [N], bench-events [N], bench-switch [N], fuzz SEED COUNT";

/// Runs the command and says how to shut down afterwards.
pub fn run(info: &StartInfo, command: &str) -> ShutdownReason {
    match command.split_ascii_whitespace().next().unwrap_or("hello") {
        "hello" => {
            println!("RESULT test=hello status=pass");
        }
        "fault" => {
            // `fault MS`: run that long first (a domain that crashes while others run).
            if let (Some(ms), Some(shared)) =
                (command.split_ascii_whitespace().nth(1).and_then(|a| a.parse::<u64>().ok()), crate::events::shared_info(info))
            {
                let until = crate::events::now_ns(shared) + ms * 1_000_000;
                while crate::events::now_ns(shared) < until {
                    core::hint::spin_loop();
                }
            }
            println!("RESULT test=fault status=about-to-fault");
            platform::execute_privileged_instruction();
        }
        "badptr" => bad_pointers(),
        "hypercall-count" => hypercall_count(),
        "traps" => crate::checks::traps::run(info),
        "privops" => crate::checks::privops::run(info),
        "usermode" => crate::checks::usermode::run(info),
        "hypercalls" => crate::checks::hypercalls::run(),
        "memory" => crate::checks::memory::run(info),
        "ptwr" => crate::checks::ptwr::run(info),
        "mmu-attack" => crate::checks::mmu_attack::run(info),
        "mmu-stress" => crate::checks::mmu_stress::run(info, command),
        "pagetables" => crate::checks::pagetables::run(),
        "balloon" => crate::checks::balloon::run(command),
        "heap" => crate::checks::heap::run(command),
        "descriptors" => crate::checks::descriptors::run(info),
        "ldt" => crate::checks::ldt::run(),
        "selectors" => crate::checks::selectors::run(info, command),
        "evtchn-ops" => crate::checks::evtchn_ops::run(info),
        "evtchn-upcall" => crate::checks::evtchn_upcall::run(info),
        "nmi" => crate::checks::nmi::run(info),
        "nmi-wait" => crate::checks::nmi::wait_for_platform_nmi(info, command),
        "sched-ops" => crate::checks::sched_ops::run(info),
        "initrd" => crate::checks::initrd::run(info),
        "watchdog-then-spin" => crate::checks::sched_ops::watchdog_then_spin(info, command),
        "evtchn-pingpong" => crate::checks::pingpong::run(info, command),
        "time" => crate::checks::time::run(info),
        "sleep" => crate::checks::sleep::run(info, command),
        "threads" => crate::checks::threads::run(info, command),
        "xsave" => crate::checks::xsave::run(info),
        "avx-keep" => crate::checks::xsave::keep(info, command),
        "spin" | "spin-until" => crate::checks::spin::run(info, command),
        "console-flood" => crate::checks::console_flood::run(info, command),
        "console-echo" => crate::checks::console_echo::run(info, command),
        "watch-domains" => crate::checks::watch_domains::run(info, command),
        "entry-attacks" => crate::checks::entry_attacks::run(info),
        "entry-attack" => crate::checks::entry_attacks::run_fatal(info, command.split_ascii_whitespace().nth(1).unwrap_or("")),
        "bench-hypercall" => crate::checks::bench::run(info, command),
        "bench-mmu" => crate::checks::bench_mmu::run(info, command),
        "bench-events" => crate::checks::bench_events::run(info, command),
        "bench-switch" => crate::checks::bench_events::switch(command),
        "fuzz" => crate::checks::fuzz::run(info, command),
        other => {
            println!("unknown command '{other}'; commands: {COMMANDS}");
            println!("RESULT test={other} status=fail reason=unknown-command");
        }
    }
    ShutdownReason::Poweroff
}

/// Hands console_io addresses we do not own; every one must come back -EFAULT.
fn bad_pointers() {
    let wild: [u64; 3] = [
        0x0000_7fff_dead_0000, // far past our initial mapping: not mapped
        0x8000_0000_0000_0000, // non-canonical
        0xffff_8300_0000_0000, // the hypervisor's reserved range (its direct map)
    ];
    let mut first_error = None;
    let mut all_efault = true;
    for address in wild {
        let result = platform::console_write_from_address(address, 16);
        println!("console_io(write, 16, {address:#x}) = {}", describe(result));
        if first_error.is_none() {
            first_error = result.err();
        }
        all_efault &= result == Err(Errno::EFAULT);
    }
    let errno = first_error.map_or(0, |e| e.to_return_value());
    let status = if all_efault { "pass" } else { "fail" };
    println!("RESULT test=badptr status={status} errno={errno}");
}

fn describe(result: Result<(), Errno>) -> &'static str {
    match result {
        Ok(()) => "0 (accepted!)",
        Err(Errno::EFAULT) => "-14 (EFAULT)",
        Err(_) => "another error",
    }
}

/// Our own hypercall (arch_0): the hypervisor counts our console writes.
fn hypercall_count() {
    let before = match platform::hypercall_count(nr::console_io) {
        Ok(n) => n,
        Err(e) => {
            println!("RESULT test=hypercall-count status=fail errno={}", e.to_return_value());
            return;
        }
    };
    for i in 0..3 {
        println!("console write {i}");
    }
    let after = platform::hypercall_count(nr::console_io).unwrap_or(0);
    let status = if after == before + 3 { "pass" } else { "fail" };
    println!("RESULT test=hypercall-count status={status} count={after} before={before}");
}
