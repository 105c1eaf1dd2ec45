//! `fuzz SEED COUNT`: a hostile guest kernel. It makes COUNT hypercalls (mostly the
//! implemented ones, plus unimplemented and out-of-range numbers) with arguments drawn
//! from interesting sets, mixed with random privileged instructions, and checks that
//! every answer is one the ABI allows, that the hypervisor never touched memory it must
//! not (read-only page tables, the hypercall page, start_info, canaries around the
//! scratch buffer) and never clobbered a register the calling convention preserves, and
//! that its per-number hypercall counts agree with ours. It never makes a call whose
//! legitimate effect would end the run (block, a valid shutdown, iret) and repairs what
//! its calls legitimately change (trap table, CR0.TS, kernel stack, callbacks).

mod calls;
mod memory;
mod privops;

use crate::console::println;
use calls::{Call, Restore, Rng, Verdict};
use hypercall_abi::arch_x86_64::FLAT_KERNEL_SS64;
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::ops::vm_assist::{VMASST_CMD_ENABLE, VMASST_TYPE_ARCHITECTURAL_IOPL};
use hypercall_abi::{nr, HYPERCALLS};
use memory::{Integrity, Layout};

/// How many failures are printed in full (all are counted).
const MAX_REPORTED: u64 = 20;
const PROGRESS_EVERY: u64 = 10_000;
/// Full integrity checks between the progress lines.
const INTEGRITY_EVERY: u64 = 1_000;
/// Numbers whose per-domain count the run cannot predict: console_io (our own
/// printing), iret (the trap handler's returns) and hypercall_count (asking counts).
const UNPREDICTABLE_COUNTS: [u64; 3] = [nr::console_io, nr::iret, nr::hypercall_count];
const COUNTED: usize = 64;

/// The values the six callee-saved registers hold across every fuzzed call.
const PRESERVED: [u64; 6] = [
    0x1111_2222_3333_4444,
    0x5555_6666_7777_8888,
    0x9999_aaaa_bbbb_cccc,
    0xdddd_eeee_ffff_0001,
    0x0123_4567_89ab_cdef,
    0xfedc_ba98_7654_3210,
];

/// A kernel stack for stack_switch to point back at after a fuzzed one (never used:
/// the kernel never runs user mode).
#[repr(C, align(16))]
struct KernelStack([u8; 4096]);
static KERNEL_STACK: KernelStack = KernelStack([0; 4096]);

/// Makes hypercall `number` with `syscall`, either through the hypercall page or
/// directly (needed past its 128 stubs, and a guest may do it anyway). Returns RAX and
/// whether rbx, rbp and r12-r15 survived.
fn raw_hypercall(number: u64, args: [u64; 6], via_page: bool) -> (i64, bool) {
    let ret: i64;
    let (rbx, rbp): (u64, u64);
    let (r12, r13, r14, r15): (u64, u64, u64, u64);
    let entry = hypercall_abi::guest::hypercall_page_address() + (number & 127) * hypercall_abi::guest::STUB_SIZE;
    // The stub's address is in rcx, which `syscall` clobbers anyway: a generic register
    // operand could be given rbx or rbp, which the block loads with its own values.
    // SAFETY: the call targets the hypercall page's stub for `number` (< 128) or is a
    // `syscall` with RAX = number, the 64-bit PV hypercall instruction; every argument
    // register, rcx and r11 are declared clobbered, rbx and rbp are saved on the stack
    // around it, and the fuzzer only passes arguments whose effect it can repair.
    unsafe {
        if via_page {
            core::arch::asm!(
                "push rbx", "push rbp",
                "mov rbx, {b}", "mov rbp, {p}",
                "call rcx",
                "mov rdi, rbx", "mov rsi, rbp",
                "pop rbp", "pop rbx",
                b = const PRESERVED[0], p = const PRESERVED[1],
                inlateout("rax") number as i64 => ret,
                inlateout("rdi") args[0] => rbx,
                inlateout("rsi") args[1] => rbp,
                inlateout("rdx") args[2] => _,
                inlateout("r10") args[3] => _,
                inlateout("r8") args[4] => _,
                inlateout("r9") args[5] => _,
                inout("r12") PRESERVED[2] => r12,
                inout("r13") PRESERVED[3] => r13,
                inout("r14") PRESERVED[4] => r14,
                inout("r15") PRESERVED[5] => r15,
                inlateout("rcx") entry => _,
                lateout("r11") _,
            );
        } else {
            core::arch::asm!(
                "push rbx", "push rbp",
                "mov rbx, {b}", "mov rbp, {p}",
                "syscall",
                "mov rdi, rbx", "mov rsi, rbp",
                "pop rbp", "pop rbx",
                b = const PRESERVED[0], p = const PRESERVED[1],
                inlateout("rax") number as i64 => ret,
                inlateout("rdi") args[0] => rbx,
                inlateout("rsi") args[1] => rbp,
                inlateout("rdx") args[2] => _,
                inlateout("r10") args[3] => _,
                inlateout("r8") args[4] => _,
                inlateout("r9") args[5] => _,
                inout("r12") PRESERVED[2] => r12,
                inout("r13") PRESERVED[3] => r13,
                inout("r14") PRESERVED[4] => r14,
                inout("r15") PRESERVED[5] => r15,
                lateout("rcx") _,
                lateout("r11") _,
            );
        }
    }
    (ret, [rbx, rbp, r12, r13, r14, r15] == PRESERVED)
}

struct Fuzzer {
    rng: Rng,
    layout: Layout,
    version: i64,
    handled: [u64; 16],
    handled_len: usize,
    /// Hypercalls we made per number (those below 64), for the count cross-check.
    made: [u64; COUNTED],
    calls: u64,
    probes: u64,
    failures: u64,
    deviations: u64,
    /// Print every iteration from this one on (the optional third argument).
    trace_from: u64,
    /// Whether vm_assist architectural_iopl is on: then the kernel counts as ring 0 and
    /// cli, sti, in and out are allowed (and do nothing).
    architectural_iopl: bool,
}

impl Fuzzer {
    /// A call we make ourselves (repairs, setup): counted like the fuzzed ones.
    fn call(&mut self, number: u64, args: [u64; 6]) -> i64 {
        self.count(number);
        raw_hypercall(number, args, true).0
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
    fn next_call(&mut self) -> (Call, bool) {
        let rng = &mut self.rng;
        let roll = rng.below(100);
        let number = if roll < 80 {
            self.handled[rng.below(self.handled_len as u64) as usize]
        } else if roll < 92 {
            let n = rng.below(128);
            if HYPERCALLS.iter().any(|h| h.handled && h.number == n) {
                nr::mmu_update
            } else {
                n
            }
        } else {
            let low = self.handled[rng.below(self.handled_len as u64) as usize];
            rng.pick(&[128, 129, 255, 256, 1000, 0xffff_ffff, (1 << 32) | low, u64::MAX, i32::MIN as u64, 0x8000_0000_0000_0000 | low])
        };
        let via_page = number < 128 && rng.percent(70);
        if rng.percent(90) {
            // Random bytes where the structures are read from.
            memory::fill_scratch(|| rng.next());
        }
        let call = if HYPERCALLS.iter().any(|h| h.handled && h.number == number) {
            calls::implemented(rng, &self.layout, number, self.version)
        } else {
            let args = core::array::from_fn(|_| calls::any_arg(rng, &self.layout));
            Call { nr: number, args, expect: calls::Expect::Exact(calls::ENOSYS), restore: Restore::Nothing, guarded: false }
        };
        (call, via_page)
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
            Restore::NmiCallback => {
                // An NMI delivered to a garbage callback would crash us; the other
                // callbacks cannot be taken back, and nothing here raises them.
                self.call(nr::callback_op, [1, &NMI_UNREGISTER as *const _ as u64, 0, 0, 0, 0]);
            }
        }
    }

    /// One fuzzed hypercall; says whether it aimed at a checksummed region.
    fn one_hypercall(&mut self, i: u64) -> bool {
        let (call, via_page) = self.next_call();
        let (ret, preserved) = raw_hypercall(call.nr, call.args, via_page);
        self.count(call.nr);
        self.calls += 1;
        self.restore(call.restore);
        if call.nr == nr::console_io && call.args[0] as u32 == 0 && call.args[1] as u32 != 0 {
            // End whatever line the fuzzed bytes started, so our own lines stay whole.
            let _ = crate::platform::console_write(b"\n");
        }
        let name = HYPERCALLS.iter().find(|h| h.number == call.nr).map_or("out-of-range", |h| h.name);
        let args = call.args;
        if i >= self.trace_from {
            println!("fuzz: trace iteration={i} call={name}({}) via_page={via_page} args={} ret={ret}", call.nr, Args(args));
        }
        if call.nr == nr::vm_assist && ret == 0 && args[1] as u32 == VMASST_TYPE_ARCHITECTURAL_IOPL {
            self.architectural_iopl = args[0] as u32 == VMASST_CMD_ENABLE;
        }
        match call.expect.judge(ret) {
            Verdict::Pass => {}
            Verdict::KnownDeviation => {
                self.deviations += 1;
                if self.deviations == 1 {
                    println!("fuzz: known deviation from Xen (first of its kind): {name}({}) args={} ret={ret} expected={:?}", call.nr, Args(args), call.expect);
                }
            }
            Verdict::Fail => self.fail(i, format_args!("call={name}({}) via_page={via_page} args={} ret={ret} expected={:?}", call.nr, Args(args), call.expect)),
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

    fn one_probe(&mut self, i: u64) {
        self.probes += 1;
        if i >= self.trace_from {
            println!("fuzz: trace iteration={i} privileged instruction");
        }
        if let Err(f) = privops::run_one(&mut self.rng, self.architectural_iopl) {
            self.fail(
                i,
                format_args!("instruction={} operand={:#x} vector={:?} error_code={:#x}", f.name, f.operand, f.vector, f.error_code),
            );
        }
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

fn parse(args: &str) -> Option<(u64, u64, u64)> {
    let mut words = args.split_ascii_whitespace().skip(1);
    let seed = words.next().map_or(Some(1), |w| w.parse().ok())?;
    let count = words.next().map_or(Some(10_000), |w| w.parse().ok())?;
    let trace_from = words.next().map_or(Some(u64::MAX), |w| w.parse().ok())?;
    Some((seed, count, trace_from))
}

fn counts_now() -> [u64; COUNTED] {
    // SAFETY: hypercall_count takes no pointer.
    core::array::from_fn(|n| unsafe { hypercall_abi::guest::calls::hypercall_count(n as u32) }.max(0) as u64)
}

pub fn run(info: &StartInfo, command: &str) {
    let Some((seed, count, trace_from)) = parse(command) else {
        println!("usage: fuzz SEED COUNT [TRACE_FROM_ITERATION]");
        println!("RESULT test=fuzz status=fail reason=usage");
        return;
    };
    if crate::traps::install() != 0 {
        println!("RESULT test=fuzz status=fail seed={seed} calls=0 failures=1 reason=set_trap_table");
        return;
    }
    let layout = Layout::find(info);
    let mut fuzzer = Fuzzer {
        rng: Rng::new(seed),
        layout,
        version: crate::platform::hypervisor_version().0 as i64,
        handled: [0; 16],
        handled_len: 0,
        made: [0; COUNTED],
        calls: 0,
        probes: 0,
        failures: 0,
        deviations: 0,
        trace_from,
        architectural_iopl: false,
    };
    let (major, minor) = crate::platform::hypervisor_version();
    fuzzer.version = ((major << 16) | minor) as i64;
    for h in HYPERCALLS.iter().filter(|h| h.handled && h.number != nr::iret) {
        if fuzzer.handled_len < fuzzer.handled.len() {
            fuzzer.handled[fuzzer.handled_len] = h.number;
            fuzzer.handled_len += 1;
        }
    }
    println!(
        "fuzz: seed={seed} count={count} pt_base={:#x} nr_pt_frames={} v_end={:#x} scratch={:#x} hypercall_page={:#x}",
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
            if guarded || fuzzer.calls % INTEGRITY_EVERY == 0 {
                if let Some(region) = Integrity::take(&layout).first_difference(&before) {
                    fuzzer.fail(i, format_args!("the hypervisor changed {region}"));
                    println!("RESULT test=fuzz status=fail seed={seed} calls={} failures={} reason=changed-{region}", fuzzer.calls, fuzzer.failures);
                    return;
                }
            }
            if fuzzer.calls % PROGRESS_EVERY == 0 {
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
        if UNPREDICTABLE_COUNTS.contains(&(n as u64)) {
            continue;
        }
        let counted = counts_after[n] - counts_before[n];
        let made = fuzzer.made[n];
        if counted != made {
            fuzzer.fail(i, format_args!("hypercall_count({n}) grew by {counted}, we made {made} calls"));
        }
    }
    let status = if fuzzer.failures == 0 { "pass" } else { "fail" };
    println!(
        "RESULT test=fuzz status={status} seed={seed} calls={} failures={} probes={} known_deviations={}",
        fuzzer.calls, fuzzer.failures, fuzzer.probes, fuzzer.deviations
    );
}
