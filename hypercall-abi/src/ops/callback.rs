//! `callback_op(cmd, arg)` and its structures (callback.h, arch-x86/xen-x86_64.h).

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const CALLBACKOP_REGISTER: u32 = 0;
pub const CALLBACKOP_UNREGISTER: u32 = 1;

/// Callback types (callback.h CALLBACKTYPE_*).
pub const CALLBACKTYPE_EVENT: u16 = 0;
pub const CALLBACKTYPE_FAILSAFE: u16 = 1;
/// `syscall` from guest user mode (64-bit).
pub const CALLBACKTYPE_SYSCALL: u16 = 2;
pub const CALLBACKTYPE_NMI: u16 = 4;
/// `sysenter` (Intel CPUs; type 3 is its retired predecessor).
pub const CALLBACKTYPE_SYSENTER: u16 = 5;
/// `syscall` from 32-bit compatibility mode (AMD CPUs).
pub const CALLBACKTYPE_SYSCALL32: u16 = 7;

/// `callback_register.flags`: mask events (set `evtchn_upcall_mask`) on entry.
pub const CALLBACKF_MASK_EVENTS: u16 = 1;

/// CALLBACKOP_register's argument; on x86_64 `xen_callback_t` is a plain address.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct CallbackRegister {
    pub callback_type: u16,
    pub flags: u16,
    pub _pad: u32,
    pub address: u64,
}

const _: () = assert!(size_of::<CallbackRegister>() == 16);
const _: () = assert!(offset_of!(CallbackRegister, flags) == 2);
const _: () = assert!(offset_of!(CallbackRegister, address) == 8);

/// CALLBACKOP_unregister's argument.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct CallbackUnregister {
    pub callback_type: u16,
    pub _pad: u16,
}

const _: () = assert!(size_of::<CallbackUnregister>() == 4);
