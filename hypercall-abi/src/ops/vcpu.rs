//! vcpu_op commands and structures (vcpu.h).

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const VCPUOP_INITIALISE: u32 = 0;
pub const VCPUOP_UP: u32 = 1;
pub const VCPUOP_DOWN: u32 = 2;
pub const VCPUOP_IS_UP: u32 = 3;
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// Sends an NMI to the vCPU (`arg` must be NULL); it enters the guest's NMI callback
/// (trap-table entry 2) once it is not already handling one (vcpu.h).
pub const VCPUOP_SEND_NMI: u32 = 11;

/// set_singleshot_timer's flag: the deadline must be in the future, else -ETIME.
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1;

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuSetPeriodicTimer {
    pub period_ns: u64,
}
const _: () = assert!(size_of::<VcpuSetPeriodicTimer>() == 8);

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time, ns.
    pub timeout_abs_ns: u64,
    /// VCPU_SSHOTTMR_*.
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<VcpuSetSingleshotTimer>() == 16 && offset_of!(VcpuSetSingleshotTimer, flags) == 8);
