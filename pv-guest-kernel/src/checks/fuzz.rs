//! `fuzz SEED COUNT`: a hostile guest kernel. It makes COUNT hypercalls (mostly the
//! implemented ones, plus unimplemented and out-of-range numbers) with arguments drawn
//! from interesting sets, mixed with random privileged instructions, and checks that
//! every answer is one the ABI allows, that the hypervisor never touched memory it must
//! not (read-only page tables, the hypercall page, start_info, canaries around the
//! scratch buffer) and never clobbered a register the calling convention preserves, and
//! that its per-number hypercall counts agree with ours. It never makes a call whose
//! legitimate effect would end the run (block, a valid shutdown, iret) and repairs what
//! its calls legitimately change (trap table, CR0.TS, kernel stack, callbacks).

mod args;
mod memory;
mod model;
mod model_cpu;
mod model_memory;
mod privops;
mod raw;

use crate::console::println;
use args::Rng;
use core::fmt::Write;
use hypercall_abi::arch_x86_64::FLAT_KERNEL_SS64;
use hypercall_abi::hypercalls::XEN_NUMBERS;
use hypercall_abi::ops::vm_assist::{VMASST_CMD_ENABLE, VMASST_TYPE_ARCHITECTURAL_IOPL};
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::{nr, HYPERCALLS};
use memory::{Integrity, Layout};
use model::{Call, Expect, Restore, Verdict};
use raw::{raw_hypercall, Stack};

/// How many failures are printed in full (all are counted).
const MAX_REPORTED: u64 = 20;
const PROGRESS_EVERY: u64 = 10_000;
/// Full integrity checks between the progress lines.
const INTEGRITY_EVERY: u64 = 1_000;
/// Numbers whose per-domain count the run cannot predict: console_io (our own
/// printing), iret (the trap handler's returns) and hypercall_count (asking counts).
const UNPREDICTABLE_COUNTS: [u64; 3] = [nr::console_io, nr::iret, nr::hypercall_count];
/// Numbers whose calls the hypervisor may stop early and continue later (a timer due):
/// the guest then enters them again, so each call counts at least once.
const CONTINUABLE: [u64; 4] = [nr::mmu_update, nr::mmuext_op, nr::memory_op, nr::multicall];
const COUNTED: usize = 64;

/// Non-canonical stack pointers: a hypercall made with one returns (sysretq does not
/// load RSP from a frame), on Xen 4.17 and here.
const NON_CANONICAL_STACKS: [u64; 2] = [0x8000_0000_0000_0000, 0x0000_8000_0000_0000];

/// A kernel stack for stack_switch to point back at after a fuzzed one (never used:
/// the kernel never runs user mode).
#[repr(C, align(16))]
struct KernelStack([u8; 4096]);
static KERNEL_STACK: KernelStack = KernelStack([0; 4096]);

struct Fuzzer {
    rng: Rng,
    layout: Layout,
    version: i64,
    memory_facts: model_memory::MemoryFacts,
    handled: [u64; 32],
    handled_len: usize,
    /// Hypercalls we made per number (those below 64), for the count cross-check.
    made: [u64; COUNTED],
    /// Fuzzed calls per number below 64 and how many of them succeeded (ret >= 0);
    /// index COUNTED holds the numbers above.
    fuzzed: [(u64, u64); COUNTED + 1],
    calls: u64,
    probes: u64,
    failures: u64,
    deviations: u64,
    /// Known deviations from Xen, per kind, in order of first appearance.
    deviation_kinds: [(&'static str, u64); 8],
    /// Print every iteration from this one on (`trace=N`).
    trace_from: u64,
    /// Whether vm_assist architectural_iopl is on: then the kernel counts as ring 0 and
    /// cli, sti, in and out are allowed (and do nothing).
    architectural_iopl: bool,
}

impl Fuzzer {
    /// A call we make ourselves (repairs, setup): counted like the fuzzed ones.
    fn call(&mut self, number: u64, args: [u64; 6]) -> i64 {
        self.count(number);
        raw_hypercall(number, args, true, Stack::Own, 0).0
    }

    fn count(&mut self, number: u64) {
        if let Some(n) = self.made.get_mut(number as usize) {
            *n += 1;
        }
    }

    fn fail(&mut self, i: u64, what: core::fmt::Arguments<'_>) {
        self.failures += 1;
        if self.failures <= MAX_REPORTED {
            println!("fuzz: FAIL iteration={i} {what}");
        }
    }

    /// The next hypercall: 80% implemented, 12% Xen numbers (and gaps) we do not
    /// implement, 8% out of range (including numbers with high bits set).
    fn next_call(&mut self) -> (Call, bool, Stack, u64) {
        let rng = &mut self.rng;
        let roll = rng.below(100);
        let number = if roll < 80 {
            self.handled[rng.below(self.handled_len as u64) as usize]
        } else if roll < 92 {
            let n = rng.below(128);
            if model::on_xen() && XEN_NUMBERS.contains(&n) {
                // Xen implements it: garbage could really change our page tables.
                11
            } else if HYPERCALLS.iter().any(|h| h.handled && h.number == n) {
                if model::on_xen() {
                    11
                } else {
                    nr::mmu_update
                }
            } else {
                n
            }
        } else {
            let low = self.handled[rng.below(self.handled_len as u64) as usize];
            rng.pick(&[128, 129, 255, 256, 1000, 0xffff_ffff, (1 << 32) | low, u64::MAX, i32::MIN as u64, 0x8000_0000_0000_0000 | low])
        };
        let via_page = number < 128 && rng.percent(70);
        let stack = if !via_page && rng.percent(10) {
            let l = &self.layout;
            let odd = [0, 8, 0xfff, l.v_end, l.pt_base + 0x800, l.hypercall_page, 0xffff_8300_0000_1000, 0xffff_ffff_ffff_fff0, 0x7fff_ffff_fff8];
            if rng.percent(20) {
                Stack::Odd(rng.pick(&NON_CANONICAL_STACKS))
            } else {
                Stack::Odd(rng.pick(&odd))
            }
        } else {
            Stack::Own
        };
        let rflags = if via_page { 0 } else { rng.next() & raw::HOSTILE_RFLAGS };
        if rng.percent(90) {
            // Random bytes where the structures are read from.
            memory::fill_scratch(|| rng.next());
        }
        let call = if HYPERCALLS.iter().any(|h| h.handled && h.number == number) {
            model::implemented(rng, &self.layout, number, self.version, &self.memory_facts)
        } else {
            model::unimplemented(rng, &self.layout, number)
        };
        (call, via_page, stack, rflags)
    }

    fn restore(&mut self, what: Restore) {
        match what {
            Restore::Nothing => {}
            Restore::TrapTable => {
                self.call(nr::set_trap_table, [0; 6]);
                self.count(nr::set_trap_table);
                crate::traps::install();
            }
            Restore::Fpu => {
                self.call(nr::fpu_taskswitch, [0; 6]);
            }
            Restore::KernelStack => {
                let top = core::ptr::addr_of!(KERNEL_STACK) as u64 + 4096;
                self.call(nr::stack_switch, [FLAT_KERNEL_SS64 as u64, top, 0, 0, 0, 0]);
            }
            Restore::SegmentBases => {
                for which in 0..3 {
                    self.call(nr::set_segment_base, [which, 0, 0, 0, 0, 0]);
                }
                self.call(nr::set_segment_base, [3, 0, 0, 0, 0, 0]);
            }
            Restore::DebugRegisters => {
                self.call(nr::set_debugreg, [7, 0x400, 0, 0, 0, 0]);
            }
            Restore::Iopl => {
                static IOPL_ZERO: u32 = 0;
                self.call(nr::physdev_op, [6, &IOPL_ZERO as *const u32 as u64, 0, 0, 0, 0]);
            }
            Restore::NmiCallback => {
                // An NMI delivered to a garbage callback would crash us; the other
                // callbacks cannot be taken back, and nothing here raises them.
                self.call(nr::callback_op, [1, &NMI_UNREGISTER as *const _ as u64, 0, 0, 0, 0]);
            }
        }
    }

    /// One fuzzed hypercall; says whether it aimed at a checksummed region.
    fn one_hypercall(&mut self, i: u64) -> bool {
        let (call, via_page, stack, rflags) = self.next_call();
        let name = HYPERCALLS.iter().find(|h| h.number == call.nr).map_or("unassigned", |h| h.name);
        let args = call.args;
        if i >= self.trace_from {
            // Before the call, so a call that never returns is the last line.
            println!(
                "fuzz: trace iteration={i} call={name}({}) via_page={via_page} stack={stack:x?} rflags={rflags:#x} args={}",
                call.nr,
                Args(args)
            );
        }
        let (ret, preserved) = raw_hypercall(call.nr, call.args, via_page, stack, rflags);
        self.count(call.nr);
        if call.nr == nr::multicall && ret == 0 {
            // The hypervisor counts the calls a multicall made (not a nested multicall).
            for entry in 0..call.args[1] as u32 as u64 {
                let op = memory::peek_u64(call.args[0] + entry * 64);
                if op != nr::multicall {
                    self.count(op);
                }
            }
        }
        self.calls += 1;
        let slot = &mut self.fuzzed[(call.nr as usize).min(COUNTED)];
        slot.0 += 1;
        slot.1 += u64::from(ret >= 0);
        self.restore(call.restore);
        if call.nr == nr::console_io && call.args[0] as u32 == 0 && call.args[1] as u32 != 0 {
            // End whatever line the fuzzed bytes started, so our own lines stay whole.
            let _ = crate::platform::console_write(b"\n");
        }
        if i >= self.trace_from {
            println!("fuzz: trace iteration={i} ret={ret}");
        }
        if call.nr == nr::vm_assist && ret == 0 && args[1] as u32 == VMASST_TYPE_ARCHITECTURAL_IOPL {
            self.architectural_iopl = args[0] as u32 == VMASST_CMD_ENABLE;
        }
        match call.expect.judge(ret) {
            Verdict::Pass => {}
            Verdict::KnownDeviation => {
                self.deviations += 1;
                let kind = match call.expect {
                    Expect::Xen { kind, .. } => kind,
                    _ => "?",
                };
                let slot = self.deviation_kinds.iter().position(|(k, _)| *k == kind || k.is_empty());
                if let Some(slot) = slot {
                    if self.deviation_kinds[slot].1 == 0 {
                        println!(
                            "fuzz: known deviation {kind} (first seen) iteration={i} call={name}({}) via_page={via_page} args={} ret={ret} expected={:?}",
                            call.nr,
                            Args(args),
                            call.expect
                        );
                    }
                    self.deviation_kinds[slot] = (kind, self.deviation_kinds[slot].1 + 1);
                }
            }
            Verdict::Fail => self.fail(
                i,
                format_args!(
                    "call={name}({}) via_page={via_page} stack={stack:x?} rflags={rflags:#x} args={} ret={ret} expected={:?}",
                    call.nr,
                    Args(args),
                    call.expect
                ),
            ),
        }
        if !preserved {
            self.fail(i, format_args!("call={name}({}) args={} clobbered a callee-saved register", call.nr, Args(args)));
        }
        if !memory::canaries_intact() {
            self.fail(i, format_args!("call={name}({}) args={} wrote past the scratch buffer", call.nr, Args(args)));
            memory::set_canaries();
        }
        call.guarded
    }

    /// Calls/successes per implemented hypercall, then the rest in bulk.
    fn print_coverage(&self) {
        let mut line = LineText::default();
        for h in HYPERCALLS.iter().filter(|h| h.handled && h.number != nr::iret && (h.number as usize) < COUNTED) {
            let (calls, ok) = self.fuzzed[h.number as usize];
            let _ = write!(line, " {}={calls}/{ok}", h.name);
        }
        let unimplemented = (0..COUNTED).filter(|&n| !self.handled[..self.handled_len].contains(&(n as u64))).map(|n| self.fuzzed[n].0).sum::<u64>();
        println!("fuzz: coverage (calls/succeeded){}", line.as_str());
        println!("fuzz: coverage unimplemented_below_64={unimplemented} from_64_up={}", self.fuzzed[COUNTED].0);
    }

    fn one_probe(&mut self, i: u64) {
        self.probes += 1;
        if i >= self.trace_from {
            println!("fuzz: trace iteration={i} privileged instruction");
        }
        if let Err(f) = privops::run_one(&mut self.rng, self.architectural_iopl, model::on_xen()) {
            self.fail(i, format_args!("instruction={} operand={:#x} vector={:?} error_code={:#x}", f.name, f.operand, f.vector, f.error_code));
        }
    }
}

/// A fixed-size line for the coverage summary.
struct LineText {
    bytes: [u8; 400],
    len: usize,
}

impl Default for LineText {
    fn default() -> Self {
        LineText { bytes: [0; 400], len: 0 }
    }
}

impl LineText {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

impl Write for LineText {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let take = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Six arguments on one line, in hex.
struct Args([u64; 6]);

impl core::fmt::Display for Args {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "[{a:#x},{b:#x},{c:#x},{d:#x},{e:#x},{g:#x}]")
    }
}

/// The argument of the NMI unregistration done after every callback_op.
static NMI_UNREGISTER: [u16; 2] = [4, 0];

/// `fuzz SEED COUNT [trace=ITERATION]`.
struct Options {
    seed: u64,
    count: u64,
    trace_from: u64,
}

fn parse(args: &str) -> Option<Options> {
    let mut words = args.split_ascii_whitespace().skip(1);
    let seed = words.next().map_or(Some(1), |w| w.parse().ok())?;
    let count = words.next().map_or(Some(10_000), |w| w.parse().ok())?;
    let mut options = Options { seed, count, trace_from: u64::MAX };
    for word in words {
        match word.split_once('=') {
            Some(("trace", from)) => options.trace_from = from.parse().ok()?,
            _ => return None,
        }
    }
    Some(options)
}

fn counts_now() -> [u64; COUNTED] {
    // SAFETY: hypercall_count takes no pointer.
    core::array::from_fn(|n| unsafe { hypercall_abi::guest::calls::hypercall_count(n as u32) }.max(0) as u64)
}

pub fn run(info: &StartInfo, command: &str) {
    let Some(Options { seed, count, trace_from }) = parse(command) else {
        println!("usage: fuzz SEED COUNT [trace=ITERATION]");
        println!("RESULT test=fuzz status=fail reason=usage");
        return;
    };
    if crate::traps::install() != 0 {
        println!("RESULT test=fuzz status=fail seed={seed} calls=0 failures=1 reason=set_trap_table");
        return;
    }
    let layout = Layout::find(info);
    let on_xen = !crate::platform::hypervisor_extraversion().starts_with(b"-pvhv");
    model::set_on_xen(on_xen);
    let (major, minor) = crate::platform::hypervisor_version();
    let mut fuzzer = Fuzzer {
        rng: Rng::new(seed),
        layout,
        version: ((major << 16) | minor) as i64,
        memory_facts: model_memory::MemoryFacts::ask(),
        handled: [0; 32],
        handled_len: 0,
        made: [0; COUNTED],
        fuzzed: [(0, 0); COUNTED + 1],
        calls: 0,
        probes: 0,
        failures: 0,
        deviations: 0,
        deviation_kinds: [("", 0); 8],
        trace_from,
        architectural_iopl: false,
    };
    // On Xen, our own hypercall_count does not exist (and the counts are not checked),
    // and the PV MMU calls are left out: their hostile-only model is confirmed against
    // Xen only in part (Xen writes plain pages through mmu_update, answers -ESRCH for
    // itself as foreign domain, -EBUSY/-EINVAL as recorded in docs/xen-abi.md), and some
    // of its requests change Xen's page tables where ours refuse (the PV MMU issue
    // finishes that model).
    // event_channel_op too: a random send can make Xen deliver an upcall, which this
    // guest has no handler for yet (`evtchn-ops` checks event channels against Xen).
    // vcpu_op too: Xen offers commands ours does not (VCPUOP_down would stop dom0's
    // only vCPU).
    let xen_skips = [
        nr::hypercall_count,
        nr::mmu_update,
        nr::mmuext_op,
        nr::update_va_mapping,
        nr::update_descriptor,
        nr::set_gdt,
        nr::event_channel_op,
        nr::vcpu_op,
    ];
    for h in HYPERCALLS.iter().filter(|h| h.handled && h.number != nr::iret && !(on_xen && xen_skips.contains(&h.number))) {
        if fuzzer.handled_len < fuzzer.handled.len() {
            fuzzer.handled[fuzzer.handled_len] = h.number;
            fuzzer.handled_len += 1;
        }
    }
    println!(
        "fuzz: seed={seed} count={count} on_xen={on_xen} pt_base={:#x} nr_pt_frames={} v_end={:#x} scratch={:#x} hypercall_page={:#x}",
        layout.pt_base,
        layout.nr_pt_frames,
        layout.v_end,
        memory::scratch_address(0),
        layout.hypercall_page
    );
    memory::set_canaries();
    let before = Integrity::take(&layout);
    let counts_before = counts_now();

    let mut i = 0u64;
    while fuzzer.calls < count {
        if fuzzer.rng.percent(5) {
            fuzzer.one_probe(i);
        } else {
            let guarded = fuzzer.one_hypercall(i);
            if guarded || fuzzer.calls.is_multiple_of(INTEGRITY_EVERY) {
                if let Some(region) = Integrity::take(&layout).first_difference(&before) {
                    fuzzer.fail(i, format_args!("the hypervisor changed {region}"));
                    println!("RESULT test=fuzz status=fail seed={seed} calls={} failures={} reason=changed-{region}", fuzzer.calls, fuzzer.failures);
                    return;
                }
            }
            if fuzzer.calls.is_multiple_of(PROGRESS_EVERY) {
                println!("fuzz: progress calls={} probes={} failures={}", fuzzer.calls, fuzzer.probes, fuzzer.failures);
            }
        }
        i += 1;
    }

    // Put back what the run may have changed and is not repaired after each call.
    for assist in [0u64, 1, 2, 3, 4, 5, 32] {
        fuzzer.call(nr::vm_assist, [1, assist, 0, 0, 0, 0]);
    }
    let counts_after = counts_now();
    for n in 0..COUNTED {
        if on_xen || UNPREDICTABLE_COUNTS.contains(&(n as u64)) {
            continue;
        }
        let counted = counts_after[n].wrapping_sub(counts_before[n]);
        let made = fuzzer.made[n];
        let continued = CONTINUABLE.contains(&(n as u64)) && counted > made;
        if counted != made && !continued {
            fuzzer.fail(i, format_args!("hypercall_count({n}) grew by {counted}, we made {made} calls"));
        }
    }
    fuzzer.print_coverage();
    for (kind, n) in fuzzer.deviation_kinds.iter().filter(|(_, n)| *n > 0) {
        println!("fuzz: known deviation {kind} count={n}");
    }
    let status = if fuzzer.failures == 0 { "pass" } else { "fail" };
    println!(
        "RESULT test=fuzz status={status} seed={seed} calls={} failures={} probes={} known_deviations={}",
        fuzzer.calls, fuzzer.failures, fuzzer.probes, fuzzer.deviations
    );
}
