//! `multicall(calls, count)` (xen.h `multicall_entry`).

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// One call of a batch: the guest fills `op` and `args`, the hypervisor writes `result`.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MulticallEntry {
    pub op: u64,
    pub result: u64,
    pub args: [u64; 6],
}

const _: () = assert!(size_of::<MulticallEntry>() == 64);
const _: () = assert!(offset_of!(MulticallEntry, result) == 8);
const _: () = assert!(offset_of!(MulticallEntry, args) == 16);
