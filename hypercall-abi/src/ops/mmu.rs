//! mmu_update, mmuext_op and update_va_mapping (xen.h).

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// One mmu_update request. The low two bits of `ptr` are the command.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MmuUpdate {
    pub ptr: u64,
    pub val: u64,
}

const _: () = assert!(size_of::<MmuUpdate>() == 16);

/// `ptr` is the machine address of a page-table entry to set to `val`.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// `ptr` is a machine address in the frame whose machine-to-phys entry becomes `val`.
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// As MMU_NORMAL_PT_UPDATE, keeping the entry's accessed and dirty bits.
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;

/// One mmuext_op request (24 bytes on x86_64).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MmuextOp {
    pub cmd: u32,
    pub _pad: u32,
    /// A machine frame number, or a linear address for INVLPG.
    pub arg1: u64,
    /// An entry count, or a guest pointer to a vCPU bitmap for the _MULTI commands.
    pub arg2: u64,
}

const _: () = assert!(size_of::<MmuextOp>() == 24);
const _: () = assert!(offset_of!(MmuextOp, arg1) == 8);
const _: () = assert!(offset_of!(MmuextOp, arg2) == 16);

pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
pub const MMUEXT_PIN_L2_TABLE: u32 = 1;
pub const MMUEXT_PIN_L3_TABLE: u32 = 2;
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
pub const MMUEXT_TLB_FLUSH_MULTI: u32 = 8;
pub const MMUEXT_INVLPG_MULTI: u32 = 9;
pub const MMUEXT_TLB_FLUSH_ALL: u32 = 10;
pub const MMUEXT_INVLPG_ALL: u32 = 11;
pub const MMUEXT_FLUSH_CACHE: u32 = 12;
pub const MMUEXT_SET_LDT: u32 = 13;
pub const MMUEXT_NEW_USER_BASEPTR: u32 = 15;
/// Zeroes machine frame `arg1` (xen.h MMUEXT_CLEAR_PAGE).
pub const MMUEXT_CLEAR_PAGE: u32 = 16;
/// Copies machine frame `arg2` (src_mfn) into frame `arg1` (xen.h MMUEXT_COPY_PAGE).
pub const MMUEXT_COPY_PAGE: u32 = 17;

/// update_va_mapping flags: the low two bits choose the flush.
pub const UVMF_NONE: u64 = 0;
pub const UVMF_TLB_FLUSH: u64 = 1;
pub const UVMF_INVLPG: u64 = 2;
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
/// Flush on every vCPU (else only the local one).
pub const UVMF_ALL: u64 = 4;

/// The domain id that means "the caller" (xen.h DOMID_SELF).
pub const DOMID_SELF: u16 = 0x7ff0;

/// mmu_update / mmuext_op: set in `count` when the call is a continuation of a
/// preempted batch (xen.h MMU_UPDATE_PREEMPTED, the top bit of the unsigned count).
pub const MMU_UPDATE_PREEMPTED: u32 = 1 << 31;
