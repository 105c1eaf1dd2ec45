//! `nmi_op(cmd, arg)` (nmi.h): the older way to register the NMI callback, which is
//! trap-table entry 2 like CALLBACKTYPE_NMI's.

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `arg` points at a [`XennmiCallback`].
pub const XENNMI_REGISTER_CALLBACK: u32 = 0;
/// `arg` is NULL.
pub const XENNMI_UNREGISTER_CALLBACK: u32 = 1;

/// XENNMI_register_callback's argument (nmi.h `xennmi_callback`).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XennmiCallback {
    pub handler_address: u64,
    pub pad: u64,
}

const _: () = assert!(size_of::<XennmiCallback>() == 16);
const _: () = assert!(offset_of!(XennmiCallback, handler_address) == 0);
const _: () = assert!(offset_of!(XennmiCallback, pad) == 8);
