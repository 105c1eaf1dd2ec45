//! `threads [N]`: kernel threads that sleep (crate::threads) and the virtual interrupt
//! flag guard (events::EventsMasked). N threads (default 4) each sleep twice, the
//! k-th spawned for (N + 1 - k) * 10 ms each time; the boot thread waits for them all.
//! Checks: all finish, in the order of their deadlines (the last spawned first), no
//! sleep ends early, and together they take about the longest sleep, not the sum (they
//! slept at the same time, the vCPU blocked meanwhile). Then an event sent to ourselves
//! inside the guard: no upcall until the guard is dropped, then exactly one. The same
//! lines on both hypervisors (the conformance harness compares them).

use super::evtchn_ops::{map_shared_info, op};
use super::Tally;
use crate::console::println;
use crate::events::{now_ns, EventsMasked};
use crate::threads;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use hypercall_abi::ops::event_channel::*;
use hypercall_abi::shared_info::SharedInfo;
use hypercall_abi::start_info::StartInfo;

const SLEEP_STEP_MS: u64 = 10;
const DOMID_SELF: u16 = hypercall_abi::ops::mmu::DOMID_SELF;

static SHARED: AtomicU64 = AtomicU64::new(0);
static THREAD_COUNT: AtomicU64 = AtomicU64::new(0);
static FINISHED: [AtomicU64; threads::MAX_THREADS] = [const { AtomicU64::new(0) }; threads::MAX_THREADS];
static FINISHED_COUNT: AtomicUsize = AtomicUsize::new(0);
static WOKE_EARLY: AtomicBool = AtomicBool::new(false);
static GUARD_PORT_UPCALLS: AtomicU64 = AtomicU64::new(0);

/// Thread `k` (1-based spawn order): sleeps twice, notes when it is done.
fn worker(k: usize) {
    let shared = SHARED.load(SeqCst) as *const SharedInfo;
    let ms = (THREAD_COUNT.load(SeqCst) + 1 - k as u64) * SLEEP_STEP_MS;
    // Let the others start first: all sleeps then begin within a few microseconds.
    threads::yield_now();
    for _ in 0..2 {
        let start = now_ns(shared);
        threads::sleep_ms(ms);
        if now_ns(shared) - start < ms * 1_000_000 {
            WOKE_EARLY.store(true, SeqCst);
        }
    }
    let slot = FINISHED_COUNT.fetch_add(1, SeqCst);
    if let Some(entry) = FINISHED.get(slot) {
        entry.store(k as u64, SeqCst);
    }
}

pub fn run(info: &StartInfo, command: &str) {
    let mut tally = Tally::new("threads");
    let Some(n) = super::numeric_argument("threads", command, 4, 1..=(threads::MAX_THREADS as u64 - 1)) else { return };
    tally.ret("set_trap_table", crate::traps::install(), 0);
    let Some(shared) = map_shared_info(info) else {
        println!("RESULT test=threads status=fail reason=cannot-map-shared-info");
        return;
    };
    let Some(events_page) = crate::events::shared_info(info) else { return };
    shared.clear_upcall();
    shared.set_upcall_mask(true);
    tally.ret("register_event_callback", crate::events::register_callback(), 0);
    tally.ret("init", threads::init(events_page).err().unwrap_or(0), 0);
    SHARED.store(events_page as u64, SeqCst);
    THREAD_COUNT.store(n, SeqCst);
    shared.set_upcall_mask(false);

    let start = now_ns(events_page);
    let spawned = (1..=n as usize).filter(|&k| threads::spawn(worker, k).is_some()).count();
    tally.line("spawned", spawned == n as usize, format_args!("count={spawned}"));
    threads::wait_all();
    let elapsed_ms = (now_ns(events_page) - start) / 1_000_000;
    shared.set_upcall_mask(true);

    let finished = FINISHED_COUNT.load(SeqCst);
    tally.line("all_finished", finished == spawned, format_args!("finished={finished}"));
    let mut order = alloc::string::String::new();
    for (i, k) in FINISHED.iter().take(finished).enumerate() {
        let _ = write!(order, "{}{}", if i > 0 { "," } else { "" }, k.load(SeqCst));
    }
    let by_deadline = FINISHED.iter().take(finished).enumerate().all(|(i, k)| k.load(SeqCst) == n - i as u64);
    tally.line("finish_order_by_deadline", by_deadline, format_args!("order={}", order.as_str()));
    let early = WOKE_EARLY.load(SeqCst);
    tally.line("no_sleep_ends_early", !early, format_args!("early={}", u8::from(early)));
    let longest = 2 * n * SLEEP_STEP_MS;
    let sum: u64 = (1..=n).map(|k| 2 * k * SLEEP_STEP_MS).sum();
    let together = elapsed_ms >= longest && (n == 1 || elapsed_ms < sum);
    tally.line("slept_at_the_same_time", together, format_args!("ok={}", u8::from(together)));
    let timer_upcalls = threads::TIMER_UPCALLS.load(SeqCst) > 0;
    tally.line("woken_by_timer_upcalls", timer_upcalls, format_args!("ok={}", u8::from(timer_upcalls)));
    println!(
        "RESULT test=threads event=timing elapsed_ms={elapsed_ms} longest_ms={longest} sum_ms={sum} upcalls={}",
        crate::events::UPCALLS.load(SeqCst)
    );
    threads::finish();

    guard_defers_an_event(&mut tally, &shared);
    shared.set_upcall_mask(true);
    tally.finish();
}

/// A loopback channel (alloc_unbound for ourselves, bound by ourselves): a send inside
/// [`EventsMasked`] stays pending; dropping the guard takes the upcall at once.
fn guard_defers_an_event(tally: &mut Tally, shared: &super::evtchn_ops::Shared) {
    let mut offer = EvtchnAllocUnbound { dom: DOMID_SELF, remote_dom: DOMID_SELF, port: 0 };
    tally.ret("loopback_alloc_unbound", op(EVTCHNOP_ALLOC_UNBOUND, &mut offer), 0);
    let mut status = EvtchnStatus { dom: DOMID_SELF, port: offer.port, ..Default::default() };
    op(EVTCHNOP_STATUS, &mut status);
    let me = status.u[0] as u16;
    let mut bind = EvtchnBindInterdomain { remote_dom: me, remote_port: offer.port, local_port: 0, ..Default::default() };
    {
        let _masked = EventsMasked::new();
        tally.ret("loopback_bind", op(EVTCHNOP_BIND_INTERDOMAIN, &mut bind), 0);
        // A new binding starts pending (Xen's rule): not the event this check sends.
        shared.clear_pending(bind.local_port);
        shared.clear_upcall();
    }
    let counted = crate::events::set_handler(bind.local_port, |_| {
        GUARD_PORT_UPCALLS.fetch_add(1, SeqCst);
    });
    shared.set_upcall_mask(false);
    let (inside, after) = {
        let masked = EventsMasked::new();
        op(EVTCHNOP_SEND, &mut EvtchnPort { port: offer.port });
        let inside = GUARD_PORT_UPCALLS.load(SeqCst);
        drop(masked);
        (inside, GUARD_PORT_UPCALLS.load(SeqCst))
    };
    tally.line("guard_defers_the_upcall", counted && inside == 0, format_args!("upcalls_inside={inside}"));
    tally.line("guard_drop_delivers_it", after == 1, format_args!("upcalls_after={after}"));
    shared.set_upcall_mask(true);
    crate::events::clear_handler(bind.local_port);
    op(EVTCHNOP_CLOSE, &mut EvtchnPort { port: bind.local_port });
    op(EVTCHNOP_CLOSE, &mut EvtchnPort { port: offer.port });
}
