//! NMIs from the platform (a front-panel button, a hardware watchdog, QEMU's monitor
//! command `nmi`). A release build of Xen passes each to dom0 (its `nmi=dom0` default;
//! xen/arch/x86/traps.c): a virtual NMI for dom0's vCPU 0, which also ends a block or
//! poll it is in (Xen kicks the vCPU). We do the same; without a running dom0 the NMI is
//! dropped. The NMI handler itself only leaves a flag (it may have interrupted the
//! hypervisor); this runs later, on the ordinary exit path.

use super::Domain;

#[derive(Debug, PartialEq, Eq)]
pub enum Passed {
    /// dom0 is the running domain: the exit path delivers it now.
    ToCurrent,
    /// dom0 waits (or is blocked): the running domain's exit goes through the scheduler,
    /// which wakes dom0 if it was blocked.
    ToOther,
    /// No running dom0.
    Dropped,
}

pub fn pass_to_dom0(domains: &mut [Domain], current: usize) -> Passed {
    let Some(dom0) = domains.iter().position(|d| d.id == 0 && d.state.is_running()) else { return Passed::Dropped };
    domains[dom0].traps.exit.nmi_pending = true;
    if dom0 == current {
        return Passed::ToCurrent;
    }
    if let Some(running) = domains.get_mut(current) {
        running.traps.exit.reschedule = true;
    }
    Passed::ToOther
}

/// Whether a blocked (or polling) domain wakes: an NMI it can take now does, as in Xen,
/// whether or not its handler is registered (the NMI is dropped at delivery then). One
/// held for the iret of the handler it blocked in does not (it would wake it forever).
pub fn wakes(domain: &Domain) -> bool {
    domain.traps.nmi_deliverable()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DomainState;
    use crate::hypercall::test_support::TestGuest;

    fn domain(id: u16) -> Domain {
        let mut d = TestGuest::new().domain;
        d.id = id;
        d
    }

    #[test]
    fn dom0_gets_it_when_running() {
        let mut domains = [domain(0), domain(1)];
        assert_eq!(pass_to_dom0(&mut domains, 0), Passed::ToCurrent);
        assert!(domains[0].traps.exit.nmi_pending && !domains[1].traps.exit.nmi_pending);
        assert!(!domains[0].traps.exit.reschedule);
    }

    #[test]
    fn another_running_domain_is_rescheduled_and_dom0_woken() {
        let mut domains = [domain(0), domain(1)];
        domains[0].traps.exit.blocked = true;
        assert_eq!(pass_to_dom0(&mut domains, 1), Passed::ToOther);
        assert!(domains[0].traps.exit.nmi_pending && wakes(&domains[0]));
        assert!(domains[1].traps.exit.reschedule && !domains[1].traps.exit.nmi_pending);
    }

    #[test]
    fn an_nmi_held_for_the_handlers_iret_wakes_nobody() {
        let mut d = domain(0);
        d.traps.exit.nmi_pending = true;
        d.traps.nmi_masked = true;
        assert!(!wakes(&d));
        d.traps.nmi_masked = false;
        assert!(wakes(&d));
    }

    #[test]
    fn dropped_without_a_running_dom0() {
        let mut domains = [domain(1), domain(0)];
        domains[1].state = DomainState::Crashed;
        assert_eq!(pass_to_dom0(&mut domains, 0), Passed::Dropped);
        assert!(domains.iter().all(|d| !d.traps.exit.nmi_pending && !d.traps.exit.reschedule));
        // A current index past the list (its domain retired) is no reason to fail.
        let mut domains = [domain(0)];
        domains[0].traps.exit.blocked = true;
        assert_eq!(pass_to_dom0(&mut domains, 3), Passed::ToOther);
    }
}
