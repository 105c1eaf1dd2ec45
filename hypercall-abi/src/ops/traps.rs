//! Trap virtualisation: `set_trap_table`'s entries and the frame `iret` consumes
//! (arch-x86/xen.h `trap_info`, arch-x86/xen-x86_64.h `iret_context`).

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// One virtual IDT entry, written by the guest and copied in by `set_trap_table`.
/// The array ends with an entry whose `address` is 0 (arch-x86/xen.h).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TrapInfo {
    /// Exception or software-interrupt vector.
    pub vector: u8,
    /// Bits 0-1: the lowest privilege that may raise it with `int n` (DPL); bit 2
    /// ([`TI_FLAG_MASK_EVENTS`]): an interrupt gate, events masked on entry.
    pub flags: u8,
    /// Code selector of the handler (the hypervisor forces guest privilege on it).
    pub cs: u16,
    pub _pad: u32,
    /// Handler address; 0 ends the array.
    pub address: u64,
}

const _: () = assert!(size_of::<TrapInfo>() == 16);
const _: () = assert!(offset_of!(TrapInfo, flags) == 1);
const _: () = assert!(offset_of!(TrapInfo, cs) == 2);
const _: () = assert!(offset_of!(TrapInfo, address) == 8);

/// `trap_info.flags` bits 0-1 (TI_GET_DPL in arch-x86/xen.h).
pub const TI_FLAG_DPL_MASK: u8 = 3;
/// `trap_info.flags` bit 2 (TI_GET_IF, arch-x86/xen.h): an interrupt gate, so the
/// hypervisor masks events (`evtchn_upcall_mask`) before the handler runs; clear, a trap
/// gate leaves them as they were. Linux sets it for its interrupt gates ("interrupt
/// gates clear IF"), and Xen 4.17 masks events exactly then (seen: the `traps` checks
/// gate_masks_events / trap_gate_keeps_events).
pub const TI_FLAG_MASK_EVENTS: u8 = 4;

/// What a guest pushes before the `iret` hypercall, lowest address first
/// (arch-x86/xen-x86_64.h `iret_context`). The bounce frame the hypervisor builds for an
/// exception is this layout from `rip` on, with rcx, r11 (and an error code) below it.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct IretContext {
    /// Becomes RAX (the hypercall's return value).
    pub rax: u64,
    pub r11: u64,
    pub rcx: u64,
    /// [`VGCF_IN_SYSCALL`] or 0.
    pub flags: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(size_of::<IretContext>() == 72);
const _: () = assert!(offset_of!(IretContext, flags) == 24);
const _: () = assert!(offset_of!(IretContext, rip) == 32);
const _: () = assert!(offset_of!(IretContext, ss) == 64);

/// `iret_context.flags`: the frame came from a `syscall` callback, so rcx and r11 are the
/// guest's return rip/rflags and are not restored from the frame (arch-x86/xen.h
/// VGCF_in_syscall, bit 8).
pub const VGCF_IN_SYSCALL: u64 = 1 << 8;

/// Exceptions whose bounce frame carries an error code (x86 architecture: #DF, #TS,
/// #NP, #SS, #GP, #PF, #AC, #CP).
pub const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21)
}

/// Bits of the saved `cs` slot of a bounce frame above the selector: the event mask the
/// guest had when it was interrupted (xen-x86_64.h: `saved_upcall_mask`, bits 32-39).
pub const SAVED_UPCALL_MASK_SHIFT: u32 = 32;

/// `set_segment_base(which, base)` (xen-x86_64.h SEGBASE_*).
pub const SEGBASE_FS: u32 = 0;
pub const SEGBASE_GS_USER: u32 = 1;
pub const SEGBASE_GS_KERNEL: u32 = 2;
pub const SEGBASE_GS_USER_SEL: u32 = 3;
