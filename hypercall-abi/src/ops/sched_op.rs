//! `sched_op(cmd, arg)` (sched.h).

use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const SCHEDOP_YIELD: u32 = 0;
pub const SCHEDOP_BLOCK: u32 = 1;
pub const SCHEDOP_SHUTDOWN: u32 = 2;
pub const SCHEDOP_POLL: u32 = 3;
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
pub const SCHEDOP_WATCHDOG: u32 = 6;
pub const SCHEDOP_PIN_OVERRIDE: u32 = 7;

/// Why a domain shuts down (SHUTDOWN_* in sched.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ShutdownReason {
    Poweroff = 0,
    Reboot = 1,
    Suspend = 2,
    Crash = 3,
    Watchdog = 4,
    SoftReset = 5,
}

impl ShutdownReason {
    pub fn from_u32(value: u32) -> Option<ShutdownReason> {
        Some(match value {
            0 => ShutdownReason::Poweroff,
            1 => ShutdownReason::Reboot,
            2 => ShutdownReason::Suspend,
            3 => ShutdownReason::Crash,
            4 => ShutdownReason::Watchdog,
            5 => ShutdownReason::SoftReset,
            _ => return None,
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            ShutdownReason::Poweroff => "poweroff",
            ShutdownReason::Reboot => "reboot",
            ShutdownReason::Suspend => "suspend",
            ShutdownReason::Crash => "crash",
            ShutdownReason::Watchdog => "watchdog",
            ShutdownReason::SoftReset => "soft_reset",
        }
    }
}

/// SCHEDOP_shutdown / SCHEDOP_shutdown_code argument; written by the guest.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug)]
#[repr(C)]
pub struct SchedShutdown {
    pub reason: u32,
}

const _: () = assert!(core::mem::size_of::<SchedShutdown>() == 4);

/// SCHEDOP_remote_shutdown argument (dom0 stops another domain).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug)]
#[repr(C)]
pub struct SchedRemoteShutdown {
    pub domain_id: u16,
    pub _pad: u16,
    pub reason: u32,
}

const _: () = assert!(core::mem::size_of::<SchedRemoteShutdown>() == 8);
const _: () = assert!(offset_of!(SchedRemoteShutdown, reason) == 4);

/// SCHEDOP_poll argument: wait until one of `nr_ports` ports (array at `ports`) is
/// pending or `timeout` (absolute system time, ns; 0 = none) passes.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug)]
#[repr(C)]
pub struct SchedPoll {
    pub ports: u64,
    pub nr_ports: u32,
    pub _pad: u32,
    pub timeout: u64,
}

const _: () = assert!(core::mem::size_of::<SchedPoll>() == 24);
const _: () = assert!(offset_of!(SchedPoll, nr_ports) == 8);
const _: () = assert!(offset_of!(SchedPoll, timeout) == 16);

/// SCHEDOP_watchdog argument: `id` 0 makes a new watchdog (the call returns its id,
/// 1 or 2); a nonzero id kicks it for `timeout` more seconds, or with 0 destroys it.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct SchedWatchdog {
    pub id: u32,
    pub timeout: u32,
}

const _: () = assert!(core::mem::size_of::<SchedWatchdog>() == 8);
const _: () = assert!(offset_of!(SchedWatchdog, timeout) == 4);

/// Watchdogs a domain may have (Xen's NR_DOMAIN_WATCHDOG_TIMERS).
pub const WATCHDOGS_PER_DOMAIN: usize = 2;
/// The most ports one SCHEDOP_poll may name (Xen's "fairly arbitrary limit").
pub const POLL_MAX_PORTS: u32 = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip() {
        for v in 0..6 {
            assert_eq!(ShutdownReason::from_u32(v).map(|r| r as u32), Some(v));
        }
        assert_eq!(ShutdownReason::from_u32(6), None);
        assert_eq!(ShutdownReason::Crash.name(), "crash");
    }
}
