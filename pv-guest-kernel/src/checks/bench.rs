//! `bench-hypercall [N]`: what a guest pays to enter the hypervisor. Each operation runs
//! N times (default 100000: under TCG both hypervisors' costs settle only after the
//! first tens of thousands; real Xen's null hypercall measures ~1470 cycles over 20000
//! and ~1100 over 100000 or more) after a warm-up, between two `lfence; rdtsc` reads, and
//! prints one RESULT line; `cargo xtask bench hypercall` runs it on both hypervisors.
//!
//! The operations: `null_hypercall` (xen_version through the hypercall page: the entry
//! and exit path with no work), `exception_bounce_iret` (an `int3` bounced to our own
//! trap handler, which returns through the iret hypercall: the full exception path a
//! kernel pays on a PV hypervisor), `user_syscall` (a user program's empty system call:
//! user -> hypervisor -> the kernel's syscall callback -> iret -> user, timed inside
//! the user program) and `loop_overhead` (the same loop with nothing in it, for the
//! harness to subtract).
//!
//! `calibration` times exactly 1,000,000 `nop`s, unrolled in blocks so the loop adds
//! little: under QEMU's `-icount` it turns TSC cycles into guest instructions.

use crate::console::println;
use crate::platform;
use crate::traps::{ARMED, RESUME_RIP};
use core::sync::atomic::Ordering::SeqCst;

const DEFAULT_ITERATIONS: u64 = 100_000;
const WARM_UP: u64 = 1_000;
const NOPS_PER_BLOCK: u64 = 1_000;
const NOP_BLOCKS: u64 = 1_000;
/// Instructions of the calibration loop besides its nops: `dec` and `jnz` per block.
const CALIBRATION_LOOP_INSTRUCTIONS: u64 = 2 * NOP_BLOCKS;

/// The iteration count a bench command was given (its second word), or the default;
/// None (after a failing RESULT line for `test`) if it is not a positive number.
pub(super) fn iterations(test: &str, command: &str) -> Option<u64> {
    match command.split_ascii_whitespace().nth(1).map(str::parse::<u64>) {
        None => Some(DEFAULT_ITERATIONS),
        Some(Ok(n)) if n > 0 => Some(n),
        Some(_) => {
            println!("RESULT test={test} status=fail reason=bad-iteration-count");
            None
        }
    }
}

/// The loop's own cost, and the calibration line: every bench command prints both so
/// `cargo xtask bench` can subtract the one and count instructions with the other.
pub(super) fn report_overhead(test: &str, iterations: u64) {
    report_op(test, "loop_overhead", iterations, measure(iterations, nothing));
}

pub(super) fn report_calibration(test: &str) {
    let cycles = calibration();
    println!(
        "RESULT test={test} op=calibration nops={} loop_instructions={CALIBRATION_LOOP_INSTRUCTIONS} cycles={cycles}",
        NOPS_PER_BLOCK * NOP_BLOCKS
    );
}

pub(super) fn report_op(test: &str, op: &str, iterations: u64, total_cycles: u64) {
    println!("RESULT test={test} op={op} iterations={iterations} cycles_per_op={} total_cycles={total_cycles}", total_cycles / iterations);
}

pub fn run(info: &hypercall_abi::start_info::StartInfo, command: &str) {
    let Some(iterations) = iterations("bench-hypercall", command) else { return };
    let installed = crate::traps::install();
    if installed != 0 {
        println!("RESULT test=bench-hypercall status=fail reason=set_trap_table ret={installed}");
        return;
    }

    report_overhead("bench-hypercall", iterations);
    report(
        "null_hypercall",
        iterations,
        measure(iterations, || {
            core::hint::black_box(platform::hypervisor_version());
        }),
    );
    let bounce = measure(iterations, breakpoint_round_trip);
    // Every int3 disarms the handler when it bounces; still armed means the last did not.
    if ARMED.swap(false, SeqCst) {
        println!("RESULT test=bench-hypercall status=fail reason=int3-not-bounced");
        return;
    }
    report("exception_bounce_iret", iterations, bounce);
    match super::usermode::syscall_round_trip_cycles(info, iterations) {
        Some(cycles) => report("user_syscall", iterations, cycles),
        None => {
            println!("RESULT test=bench-hypercall status=fail reason=no-user-mode");
            return;
        }
    }

    report_calibration("bench-hypercall");
    println!("RESULT test=bench-hypercall status=pass");
}

fn report(op: &str, iterations: u64, total_cycles: u64) {
    report_op("bench-hypercall", op, iterations, total_cycles);
}

/// The TSC after every earlier instruction has completed (`lfence` keeps `rdtsc` from
/// running ahead of them). The kernel runs in ring 3, but neither hypervisor sets
/// CR4.TSD, so `rdtsc` does not trap.
#[inline(always)]
fn fenced_rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: lfence and rdtsc touch no memory.
    unsafe { core::arch::asm!("lfence", "rdtsc", out("eax") low, out("edx") high, options(nomem, nostack)) };
    (u64::from(high) << 32) | u64::from(low)
}

/// Total cycles for `iterations` calls of `op`, after a warm-up.
#[inline(always)]
pub(super) fn measure(iterations: u64, mut op: impl FnMut()) -> u64 {
    for _ in 0..WARM_UP {
        op();
    }
    let start = fenced_rdtsc();
    for _ in 0..core::hint::black_box(iterations) {
        op();
    }
    fenced_rdtsc().wrapping_sub(start)
}

/// The empty body of `loop_overhead`: an empty asm statement the compiler must keep,
/// so the loop around it is not optimised away.
#[inline(always)]
fn nothing() {
    // SAFETY: an empty asm statement does nothing.
    unsafe { core::arch::asm!("", options(nomem, nostack, preserves_flags)) };
}

/// One `int3` through the whole PV exception path: the hypervisor bounces it to our
/// trap stub, the Rust handler records it and resumes at the armed address, and the
/// stub returns through the iret hypercall.
#[inline(always)]
fn breakpoint_round_trip() {
    ARMED.store(true, SeqCst);
    // SAFETY: the armed handler resumes at label 2 (the instruction after int3) with
    // every register as it was; the handler's writes are to its own statics.
    unsafe {
        core::arch::asm!(
            "lea rax, [rip + 2f]",
            "mov qword ptr [rip + {resume}], rax",
            "int3",
            "2:",
            resume = sym RESUME_RIP,
            out("rax") _,
        );
    }
}

/// Cycles for NOP_BLOCKS blocks of NOPS_PER_BLOCK `nop`s.
fn calibration() -> u64 {
    let start = fenced_rdtsc();
    // SAFETY: only nops and a counter register.
    unsafe {
        core::arch::asm!(
            "2:",
            ".rept {block}",
            "nop",
            ".endr",
            "dec {blocks}",
            "jnz 2b",
            block = const NOPS_PER_BLOCK,
            blocks = inout(reg) NOP_BLOCKS => _,
            options(nomem, nostack),
        );
    }
    fenced_rdtsc().wrapping_sub(start)
}
