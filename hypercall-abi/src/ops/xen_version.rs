//! `xen_version(cmd, arg)` (version.h).

use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Returns `major << 16 | minor`; no argument.
pub const XENVER_VERSION: u32 = 0;
/// Writes a 16-byte string such as ".0".
pub const XENVER_EXTRAVERSION: u32 = 1;
pub const XENVER_COMPILE_INFO: u32 = 2;
/// Writes a 1024-byte space-separated list such as "xen-3.0-x86_64".
pub const XENVER_CAPABILITIES: u32 = 3;
pub const XENVER_CHANGESET: u32 = 4;
/// Writes `XenPlatformParameters`.
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
/// Reads and writes `XenFeatureInfo`.
pub const XENVER_GET_FEATURES: u32 = 6;
/// Returns the page size.
pub const XENVER_PAGESIZE: u32 = 7;
pub const XENVER_GUEST_HANDLE: u32 = 8;
pub const XENVER_COMMANDLINE: u32 = 9;
pub const XENVER_BUILD_ID: u32 = 10;

pub type XenExtraversion = [u8; 16];
pub type XenCapabilities = [u8; 1024];
pub type XenChangeset = [u8; 64];

/// XENVER_get_features: the guest fills `submap_idx`, the hypervisor `submap` (bit n =
/// feature 32 * idx + n, see `features`).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug)]
#[repr(C)]
pub struct XenFeatureInfo {
    pub submap_idx: u32,
    pub submap: u32,
}

const _: () = assert!(core::mem::size_of::<XenFeatureInfo>() == 8);
const _: () = assert!(offset_of!(XenFeatureInfo, submap) == 4);

/// XENVER_platform_parameters: where the hypervisor's reserved range starts.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug)]
#[repr(C)]
pub struct XenPlatformParameters {
    pub virt_start: u64,
}

const _: () = assert!(core::mem::size_of::<XenPlatformParameters>() == 8);

/// XENVER_compile_info.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug)]
#[repr(C)]
pub struct XenCompileInfo {
    pub compiler: [u8; 64],
    pub compile_by: [u8; 16],
    pub compile_domain: [u8; 32],
    pub compile_date: [u8; 32],
}

const _: () = assert!(core::mem::size_of::<XenCompileInfo>() == 144);
const _: () = assert!(offset_of!(XenCompileInfo, compile_by) == 64);
const _: () = assert!(offset_of!(XenCompileInfo, compile_domain) == 80);
const _: () = assert!(offset_of!(XenCompileInfo, compile_date) == 112);
