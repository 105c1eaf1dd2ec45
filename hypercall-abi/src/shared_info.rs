//! `shared_info` and `vcpu_info` (xen.h, arch-x86/xen.h): the page the hypervisor shares
//! with each domain for event channels, time and per-vCPU state.

use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const MAX_VIRT_CPUS: usize = 32;
/// 2-level event channels: 64 words of 64 bits.
pub const NR_EVENT_CHANNELS_2L: usize = 64 * 64;

/// Per-vCPU time base. The hypervisor writes it, incrementing `version` before and after
/// (odd = update in progress); the guest reads it and retries on a version change.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct VcpuTimeInfo {
    pub version: u32,
    pub _pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at the last update.
    pub system_time: u64,
    /// TSC to ns: ((tsc delta << shift) * mul) >> 32, shifting right when shift < 0.
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
    pub _pad1: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<VcpuTimeInfo>() == 32);
const _: () = assert!(offset_of!(VcpuTimeInfo, tsc_timestamp) == 8);
const _: () = assert!(offset_of!(VcpuTimeInfo, system_time) == 16);
const _: () = assert!(offset_of!(VcpuTimeInfo, tsc_to_system_mul) == 24);
const _: () = assert!(offset_of!(VcpuTimeInfo, tsc_shift) == 28);
const _: () = assert!(offset_of!(VcpuTimeInfo, flags) == 29);

impl VcpuTimeInfo {
    /// Guest system time (ns) at TSC value `tsc`, by the formula in xen.h.
    pub fn system_time_at(&self, tsc: u64) -> u64 {
        let mut delta = tsc.wrapping_sub(self.tsc_timestamp);
        if self.tsc_shift >= 0 {
            delta <<= self.tsc_shift as u32;
        } else {
            delta >>= self.tsc_shift.unsigned_abs() as u32;
        }
        let scaled = ((delta as u128 * self.tsc_to_system_mul as u128) >> 32) as u64;
        self.system_time.wrapping_add(scaled)
    }
}

/// x86 part of vcpu_info: the guest's CR2 for a page fault the hypervisor bounced.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct ArchVcpuInfo {
    pub cr2: u64,
    pub _pad: u64,
}

const _: () = assert!(core::mem::size_of::<ArchVcpuInfo>() == 16);

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct VcpuInfo {
    /// Set by the hypervisor when an event is pending; cleared by the guest.
    pub evtchn_upcall_pending: u8,
    /// The virtual interrupt flag: the guest sets it to 1 to mask event upcalls.
    pub evtchn_upcall_mask: u8,
    pub _pad0: [u8; 6],
    /// Which words of evtchn_pending have bits set (hypervisor sets, guest clears).
    pub evtchn_pending_sel: u64,
    pub arch: ArchVcpuInfo,
    pub time: VcpuTimeInfo,
}

const _: () = assert!(core::mem::size_of::<VcpuInfo>() == 64);
const _: () = assert!(offset_of!(VcpuInfo, evtchn_upcall_mask) == 1);
const _: () = assert!(offset_of!(VcpuInfo, evtchn_pending_sel) == 8);
const _: () = assert!(offset_of!(VcpuInfo, arch) == 16);
const _: () = assert!(offset_of!(VcpuInfo, time) == 32);

/// x86_64 part of shared_info (arch-x86/xen.h). The guest writes the p2m fields for the
/// toolstack; the hypervisor writes max_pfn at build time and nmi_reason.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct ArchSharedInfo {
    /// Number of guest pages (p2m entries).
    pub max_pfn: u64,
    /// Frame list list for save/restore (guest writes).
    pub pfn_to_mfn_frame_list_list: u64,
    pub nmi_reason: u64,
    pub p2m_cr3: u64,
    pub p2m_vaddr: u64,
    pub p2m_generation: u64,
}

const _: () = assert!(core::mem::size_of::<ArchSharedInfo>() == 48);

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug)]
#[repr(C)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; MAX_VIRT_CPUS],
    /// Pending event channels: the hypervisor sets bits, the guest clears them.
    pub evtchn_pending: [u64; 64],
    /// Masked event channels: owned by the guest.
    pub evtchn_mask: [u64; 64],
    /// Wallclock at boot; `wc_version` is odd during an update.
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo,
}

const _: () = assert!(core::mem::size_of::<SharedInfo>() == 3136);
const _: () = assert!(offset_of!(SharedInfo, evtchn_pending) == 2048);
const _: () = assert!(offset_of!(SharedInfo, evtchn_mask) == 2560);
const _: () = assert!(offset_of!(SharedInfo, wc_version) == 3072);
const _: () = assert!(offset_of!(SharedInfo, wc_sec) == 3076);
const _: () = assert!(offset_of!(SharedInfo, wc_nsec) == 3080);
const _: () = assert!(offset_of!(SharedInfo, wc_sec_hi) == 3084);
const _: () = assert!(offset_of!(SharedInfo, arch) == 3088);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_time_follows_the_scaling_formula() {
        // 2 GHz TSC: 0.5 ns per tick = mul 2^31 with shift 0.
        let t = VcpuTimeInfo { tsc_timestamp: 1000, system_time: 5_000, tsc_to_system_mul: 1 << 31, ..Default::default() };
        assert_eq!(t.system_time_at(3000), 5_000 + 1000);
        let shifted = VcpuTimeInfo { tsc_shift: -1, ..t };
        assert_eq!(shifted.system_time_at(3000), 5_000 + 500);
        let up = VcpuTimeInfo { tsc_shift: 2, ..t };
        assert_eq!(up.system_time_at(3000), 5_000 + 4000);
    }
}
