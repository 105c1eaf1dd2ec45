//! The front end: produces requests, consumes responses (io/ring.h's front ring).

use super::{Geometry, PushError, Slot, REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD};
use crate::index::distance;
use crate::shared::SharedWords;
use crate::RingError;
use core::marker::PhantomData;
use zerocopy::{FromBytes, Immutable, IntoBytes};

pub struct FrontRing<'a, Req, Rsp> {
    ring: Geometry<'a>,
    /// Requests written into slots, published or not.
    req_prod_pvt: u32,
    /// Requests published: our private copy, so a peer scribbling on the shared
    /// `req_prod` changes neither our notify decisions nor our checks.
    req_prod: u32,
    rsp_cons: u32,
    /// The back end's `rsp_prod` as last read and checked. Re-read only once consumed
    /// up to it, so polling does not pull the shared cache line for every entry.
    rsp_prod_seen: u32,
    _types: PhantomData<(Req, Rsp)>,
}

impl<'a, Req, Rsp> FrontRing<'a, Req, Rsp>
where
    Req: IntoBytes + Immutable,
    Rsp: FromBytes + IntoBytes,
{
    #[inline]
    /// Creates the ring in `mem` (the front end owns creation, as in Xen) and attaches.
    pub fn init(mem: SharedWords<'a>) -> Result<Self, RingError> {
        Self::init_at(mem, 0)
    }

    #[inline]
    /// Like `init`, with every index starting at `start` instead of 0 (tests use this
    /// to run across the u32 wrap; a back end must then `attach_at` the same start).
    pub fn init_at(mem: SharedWords<'a>, start: u32) -> Result<Self, RingError> {
        let ring = Self::attach_at(mem, start)?;
        ring.ring.init_header(start);
        Ok(ring)
    }

    #[inline]
    /// Attaches to a ring created earlier whose indexes all stand at `start`, without
    /// touching the shared header.
    pub fn attach_at(mem: SharedWords<'a>, start: u32) -> Result<Self, RingError> {
        Ok(FrontRing {
            ring: Geometry::new(mem, Slot::<Req, Rsp>::BYTES)?,
            req_prod_pvt: start,
            req_prod: start,
            rsp_cons: start,
            rsp_prod_seen: start,
            _types: PhantomData,
        })
    }

    #[inline]
    pub fn slots(&self) -> u32 {
        self.ring.slots
    }

    #[inline]
    /// Slots free for new requests: a slot is free again once its response is consumed.
    pub fn free_requests(&self) -> u32 {
        self.ring.slots - distance(self.req_prod_pvt, self.rsp_cons)
    }

    #[inline]
    /// Writes a request into the next slot; the back end sees it once published.
    pub fn push_request(&mut self, request: &Req) -> Result<(), PushError> {
        if self.free_requests() == 0 {
            return Err(PushError::Full);
        }
        self.ring.write(self.req_prod_pvt, request);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    #[inline]
    /// Makes the pushed requests visible. Returns whether the back end asked to be
    /// notified for one of them (then send its event-channel notification).
    pub fn publish_requests(&mut self) -> bool {
        let notify = self.ring.publish(REQ_PROD, REQ_EVENT, self.req_prod, self.req_prod_pvt);
        self.req_prod = self.req_prod_pvt;
        notify
    }

    #[inline]
    /// Makes the pushed requests visible without the notification check: only for a
    /// back end known to be polling (it never sleeps on this ring).
    pub fn publish_requests_no_notify(&mut self) {
        self.ring.publish_no_notify(REQ_PROD, self.req_prod_pvt);
        self.req_prod = self.req_prod_pvt;
    }

    #[inline]
    /// Requests published but not yet answered by a consumed response: the most
    /// responses the back end can have produced.
    fn awaiting_response(&self) -> u32 {
        distance(self.req_prod, self.rsp_cons)
    }

    #[inline]
    /// Takes the next response, copied out of the slot. A back end claiming more
    /// responses than published requests is an error.
    pub fn poll_response(&mut self) -> Result<Option<Rsp>, RingError> {
        if self.rsp_prod_seen == self.rsp_cons {
            self.rsp_prod_seen = self.ring.peer_producer(RSP_PROD, self.rsp_cons, self.awaiting_response())?;
            if self.rsp_prod_seen == self.rsp_cons {
                return Ok(None);
            }
        }
        let response = self.ring.read(self.rsp_cons);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(response))
    }

    #[inline]
    /// Call when `poll_response` returned `None`, before waiting for a notification:
    /// `true` means a response arrived meanwhile (poll again, do not wait); `false`
    /// means the back end will notify when its next response is published.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.rsp_prod_seen != self.rsp_cons {
            return Ok(true);
        }
        self.rsp_prod_seen = self.ring.final_check(RSP_PROD, RSP_EVENT, self.rsp_cons, self.awaiting_response())?;
        Ok(self.rsp_prod_seen != self.rsp_cons)
    }
}
