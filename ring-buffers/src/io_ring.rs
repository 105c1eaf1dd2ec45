//! The request/response ring of io/ring.h.
//!
//! Layout of the shared area (io/ring.h, `struct NAME_sring`): `req_prod` @0,
//! `req_event` @4, `rsp_prod` @8, `rsp_event` @12, padding to 64 bytes, then the slots.
//! A slot is the size of a C union of request and response; the slot count is the
//! largest power of two that fits in the area (one page, or 2^n pages). The front end
//! produces requests and consumes responses; the back end the reverse; a response
//! overwrites the slot of the request it answers. Each end keeps private indexes and
//! publishes them in batches.
//!
//! Notification suppression: a consumer about to sleep stores "wake me at index N" in
//! its event word; a producer whose published batch covers N must notify (through an
//! event channel, which this crate knows nothing about: publishing returns whether to
//! notify). The final check closes the race between "nothing left" and "event set".

mod back;
mod front;

pub use back::BackRing;
pub use front::FrontRing;

use crate::index::{check_producer, needs_notify, round_down_pow2};
use crate::shared::{fence, Ordering, SharedWords};
use crate::RingError;
use core::marker::PhantomData;
use core::mem::{align_of, offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// The shared header as io/ring.h lays it out. Only a description: the shared area is
/// never accessed through this type (see `crate::shared`), the offsets below are.
#[repr(C)]
pub struct SharedRingHeader {
    /// Written by the front end: requests published up to here.
    pub req_prod: u32,
    /// Written by the back end: notify me when `req_prod` passes this.
    pub req_event: u32,
    /// Written by the back end: responses published up to here.
    pub rsp_prod: u32,
    /// Written by the front end: notify me when `rsp_prod` passes this.
    pub rsp_event: u32,
    /// Reserved; the front end zeroes it when it creates the ring.
    pub pad: [u8; 48],
}

const REQ_PROD: usize = offset_of!(SharedRingHeader, req_prod);
const REQ_EVENT: usize = offset_of!(SharedRingHeader, req_event);
const RSP_PROD: usize = offset_of!(SharedRingHeader, rsp_prod);
const RSP_EVENT: usize = offset_of!(SharedRingHeader, rsp_event);
const PAD: usize = offset_of!(SharedRingHeader, pad);
/// Bytes before the first slot.
pub const HEADER_BYTES: usize = size_of::<SharedRingHeader>();

const _: () = assert!(REQ_PROD == 0 && REQ_EVENT == 4 && RSP_PROD == 8 && RSP_EVENT == 12);
const _: () = assert!(PAD == 16 && HEADER_BYTES == 64);

/// Size of a slot holding either a request or a response: what C gives a union of the
/// two (the larger size, rounded up to the stricter alignment).
pub const fn slot_bytes(request: (usize, usize), response: (usize, usize)) -> usize {
    let size = if request.0 > response.0 { request.0 } else { response.0 };
    let align = if request.1 > response.1 { request.1 } else { response.1 };
    size.div_ceil(align) * align
}

/// Slots in a shared area of `area_bytes` (io/ring.h's ring size: the largest power of
/// two of slots that fits after the header).
pub const fn slot_count(area_bytes: usize, slot: usize) -> usize {
    if area_bytes <= HEADER_BYTES || slot == 0 {
        0
    } else {
        round_down_pow2((area_bytes - HEADER_BYTES) / slot)
    }
}

// Xen's numbers (io/blkif.h, io/netif.h): one page holds 32 block slots (112-byte
// requests, 16-byte responses, both 8-aligned) and 256 net tx slots (12-byte requests,
// 4-byte responses); four pages hold 128 block slots.
const _: () = assert!(slot_bytes((112, 8), (16, 8)) == 112);
const _: () = assert!(slot_count(4096, slot_bytes((112, 8), (16, 8))) == 32);
const _: () = assert!(slot_count(4096, slot_bytes((12, 4), (4, 2))) == 256);
const _: () = assert!(slot_count(4 * 4096, slot_bytes((112, 8), (16, 8))) == 128);

/// The slot size of a ring of `Req`/`Rsp`, checked when the ring type is instantiated.
struct Slot<Req, Rsp>(PhantomData<(Req, Rsp)>);

impl<Req, Rsp> Slot<Req, Rsp> {
    const BYTES: usize = {
        let bytes = slot_bytes((size_of::<Req>(), align_of::<Req>()), (size_of::<Rsp>(), align_of::<Rsp>()));
        // Slots are copied word by word; every Xen ring's slot is a multiple of 4.
        assert!(bytes.is_multiple_of(4) && bytes > 0, "ring slots must be a non-zero multiple of 4 bytes");
        bytes
    };
}

/// Why a push was refused. Not the peer's doing: the caller's own bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// Front end: every slot holds a request whose response is not consumed yet.
    Full,
    /// Back end: every consumed request already has its response.
    NoRequestToAnswer,
}

/// The shared area with its slot geometry, and the protocol steps both ends share.
#[derive(Clone, Copy)]
struct Geometry<'a> {
    mem: SharedWords<'a>,
    slot: usize,
    slots: u32,
}

impl<'a> Geometry<'a> {
    #[inline]
    fn new(mem: SharedWords<'a>, slot: usize) -> Result<Self, RingError> {
        let slots = slot_count(mem.len_bytes(), slot);
        if slots == 0 {
            return Err(RingError::AreaTooSmall { bytes: mem.len_bytes(), needed: HEADER_BYTES + slot });
        }
        // More than 2^31 slots would break the wrapping distance arithmetic.
        let slots = slots.min(1 << 31) as u32;
        Ok(Geometry { mem, slot, slots })
    }

    #[inline]
    /// Xen's ring creation: both producers at `start`, both events asking for the first
    /// entry, padding zeroed.
    fn init_header(&self, start: u32) {
        self.mem.write_bytes(PAD, &[0; HEADER_BYTES - PAD]);
        self.mem.word(REQ_EVENT).store(start.wrapping_add(1), Ordering::Relaxed);
        self.mem.word(RSP_EVENT).store(start.wrapping_add(1), Ordering::Relaxed);
        self.mem.word(RSP_PROD).store(start, Ordering::Relaxed);
        // Release: a back end that sees this index (Acquire) also sees the header above.
        self.mem.word(REQ_PROD).store(start, Ordering::Release);
    }

    #[inline]
    fn offset(&self, index: u32) -> usize {
        // Masking keeps every slot access inside the area whatever the index.
        HEADER_BYTES + (index & (self.slots - 1)) as usize * self.slot
    }

    #[inline]
    fn read<T: FromBytes + IntoBytes>(&self, index: u32) -> T {
        let mut value = T::new_zeroed();
        self.mem.read_bytes(self.offset(index), value.as_mut_bytes());
        value
    }

    #[inline]
    fn write<T: IntoBytes + Immutable>(&self, index: u32, value: &T) {
        self.mem.write_bytes(self.offset(index), value.as_bytes());
    }

    #[inline]
    /// Publishes our producer index, moving it from `old` to `new` (both private
    /// copies: the shared word may have been scribbled on), and applies the notify rule.
    fn publish(&self, prod_at: usize, event_at: usize, old: u32, new: u32) -> bool {
        // Release: the slot contents written before become visible no later than the
        // index that announces them.
        self.mem.word(prod_at).store(new, Ordering::Release);
        // SeqCst fence: orders our index store before our read of the peer's event
        // index, pairing with the fence in the peer's final check. Without it both sides
        // could read stale values: we see no event, the peer sees no work, and it sleeps
        // with an entry waiting (the lost wake-up of docs/ring-protocol.md).
        fence(Ordering::SeqCst);
        needs_notify(old, new, self.mem.word(event_at).load(Ordering::Relaxed))
    }

    #[inline]
    /// Publishes without reading the event index: for a peer known to be polling.
    fn publish_no_notify(&self, prod_at: usize, new: u32) {
        // Release: as in `publish`.
        self.mem.word(prod_at).store(new, Ordering::Release);
    }

    #[inline]
    /// Reads the peer's producer index once and checks that at most `limit` entries
    /// lie past `consumer`.
    fn peer_producer(&self, prod_at: usize, consumer: u32, limit: u32) -> Result<u32, RingError> {
        // Acquire: the slot contents the peer wrote before publishing this index are
        // visible to the slot reads that follow.
        let producer = self.mem.word(prod_at).load(Ordering::Acquire);
        check_producer(producer, consumer, limit)?;
        Ok(producer)
    }

    #[inline]
    /// The final check before sleeping: if nothing is unconsumed, ask to be woken at
    /// `consumer + 1` and look again. Returns the checked producer index; work is
    /// pending iff it differs from `consumer`.
    fn final_check(&self, prod_at: usize, event_at: usize, consumer: u32, limit: u32) -> Result<u32, RingError> {
        let producer = self.peer_producer(prod_at, consumer, limit)?;
        if producer != consumer {
            return Ok(producer);
        }
        self.mem.word(event_at).store(consumer.wrapping_add(1), Ordering::Relaxed);
        // SeqCst fence: our event store is ordered before the producer re-read, pairing
        // with the fence in `publish` (one of the two sides must see the other's store).
        fence(Ordering::SeqCst);
        self.peer_producer(prod_at, consumer, limit)
    }
}

#[cfg(all(test, not(loom)))]
mod hostile;
#[cfg(all(test, not(loom)))]
mod proptests;
#[cfg(all(test, not(loom)))]
mod stress;
#[cfg(all(test, not(loom)))]
mod tests;
