//! `physdev_op(cmd, arg)` (physdev.h): the commands implemented so far.

use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Sets the calling vCPU's virtual I/O privilege level (0-3).
pub const PHYSDEVOP_SET_IOPL: u32 = 6;

/// PHYSDEVOP_set_iopl's argument.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct PhysdevSetIopl {
    pub iopl: u32,
}

const _: () = assert!(size_of::<PhysdevSetIopl>() == 4);
