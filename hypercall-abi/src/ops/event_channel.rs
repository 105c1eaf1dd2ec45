//! event_channel_op commands and argument structures (event_channel.h), and the
//! virtual IRQ numbers (xen.h VIRQ_*). A port is a `u32` (evtchn_port_t); a domain
//! id a `u16` (domid_t).

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
pub const EVTCHNOP_CLOSE: u32 = 3;
pub const EVTCHNOP_SEND: u32 = 4;
pub const EVTCHNOP_STATUS: u32 = 5;
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
pub const EVTCHNOP_BIND_IPI: u32 = 7;
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
pub const EVTCHNOP_UNMASK: u32 = 9;
pub const EVTCHNOP_RESET: u32 = 10;
/// The FIFO ABI's operations (a domain that never calls init_control stays 2-level).
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;

/// EVTCHNOP_status answers.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
pub const EVTCHNSTAT_PIRQ: u32 = 3;
pub const EVTCHNSTAT_VIRQ: u32 = 4;
pub const EVTCHNSTAT_IPI: u32 = 5;

/// Virtual IRQs (xen.h). Per-vCPU: TIMER, DEBUG, XENOPROF, XENPMU; the rest are global
/// (bound on vCPU 0 only).
pub const VIRQ_TIMER: u32 = 0;
pub const VIRQ_DEBUG: u32 = 1;
pub const VIRQ_CONSOLE: u32 = 2;
pub const VIRQ_DOM_EXC: u32 = 3;
pub const VIRQ_TBUF: u32 = 4;
pub const VIRQ_DEBUGGER: u32 = 6;
pub const VIRQ_XENOPROF: u32 = 7;
pub const VIRQ_CON_RING: u32 = 8;
pub const VIRQ_PCPU_STATE: u32 = 9;
pub const VIRQ_MEM_EVENT: u32 = 10;
pub const VIRQ_ARGO: u32 = 11;
pub const VIRQ_ENOMEM: u32 = 12;
pub const VIRQ_XENPMU: u32 = 13;
pub const NR_VIRQS: u32 = 24;

/// alloc_unbound: a fresh port in `dom` that `remote_dom` may bind to.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnAllocUnbound {
    pub dom: u16,
    pub remote_dom: u16,
    /// Out.
    pub port: u32,
}
const _: () = assert!(size_of::<EvtchnAllocUnbound>() == 8 && offset_of!(EvtchnAllocUnbound, port) == 4);

/// bind_interdomain: connects a new local port to `remote_port`, an unbound port of
/// `remote_dom` waiting for the caller.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnBindInterdomain {
    pub remote_dom: u16,
    pub _pad: u16,
    pub remote_port: u32,
    /// Out.
    pub local_port: u32,
}
const _: () = assert!(size_of::<EvtchnBindInterdomain>() == 12);
const _: () = assert!(offset_of!(EvtchnBindInterdomain, remote_port) == 4 && offset_of!(EvtchnBindInterdomain, local_port) == 8);

/// bind_virq: a new port for virtual IRQ `virq` on `vcpu`.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnBindVirq {
    pub virq: u32,
    pub vcpu: u32,
    /// Out.
    pub port: u32,
}
const _: () = assert!(size_of::<EvtchnBindVirq>() == 12 && offset_of!(EvtchnBindVirq, port) == 8);

/// bind_pirq: a new port for physical IRQ `pirq`.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnBindPirq {
    pub pirq: u32,
    pub flags: u32,
    /// Out.
    pub port: u32,
}
const _: () = assert!(size_of::<EvtchnBindPirq>() == 12);

/// bind_ipi: a new port that notifies `vcpu`.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnBindIpi {
    pub vcpu: u32,
    /// Out.
    pub port: u32,
}
const _: () = assert!(size_of::<EvtchnBindIpi>() == 8);

/// close, send and unmask take only a port.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnPort {
    pub port: u32,
}
const _: () = assert!(size_of::<EvtchnPort>() == 4);

/// status: what port `port` of `dom` is.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnStatus {
    pub dom: u16,
    pub _pad0: u16,
    pub port: u32,
    /// Out: EVTCHNSTAT_*.
    pub status: u32,
    /// Out: the vCPU it notifies.
    pub vcpu: u32,
    /// Out, by status: unbound {dom: u16}, interdomain {dom: u16, port: u32 at +4},
    /// pirq or virq (u32).
    pub u: [u32; 2],
}
const _: () = assert!(size_of::<EvtchnStatus>() == 24);
const _: () = assert!(offset_of!(EvtchnStatus, status) == 8 && offset_of!(EvtchnStatus, vcpu) == 12 && offset_of!(EvtchnStatus, u) == 16);

/// bind_vcpu: which vCPU `port` notifies.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnBindVcpu {
    pub port: u32,
    pub vcpu: u32,
}
const _: () = assert!(size_of::<EvtchnBindVcpu>() == 8);

/// reset: closes every port of `dom`.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnReset {
    pub dom: u16,
}
const _: () = assert!(size_of::<EvtchnReset>() == 2);

/// init_control (FIFO ABI): the control block's frame, its offset, the vCPU.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnInitControl {
    pub control_gfn: u64,
    pub offset: u32,
    pub vcpu: u32,
    /// Out.
    pub link_bits: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(size_of::<EvtchnInitControl>() == 24 && offset_of!(EvtchnInitControl, link_bits) == 16);

/// set_priority (FIFO ABI).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnSetPriority {
    pub port: u32,
    pub priority: u32,
}
const _: () = assert!(size_of::<EvtchnSetPriority>() == 8);
