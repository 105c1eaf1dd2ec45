//! How the hypervisor ends a QEMU run: a byte written to QEMU's `isa-debug-exit`
//! device. Project-specific, not part of Xen's ABI; it lives here so the hypervisor and
//! the test harness share one definition.
//!
//! QEMU exits with status `(code << 1) | 1`, so no code here can be confused with QEMU's
//! own 0 (clean quit) or 1 (error).

/// The I/O port of the `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
pub const ISA_DEBUG_EXIT_PORT: u16 = 0xf4;

/// Why the hypervisor stopped the machine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum ExitCode {
    /// The last domain powered off.
    Poweroff = 0x10,
    /// The last domain asked for a reboot.
    Reboot = 0x11,
    /// The last domain crashed (fatal fault, or `SHUTDOWN_crash`).
    DomainCrash = 0x12,
    /// The hypervisor refused its boot input (bundle, image, command line).
    HypervisorError = 0x13,
    /// The hypervisor itself panicked: always a bug.
    HypervisorPanic = 0x14,
}

impl ExitCode {
    pub const ALL: [ExitCode; 5] =
        [ExitCode::Poweroff, ExitCode::Reboot, ExitCode::DomainCrash, ExitCode::HypervisorError, ExitCode::HypervisorPanic];

    /// The process exit status QEMU reports for this code.
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }

    /// The code behind a QEMU exit status, if it is one of ours.
    pub fn from_qemu_status(status: i32) -> Option<ExitCode> {
        ExitCode::ALL.into_iter().find(|c| c.qemu_status() == status)
    }

    pub const fn name(self) -> &'static str {
        match self {
            ExitCode::Poweroff => "poweroff",
            ExitCode::Reboot => "reboot",
            ExitCode::DomainCrash => "domain-crash",
            ExitCode::HypervisorError => "hypervisor-error",
            ExitCode::HypervisorPanic => "hypervisor-panic",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_distinct_and_round_trip() {
        for code in ExitCode::ALL {
            assert_eq!(ExitCode::from_qemu_status(code.qemu_status()), Some(code));
            assert!(code.qemu_status() > 1);
        }
        assert_eq!(ExitCode::Poweroff.qemu_status(), 33);
        assert_eq!(ExitCode::from_qemu_status(0), None);
    }
}
