//! The xenstore ring page (io/xs_wire.h): `req` carries the guest's requests to the
//! xenstore server, `rsp` its replies and watch events back.

use crate::byte_ring::{ByteDuplex, ByteRingLayout};
use crate::shared::SharedWords;
use crate::RingError;
use core::mem::{offset_of, size_of};

/// The page as io/xs_wire.h lays it out (`struct xenstore_domain_interface`). A
/// description only: the page is accessed through `SharedWords`, at these offsets.
#[repr(C)]
pub struct XenstoreDomainInterface {
    pub req: [u8; 1024],
    pub rsp: [u8; 1024],
    pub req_cons: u32,
    pub req_prod: u32,
    pub rsp_cons: u32,
    pub rsp_prod: u32,
    /// Feature bits the server offers (bit 0: reconnection).
    pub server_features: u32,
    /// 0 connected, 1 the guest asked to reconnect.
    pub connection: u32,
}

const _: () = assert!(offset_of!(XenstoreDomainInterface, rsp) == 1024);
const _: () = assert!(offset_of!(XenstoreDomainInterface, req_cons) == 2048);
const _: () = assert!(offset_of!(XenstoreDomainInterface, rsp_prod) == 2060);
const _: () = assert!(offset_of!(XenstoreDomainInterface, connection) == 2068);
const _: () = assert!(size_of::<XenstoreDomainInterface>() == 2072);

/// The largest message payload a peer may send (io/xs_wire.h).
pub const PAYLOAD_MAX: usize = 4096;

/// Guest to server.
pub const XENSTORE_REQ: ByteRingLayout = ByteRingLayout {
    data: offset_of!(XenstoreDomainInterface, req),
    size: 1024,
    cons: offset_of!(XenstoreDomainInterface, req_cons),
    prod: offset_of!(XenstoreDomainInterface, req_prod),
};

/// Server to guest.
pub const XENSTORE_RSP: ByteRingLayout = ByteRingLayout {
    data: offset_of!(XenstoreDomainInterface, rsp),
    size: 1024,
    cons: offset_of!(XenstoreDomainInterface, rsp_cons),
    prod: offset_of!(XenstoreDomainInterface, rsp_prod),
};

/// The guest's end: writes requests, reads replies.
pub fn client(page: SharedWords<'_>) -> Result<ByteDuplex<'_>, RingError> {
    ByteDuplex::attach(page, XENSTORE_REQ, XENSTORE_RSP)
}

/// The server's end: reads requests, writes replies.
pub fn server(page: SharedWords<'_>) -> Result<ByteDuplex<'_>, RingError> {
    ByteDuplex::attach(page, XENSTORE_RSP, XENSTORE_REQ)
}
