//! The console ring page (io/console.h): `in` carries input from the back end to the
//! guest, `out` carries the guest's output to the back end.

use crate::byte_ring::{ByteDuplex, ByteRingLayout};
use crate::shared::SharedWords;
use crate::RingError;
use core::mem::{offset_of, size_of};

/// The page as io/console.h lays it out (`struct xencons_interface`). A description
/// only: the page is accessed through `SharedWords`, at these offsets.
#[repr(C)]
pub struct XenconsInterface {
    /// Back end to guest (`in` in C).
    pub input: [u8; 1024],
    /// Guest to back end.
    pub output: [u8; 2048],
    pub in_cons: u32,
    pub in_prod: u32,
    pub out_cons: u32,
    pub out_prod: u32,
}

const _: () = assert!(offset_of!(XenconsInterface, output) == 1024);
const _: () = assert!(offset_of!(XenconsInterface, in_cons) == 3072 && offset_of!(XenconsInterface, out_prod) == 3084);
const _: () = assert!(size_of::<XenconsInterface>() == 3088);

/// Back end to guest.
pub const CONSOLE_IN: ByteRingLayout = ByteRingLayout {
    data: offset_of!(XenconsInterface, input),
    size: 1024,
    cons: offset_of!(XenconsInterface, in_cons),
    prod: offset_of!(XenconsInterface, in_prod),
};

/// Guest to back end.
pub const CONSOLE_OUT: ByteRingLayout = ByteRingLayout {
    data: offset_of!(XenconsInterface, output),
    size: 2048,
    cons: offset_of!(XenconsInterface, out_cons),
    prod: offset_of!(XenconsInterface, out_prod),
};

/// The guest's end: writes output, reads input.
pub fn front(page: SharedWords<'_>) -> Result<ByteDuplex<'_>, RingError> {
    ByteDuplex::attach(page, CONSOLE_OUT, CONSOLE_IN)
}

/// The back end (console daemon, or the hypervisor for dom0): reads the guest's output,
/// writes its input.
pub fn back(page: SharedWords<'_>) -> Result<ByteDuplex<'_>, RingError> {
    ByteDuplex::attach(page, CONSOLE_IN, CONSOLE_OUT)
}
