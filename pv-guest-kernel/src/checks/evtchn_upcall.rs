//! `evtchn-upcall`: events reach the guest through its event callback, on the way out
//! of the hypercall that made them deliverable, and only then: one RESULT line per
//! step, compared with Xen 4.17 by the conformance harness. An IPI port is sent to
//! with events masked (no upcall), then events are unmasked and any hypercall delivers
//! it (what Linux's xen_force_evtchn_callback relies on); a send with events enabled
//! is delivered on its own return; a port masked in evtchn_mask pends quietly until
//! EVTCHNOP_unmask delivers it. The callback always runs with events masked, and its
//! iret restores them.

use super::evtchn_ops::{map_shared_info, op};
use super::Tally;
use crate::console::println;
use crate::events::{LAST_PORT, MASKED_IN_EVERY_UPCALL, PORTS_SEEN, UPCALLS};
use core::sync::atomic::Ordering::SeqCst;
use hypercall_abi::ops::event_channel::*;
use hypercall_abi::start_info::StartInfo;

/// Upcalls and ports seen so far, and the last port, against what is expected.
fn seen(tally: &mut Tally, check: &str, upcalls: u64, port: u32) {
    let (u, p, last) = (UPCALLS.load(SeqCst), PORTS_SEEN.load(SeqCst), LAST_PORT.load(SeqCst));
    let pass = u == upcalls && p == upcalls && (upcalls == 0 || last == u64::from(port));
    println!("RESULT test=evtchn-upcall check={check} upcalls={u} ports={p} status={}", if pass { "pass" } else { "fail" });
    tally.add(pass);
}

pub fn run(info: &StartInfo) {
    let mut tally = Tally::new("evtchn-upcall");
    if crate::traps::install() != 0 {
        println!("RESULT test=evtchn-upcall status=fail reason=trap-table");
        return;
    }
    let Some(shared) = map_shared_info(info) else {
        println!("RESULT test=evtchn-upcall status=fail reason=cannot-map-shared-info");
        return;
    };
    shared.set_upcall_mask(true);
    shared.clear_upcall();
    tally.ret("register_event_callback", crate::events::register_callback(), 0);
    let mut ipi = EvtchnBindIpi { vcpu: 0, port: 0 };
    tally.ret("bind_ipi", op(EVTCHNOP_BIND_IPI, &mut ipi), 0);
    let port = ipi.port;

    tally.ret("send_masked", op(EVTCHNOP_SEND, &mut EvtchnPort { port }), 0);
    seen(&mut tally, "no_upcall_while_masked", 0, port);
    let (pending, _) = shared.upcall();
    println!("RESULT test=evtchn-upcall check=upcall_pending_flag value={pending}");
    // Unmask events, then any hypercall's return delivers what is pending.
    shared.set_upcall_mask(false);
    let (major, _) = crate::platform::hypervisor_version();
    tally.ret("hypercall_after_unmask", i64::from(major), 4);
    seen(&mut tally, "delivered_on_the_way_out", 1, port);
    let masked_after = shared.get().vcpu_info[0].evtchn_upcall_mask;
    println!(
        "RESULT test=evtchn-upcall check=events_enabled_after_iret mask={masked_after} status={}",
        if masked_after == 0 { "pass" } else { "fail" }
    );
    tally.add(masked_after == 0);

    tally.ret("send_unmasked", op(EVTCHNOP_SEND, &mut EvtchnPort { port }), 0);
    seen(&mut tally, "delivered_on_its_own_return", 2, port);

    shared.set_mask(port, true);
    tally.ret("send_port_masked", op(EVTCHNOP_SEND, &mut EvtchnPort { port }), 0);
    seen(&mut tally, "port_mask_holds_it", 2, port);
    println!("RESULT test=evtchn-upcall check=port_pending value={}", shared.pending(port));
    tally.ret("unmask", op(EVTCHNOP_UNMASK, &mut EvtchnPort { port }), 0);
    seen(&mut tally, "unmask_delivers", 3, port);

    let masked = MASKED_IN_EVERY_UPCALL.load(SeqCst);
    println!("RESULT test=evtchn-upcall check=callback_runs_masked value={} status={}", u8::from(masked), if masked { "pass" } else { "fail" });
    tally.add(masked);
    shared.set_upcall_mask(true);
    tally.ret("close", op(EVTCHNOP_CLOSE, &mut EvtchnPort { port }), 0);
    tally.finish();
}
