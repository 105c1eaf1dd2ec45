//! Conformance checks: guest commands that provoke hypervisor behaviour and print one
//! `RESULT` line per check. They run unchanged on pv-hypervisor and on real Xen, and
//! the harness compares the lines field by field. `bench` is the odd one out: it
//! measures rather than checks, for `cargo xtask bench hypercall`.

pub mod balloon;
pub mod bench;
pub mod bench_events;
pub mod bench_mmu;
pub mod console_echo;
pub mod console_flood;
pub mod descriptors;
pub mod entry_attacks;
pub mod evtchn_ops;
pub mod evtchn_upcall;
pub mod fuzz;
pub mod heap;
pub mod hypercalls;
pub mod initrd;
pub mod ldt;
pub mod memory;
pub mod mmu_attack;
pub mod mmu_stress;
pub mod nmi;
pub mod pagetables;
pub mod pingpong;
pub mod privops;
pub mod ptwr;
pub mod sched_ops;
pub mod selectors;
pub mod sleep;
pub mod spin;
pub mod threads;
pub mod time;
pub mod traps;
pub mod usermode;
pub mod watch_domains;
pub mod xsave;

use crate::traps::{clear, last, TrapRecord, ARMED, PROBE_RIP, RESUME_RIP};
use core::sync::atomic::Ordering::SeqCst;

/// Runs one instruction that may raise an exception, with the trap handler armed to
/// resume right after it (labels 2: the instruction, 3: the one after). `$setup` runs first (not probed); `$insn` is the instruction;
/// rdi and rsi carry two arguments in and rax, rcx, rdx, rdi, rsi and r8 out.
/// Evaluates to `(Option<TrapRecord>, probe_rip, next_rip, rax, rdx)`.
macro_rules! probe {
    ($setup:literal, $insn:literal) => {
        $crate::checks::probe!($setup, $insn, 0u64, 0u64)
    };
    ($setup:literal, $insn:literal, $rdi:expr, $rsi:expr) => {{
        $crate::checks::arm();
        let rax: u64;
        let rdx: u64;
        // SAFETY: the probed instruction either completes or raises an exception that the
        // armed trap handler turns into a resume at label 2 with every register as the
        // exception left it; the operands list every register the probes use.
        unsafe {
            core::arch::asm!(
                "lea rax, [rip + 3f]",
                "mov qword ptr [rip + {resume}], rax",
                "lea rax, [rip + 2f]",
                "mov qword ptr [rip + {probe}], rax",
                $setup,
                "2:",
                $insn,
                "3:",
                resume = sym $crate::traps::RESUME_RIP,
                probe = sym $crate::traps::PROBE_RIP,
                inout("rdi") $rdi => _,
                inout("rsi") $rsi => _,
                out("rax") rax,
                out("rdx") rdx,
                out("rcx") _,
                out("r8") _,
                out("r11") _,
            );
        }
        $crate::checks::disarm(rax, rdx)
    }};
}
pub(crate) use probe;

/// What one probe saw.
pub struct Probed {
    pub trap: Option<TrapRecord>,
    /// Address of the probed instruction and of the one after it.
    pub at: u64,
    pub next: u64,
    pub rax: u64,
    pub rdx: u64,
}

pub fn arm() {
    clear();
    ARMED.store(true, SeqCst);
}

/// After the asm: an exception already disarmed the handler; without one, disarm it
/// here so a later unexpected exception is reported as such.
pub fn disarm(rax: u64, rdx: u64) -> Probed {
    ARMED.store(false, SeqCst);
    Probed { trap: last(), at: PROBE_RIP.load(SeqCst), next: RESUME_RIP.load(SeqCst), rax, rdx }
}

/// Where a check expects the saved rip to point.
#[derive(Clone, Copy)]
pub enum RipIs {
    /// At the probed instruction (a fault).
    At,
    /// After it (a trap, or a software interrupt).
    Next,
    /// Somewhere else, e.g. the target of a jump that faulted on fetch.
    Address(u64),
}

/// What a check expects: no exception (`vector: None`) or this one.
pub struct Expect {
    pub vector: Option<u64>,
    pub error_code: u64,
    pub rip: RipIs,
    /// For #PF: the address CR2 must hold.
    pub cr2: Option<u64>,
    /// The exception came from guest user mode (saved cs RPL 3), not its kernel.
    pub from_user: bool,
}

impl Expect {
    pub const fn none() -> Expect {
        Expect { vector: None, error_code: 0, rip: RipIs::Next, cr2: None, from_user: false }
    }
    pub const fn fault(vector: u64, error_code: u64) -> Expect {
        Expect { vector: Some(vector), error_code, rip: RipIs::At, cr2: None, from_user: false }
    }
    pub const fn trap(vector: u64) -> Expect {
        Expect { vector: Some(vector), error_code: 0, rip: RipIs::Next, cr2: None, from_user: false }
    }
}

fn describe_rip(rip: u64, probed: &Probed) -> ([u8; 18], usize) {
    let mut text = [0u8; 18];
    let word: &[u8] = if rip == probed.at {
        b"at"
    } else if rip == probed.next {
        b"next"
    } else {
        let mut n = 0;
        text[..2].copy_from_slice(b"0x");
        let digits = 16 - (rip.leading_zeros() as usize / 4).min(15);
        for i in 0..digits {
            let nibble = (rip >> ((digits - 1 - i) * 4)) & 0xf;
            text[2 + i] = b"0123456789abcdef"[nibble as usize];
            n = 2 + i + 1;
        }
        return (text, n);
    };
    text[..word.len()].copy_from_slice(word);
    (text, word.len())
}

/// Prints the RESULT line of one check and says whether it passed. Every field is
/// something both hypervisors must agree on: the vector, the error code, where the
/// saved rip points, the saved cs RPL, the event mask the bounce saved (cs bits
/// 32-39) and the IF it mirrors, and CR2 for page faults.
pub fn report(test: &str, check: &str, probed: &Probed, expect: &Expect) -> bool {
    let Some(trap) = probed.trap else {
        let pass = expect.vector.is_none();
        crate::console::println!("RESULT test={test} check={check} vector=none status={}", if pass { "pass" } else { "fail" });
        return pass;
    };
    let (rip_text, rip_len) = describe_rip(trap.rip, probed);
    let rip_text = core::str::from_utf8(&rip_text[..rip_len]).unwrap_or("?");
    let rip_ok = match expect.rip {
        RipIs::At => trap.rip == probed.at,
        RipIs::Next => trap.rip == probed.next,
        RipIs::Address(a) => trap.rip == a,
    };
    let cr2_ok = expect.cr2.is_none_or(|c| c == trap.cr2);
    let pass = expect.vector == Some(trap.vector)
        && expect.error_code == trap.error_code
        && rip_ok
        && cr2_ok
        && trap.cs & 3 == if expect.from_user { 3 } else { 0 };
    let saved_mask = (trap.cs >> 32) & 0xff;
    let saved_if = (trap.rflags >> 9) & 1;
    if trap.vector == 14 {
        crate::console::println!(
            "RESULT test={test} check={check} vector={} error_code={:#x} rip={rip_text} cs={:#x} saved_mask={saved_mask} saved_if={saved_if} cr2={:#x} status={}",
            trap.vector,
            trap.error_code,
            trap.cs & 0xffff,
            trap.cr2,
            if pass { "pass" } else { "fail" }
        );
    } else {
        crate::console::println!(
            "RESULT test={test} check={check} vector={} error_code={:#x} rip={rip_text} cs={:#x} saved_mask={saved_mask} saved_if={saved_if} status={}",
            trap.vector,
            trap.error_code,
            trap.cs & 0xffff,
            if pass { "pass" } else { "fail" }
        );
    }
    pass
}

/// The command's numeric argument (its second word): `default` when there is none;
/// `None`, after a failing RESULT line, when it is not a number in `range`.
pub fn numeric_argument(test: &str, command: &str, default: u64, range: core::ops::RangeInclusive<u64>) -> Option<u64> {
    match command.split_ascii_whitespace().nth(1).map(str::parse::<u64>) {
        None => Some(default),
        Some(Ok(n)) if range.contains(&n) => Some(n),
        Some(_) => {
            crate::console::println!("RESULT test={test} status=fail reason=bad-argument");
            None
        }
    }
}

/// Counts passes and failures and prints the summary line of a command.
pub struct Tally {
    pub test: &'static str,
    pub passed: u32,
    pub failed: u32,
}

impl Tally {
    pub fn new(test: &'static str) -> Tally {
        Tally { test, passed: 0, failed: 0 }
    }

    pub fn add(&mut self, pass: bool) {
        if pass {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }

    /// One check of a return value: `RESULT test=T check=C ret=R status=S`.
    pub fn ret(&mut self, check: &str, ret: i64, expected: i64) {
        let pass = ret == expected;
        crate::console::println!("RESULT test={} check={check} ret={ret} status={}", self.test, if pass { "pass" } else { "fail" });
        self.add(pass);
    }

    /// One check with fields of its own: `RESULT test=T check=C FIELDS status=S`.
    pub fn line(&mut self, check: &str, pass: bool, fields: core::fmt::Arguments<'_>) {
        crate::console::println!("RESULT test={} check={check} {fields} status={}", self.test, if pass { "pass" } else { "fail" });
        self.add(pass);
    }

    pub fn finish(&self) {
        let status = if self.failed == 0 { "pass" } else { "fail" };
        crate::console::println!("RESULT test={} status={status} checks={} failed={}", self.test, self.passed + self.failed, self.failed);
    }
}
