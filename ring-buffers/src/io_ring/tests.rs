//! Unit and hostile-peer tests of the I/O ring.

use super::*;
use crate::shared::{Page, SharedPages};
use zerocopy::KnownLayout;

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(super) struct Msg {
    pub seq: u64,
    pub check: u64,
}

pub(super) fn msg(seq: u64) -> Msg {
    Msg { seq, check: seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555 }
}

/// Front and back on one page with every index (shared and private) at `start`.
pub(super) fn pair(page: &Page, start: u32) -> (FrontRing<'_, Msg, Msg>, BackRing<'_, Msg, Msg>) {
    (FrontRing::init_at(page.words(), start).unwrap(), BackRing::attach_at(page.words(), start).unwrap())
}

fn shared(page: &Page, at: usize) -> u32 {
    page.words().word(at).load(Ordering::Relaxed)
}

#[test]
fn init_writes_xen_header_and_geometry_matches() {
    let page = Page::new();
    page.words().write_bytes(0, &[0xff; 64]);
    let (front, back) = pair(&page, 0);
    assert_eq!([shared(&page, REQ_PROD), shared(&page, REQ_EVENT), shared(&page, RSP_PROD), shared(&page, RSP_EVENT)], [0, 1, 0, 1]);
    let mut pad = [0xffu8; 48];
    page.words().read_bytes(PAD, &mut pad);
    assert_eq!(pad, [0; 48], "padding zeroed as Xen's ring init does");
    assert_eq!(front.slots(), 128, "(4096 - 64) / 16 = 252 -> 128");
    assert_eq!(back.slots(), 128);

    // A block-ring-sized request (112 bytes, 8-aligned) and a 16-byte response.
    type BlockReq = [u64; 14];
    let four = SharedPages::<4>::new();
    assert_eq!(FrontRing::<BlockReq, Msg>::init(page.words()).unwrap().slots(), 32);
    assert_eq!(FrontRing::<BlockReq, Msg>::init(four.words()).unwrap().slots(), 128);
    // Net-ring-sized: 12-byte request, 4-byte response.
    assert_eq!(FrontRing::<[u32; 3], u32>::init(page.words()).unwrap().slots(), 256);
}

#[test]
fn too_small_area_is_an_error() {
    let words: std::vec::Vec<_> = (0..16 + 3).map(|_| crate::shared::AtomicU32::new(0)).collect();
    let tiny = SharedWords::new(&words);
    assert_eq!(FrontRing::<Msg, Msg>::init(tiny).err(), Some(RingError::AreaTooSmall { bytes: 76, needed: 80 }));
    assert!(BackRing::<u32, u32>::attach(tiny).is_ok(), "three 4-byte slots round down to two");
}

fn round_trip_until_full(start: u32) {
    let page = Page::new();
    let (mut front, mut back) = pair(&page, start);
    assert_eq!(back.poll_request(), Ok(None), "empty ring");
    assert_eq!(front.poll_response(), Ok(None), "empty ring");
    let slots = front.slots() as u64;
    for seq in 0..slots {
        front.push_request(&msg(seq)).unwrap();
    }
    assert_eq!(front.push_request(&msg(99)), Err(PushError::Full));
    assert_eq!(back.poll_request(), Ok(None), "nothing published yet");
    assert!(front.publish_requests(), "the back end waits at start + 1");
    assert_eq!(shared(&page, REQ_PROD), start.wrapping_add(slots as u32));
    for seq in 0..slots {
        assert_eq!(back.poll_request(), Ok(Some(msg(seq))));
    }
    assert_eq!(back.poll_request(), Ok(None));
    assert_eq!(front.free_requests(), 0, "slots stay taken until answered");
    assert_eq!(back.unanswered() as u64, slots);
    for seq in 0..slots {
        back.push_response(&msg(seq + 1000)).unwrap();
    }
    assert_eq!(back.push_response(&msg(0)), Err(PushError::NoRequestToAnswer));
    assert!(back.publish_responses(), "the front end waits at start + 1");
    for seq in 0..slots {
        assert_eq!(front.poll_response(), Ok(Some(msg(seq + 1000))));
    }
    assert_eq!(front.poll_response(), Ok(None));
    assert_eq!(front.free_requests() as u64, slots);
}

#[test]
fn full_and_empty_ring() {
    round_trip_until_full(0);
}

#[test]
fn wraps_around_u32_max() {
    for start in [u32::MAX - 5, u32::MAX - 127, u32::MAX, 1 << 31] {
        round_trip_until_full(start);
    }
    // Many laps across the wrap, with uneven batches.
    let page = Page::new();
    let (mut front, mut back) = pair(&page, u32::MAX - 1000);
    let (mut sent, mut got) = (0u64, 0u64);
    for round in 0..3000u64 {
        for _ in 0..round % 7 + 1 {
            if front.push_request(&msg(sent)).is_ok() {
                sent += 1;
            }
        }
        front.publish_requests();
        while let Some(request) = back.poll_request().unwrap() {
            back.push_response(&request).unwrap();
        }
        back.publish_responses();
        while let Some(response) = front.poll_response().unwrap() {
            assert_eq!(response, msg(got));
            got += 1;
        }
    }
    assert_eq!(got, sent);
    assert!(sent > 3 * 128, "went round the ring many times");
}

#[test]
fn notifications_are_suppressed_until_asked_for() {
    let page = Page::new();
    let (mut front, mut back) = pair(&page, 0);
    front.push_request(&msg(1)).unwrap();
    assert!(front.publish_requests(), "req_event = 1 asks for the first one");
    front.push_request(&msg(2)).unwrap();
    assert!(!front.publish_requests(), "the back end has not asked again");
    assert!(!front.publish_requests(), "an empty publish never notifies");
    assert_eq!(back.poll_request(), Ok(Some(msg(1))));
    assert_eq!(back.final_check_for_requests(), Ok(true), "request 2 is pending: no sleep");
    assert_eq!(shared(&page, REQ_EVENT), 1, "the event is only moved when going idle");
    assert_eq!(back.poll_request(), Ok(Some(msg(2))));
    assert_eq!(back.final_check_for_requests(), Ok(false), "idle: sets req_event = 3");
    assert_eq!(shared(&page, REQ_EVENT), 3);
    front.push_request(&msg(3)).unwrap();
    front.push_request(&msg(4)).unwrap();
    assert!(front.publish_requests(), "the batch 3..=4 covers the event");
    assert_eq!(back.final_check_for_requests(), Ok(true), "work is there: no sleep");

    // The response direction, the same way.
    for _ in 0..4 {
        back.push_response(&msg(0)).unwrap();
        back.poll_request().unwrap();
    }
    assert!(back.publish_responses(), "rsp_event = 1");
    assert_eq!(front.final_check_for_responses(), Ok(true));
    while front.poll_response().unwrap().is_some() {}
    assert_eq!(front.final_check_for_responses(), Ok(false), "idle: rsp_event = 5");
    assert_eq!(shared(&page, RSP_EVENT), 5);
    back.publish_responses_no_notify();
    assert_eq!(front.poll_response(), Ok(None), "a no-notify publish of nothing new");
}

#[test]
fn no_notify_publish_is_visible() {
    let page = Page::new();
    let (mut front, mut back) = pair(&page, 7);
    front.push_request(&msg(1)).unwrap();
    front.publish_requests_no_notify();
    assert_eq!(back.poll_request(), Ok(Some(msg(1))));
    back.push_response(&msg(2)).unwrap();
    back.publish_responses_no_notify();
    assert_eq!(front.poll_response(), Ok(Some(msg(2))));
}
