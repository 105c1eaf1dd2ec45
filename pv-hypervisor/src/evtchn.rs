//! Two-level event channels (event_channel.h; semantics of Xen's common/event_channel.c
//! and event_2l.c, in our own words). Each domain has up to 4096 ports; what a port is
//! bound to lives here, whether it is pending or masked lives in the domain's
//! shared_info page (the guest clears pending bits and owns the mask), reached through
//! [`EventBits`].
//!
//! Raising port p: set its pending bit; if it was clear and the port is not masked, set
//! bit p / 64 of the notified vCPU's `evtchn_pending_sel`, and if that was clear, set
//! its `evtchn_upcall_pending`. Unmasking a pending port does the same second half.
//! Delivery of the upcall (the event callback) is the exit path's business.
//!
//! An interdomain channel joins ports of two domains. This type holds one domain's
//! ports; the operations that reach the other end (`hypercall::event_channel`, domain
//! teardown) use [`EventChannels::waits_for`], [`EventChannels::connect`],
//! [`EventChannels::disconnect`] and [`EventChannels::raise`] on the peer's ports, and
//! `send`/`close` say which peer port they concern.

use crate::domain::DomainId;
use crate::mm::guest_walk::MachineMemory;
use alloc::vec::Vec;
use hypercall_abi::ops::event_channel::*;
use hypercall_abi::Errno;

/// 2-level event channels: 64 words of 64 bits (xen.h, shared_info).
pub const NR_PORTS: u32 = 4096;
/// Ports become valid in buckets of this many, as they are first needed (Xen grows its
/// port array the same way; a port beyond the last bucket is -EINVAL, not "closed").
pub const PORTS_PER_BUCKET: u32 = 64;
/// vCPUs per domain, so far.
pub const VCPUS: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Free,
    /// Port 0: never handed out.
    Reserved,
    /// Waiting for `remote` to bind to it.
    Unbound {
        remote: DomainId,
    },
    Interdomain {
        remote: DomainId,
        remote_port: u32,
    },
    Virq(u32),
    Ipi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Port {
    binding: Binding,
    /// The vCPU it notifies.
    vcpu: u32,
}

const FREE: Port = Port { binding: Binding::Free, vcpu: 0 };

/// The pending and mask bitmaps and the per-vCPU selector and flag (shared_info).
pub trait EventBits {
    /// Sets `port`'s pending bit; whether it was set already.
    fn test_and_set_pending(&mut self, port: u32) -> bool;
    fn clear_pending(&mut self, port: u32);
    fn is_pending(&self, port: u32) -> bool;
    fn is_masked(&self, port: u32) -> bool;
    /// Clears `port`'s mask bit; whether it was set.
    fn test_and_clear_mask(&mut self, port: u32) -> bool;
    /// Sets bit `word` of `vcpu`'s evtchn_pending_sel; whether it was set already.
    fn test_and_set_selector(&mut self, vcpu: u32, word: u32) -> bool;
    /// Sets `vcpu`'s evtchn_upcall_pending.
    fn mark_upcall_pending(&mut self, vcpu: u32);
}

pub struct EventChannels {
    /// The domain these ports belong to.
    domain: DomainId,
    ports: Vec<Port>,
    /// The port each virtual IRQ is bound to (0: none).
    virqs: [u32; NR_VIRQS as usize],
}

impl EventChannels {
    pub fn new(domain: DomainId) -> EventChannels {
        let mut channels = EventChannels { domain, ports: Vec::new(), virqs: [0; NR_VIRQS as usize] };
        channels.reset();
        channels
    }

    /// Every port closed, the first bucket valid, port 0 reserved.
    fn reset(&mut self) {
        self.ports = alloc::vec![FREE; PORTS_PER_BUCKET as usize];
        self.ports[0].binding = Binding::Reserved;
        self.virqs = [0; NR_VIRQS as usize];
    }

    fn port(&self, port: u32) -> Result<&Port, Errno> {
        self.ports.get(port as usize).ok_or(Errno::EINVAL)
    }

    pub fn binding(&self, port: u32) -> Option<Binding> {
        self.ports.get(port as usize).map(|p| p.binding)
    }

    /// The lowest free port, growing by a bucket when all valid ones are taken.
    fn allocate(&mut self, binding: Binding, vcpu: u32) -> Result<u32, Errno> {
        let port = match self.ports.iter().position(|p| p.binding == Binding::Free) {
            Some(port) => port,
            None => {
                let port = self.ports.len();
                if port as u32 >= NR_PORTS {
                    return Err(Errno::ENOSPC);
                }
                self.ports.try_reserve(PORTS_PER_BUCKET as usize).map_err(|_| Errno::ENOMEM)?;
                self.ports.resize(port + PORTS_PER_BUCKET as usize, FREE);
                port
            }
        };
        self.ports[port] = Port { binding, vcpu };
        Ok(port as u32)
    }

    /// `dom` as the caller named it: itself (DOMID_SELF or its own id), or a domain
    /// that does not exist.
    fn own(&self, dom: u16) -> Result<(), Errno> {
        if dom == DOMID_SELF || dom == self.domain {
            Ok(())
        } else {
            Err(Errno::ESRCH)
        }
    }

    pub fn alloc_unbound(&mut self, dom: u16, remote_dom: u16) -> Result<u32, Errno> {
        self.own(dom)?;
        let remote = if remote_dom == DOMID_SELF { self.domain } else { remote_dom };
        self.allocate(Binding::Unbound { remote }, 0)
    }

    /// Connects a new port to our own `remote_port` (a loopback), which must be unbound
    /// and waiting for us. The new port starts pending, as on Xen: the other end may
    /// have signalled before the connection existed. Another domain's port goes through
    /// [`EventChannels::bind_to`].
    pub fn bind_interdomain(&mut self, bits: &mut dyn EventBits, remote_dom: u16, remote_port: u32) -> Result<u32, Errno> {
        self.own(remote_dom)?;
        if !self.waits_for(remote_port, self.domain)? {
            return Err(Errno::EINVAL);
        }
        let local = self.bind_to(bits, self.domain, remote_port)?;
        self.connect(remote_port, self.domain, local);
        Ok(local)
    }

    /// Whether `port` is unbound and waiting for domain `from` (-EINVAL: no such port).
    pub fn waits_for(&self, port: u32, from: DomainId) -> Result<bool, Errno> {
        Ok(self.port(port)?.binding == Binding::Unbound { remote: from })
    }

    /// A new port joined to `remote`'s `remote_port` (which the caller checked with
    /// `waits_for` and then `connect`s), raised at once as on Xen.
    pub fn bind_to(&mut self, bits: &mut dyn EventBits, remote: DomainId, remote_port: u32) -> Result<u32, Errno> {
        let local = self.allocate(Binding::Interdomain { remote, remote_port }, 0)?;
        self.raise(bits, local);
        Ok(local)
    }

    /// Our waiting `port` is now joined to `remote`'s `remote_port`.
    pub fn connect(&mut self, port: u32, remote: DomainId, remote_port: u32) {
        if let Some(p) = self.ports.get_mut(port as usize) {
            p.binding = Binding::Interdomain { remote, remote_port };
        }
    }

    /// The other end of our interdomain `port` went away (closed, or its domain died):
    /// the port waits for `remote` again, as Xen leaves it.
    pub fn disconnect(&mut self, port: u32, remote: DomainId) {
        if let Some(p) = self.ports.get_mut(port as usize) {
            if matches!(p.binding, Binding::Interdomain { .. }) {
                p.binding = Binding::Unbound { remote };
            }
        }
    }

    /// The far ends of our interdomain ports in other domains (for our teardown).
    pub fn interdomain_peers(&self) -> impl Iterator<Item = (DomainId, u32)> + '_ {
        self.ports.iter().filter_map(move |p| match p.binding {
            Binding::Interdomain { remote, remote_port } if remote != self.domain => Some((remote, remote_port)),
            _ => None,
        })
    }

    pub fn bind_virq(&mut self, virq: u32, vcpu: u32) -> Result<u32, Errno> {
        if virq >= NR_VIRQS {
            return Err(Errno::EINVAL);
        }
        if !per_vcpu_virq(virq) && vcpu != 0 {
            return Err(Errno::EINVAL);
        }
        if vcpu >= VCPUS {
            return Err(Errno::ENOENT);
        }
        if self.virqs[virq as usize] != 0 {
            return Err(Errno::EEXIST);
        }
        let port = self.allocate(Binding::Virq(virq), vcpu)?;
        self.virqs[virq as usize] = port;
        Ok(port)
    }

    pub fn bind_ipi(&mut self, vcpu: u32) -> Result<u32, Errno> {
        if vcpu >= VCPUS {
            return Err(Errno::ENOENT);
        }
        self.allocate(Binding::Ipi, vcpu)
    }

    /// Closes `port`; an interdomain peer goes back to waiting for us (done here for a
    /// loopback; for another domain's port, returned for the caller to `disconnect`).
    /// The port's pending bit is cleared so that a later binding starts clean.
    pub fn close(&mut self, bits: &mut dyn EventBits, port: u32) -> Result<Option<(DomainId, u32)>, Errno> {
        let mut far_end = None;
        match self.port(port)?.binding {
            Binding::Free | Binding::Reserved => return Err(Errno::EINVAL),
            Binding::Interdomain { remote, remote_port } if remote == self.domain && remote_port != port => {
                self.ports[remote_port as usize].binding = Binding::Unbound { remote: self.domain };
            }
            Binding::Interdomain { remote, .. } if remote == self.domain => {}
            Binding::Interdomain { remote, remote_port } => far_end = Some((remote, remote_port)),
            Binding::Virq(virq) => self.virqs[virq as usize] = 0,
            _ => {}
        }
        self.ports[port as usize] = FREE;
        bits.clear_pending(port);
        Ok(far_end)
    }

    /// Sends on `port`. A loopback or IPI is raised here; for a port joined to another
    /// domain, the far end (domain, port) is returned for the caller to raise there.
    pub fn send(&mut self, bits: &mut dyn EventBits, port: u32) -> Result<Option<(DomainId, u32)>, Errno> {
        match self.port(port)?.binding {
            Binding::Interdomain { remote, remote_port } if remote == self.domain => self.raise(bits, remote_port),
            Binding::Interdomain { remote, remote_port } => return Ok(Some((remote, remote_port))),
            Binding::Ipi => self.raise(bits, port),
            // Nobody is listening yet: the event is dropped, without an error.
            Binding::Unbound { .. } => {}
            _ => return Err(Errno::EINVAL),
        }
        Ok(None)
    }

    /// Raises a virtual IRQ if the domain bound it; whether it did.
    pub fn raise_virq(&mut self, bits: &mut dyn EventBits, virq: u32) -> bool {
        match self.virqs.get(virq as usize) {
            Some(&port) if port != 0 => {
                self.raise(bits, port);
                true
            }
            _ => false,
        }
    }

    /// Marks `port` pending and, if that is news and it is not masked, notifies its
    /// vCPU (selector bit, then evtchn_upcall_pending).
    pub fn raise(&self, bits: &mut dyn EventBits, port: u32) {
        if bits.test_and_set_pending(port) || bits.is_masked(port) {
            return;
        }
        let vcpu = self.ports[port as usize].vcpu;
        if !bits.test_and_set_selector(vcpu, port / 64) {
            bits.mark_upcall_pending(vcpu);
        }
    }

    pub fn unmask(&mut self, bits: &mut dyn EventBits, port: u32) -> Result<(), Errno> {
        let vcpu = self.port(port)?.vcpu;
        if bits.test_and_clear_mask(port) && bits.is_pending(port) && !bits.test_and_set_selector(vcpu, port / 64) {
            bits.mark_upcall_pending(vcpu);
        }
        Ok(())
    }

    pub fn status(&self, dom: u16, port: u32) -> Result<EvtchnStatus, Errno> {
        self.own(dom)?;
        let p = self.port(port)?;
        let mut answer = EvtchnStatus { dom, port, vcpu: p.vcpu, ..Default::default() };
        match p.binding {
            Binding::Free | Binding::Reserved => answer.status = EVTCHNSTAT_CLOSED,
            Binding::Unbound { remote } => {
                answer.status = EVTCHNSTAT_UNBOUND;
                answer.u[0] = u32::from(remote);
            }
            Binding::Interdomain { remote, remote_port } => {
                answer.status = EVTCHNSTAT_INTERDOMAIN;
                answer.u = [u32::from(remote), remote_port];
            }
            Binding::Virq(virq) => {
                answer.status = EVTCHNSTAT_VIRQ;
                answer.u[0] = virq;
            }
            Binding::Ipi => answer.status = EVTCHNSTAT_IPI,
        }
        Ok(answer)
    }

    /// Which vCPU `port` notifies: changeable for unbound and interdomain ports and
    /// global virtual IRQs; fixed for IPIs and per-vCPU virtual IRQs.
    pub fn bind_vcpu(&mut self, port: u32, vcpu: u32) -> Result<(), Errno> {
        if vcpu >= VCPUS {
            return Err(Errno::ENOENT);
        }
        match self.port(port)?.binding {
            Binding::Unbound { .. } | Binding::Interdomain { .. } => {}
            Binding::Virq(virq) if !per_vcpu_virq(virq) => {}
            _ => return Err(Errno::EINVAL),
        }
        self.ports[port as usize].vcpu = vcpu;
        Ok(())
    }

    /// EVTCHNOP_reset: every port of the domain closed. Returns the far ends in other
    /// domains, for the caller to `disconnect`.
    pub fn reset_all(&mut self, bits: &mut dyn EventBits, dom: u16) -> Result<Vec<(DomainId, u32)>, Errno> {
        self.own(dom)?;
        let mut far_ends = Vec::new();
        for port in 1..self.ports.len() as u32 {
            if !matches!(self.ports[port as usize].binding, Binding::Free) {
                if let Ok(Some(far)) = self.close(bits, port) {
                    far_ends.push(far);
                }
            }
        }
        self.reset();
        Ok(far_ends)
    }
}

/// The bits in a domain's shared_info page (xen.h offsets: vcpu_info[v] at v * 64 with
/// evtchn_upcall_pending at +0 and evtchn_pending_sel at +8; evtchn_pending at 2048,
/// evtchn_mask at 2560), by machine address. The page is the domain's, typed writable
/// for good; a word that cannot be reached reads as zero and is not written.
pub struct SharedInfoBits<'a, M: MachineMemory> {
    pub memory: &'a mut M,
    pub shared_info_mfn: u64,
}

const PENDING: u64 = 2048;
const MASK: u64 = 2560;

impl<M: MachineMemory> SharedInfoBits<'_, M> {
    fn base(&self) -> u64 {
        self.shared_info_mfn * 4096
    }

    fn word(&self, offset: u64) -> u64 {
        self.memory.read_u64(self.base() + offset).unwrap_or(0)
    }

    fn set_word(&mut self, offset: u64, value: u64) {
        let at = self.base() + offset;
        let _ = self.memory.write_bytes(at, &value.to_le_bytes());
    }

    fn bit(&self, table: u64, port: u32) -> bool {
        self.word(table + u64::from(port / 64) * 8) & (1 << (port % 64)) != 0
    }

    /// Sets (or clears) a bit; whether it was set before.
    fn change_bit(&mut self, offset: u64, bit: u32, set: bool) -> bool {
        let word = self.word(offset);
        let was = word & (1 << bit) != 0;
        self.set_word(offset, if set { word | (1 << bit) } else { word & !(1 << bit) });
        was
    }
}

impl<M: MachineMemory> EventBits for SharedInfoBits<'_, M> {
    fn test_and_set_pending(&mut self, port: u32) -> bool {
        self.change_bit(PENDING + u64::from(port / 64) * 8, port % 64, true)
    }
    fn clear_pending(&mut self, port: u32) {
        self.change_bit(PENDING + u64::from(port / 64) * 8, port % 64, false);
    }
    fn is_pending(&self, port: u32) -> bool {
        self.bit(PENDING, port)
    }
    fn is_masked(&self, port: u32) -> bool {
        self.bit(MASK, port)
    }
    fn test_and_clear_mask(&mut self, port: u32) -> bool {
        self.change_bit(MASK + u64::from(port / 64) * 8, port % 64, false)
    }
    fn test_and_set_selector(&mut self, vcpu: u32, word: u32) -> bool {
        self.change_bit(u64::from(vcpu) * 64 + 8, word, true)
    }
    fn mark_upcall_pending(&mut self, vcpu: u32) {
        let at = self.base() + u64::from(vcpu) * 64;
        let _ = self.memory.write_bytes(at, &[1]);
    }
}

/// The domain id DOMID_SELF (xen.h).
const DOMID_SELF: u16 = hypercall_abi::ops::mmu::DOMID_SELF;

/// Virtual IRQs each vCPU has its own of (xen.h: TIMER, DEBUG, XENOPROF, XENPMU); the
/// others are global, bound on vCPU 0.
fn per_vcpu_virq(virq: u32) -> bool {
    matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}

#[cfg(test)]
mod tests;
