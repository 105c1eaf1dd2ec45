//! `nmi`: virtual NMIs (VCPUOP_send_nmi) and the NMI callback, which Xen keeps as
//! trap-table entry 2: registered through callback_op or nmi_op, replaced by a
//! set_trap_table entry for vector 2, cleared by unregistering. An NMI is delivered on
//! the way back from the hypercall that sent it, whatever the event mask, and a second
//! one waits for the handler's iret. One RESULT line per step, compared with Xen 4.17.

use super::evtchn_ops::{map_shared_info, Shared};
use super::Tally;
use crate::console::println;
use crate::traps::{TrapFrame, CALLBACK_NMI, NMI_STUB_VECTOR};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use hypercall_abi::guest::calls;
use hypercall_abi::ops::callback::{CallbackRegister, CallbackUnregister, CALLBACKOP_REGISTER, CALLBACKOP_UNREGISTER, CALLBACKTYPE_NMI};
use hypercall_abi::ops::nmi::{XennmiCallback, XENNMI_REGISTER_CALLBACK, XENNMI_UNREGISTER_CALLBACK};
use hypercall_abi::ops::traps::TrapInfo;
use hypercall_abi::ops::vcpu::VCPUOP_SEND_NMI;
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::GuestHandle;

/// Mapped nowhere in either hypervisor's dom0.
const UNMAPPED: u64 = 0x0000_7fff_dead_0000;

static TAKEN: AtomicU64 = AtomicU64::new(0);
/// What the handler saw last: pseudo-vector, saved rip and cs, saved rflags, the event
/// mask it ran with.
static SEEN: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
/// Set by a check: the next handler sends another NMI and notes the count then.
static SEND_FROM_HANDLER: AtomicBool = AtomicBool::new(false);
static TAKEN_INSIDE: AtomicU64 = AtomicU64::new(0);

/// The NMI handler (from the callback stub or the vector-2 trap stub).
pub fn nmi(frame: &mut TrapFrame) {
    TAKEN.fetch_add(1, SeqCst);
    let mask = crate::events::upcall_mask().map_or(u64::MAX, u64::from);
    for (slot, value) in SEEN.iter().zip([frame.vector, frame.rip, frame.cs, frame.rflags, mask]) {
        slot.store(value, SeqCst);
    }
    if SEND_FROM_HANDLER.swap(false, SeqCst) {
        send(0);
        TAKEN_INSIDE.store(TAKEN.load(SeqCst), SeqCst);
    }
}

fn send(vcpu: u32) -> i64 {
    // SAFETY: VCPUOP_send_nmi takes no argument.
    unsafe { calls::vcpu_op(VCPUOP_SEND_NMI, vcpu, GuestHandle::NULL) }
}

fn callback_op_nmi(address: Option<u64>) -> i64 {
    match address {
        Some(address) => {
            let request = CallbackRegister { callback_type: CALLBACKTYPE_NMI, flags: 0, _pad: 0, address };
            // SAFETY: a valid CallbackRegister for the hypervisor to read.
            unsafe { calls::callback_op(CALLBACKOP_REGISTER, GuestHandle::from_ref(&request)) }
        }
        None => {
            let request = CallbackUnregister { callback_type: CALLBACKTYPE_NMI, _pad: 0 };
            // SAFETY: as above.
            unsafe { calls::callback_op(CALLBACKOP_UNREGISTER, GuestHandle::from_ref(&request)) }
        }
    }
}

fn nmi_op_register(handler_address: u64, pad: u64) -> i64 {
    let request = XennmiCallback { handler_address, pad };
    // SAFETY: a valid xennmi_callback for the hypervisor to read.
    unsafe { calls::nmi_op(XENNMI_REGISTER_CALLBACK, GuestHandle::from_ref(&request)) }
}

extern "C" {
    static hypercall_page: u8;
}

/// Sends an NMI and reports what the handler saw: how many ran, through which entry,
/// the frame's saved rip (as an offset into the hypercall page, where the vcpu_op stub
/// was interrupted), cs RPL, saved event mask and IF, and the mask it ran with.
fn send_and_report(tally: &mut Tally, check: &str, expect_taken: u64, expect_vector: u64, expect_mask: (u64, u64)) {
    let before = TAKEN.load(SeqCst);
    let ret = send(0);
    let taken = TAKEN.load(SeqCst) - before;
    let s = |i: usize| SEEN[i].load(SeqCst);
    if taken == 0 {
        tally.line(check, expect_taken == 0 && ret == 0, format_args!("ret={ret} taken=0"));
        return;
    }
    let page = core::ptr::addr_of!(hypercall_page) as u64;
    let rip_offset = s(1).wrapping_sub(page);
    let in_page = rip_offset < 4096;
    let (vector, cs, rflags, mask) = (s(0), s(2), s(3), s(4));
    let (saved_mask, saved_if, rpl) = ((cs >> 32) & 0xff, (rflags >> 9) & 1, cs & 3);
    let pass = ret == 0 && taken == expect_taken && vector == expect_vector && in_page && rpl == 0 && (saved_mask, mask) == expect_mask;
    let entry = if vector == CALLBACK_NMI { "callback" } else { "trap2" };
    if in_page {
        tally.line(
            check,
            pass,
            format_args!("ret={ret} taken={taken} entry={entry} rip=hypercall_page+{rip_offset:#x} rpl={rpl} saved_mask={saved_mask} saved_if={saved_if} mask_at_entry={mask}"),
        );
    } else {
        tally.line(check, false, format_args!("ret={ret} taken={taken} entry={entry} rip=elsewhere rpl={rpl}"));
    }
}

pub fn run(info: &StartInfo) {
    let mut tally = Tally::new("nmi");
    tally.ret("set_trap_table", crate::traps::install(), 0);
    let Some(shared) = map_shared_info(info) else {
        println!("RESULT test=nmi status=fail reason=cannot-map-shared-info");
        return;
    };
    shared.clear_upcall();
    shared.set_upcall_mask(true);
    let callback = crate::traps::callback_entry(CALLBACKTYPE_NMI).unwrap_or(0);

    tally.ret("send_to_missing_vcpu", send(1), -2);
    let mut junk = 0u64;
    // SAFETY: a readable word; the command must refuse any argument.
    let ret = unsafe { calls::vcpu_op(VCPUOP_SEND_NMI, 0, GuestHandle::from_mut(&mut junk)) };
    tally.ret("send_with_argument", ret, -22);
    send_and_report(&mut tally, "send_without_handler", 0, 0, (0, 0));
    tally.ret("register_callback", callback_op_nmi(Some(callback)), 0);
    let (major, _) = crate::platform::hypervisor_version();
    let lost = TAKEN.load(SeqCst);
    tally.line("dropped_not_kept", lost == 0 && major == 4, format_args!("taken={lost}"));
    tally.ret("register_noncanonical", callback_op_nmi(Some(0x8000_0000_0000_0000)), -22);

    with_events(&shared, false, || send_and_report(&mut tally, "delivered_events_enabled", 1, CALLBACK_NMI, (0, 1)));
    let mask = shared.get().vcpu_info[0].evtchn_upcall_mask;
    tally.line("iret_restores_events", mask == 1, format_args!("mask={mask}"));
    with_events(&shared, true, || send_and_report(&mut tally, "delivered_events_masked", 1, CALLBACK_NMI, (1, 1)));

    // A second NMI sent from the handler waits for its iret, then runs.
    SEND_FROM_HANDLER.store(true, SeqCst);
    with_events(&shared, true, || send_and_report(&mut tally, "nested_after_iret", 2, CALLBACK_NMI, (1, 1)));
    let inside = TAKEN_INSIDE.load(SeqCst);
    let first = TAKEN.load(SeqCst) - 1;
    tally.line("nested_waits_for_iret", inside == first, format_args!("taken_inside={}", inside + 1 - first));

    // nmi_op: the same entry.
    tally.ret("nmi_op_unregister", unsafe_nmi_op_unregister(), 0);
    send_and_report(&mut tally, "send_after_nmi_op_unregister", 0, 0, (0, 0));
    tally.ret("nmi_op_register_nonzero_pad", nmi_op_register(callback, 1), 0);
    tally.ret("nmi_op_register_noncanonical", nmi_op_register(0x8000_0000_0000_0000, 0), -22);
    tally.ret("nmi_op_register", nmi_op_register(callback, 0), 0);
    send_and_report(&mut tally, "delivered_after_nmi_op", 1, CALLBACK_NMI, (1, 1));
    // SAFETY: an unmapped address; the hypervisor must refuse to read it.
    let ret = unsafe { calls::nmi_op(XENNMI_REGISTER_CALLBACK, GuestHandle::from_raw(UNMAPPED)) };
    tally.ret("nmi_op_register_unreadable", ret, -14);
    // SAFETY: an unknown command takes no argument.
    let ret = unsafe { calls::nmi_op(7, GuestHandle::NULL) };
    tally.ret("nmi_op_unknown", ret, -38);

    // A set_trap_table entry for vector 2 replaces the callback (its flags say whether
    // events are masked: 0, a trap gate, leaves them enabled).
    let stub = crate::traps::stub_address(NMI_STUB_VECTOR).unwrap_or(0);
    let table = [TrapInfo { vector: 2, flags: 0, cs: hypercall_abi::arch_x86_64::FLAT_KERNEL_CS64, _pad: 0, address: stub }, TrapInfo::default()];
    tally.ret("trap_table_entry_2", crate::platform::set_trap_table(&table), 0);
    with_events(&shared, false, || send_and_report(&mut tally, "delivered_through_trap_entry_2", 1, NMI_STUB_VECTOR, (0, 0)));
    tally.ret("unregister_callback", callback_op_nmi(None), 0);
    send_and_report(&mut tally, "unregister_clears_entry_2", 0, 0, (0, 0));
    shared.set_upcall_mask(true);
    tally.finish();
}

fn unsafe_nmi_op_unregister() -> i64 {
    // SAFETY: XENNMI_unregister_callback takes no argument.
    unsafe { calls::nmi_op(XENNMI_UNREGISTER_CALLBACK, GuestHandle::NULL) }
}

/// Runs `f` with events enabled or masked, then masks them again. Nothing is bound,
/// so no upcall can come while they are enabled.
fn with_events(shared: &Shared, masked: bool, f: impl FnOnce()) {
    shared.clear_upcall();
    shared.set_upcall_mask(masked);
    f();
    shared.set_upcall_mask(true);
}

/// `nmi-wait [MS]`: waits, blocked, up to MS milliseconds (default 20000) for an NMI
/// from the platform: QEMU's monitor command `nmi`, which the harness types once it sees
/// the `ready` line. Xen 4.17 (a release build, so `nmi=dom0`) passes it to dom0 as a
/// virtual NMI and wakes the blocked vCPU; so does pv-hypervisor. The timer is only the
/// give-up time.
pub fn wait_for_platform_nmi(info: &StartInfo, command: &str) {
    use super::evtchn_ops::op;
    use crate::events::now_ns;
    use hypercall_abi::ops::event_channel::{EvtchnBindVirq, EVTCHNOP_BIND_VIRQ, VIRQ_TIMER};
    use hypercall_abi::ops::sched_op::SCHEDOP_BLOCK;

    let mut tally = Tally::new("nmi-wait");
    let Some(ms) = super::numeric_argument("nmi-wait", command, 20_000, 1..=60_000) else { return };
    tally.ret("set_trap_table", crate::traps::install(), 0);
    let Some(shared) = map_shared_info(info) else {
        println!("RESULT test=nmi-wait status=fail reason=cannot-map-shared-info");
        return;
    };
    shared.clear_upcall();
    shared.set_upcall_mask(true);
    let callback = crate::traps::callback_entry(CALLBACKTYPE_NMI).unwrap_or(0);
    tally.ret("register_callback", callback_op_nmi(Some(callback)), 0);
    tally.ret("register_event_callback", crate::events::register_callback(), 0);
    let mut virq = EvtchnBindVirq { virq: VIRQ_TIMER, vcpu: 0, port: 0 };
    tally.ret("bind_virq_timer", op(EVTCHNOP_BIND_VIRQ, &mut virq), 0);

    let time = shared.0 as *const hypercall_abi::shared_info::SharedInfo;
    let before = TAKEN.load(SeqCst);
    let start = now_ns(time);
    let deadline = start + ms * 1_000_000;
    // SAFETY: set_timer_op takes no pointer.
    let timer = unsafe { calls::set_timer_op(deadline) };
    shared.set_upcall_mask(false);
    println!("RESULT test=nmi-wait event=ready");
    let mut blocks = 0u64;
    while TAKEN.load(SeqCst) == before && now_ns(time) < deadline {
        // SAFETY: block takes no argument.
        unsafe { calls::sched_op(SCHEDOP_BLOCK, GuestHandle::NULL) };
        blocks += 1;
    }
    let waited_ms = (now_ns(time) - start) / 1_000_000;
    shared.set_upcall_mask(true);
    // SAFETY: as above; 0 cancels the timer.
    unsafe { calls::set_timer_op(0) };
    let taken = TAKEN.load(SeqCst) - before;
    let vector = SEEN[0].load(SeqCst);
    let entry = if taken == 0 {
        "none"
    } else if vector == CALLBACK_NMI {
        "callback"
    } else {
        "trap2"
    };
    let rpl = SEEN[2].load(SeqCst) & 3;
    let woke_early = taken > 0 && waited_ms < ms;
    tally.line(
        "platform_nmi",
        timer == 0 && taken == 1 && entry == "callback" && rpl == 0 && woke_early,
        format_args!("taken={taken} entry={entry} rpl={rpl} woke_before_timer={}", u8::from(woke_early)),
    );
    println!("RESULT test=nmi-wait event=waited ms={waited_ms} blocks={blocks}");
    tally.finish();
}
