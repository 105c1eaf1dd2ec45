//! The request/response ring (io/ring.h).
//!
//! Layout of the shared area: `req_prod` @0, `req_event` @4, `rsp_prod` @8,
//! `rsp_event` @12, padding to 64 bytes, then the slots, each as large as the larger of
//! request and response. The slot count is the largest power of two that fits. The
//! front end produces requests and consumes responses; the back end the reverse. Each
//! keeps private indexes (`req_prod_pvt`/`rsp_cons`, `req_cons`/`rsp_prod_pvt`) and
//! publishes them in batches.
//!
//! Notification suppression: a consumer about to sleep stores "wake me at index N" in
//! its event word; a producer that publishes a batch covering N must notify (event
//! channel). The final check closes the race between "nothing left" and "event set".

use crate::index::{distance, needs_notify, round_down_pow2};
use crate::shared::{fence, Ordering, SharedWords};
use crate::RingError;
use core::marker::PhantomData;
use zerocopy::{FromBytes, Immutable, IntoBytes};

const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;
/// Header size: four indexes and 48 bytes of padding (io/ring.h).
pub const HEADER_BYTES: usize = 64;

/// Slot size for a request/response pair: the larger, rounded up to whole words.
pub const fn slot_bytes(request: usize, response: usize) -> usize {
    let larger = if request > response { request } else { response };
    (larger + 3) & !3
}

/// Slots in a shared area of `area_bytes` (Xen's __RING_SIZE).
pub const fn slot_count(area_bytes: usize, slot: usize) -> usize {
    if area_bytes <= HEADER_BYTES || slot == 0 {
        0
    } else {
        round_down_pow2((area_bytes - HEADER_BYTES) / slot)
    }
}

// Xen's numbers for one 4 KiB page: block ring (112-byte requests, 16-byte responses)
// has 32 slots; the network rings (12-byte tx requests) 256.
const _: () = assert!(slot_count(4096, slot_bytes(112, 16)) == 32);
const _: () = assert!(slot_count(4096, slot_bytes(12, 4)) == 256);
const _: () = assert!(slot_count(4 * 4096, slot_bytes(112, 16)) == 128);

/// Geometry shared by both ends.
#[derive(Clone, Copy)]
struct Geometry<'a> {
    mem: SharedWords<'a>,
    slot: usize,
    slots: u32,
}

impl<'a> Geometry<'a> {
    fn new<Req, Rsp>(mem: SharedWords<'a>) -> Self {
        let slot = slot_bytes(core::mem::size_of::<Req>(), core::mem::size_of::<Rsp>());
        let slots = slot_count(mem.len_bytes(), slot) as u32;
        assert!(slots > 0, "the shared area cannot hold one slot");
        Geometry { mem, slot, slots }
    }

    fn offset(&self, index: u32) -> usize {
        HEADER_BYTES + (index & (self.slots - 1)) as usize * self.slot
    }

    fn read<T: FromBytes + IntoBytes>(&self, index: u32) -> T {
        let mut value = T::new_zeroed();
        self.mem.read_bytes(self.offset(index), value.as_mut_bytes());
        value
    }

    fn write<T: IntoBytes + Immutable>(&self, index: u32, value: &T) {
        self.mem.write_bytes(self.offset(index), value.as_bytes());
    }

    fn load(&self, at: usize, order: Ordering) -> u32 {
        self.mem.word(at).load(order)
    }

    fn store(&self, at: usize, value: u32, order: Ordering) {
        self.mem.word(at).store(value, order)
    }

    /// Publishes a new producer index and applies the notification rule.
    fn publish(&self, prod_at: usize, event_at: usize, new: u32) -> bool {
        let old = self.load(prod_at, Ordering::Relaxed);
        // Release: the slot contents written before become visible no later than the
        // index that announces them.
        self.store(prod_at, new, Ordering::Release);
        // SeqCst fence: orders our index store before our read of the peer's event
        // index, pairing with the fence in the peer's final check. Without it both sides
        // could read stale values: we see no event, the peer sees no work, and it sleeps
        // with an entry waiting (the lost wake-up of docs/ring-protocol.md).
        fence(Ordering::SeqCst);
        needs_notify(old, new, self.load(event_at, Ordering::Relaxed))
    }

    /// Reads the peer's producer index once and checks it: at most `limit` entries
    /// may be outstanding past our consumer index.
    fn peer_producer(&self, prod_at: usize, consumer: u32, limit: u32) -> Result<u32, RingError> {
        // Acquire: the slot contents the peer wrote before publishing are visible to
        // the reads that follow.
        let published = self.load(prod_at, Ordering::Acquire);
        if distance(published, consumer) > limit {
            return Err(RingError::PeerOverrun { published, consumed: consumer });
        }
        Ok(published)
    }

    /// The final check before sleeping: ask to be woken at `consumer + 1`, then look
    /// again. Returns whether work arrived meanwhile.
    fn final_check(&self, prod_at: usize, event_at: usize, consumer: u32, limit: u32) -> Result<bool, RingError> {
        if distance(self.peer_producer(prod_at, consumer, limit)?, consumer) > 0 {
            return Ok(true);
        }
        self.store(event_at, consumer.wrapping_add(1), Ordering::Relaxed);
        // SeqCst fence: our event store must be visible before we re-read the producer,
        // pairing with the fence in `publish`.
        fence(Ordering::SeqCst);
        Ok(distance(self.peer_producer(prod_at, consumer, limit)?, consumer) > 0)
    }
}

/// The front end: produces requests, consumes responses.
pub struct FrontRing<'a, Req, Rsp> {
    geometry: Geometry<'a>,
    req_prod_pvt: u32,
    rsp_cons: u32,
    /// The back end's rsp_prod as last read and checked: re-read only when consumed up
    /// to it, so polling does not pull the shared cache line on every entry.
    rsp_prod_seen: u32,
    _types: PhantomData<(Req, Rsp)>,
}

impl<'a, Req, Rsp> FrontRing<'a, Req, Rsp>
where
    Req: IntoBytes + Immutable,
    Rsp: FromBytes + IntoBytes,
{
    /// Initialises the shared header (the front end owns the ring's creation) and
    /// attaches to it.
    pub fn init(mem: SharedWords<'a>) -> Self {
        let ring = Self::attach_at(mem, 0);
        ring.geometry.store(REQ_PROD, 0, Ordering::Relaxed);
        ring.geometry.store(RSP_PROD, 0, Ordering::Relaxed);
        ring.geometry.store(REQ_EVENT, 1, Ordering::Relaxed);
        ring.geometry.store(RSP_EVENT, 1, Ordering::Release);
        ring
    }

    /// Attaches to an initialised ring whose indexes start at `start` (tests use this to
    /// start near u32::MAX).
    pub fn attach_at(mem: SharedWords<'a>, start: u32) -> Self {
        FrontRing { geometry: Geometry::new::<Req, Rsp>(mem), req_prod_pvt: start, rsp_cons: start, rsp_prod_seen: start, _types: PhantomData }
    }

    pub fn slots(&self) -> u32 {
        self.geometry.slots
    }

    /// Slots free for new requests (a slot is free again once its response is consumed).
    pub fn free_requests(&self) -> u32 {
        self.geometry.slots - distance(self.req_prod_pvt, self.rsp_cons)
    }

    /// Writes a request into the next slot (not yet visible to the back end).
    pub fn push_request(&mut self, request: &Req) -> Result<(), Full> {
        if self.free_requests() == 0 {
            return Err(Full);
        }
        self.geometry.write(self.req_prod_pvt, request);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Makes pushed requests visible; returns whether the back end must be notified.
    pub fn publish_requests(&mut self) -> bool {
        self.geometry.publish(REQ_PROD, REQ_EVENT, self.req_prod_pvt)
    }

    /// Makes pushed requests visible without the notification check (for a back end
    /// known to be polling).
    pub fn publish_requests_no_notify(&mut self) {
        self.geometry.store(REQ_PROD, self.req_prod_pvt, Ordering::Release);
    }

    /// Takes the next response, if one is published. A back end claiming more
    /// responses than requests outstanding is an error.
    pub fn poll_response(&mut self) -> Result<Option<Rsp>, RingError> {
        if self.rsp_prod_seen == self.rsp_cons {
            let outstanding = distance(self.req_prod_pvt, self.rsp_cons);
            self.rsp_prod_seen = self.geometry.peer_producer(RSP_PROD, self.rsp_cons, outstanding)?;
            if self.rsp_prod_seen == self.rsp_cons {
                return Ok(None);
            }
        }
        let response = self.geometry.read(self.rsp_cons);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(response))
    }

    /// Before waiting for responses: true if one arrived (keep polling), false if the
    /// back end will now notify us for the next one.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        let outstanding = distance(self.req_prod_pvt, self.rsp_cons);
        self.geometry.final_check(RSP_PROD, RSP_EVENT, self.rsp_cons, outstanding)
    }
}

/// The back end: consumes requests, produces responses.
pub struct BackRing<'a, Req, Rsp> {
    geometry: Geometry<'a>,
    req_cons: u32,
    rsp_prod_pvt: u32,
    /// The front end's req_prod as last read and checked (see `FrontRing`).
    req_prod_seen: u32,
    _types: PhantomData<(Req, Rsp)>,
}

impl<'a, Req, Rsp> BackRing<'a, Req, Rsp>
where
    Req: FromBytes + IntoBytes,
    Rsp: IntoBytes + Immutable,
{
    /// Attaches to a ring the front end initialised.
    pub fn attach(mem: SharedWords<'a>) -> Self {
        Self::attach_at(mem, 0)
    }

    pub fn attach_at(mem: SharedWords<'a>, start: u32) -> Self {
        BackRing { geometry: Geometry::new::<Req, Rsp>(mem), req_cons: start, rsp_prod_pvt: start, req_prod_seen: start, _types: PhantomData }
    }

    pub fn slots(&self) -> u32 {
        self.geometry.slots
    }

    /// Takes the next request, copied out of shared memory before the caller looks at
    /// it (the front end may rewrite the slot at any time). A front end claiming more
    /// requests than the ring holds is an error.
    pub fn poll_request(&mut self) -> Result<Option<Req>, RingError> {
        if self.req_prod_seen == self.req_cons {
            // Requests we consumed but have not answered still occupy slots.
            let limit = self.geometry.slots - distance(self.req_cons, self.rsp_prod_pvt);
            self.req_prod_seen = self.geometry.peer_producer(REQ_PROD, self.req_cons, limit)?;
            if self.req_prod_seen == self.req_cons {
                return Ok(None);
            }
        }
        let request = self.geometry.read(self.req_cons);
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(request))
    }

    /// Writes the response to the oldest unanswered request (into its slot).
    pub fn push_response(&mut self, response: &Rsp) -> Result<(), Full> {
        if self.rsp_prod_pvt == self.req_cons {
            return Err(Full); // nothing to answer
        }
        self.geometry.write(self.rsp_prod_pvt, response);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Makes pushed responses visible; returns whether the front end must be notified.
    pub fn publish_responses(&mut self) -> bool {
        self.geometry.publish(RSP_PROD, RSP_EVENT, self.rsp_prod_pvt)
    }

    pub fn publish_responses_no_notify(&mut self) {
        self.geometry.store(RSP_PROD, self.rsp_prod_pvt, Ordering::Release);
    }

    /// Before waiting for requests: true if one arrived, false if the front end will
    /// now notify us.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        let limit = self.geometry.slots - distance(self.req_cons, self.rsp_prod_pvt);
        self.geometry.final_check(REQ_PROD, REQ_EVENT, self.req_cons, limit)
    }
}

/// No free slot (front end) or no request to answer (back end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

#[cfg(all(test, not(loom)))]
mod tests;
