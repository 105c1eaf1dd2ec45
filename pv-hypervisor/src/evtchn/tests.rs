use super::*;

/// shared_info's bits in plain arrays.
struct Bits {
    pending: [u64; 64],
    mask: [u64; 64],
    selector: u64,
    upcall: bool,
}

impl Default for Bits {
    fn default() -> Self {
        Bits { pending: [0; 64], mask: [0; 64], selector: 0, upcall: false }
    }
}

impl EventBits for Bits {
    fn test_and_set_pending(&mut self, port: u32) -> bool {
        let was = self.is_pending(port);
        self.pending[port as usize / 64] |= 1 << (port % 64);
        was
    }
    fn clear_pending(&mut self, port: u32) {
        self.pending[port as usize / 64] &= !(1 << (port % 64));
    }
    fn is_pending(&self, port: u32) -> bool {
        self.pending[port as usize / 64] & (1 << (port % 64)) != 0
    }
    fn is_masked(&self, port: u32) -> bool {
        self.mask[port as usize / 64] & (1 << (port % 64)) != 0
    }
    fn test_and_clear_mask(&mut self, port: u32) -> bool {
        let was = self.is_masked(port);
        self.mask[port as usize / 64] &= !(1 << (port % 64));
        was
    }
    fn test_and_set_selector(&mut self, vcpu: u32, word: u32) -> bool {
        assert_eq!(vcpu, 0);
        let was = self.selector & (1 << word) != 0;
        self.selector |= 1 << word;
        was
    }
    fn mark_upcall_pending(&mut self, vcpu: u32) {
        assert_eq!(vcpu, 0);
        self.upcall = true;
    }
}

const ME: DomainId = 0;

#[test]
fn ports_come_lowest_first_from_one_and_buckets_grow() {
    let mut ev = EventChannels::new(ME);
    assert_eq!(ev.alloc_unbound(DOMID_SELF, DOMID_SELF), Ok(1));
    assert_eq!(ev.bind_ipi(0), Ok(2));
    assert_eq!(ev.status(DOMID_SELF, 63).map(|s| s.status), Ok(EVTCHNSTAT_CLOSED));
    assert_eq!(ev.status(DOMID_SELF, 64), Err(Errno::EINVAL), "beyond the first bucket");
    for expected in 3..=64 {
        assert_eq!(ev.bind_ipi(0), Ok(expected));
    }
    assert_eq!(ev.status(DOMID_SELF, 64).map(|s| s.status), Ok(EVTCHNSTAT_IPI));
    let mut bits = Bits::default();
    ev.close(&mut bits, 2).unwrap();
    assert_eq!(ev.bind_ipi(0), Ok(2), "a closed port is reused first");
}

#[test]
fn a_loopback_channel_connects_signals_and_unbinds_on_close() {
    let mut ev = EventChannels::new(ME);
    let mut bits = Bits::default();
    let listener = ev.alloc_unbound(DOMID_SELF, DOMID_SELF).unwrap();
    assert_eq!(ev.send(&mut bits, listener), Ok(None), "unbound: dropped silently");
    assert!(!bits.is_pending(listener));
    let local = ev.bind_interdomain(&mut bits, DOMID_SELF, listener).unwrap();
    assert!(bits.is_pending(local), "a new interdomain port starts pending");
    assert!(bits.upcall && bits.selector == 1);
    let status = ev.status(DOMID_SELF, listener).unwrap();
    assert_eq!((status.status, status.u), (EVTCHNSTAT_INTERDOMAIN, [0, local]));
    bits = Bits::default();
    ev.send(&mut bits, local).unwrap();
    assert!(bits.is_pending(listener) && !bits.is_pending(local), "send raises the other end");
    assert_eq!(ev.bind_interdomain(&mut bits, DOMID_SELF, listener), Err(Errno::EINVAL), "no longer unbound");
    ev.close(&mut bits, local).unwrap();
    assert_eq!(ev.status(DOMID_SELF, listener).map(|s| (s.status, s.u[0])), Ok((EVTCHNSTAT_UNBOUND, 0)));
    assert_eq!(ev.close(&mut bits, local), Err(Errno::EINVAL), "closed twice");
}

#[test]
fn masked_ports_stay_quiet_until_unmasked() {
    let mut ev = EventChannels::new(ME);
    let mut bits = Bits::default();
    let ipi = ev.bind_ipi(0).unwrap();
    bits.mask[0] |= 1 << ipi;
    ev.send(&mut bits, ipi).unwrap();
    assert!(bits.is_pending(ipi));
    assert!(!bits.upcall && bits.selector == 0);
    ev.unmask(&mut bits, ipi).unwrap();
    assert!(bits.upcall && bits.selector == 1 && !bits.is_masked(ipi));
    // A second raise of a pending port changes nothing.
    bits.upcall = false;
    ev.send(&mut bits, ipi).unwrap();
    assert!(!bits.upcall);
}

#[test]
fn virqs_bind_once_per_vcpu_rules() {
    let mut ev = EventChannels::new(ME);
    let mut bits = Bits::default();
    assert_eq!(ev.bind_virq(NR_VIRQS, 0), Err(Errno::EINVAL));
    assert_eq!(ev.bind_virq(VIRQ_DOM_EXC, 1), Err(Errno::EINVAL), "global: vCPU 0 only");
    assert_eq!(ev.bind_virq(VIRQ_TIMER, 1), Err(Errno::ENOENT), "no such vCPU");
    let timer = ev.bind_virq(VIRQ_TIMER, 0).unwrap();
    assert_eq!(ev.bind_virq(VIRQ_TIMER, 0), Err(Errno::EEXIST));
    assert_eq!(ev.send(&mut bits, timer), Err(Errno::EINVAL), "a virq cannot be sent to");
    assert!(ev.raise_virq(&mut bits, VIRQ_TIMER));
    assert!(bits.is_pending(timer));
    assert!(!ev.raise_virq(&mut bits, VIRQ_CONSOLE), "not bound");
    assert_eq!(ev.bind_vcpu(timer, 0), Err(Errno::EINVAL), "per-vCPU virqs stay where they are");
    let console = ev.bind_virq(VIRQ_CONSOLE, 0).unwrap();
    assert_eq!(ev.bind_vcpu(console, 0), Ok(()));
    ev.close(&mut bits, timer).unwrap();
    assert!(!bits.is_pending(timer), "closing clears the pending bit");
    assert_eq!(ev.bind_virq(VIRQ_TIMER, 0), Ok(timer), "bindable again");
}

#[test]
fn other_domains_do_not_exist_yet_and_reset_closes_everything() {
    let mut ev = EventChannels::new(ME);
    let mut bits = Bits::default();
    assert_eq!(ev.alloc_unbound(5, DOMID_SELF), Err(Errno::ESRCH));
    assert_eq!(ev.alloc_unbound(DOMID_SELF, 5), Ok(1), "a remote domain is only recorded");
    assert_eq!(ev.bind_interdomain(&mut bits, 5, 1), Err(Errno::ESRCH));
    assert_eq!(ev.bind_interdomain(&mut bits, DOMID_SELF, 1), Err(Errno::EINVAL), "waiting for domain 5, not us");
    assert_eq!(ev.status(5, 1), Err(Errno::ESRCH));
    assert_eq!(ev.close(&mut bits, 0), Err(Errno::EINVAL), "port 0 is reserved");
    ev.bind_virq(VIRQ_DEBUG, 0).unwrap();
    assert_eq!(ev.reset_all(&mut bits, DOMID_SELF), Ok(vec![]));
    assert_eq!(ev.status(DOMID_SELF, 1).map(|s| s.status), Ok(EVTCHNSTAT_CLOSED));
    assert_eq!(ev.bind_virq(VIRQ_DEBUG, 0), Ok(1));
}

#[test]
fn two_domains_connect_send_close_and_outlive_each_other() {
    let (mut a, mut b) = (EventChannels::new(1), EventChannels::new(2));
    let (mut a_bits, mut b_bits) = (Bits::default(), Bits::default());
    // a offers a port to b; b binds to it (the caller checks, binds, connects).
    let offered = a.alloc_unbound(DOMID_SELF, 2).unwrap();
    assert_eq!(a.waits_for(offered, 3), Ok(false), "only the named domain may bind");
    assert_eq!(a.waits_for(99, 2), Err(Errno::EINVAL));
    assert_eq!(a.waits_for(offered, 2), Ok(true));
    let local = b.bind_to(&mut b_bits, 1, offered).unwrap();
    a.connect(offered, 2, local);
    assert!(b_bits.is_pending(local), "a new binding starts pending, as on Xen");
    assert_eq!(b.status(DOMID_SELF, local).unwrap().u, [1, offered]);
    // Sends name the far end; the caller raises it there.
    assert_eq!(b.send(&mut b_bits, local), Ok(Some((1, offered))));
    assert_eq!(a.send(&mut a_bits, offered), Ok(Some((2, local))));
    b.raise(&mut b_bits, local);
    // b closes: a's port waits for b again; a send from a is dropped.
    assert_eq!(b.close(&mut b_bits, local), Ok(Some((1, offered))));
    a.disconnect(offered, 2);
    assert_eq!(a.binding(offered), Some(Binding::Unbound { remote: 2 }));
    assert_eq!(a.send(&mut a_bits, offered), Ok(None));
    // b binds again, then a dies: b learns the far ends to disconnect from a's list.
    let again = b.bind_to(&mut b_bits, 1, offered).unwrap();
    a.connect(offered, 2, again);
    assert_eq!(a.interdomain_peers().collect::<std::vec::Vec<_>>(), [(2, again)]);
    b.disconnect(again, 1);
    assert_eq!(b.binding(again), Some(Binding::Unbound { remote: 1 }));
    // A reset reports far ends in other domains.
    let third = b.bind_to(&mut b_bits, 1, a.alloc_unbound(DOMID_SELF, 2).unwrap()).unwrap();
    b.connect(again, 1, 5);
    assert_eq!(b.reset_all(&mut b_bits, DOMID_SELF).unwrap().len(), 2);
    let _ = third;
}
