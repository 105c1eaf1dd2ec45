//! Domains: the boot bundle, guest images, the PV memory layout, the builder, and the
//! per-domain state the rest of the hypervisor works on.

pub mod boot;
pub mod builder;
pub mod bundle;
pub mod crash;
pub mod domu_config;
pub mod elf_image;
pub mod frames;
pub mod hypercall_page;
pub mod layout;
pub mod list;
pub mod platform_nmi;
pub mod vcpu;

use crate::console::guest_line::GuestLineBuffer;
use crate::trap::state::TrapState;
use alloc::string::String;
use alloc::vec::Vec;
use hypercall_abi::debug_exit::ExitCode;
use hypercall_abi::ops::sched_op::ShutdownReason;
use vcpu::GuestRegisters;

pub type DomainId = u16;

/// Hypercall numbers below this are counted per domain (covers Xen's 0-42 and the
/// arch range 48-55).
pub const COUNTED_HYPERCALLS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    Running,
    /// The guest asked to stop (`SCHEDOP_shutdown`) with this reason.
    Shutdown(ShutdownReason),
    /// The hypervisor stopped it after a fatal fault.
    Crashed,
}

/// Why a domain stopped being runnable, for the exit code and the report line.
impl DomainState {
    pub fn is_running(self) -> bool {
        self == DomainState::Running
    }
}

pub struct Domain {
    pub id: DomainId,
    pub name: String,
    /// dom0: may use privileged operations (SIF_PRIVILEGED | SIF_INITDOMAIN).
    pub privileged: bool,
    pub state: DomainState,
    /// Guest-physical to machine frame numbers; its length is the domain's memory size.
    pub p2m: Vec<u64>,
    /// The most pages it may hold (XENMEM_maximum_reservation).
    pub max_pages: u64,
    /// The pages it holds now (XENMEM_current_reservation): p2m's length at build,
    /// then changed by ballooning.
    pub tot_pages: u64,
    pub shared_info_mfn: u64,
    /// The single vCPU's registers while it is not running.
    pub vcpu: GuestRegisters,
    /// The single vCPU's trap table, callbacks and virtual CPU state.
    pub traps: TrapState,
    /// Calls made per hypercall number; the last slot gathers every number past the
    /// counted ones (see `count_hypercall`).
    pub hypercall_counts: [u64; COUNTED_HYPERCALLS + 1],
    /// TSC cycles spent in each hypercall, measured while it is traced (trace=).
    pub hypercall_cycles: [u64; COUNTED_HYPERCALLS],
    /// `trace=hypercalls` covers this domain: its hypercalls take the traced path.
    pub hypercalls_traced: bool,
    /// Why the hypervisor crashed the domain, when it did (for the register dump).
    pub crash_reason: Option<&'static str>,
    pub console: GuestLineBuffer,
    /// Its event channels (what each port is bound to; pending and mask bits are in
    /// shared_info).
    pub events: crate::evtchn::EventChannels,
    /// A domU's xenstore and console rings, as start_info names them.
    pub rings: Option<DomuRings>,
    /// The single-shot timer's deadline (set_timer_op), system time in ns.
    pub timer_deadline: Option<u64>,
    /// The periodic timer (VCPUOP_set_periodic_timer): its period and next expiry.
    pub periodic_timer: Option<(u64, u64)>,
    /// When the periodic timer last fired (system time, ns): a new period starts from it.
    pub periodic_last_event: u64,
    /// Its weight and cap, and what the scheduler keeps for it (CPU time included).
    pub sched: crate::sched::SchedParams,
    pub sched_state: crate::sched::SchedState,
    /// The vCPU's x87/SSE state while another domain runs (`fxsave` image).
    pub fpu: alloc::boxed::Box<vcpu::FpuArea>,
    /// SCHEDOP_poll: the ports the blocked vCPU waits on and its deadline (system time).
    pub poll: Option<Poll>,
    /// SCHEDOP_shutdown_code: the reason its shutdown will have, whatever it says then.
    pub shutdown_code: Option<ShutdownReason>,
    /// SCHEDOP_watchdog: when each watchdog fires unless kicked (system time).
    pub watchdogs: [Option<u64>; hypercall_abi::ops::sched_op::WATCHDOGS_PER_DOMAIN],
    /// DS, ES, FS and GS selectors while another domain runs (the entry path leaves the
    /// guest's in the CPU; a switch must not show them to the next domain).
    pub data_selectors: [u16; 4],
}

/// What Xen's toolstack gives a domU in start_info: its xenstore and console ring pages
/// (machine frames) and their event channels, unbound with dom0 as the remote end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomuRings {
    pub store_mfn: u64,
    pub store_port: u32,
    pub console_mfn: u64,
    pub console_port: u32,
}

impl Domain {
    /// Machine address of the kernel's L4 (the domain's CR3 in kernel mode).
    pub fn l4_maddr(&self) -> u64 {
        self.traps.kernel_l4()
    }

    /// The L4 the CPU must run on: the kernel's, or in guest user mode the user one.
    pub fn active_l4(&self) -> u64 {
        self.traps.active_l4()
    }

    /// Machine address of vCPU 0's `vcpu_info` (the start of shared_info).
    pub fn vcpu_info_maddr(&self) -> u64 {
        self.shared_info_mfn * hypercall_abi::arch_x86_64::PAGE_SIZE
    }

    /// Stops the domain with `reason` (SCHEDOP_shutdown, a remote shutdown, a watchdog),
    /// or with the reason SCHEDOP_shutdown_code declared first, as on Xen.
    pub fn shut_down(&mut self, reason: ShutdownReason) {
        if self.state.is_running() {
            self.state = DomainState::Shutdown(self.shutdown_code.unwrap_or(reason));
        }
    }

    /// Stops the domain for good: the entry path dumps its registers and tears it down.
    pub fn crash(&mut self, reason: &'static str) {
        self.state = DomainState::Crashed;
        self.crash_reason.get_or_insert(reason);
    }

    /// Whether the scheduler may run it: not stopped, not blocked.
    pub fn runnable(&self) -> bool {
        self.state.is_running() & !self.traps.exit.blocked
    }

    pub fn nr_pages(&self) -> u64 {
        self.p2m.len() as u64
    }

    /// Counts a hypercall; numbers past the counted ones share the last slot, which
    /// nothing reports: a bounded index instead of a test keeps the hypercall path one
    /// straight line.
    #[inline(always)]
    pub fn count_hypercall(&mut self, number: u64) {
        self.hypercall_counts[number.min(COUNTED_HYPERCALLS as u64) as usize] += 1;
    }

    /// How many calls of hypercall `number` the domain made, if it is a counted one.
    pub fn hypercall_count(&self, number: u64) -> Option<u64> {
        self.hypercall_counts[..COUNTED_HYPERCALLS].get(number as usize).copied()
    }
}

/// A blocked SCHEDOP_poll.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Poll {
    pub ports: Vec<u32>,
    /// 0: no timeout.
    pub timeout_ns: u64,
}

/// Every domain but the one making a hypercall, for the operations that reach across
/// (interdomain event channels). Borrowed next to the caller's `&mut Domain`.
pub struct Others<'a> {
    before: &'a mut [Domain],
    after: &'a mut [Domain],
}

impl<'a> Others<'a> {
    /// No other domain (host tests; a machine with one domain).
    pub fn none() -> Others<'a> {
        Others { before: &mut [], after: &mut [] }
    }

    /// `domains[index]` and the rest.
    pub fn split(domains: &'a mut [Domain], index: usize) -> Option<(&'a mut Domain, Others<'a>)> {
        if index >= domains.len() {
            return None;
        }
        let (before, rest) = domains.split_at_mut(index);
        let (current, after) = rest.split_first_mut()?;
        Some((current, Others { before, after }))
    }

    pub fn get_mut(&mut self, id: DomainId) -> Option<&mut Domain> {
        self.before.iter_mut().chain(self.after.iter_mut()).find(|d| d.id == id)
    }
}

/// How QEMU should exit when `state` is the state of the last domain.
pub fn exit_code_for(state: DomainState) -> ExitCode {
    match state {
        DomainState::Shutdown(ShutdownReason::Poweroff) => ExitCode::Poweroff,
        DomainState::Shutdown(ShutdownReason::Reboot) => ExitCode::Reboot,
        DomainState::Shutdown(ShutdownReason::Crash) | DomainState::Crashed => ExitCode::DomainCrash,
        // Suspend, watchdog, soft reset: nothing to resume into once the last domain
        // is gone; report them as a crash so the harness notices.
        DomainState::Shutdown(_) | DomainState::Running => ExitCode::DomainCrash,
    }
}
