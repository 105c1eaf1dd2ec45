//! The back end: consumes requests, produces responses (io/ring.h's back ring).

use super::{Geometry, PushError, Slot, REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD};
use crate::index::distance;
use crate::shared::SharedWords;
use crate::RingError;
use core::marker::PhantomData;
use zerocopy::{FromBytes, Immutable, IntoBytes};

pub struct BackRing<'a, Req, Rsp> {
    ring: Geometry<'a>,
    req_cons: u32,
    /// The front end's `req_prod` as last read and checked (see `FrontRing`).
    req_prod_seen: u32,
    /// Responses written into slots, published or not.
    rsp_prod_pvt: u32,
    /// Responses published: our private copy (see `FrontRing::req_prod`).
    rsp_prod: u32,
    _types: PhantomData<(Req, Rsp)>,
}

impl<'a, Req, Rsp> BackRing<'a, Req, Rsp>
where
    Req: FromBytes + IntoBytes,
    Rsp: IntoBytes + Immutable,
{
    #[inline]
    /// Attaches to a ring the front end created.
    pub fn attach(mem: SharedWords<'a>) -> Result<Self, RingError> {
        Self::attach_at(mem, 0)
    }

    #[inline]
    /// Attaches with every index at `start` (see `FrontRing::init_at`).
    pub fn attach_at(mem: SharedWords<'a>, start: u32) -> Result<Self, RingError> {
        Ok(BackRing {
            ring: Geometry::new(mem, Slot::<Req, Rsp>::BYTES)?,
            req_cons: start,
            req_prod_seen: start,
            rsp_prod_pvt: start,
            rsp_prod: start,
            _types: PhantomData,
        })
    }

    #[inline]
    pub fn slots(&self) -> u32 {
        self.ring.slots
    }

    #[inline]
    /// Requests consumed and not answered yet.
    pub fn unanswered(&self) -> u32 {
        distance(self.req_cons, self.rsp_prod_pvt)
    }

    #[inline]
    /// How many requests the front end can have published past `req_cons`: the slots
    /// not held by a request we consumed but did not answer (io/ring.h's check that a
    /// front end's `req_prod` is at most a ring ahead of our responses).
    fn request_limit(&self) -> u32 {
        self.ring.slots - self.unanswered()
    }

    #[inline]
    /// Takes the next request, copied out of shared memory before the caller looks at
    /// it (the front end may rewrite the slot at any time, so validate the copy). A
    /// front end claiming more requests than fit is an error.
    pub fn poll_request(&mut self) -> Result<Option<Req>, RingError> {
        if self.req_prod_seen == self.req_cons {
            self.req_prod_seen = self.ring.peer_producer(REQ_PROD, self.req_cons, self.request_limit())?;
            if self.req_prod_seen == self.req_cons {
                return Ok(None);
            }
        }
        let request = self.ring.read(self.req_cons);
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(request))
    }

    #[inline]
    /// Writes the response to the oldest unanswered request, into that request's slot.
    pub fn push_response(&mut self, response: &Rsp) -> Result<(), PushError> {
        if self.unanswered() == 0 {
            return Err(PushError::NoRequestToAnswer);
        }
        self.ring.write(self.rsp_prod_pvt, response);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    #[inline]
    /// Makes the pushed responses visible. Returns whether the front end asked to be
    /// notified for one of them.
    pub fn publish_responses(&mut self) -> bool {
        let notify = self.ring.publish(RSP_PROD, RSP_EVENT, self.rsp_prod, self.rsp_prod_pvt);
        self.rsp_prod = self.rsp_prod_pvt;
        notify
    }

    #[inline]
    /// Makes the pushed responses visible without the notification check: only for a
    /// front end known to be polling.
    pub fn publish_responses_no_notify(&mut self) {
        self.ring.publish_no_notify(RSP_PROD, self.rsp_prod_pvt);
        self.rsp_prod = self.rsp_prod_pvt;
    }

    #[inline]
    /// Call when `poll_request` returned `None`, before waiting for a notification:
    /// `true` means a request arrived meanwhile (poll again, do not wait); `false` means
    /// the front end will notify when it publishes the next one.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.req_prod_seen != self.req_cons {
            return Ok(true);
        }
        self.req_prod_seen = self.ring.final_check(REQ_PROD, REQ_EVENT, self.req_cons, self.request_limit())?;
        Ok(self.req_prod_seen != self.req_cons)
    }
}
