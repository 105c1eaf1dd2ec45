//! Kernel threads with sleeping, cooperative: each thread has its own stack and runs
//! until it sleeps, yields or returns. When no thread can run, the kernel arms the
//! single-shot timer (set_timer_op) for the earliest sleeper and blocks
//! (SCHEDOP_block); the VIRQ_TIMER upcall ends the block. The check for a runnable
//! thread and the block happen with events masked ([`EventsMasked`], the PV `cli`):
//! SCHEDOP_block unmasks them itself, so a timer that fires in between is not lost.
//!
//! The thread table is touched only from thread context (the timer's upcall handler
//! only counts), and one vCPU runs at a time: a switch saves the callee-saved registers
//! on the old stack and its stack pointer in [`SAVED_RSP`], then takes the new one's.

use crate::events::{self, now_ns, EventsMasked};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use hypercall_abi::shared_info::SharedInfo;

/// Threads at most, the boot thread (index 0) included.
pub const MAX_THREADS: usize = 16;
const STACK_WORDS: usize = 2048; // 16 KiB

/// Each thread's stack pointer while it is switched away from.
static SAVED_RSP: [AtomicU64; MAX_THREADS] = [const { AtomicU64::new(0) }; MAX_THREADS];
/// Timer upcalls taken (the handler bound to VIRQ_TIMER's port).
pub static TIMER_UPCALLS: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    // thread_switch(save: *mut u64 (rdi), next_rsp: u64 (rsi)): the System V
    // callee-saved registers go on the old stack, its rsp to *save; the new stack holds
    // the same six and a return address.
    ".globl thread_switch",
    "thread_switch:",
    "push rbp", "push rbx", "push r12", "push r13", "push r14", "push r15",
    "mov [rdi], rsp",
    "mov rsp, rsi",
    "pop r15", "pop r14", "pop r13", "pop r12", "pop rbx", "pop rbp",
    "ret",
    // A new thread's first return lands here with its index in r13.
    ".globl thread_trampoline",
    "thread_trampoline:",
    "mov rdi, r13",
    "call {entry}",
    "ud2",
    entry = sym thread_entry,
);

extern "C" {
    fn thread_switch(save: *mut u64, next_rsp: u64);
    fn thread_trampoline();
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Ready,
    Sleeping {
        until_ns: u64,
    },
    /// Waiting for every other thread to finish (`wait_all`).
    Joining,
    Done,
}

struct Thread {
    state: State,
    entry: fn(usize),
    arg: usize,
    _stack: Option<Box<[u64]>>,
}

struct Threads {
    list: Vec<Thread>,
    current: usize,
    shared: *const SharedInfo,
    timer_port: u32,
}

// SAFETY: one vCPU; the table is reached only from thread context (see the module doc).
unsafe impl Send for Threads {}

static THREADS: spin::Mutex<Option<Threads>> = spin::Mutex::new(None);

/// Makes the running code thread 0 and binds VIRQ_TIMER for sleeping. Needs the event
/// callback registered and shared_info mapped (`events`).
pub fn init(shared: *const SharedInfo) -> Result<(), i64> {
    use hypercall_abi::ops::event_channel::{EvtchnBindVirq, EVTCHNOP_BIND_VIRQ, VIRQ_TIMER};
    let mut virq = EvtchnBindVirq { virq: VIRQ_TIMER, vcpu: 0, port: 0 };
    // SAFETY: one EvtchnBindVirq, live for the call.
    let ret = unsafe { hypercall_abi::guest::calls::event_channel_op(EVTCHNOP_BIND_VIRQ, hypercall_abi::GuestHandle::from_mut(&mut virq)) };
    if ret != 0 {
        return Err(ret);
    }
    events::set_handler(virq.port, |_| {
        TIMER_UPCALLS.fetch_add(1, SeqCst);
    });
    let boot = Thread { state: State::Ready, entry: |_| {}, arg: 0, _stack: None };
    *THREADS.lock() = Some(Threads { list: alloc::vec![boot], current: 0, shared, timer_port: virq.port });
    Ok(())
}

/// Starts `entry(arg)` on a thread of its own; it first runs when the caller sleeps,
/// yields or waits. None if the table is full or threads are not initialised.
pub fn spawn(entry: fn(usize), arg: usize) -> Option<usize> {
    let mut guard = THREADS.lock();
    let threads = guard.as_mut()?;
    let index = threads.list.len();
    if index >= MAX_THREADS {
        return None;
    }
    let mut stack = alloc::vec![0u64; STACK_WORDS].into_boxed_slice();
    // The frame thread_switch pops: r15, r14, r13 (the index), r12, rbx, rbp, then the
    // return address. The top is 16-byte aligned, so the trampoline's call leaves the
    // entry function with the alignment the ABI expects.
    let top = STACK_WORDS & !1;
    let frame = [0, 0, index as u64, 0, 0, 0, thread_trampoline as *const () as u64];
    stack[top - frame.len()..top].copy_from_slice(&frame);
    let rsp = stack.as_ptr() as u64 + ((top - frame.len()) * 8) as u64;
    SAVED_RSP[index].store(rsp, SeqCst);
    threads.list.push(Thread { state: State::Ready, entry, arg, _stack: Some(stack) });
    Some(index)
}

/// Where a new thread starts: its function, then it is done for good.
extern "C" fn thread_entry(index: usize) -> ! {
    let (entry, arg) = {
        let guard = THREADS.lock();
        let thread = guard.as_ref().map(|t| (t.list[index].entry, t.list[index].arg));
        drop(guard);
        thread.unwrap_or((|_| {}, 0))
    };
    entry(arg);
    if let Some(threads) = THREADS.lock().as_mut() {
        threads.list[index].state = State::Done;
    }
    schedule();
    unreachable!("a finished thread was scheduled again");
}

/// Parks the calling thread for `ms` milliseconds of system time.
pub fn sleep_ms(ms: u64) {
    {
        let mut guard = THREADS.lock();
        let Some(threads) = guard.as_mut() else { return };
        let until_ns = now_ns(threads.shared) + ms * 1_000_000;
        let current = threads.current;
        threads.list[current].state = State::Sleeping { until_ns };
    }
    schedule();
}

/// Lets every other ready thread run before the caller goes on.
pub fn yield_now() {
    schedule();
}

/// Runs the other threads until every one has returned; the caller is not scheduled
/// meanwhile (with all the others asleep, the vCPU blocks).
pub fn wait_all() {
    {
        let mut guard = THREADS.lock();
        let Some(threads) = guard.as_mut() else { return };
        let current = threads.current;
        threads.list[current].state = State::Joining;
    }
    schedule();
}

/// Switches to the next thread that can run (round robin, sleepers whose time has come
/// made ready), blocking the vCPU while none can. Returns when the caller runs again.
fn schedule() {
    loop {
        let masked = EventsMasked::new();
        let (next, save, earliest, me) = {
            let mut guard = THREADS.lock();
            let Some(threads) = guard.as_mut() else { return };
            let now = now_ns(threads.shared);
            let others_done = threads.list.iter().filter(|t| !matches!(t.state, State::Done | State::Joining)).count() == 0;
            for thread in threads.list.iter_mut() {
                match thread.state {
                    State::Sleeping { until_ns } if until_ns <= now => thread.state = State::Ready,
                    State::Joining if others_done => thread.state = State::Ready,
                    _ => {}
                }
            }
            let n = threads.list.len();
            let me = threads.current;
            let next = (1..=n).map(|step| (me + step) % n).find(|&i| threads.list[i].state == State::Ready);
            let earliest = threads
                .list
                .iter()
                .filter_map(|t| match t.state {
                    State::Sleeping { until_ns } => Some(until_ns),
                    _ => None,
                })
                .min();
            if let Some(next) = next {
                threads.current = next;
            }
            (next, SAVED_RSP[me].as_ptr(), earliest, me)
        };
        match next {
            Some(next) if next == me => return,
            Some(next) => {
                drop(masked);
                // SAFETY: `next` holds a stack pointer thread_switch saved (or spawn
                // built), on a stack that lives as long as the table; `save` is ours.
                unsafe { thread_switch(save, SAVED_RSP[next].load(SeqCst)) };
                return;
            }
            None => {
                // Nobody can run: sleep until the earliest sleeper's time (blocking
                // unmasks events; the timer's upcall ends it).
                let Some(until) = earliest else { return };
                // SAFETY: set_timer_op and SCHEDOP_block take no pointer.
                unsafe {
                    hypercall_abi::guest::calls::set_timer_op(until);
                    hypercall_abi::guest::calls::sched_op(hypercall_abi::ops::sched_op::SCHEDOP_BLOCK, hypercall_abi::GuestHandle::NULL);
                }
                drop(masked);
            }
        }
    }
}

/// Unbinds the timer handler and forgets the threads (after `wait_all`).
pub fn finish() {
    if let Some(threads) = THREADS.lock().take() {
        events::clear_handler(threads.timer_port);
    }
}
