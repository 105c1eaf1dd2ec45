//! `evtchn-ops`: every event-channel operation on the domain itself, with every error
//! case we know of, one RESULT line each; the conformance harness compares them with
//! Xen 4.17's. Port numbers are compared too (both hand out the lowest free port), and
//! the pending, mask, selector and upcall bits the operations leave in shared_info.
//! Events stay masked (evtchn_upcall_mask set) throughout: no upcall is delivered.

use super::Tally;
use crate::console::println;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::event_channel::*;
use hypercall_abi::ops::mmu::DOMID_SELF;
use hypercall_abi::shared_info::SharedInfo;
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::GuestHandle;

/// A domain that does not exist on either hypervisor.
const NO_SUCH_DOMAIN: u16 = 77;

pub(super) fn op<T>(cmd: u32, arg: &mut T) -> i64 {
    // SAFETY: `arg` is the command's structure, live and writable for the call.
    unsafe { calls::event_channel_op(cmd, GuestHandle::from_mut(arg)) }
}

/// The shared_info page, as the guest sees it (mapped by `crate::events`).
pub(super) struct Shared(pub(super) *mut SharedInfo);

impl Shared {
    pub(super) fn get(&self) -> &SharedInfo {
        // SAFETY: mapped below for the command's life; the hypervisor writes it only
        // during our hypercalls (one vCPU).
        unsafe { &*self.0 }
    }
    pub(super) fn set_upcall_mask(&self, masked: bool) {
        // SAFETY: as in `get`; the mask byte is ours to write.
        unsafe { core::ptr::addr_of_mut!((*self.0).vcpu_info[0].evtchn_upcall_mask).write_volatile(u8::from(masked)) };
    }
    pub(super) fn clear_upcall(&self) {
        // SAFETY: as in `get`; the guest clears the flag and the selector.
        unsafe {
            core::ptr::addr_of_mut!((*self.0).vcpu_info[0].evtchn_upcall_pending).write_volatile(0);
            core::ptr::addr_of_mut!((*self.0).vcpu_info[0].evtchn_pending_sel).write_volatile(0);
        }
    }
    pub(super) fn set_mask(&self, port: u32, masked: bool) {
        // SAFETY: as in `get`; the mask bitmap is the guest's.
        unsafe {
            let word = core::ptr::addr_of_mut!((*self.0).evtchn_mask[port as usize / 64]);
            let bit = 1u64 << (port % 64);
            word.write_volatile(if masked { word.read_volatile() | bit } else { word.read_volatile() & !bit });
        }
    }
    pub(super) fn clear_pending(&self, port: u32) {
        // SAFETY: as in `get`; the guest clears pending bits.
        unsafe {
            let word = core::ptr::addr_of_mut!((*self.0).evtchn_pending[port as usize / 64]);
            word.write_volatile(word.read_volatile() & !(1u64 << (port % 64)));
        }
    }
    pub(super) fn pending(&self, port: u32) -> u8 {
        u8::from(self.get().evtchn_pending[port as usize / 64] & (1 << (port % 64)) != 0)
    }
    pub(super) fn upcall(&self) -> (u8, u64) {
        let v = &self.get().vcpu_info[0];
        (v.evtchn_upcall_pending, v.evtchn_pending_sel)
    }
}

fn bits(tally: &mut Tally, shared: &Shared, check: &str, port: u32, expected: (u8, u8)) {
    let (upcall, selector) = shared.upcall();
    let got = (shared.pending(port), upcall);
    let pass = got == expected && (upcall == 0 || selector & (1 << (port / 64)) != 0);
    println!("RESULT test=evtchn-ops check={check} pending={} upcall={} status={}", got.0, got.1, if pass { "pass" } else { "fail" });
    tally.add(pass);
    shared.clear_upcall();
}

fn status(dom: u16, port: u32) -> (i64, EvtchnStatus) {
    let mut s = EvtchnStatus { dom, port, ..Default::default() };
    (op(EVTCHNOP_STATUS, &mut s), s)
}

fn status_line(tally: &mut Tally, check: &str, port: u32, expected_status: u32, expected_u: [u32; 2]) {
    let (ret, s) = status(DOMID_SELF, port);
    let pass = ret == 0 && s.status == expected_status && s.u == expected_u && s.vcpu == 0;
    println!(
        "RESULT test=evtchn-ops check={check} ret={ret} status_code={} vcpu={} u0={:#x} u1={} status={}",
        s.status,
        s.vcpu,
        s.u[0] & 0xffff,
        s.u[1],
        if pass { "pass" } else { "fail" }
    );
    tally.add(pass);
}

pub fn run(info: &StartInfo) {
    let mut tally = Tally::new("evtchn-ops");
    let Some(shared) = map_shared_info(info) else {
        println!("RESULT test=evtchn-ops status=fail reason=cannot-map-shared-info");
        return;
    };
    shared.set_upcall_mask(true);
    shared.clear_upcall();

    // alloc_unbound and bind_interdomain: a loopback pair.
    let mut unbound = EvtchnAllocUnbound { dom: DOMID_SELF, remote_dom: DOMID_SELF, port: 0 };
    tally.ret("alloc_unbound", op(EVTCHNOP_ALLOC_UNBOUND, &mut unbound), 0);
    let listener = unbound.port;
    println!("RESULT test=evtchn-ops check=first_port port={listener}");
    status_line(&mut tally, "status_unbound", listener, EVTCHNSTAT_UNBOUND, [0, 0]);
    tally.ret(
        "alloc_unbound_other_dom",
        op(EVTCHNOP_ALLOC_UNBOUND, &mut EvtchnAllocUnbound { dom: NO_SUCH_DOMAIN, remote_dom: DOMID_SELF, port: 0 }),
        -3,
    );
    tally.ret("send_unbound", op(EVTCHNOP_SEND, &mut EvtchnPort { port: listener }), 0);
    bits(&mut tally, &shared, "send_unbound_bits", listener, (0, 0));
    let mut bind = EvtchnBindInterdomain { remote_dom: DOMID_SELF, _pad: 0, remote_port: listener, local_port: 0 };
    tally.ret("bind_interdomain", op(EVTCHNOP_BIND_INTERDOMAIN, &mut bind), 0);
    let local = bind.local_port;
    println!("RESULT test=evtchn-ops check=interdomain_port port={local}");
    bits(&mut tally, &shared, "bind_interdomain_bits", local, (1, 1));
    shared.clear_pending(local);
    status_line(&mut tally, "status_interdomain", listener, EVTCHNSTAT_INTERDOMAIN, [0, local]);
    let again = &mut EvtchnBindInterdomain { remote_dom: DOMID_SELF, _pad: 0, remote_port: listener, local_port: 0 };
    tally.ret("bind_interdomain_bound", op(EVTCHNOP_BIND_INTERDOMAIN, again), -22);
    let far = &mut EvtchnBindInterdomain { remote_dom: NO_SUCH_DOMAIN, _pad: 0, remote_port: 1, local_port: 0 };
    tally.ret("bind_interdomain_no_domain", op(EVTCHNOP_BIND_INTERDOMAIN, far), -3);
    let bad = &mut EvtchnBindInterdomain { remote_dom: DOMID_SELF, _pad: 0, remote_port: 4095, local_port: 0 };
    tally.ret("bind_interdomain_bad_port", op(EVTCHNOP_BIND_INTERDOMAIN, bad), -22);

    // send: the other end becomes pending; masked, no upcall until unmasked.
    tally.ret("send", op(EVTCHNOP_SEND, &mut EvtchnPort { port: local }), 0);
    bits(&mut tally, &shared, "send_raises_peer", listener, (1, 1));
    shared.clear_pending(listener);
    shared.set_mask(listener, true);
    tally.ret("send_masked", op(EVTCHNOP_SEND, &mut EvtchnPort { port: local }), 0);
    bits(&mut tally, &shared, "send_masked_bits", listener, (1, 0));
    tally.ret("unmask", op(EVTCHNOP_UNMASK, &mut EvtchnPort { port: listener }), 0);
    bits(&mut tally, &shared, "unmask_delivers", listener, (1, 1));
    shared.clear_pending(listener);
    tally.ret("unmask_bad_port", op(EVTCHNOP_UNMASK, &mut EvtchnPort { port: 4096 }), -22);
    tally.ret("send_bad_port", op(EVTCHNOP_SEND, &mut EvtchnPort { port: 4000 }), -22);

    // Virtual IRQs and IPIs.
    let mut virq = EvtchnBindVirq { virq: VIRQ_DEBUG, vcpu: 0, port: 0 };
    tally.ret("bind_virq", op(EVTCHNOP_BIND_VIRQ, &mut virq), 0);
    status_line(&mut tally, "status_virq", virq.port, EVTCHNSTAT_VIRQ, [VIRQ_DEBUG, 0]);
    tally.ret("bind_virq_twice", op(EVTCHNOP_BIND_VIRQ, &mut EvtchnBindVirq { virq: VIRQ_DEBUG, vcpu: 0, port: 0 }), -17);
    tally.ret("bind_virq_out_of_range", op(EVTCHNOP_BIND_VIRQ, &mut EvtchnBindVirq { virq: NR_VIRQS, vcpu: 0, port: 0 }), -22);
    tally.ret("bind_virq_no_vcpu", op(EVTCHNOP_BIND_VIRQ, &mut EvtchnBindVirq { virq: VIRQ_TIMER, vcpu: 5, port: 0 }), -2);
    tally.ret("bind_virq_global_on_vcpu_1", op(EVTCHNOP_BIND_VIRQ, &mut EvtchnBindVirq { virq: VIRQ_CONSOLE, vcpu: 1, port: 0 }), -22);
    tally.ret("send_virq", op(EVTCHNOP_SEND, &mut EvtchnPort { port: virq.port }), -22);
    tally.ret("bind_vcpu_per_vcpu_virq", op(EVTCHNOP_BIND_VCPU, &mut EvtchnBindVcpu { port: virq.port, vcpu: 0 }), -22);
    let mut ipi = EvtchnBindIpi { vcpu: 0, port: 0 };
    tally.ret("bind_ipi", op(EVTCHNOP_BIND_IPI, &mut ipi), 0);
    status_line(&mut tally, "status_ipi", ipi.port, EVTCHNSTAT_IPI, [0, 0]);
    tally.ret("bind_ipi_no_vcpu", op(EVTCHNOP_BIND_IPI, &mut EvtchnBindIpi { vcpu: 9, port: 0 }), -2);
    tally.ret("send_ipi", op(EVTCHNOP_SEND, &mut EvtchnPort { port: ipi.port }), 0);
    bits(&mut tally, &shared, "send_ipi_bits", ipi.port, (1, 1));
    shared.clear_pending(ipi.port);
    tally.ret("bind_vcpu_ipi", op(EVTCHNOP_BIND_VCPU, &mut EvtchnBindVcpu { port: ipi.port, vcpu: 0 }), -22);
    tally.ret("bind_vcpu_interdomain", op(EVTCHNOP_BIND_VCPU, &mut EvtchnBindVcpu { port: local, vcpu: 0 }), 0);
    tally.ret("bind_vcpu_no_vcpu", op(EVTCHNOP_BIND_VCPU, &mut EvtchnBindVcpu { port: local, vcpu: 7 }), -2);
    tally.ret("bind_pirq", op(EVTCHNOP_BIND_PIRQ, &mut EvtchnBindPirq { pirq: 5000, flags: 0, port: 0 }), -22);

    // status errors, close, reset.
    let (ret, _) = status(NO_SUCH_DOMAIN, 1);
    tally.ret("status_no_domain", ret, -3);
    let (ret, _) = status(DOMID_SELF, 4095);
    tally.ret("status_bad_port", ret, -22);
    status_line(&mut tally, "status_port_0", 0, EVTCHNSTAT_CLOSED, [0, 0]);
    tally.ret("close_port_0", op(EVTCHNOP_CLOSE, &mut EvtchnPort { port: 0 }), -22);
    tally.ret("close", op(EVTCHNOP_CLOSE, &mut EvtchnPort { port: local }), 0);
    status_line(&mut tally, "status_after_peer_closed", listener, EVTCHNSTAT_UNBOUND, [0, 0]);
    tally.ret("close_twice", op(EVTCHNOP_CLOSE, &mut EvtchnPort { port: local }), -22);
    tally.ret("close_virq", op(EVTCHNOP_CLOSE, &mut EvtchnPort { port: virq.port }), 0);
    let mut again = EvtchnBindVirq { virq: VIRQ_DEBUG, vcpu: 0, port: 0 };
    tally.ret("bind_virq_after_close", op(EVTCHNOP_BIND_VIRQ, &mut again), 0);
    println!("RESULT test=evtchn-ops check=reused_port port={}", again.port);
    tally.ret("reset_other_domain", op(EVTCHNOP_RESET, &mut EvtchnReset { dom: NO_SUCH_DOMAIN }), -3);
    tally.ret("reset", op(EVTCHNOP_RESET, &mut EvtchnReset { dom: DOMID_SELF }), 0);
    status_line(&mut tally, "status_after_reset", listener, EVTCHNSTAT_CLOSED, [0, 0]);

    // The FIFO ABI, never switched to: malformed requests and the other commands.
    let mut control = EvtchnInitControl { control_gfn: 0, offset: 4, vcpu: 0, ..Default::default() };
    tally.ret("init_control_misaligned", op(EVTCHNOP_INIT_CONTROL, &mut control), -22);
    let mut control = EvtchnInitControl { control_gfn: 0, offset: 0, vcpu: 3, ..Default::default() };
    tally.ret("init_control_no_vcpu", op(EVTCHNOP_INIT_CONTROL, &mut control), -2);
    tally.ret("expand_array", op(EVTCHNOP_EXPAND_ARRAY, &mut 0u64), -95);
    tally.ret("set_priority", op(EVTCHNOP_SET_PRIORITY, &mut EvtchnSetPriority { port: 1, priority: 1 }), -38);
    tally.ret("unknown_command", op(99, &mut 0u64), -38);
    // SAFETY: an address nothing maps: the hypervisor must refuse it.
    let ret = unsafe { calls::event_channel_op(EVTCHNOP_SEND, GuestHandle::from_raw(0x7fff_dead_0000)) };
    tally.ret("unreadable_argument", ret, -14);
    tally.finish();
}

pub(super) fn map_shared_info(info: &StartInfo) -> Option<Shared> {
    crate::events::shared_info(info).map(Shared)
}
