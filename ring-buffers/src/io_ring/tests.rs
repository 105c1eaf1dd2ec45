use super::*;
use crate::shared::Page;
use zerocopy::KnownLayout;

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Msg {
    seq: u64,
    check: u64,
}

fn msg(seq: u64) -> Msg {
    Msg { seq, check: seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) }
}

/// Front and back on one page with every index (shared and private) at `start`.
fn pair(page: &Page, start: u32) -> (FrontRing<'_, Msg, Msg>, BackRing<'_, Msg, Msg>) {
    let front = FrontRing::<Msg, Msg>::init(page.words());
    for at in [REQ_PROD, RSP_PROD] {
        page.words().word(at).store(start, Ordering::Relaxed);
    }
    for at in [REQ_EVENT, RSP_EVENT] {
        page.words().word(at).store(start.wrapping_add(1), Ordering::Relaxed);
    }
    drop(front);
    (FrontRing::attach_at(page.words(), start), BackRing::attach_at(page.words(), start))
}

#[test]
fn geometry_matches_xen() {
    let page = Page::new();
    let (front, _) = pair(&page, 0);
    assert_eq!(front.slots(), 128, "(4096 - 64) / 16 = 252 -> 128");
    assert_eq!(page.words().word(REQ_EVENT).load(Ordering::Relaxed), 1);
}

fn round_trip_until_full(start: u32) {
    let page = Page::new();
    let (mut front, mut back) = pair(&page, start);
    assert_eq!(back.poll_request(), Ok(None), "empty ring");
    let slots = front.slots() as u64;
    for seq in 0..slots {
        front.push_request(&msg(seq)).unwrap();
    }
    assert_eq!(front.push_request(&msg(99)), Err(Full));
    assert_eq!(back.poll_request(), Ok(None), "nothing published yet");
    assert!(front.publish_requests(), "back end waits at start + 1");
    for seq in 0..slots {
        assert_eq!(back.poll_request(), Ok(Some(msg(seq))));
    }
    assert_eq!(back.poll_request(), Ok(None));
    assert_eq!(front.free_requests(), 0, "slots stay taken until answered");
    for seq in 0..slots {
        back.push_response(&msg(seq + 1000)).unwrap();
    }
    assert_eq!(back.push_response(&msg(0)), Err(Full), "every request answered");
    assert!(back.publish_responses());
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
    round_trip_until_full(u32::MAX - 5);
    round_trip_until_full(u32::MAX);
    // Many laps across the wrap.
    let page = Page::new();
    let (mut front, mut back) = pair(&page, u32::MAX - 1000);
    for seq in 0..5000u64 {
        front.push_request(&msg(seq)).unwrap();
        front.publish_requests();
        assert_eq!(back.poll_request(), Ok(Some(msg(seq))));
        back.push_response(&msg(seq)).unwrap();
        back.publish_responses();
        assert_eq!(front.poll_response(), Ok(Some(msg(seq))));
    }
}

#[test]
fn notifications_are_suppressed_until_asked_for() {
    let page = Page::new();
    let (mut front, mut back) = pair(&page, 0);
    front.push_request(&msg(1)).unwrap();
    assert!(front.publish_requests(), "req_event = 1 asks for the first one");
    front.push_request(&msg(2)).unwrap();
    assert!(!front.publish_requests(), "the back end has not asked again");
    assert_eq!(back.poll_request(), Ok(Some(msg(1))));
    assert_eq!(back.poll_request(), Ok(Some(msg(2))));
    assert_eq!(back.final_check_for_requests(), Ok(false), "idle: sets req_event = 3");
    front.push_request(&msg(3)).unwrap();
    assert!(front.publish_requests(), "request 3 is the one the back end waits for");
    assert_eq!(back.final_check_for_requests(), Ok(true), "work is there: no sleep");
}

#[test]
fn hostile_producer_indexes_are_errors() {
    let page = Page::new();
    let (mut front, mut back) = pair(&page, 0);
    page.words().word(REQ_PROD).store(129, Ordering::Relaxed);
    assert_eq!(back.poll_request(), Err(RingError::PeerOverrun { published: 129, consumed: 0 }));
    page.words().word(REQ_PROD).store(u32::MAX, Ordering::Relaxed);
    assert!(back.poll_request().is_err(), "a 'negative' distance is an overrun too");
    // Responses nobody asked for.
    front.push_request(&msg(1)).unwrap();
    front.publish_requests();
    page.words().word(RSP_PROD).store(2, Ordering::Relaxed);
    assert_eq!(front.poll_response(), Err(RingError::PeerOverrun { published: 2, consumed: 0 }));
    assert!(front.final_check_for_responses().is_err());
}

#[test]
fn random_headers_never_hang_or_escape() {
    let mut seed = 0x5eed_u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 32) as u32
    };
    for _ in 0..20_000 {
        let page = Page::new();
        let (mut front, mut back) = pair(&page, next());
        for _ in 0..(next() % 8) {
            let _ = front.push_request(&msg(7));
        }
        front.publish_requests();
        for at in [REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT] {
            if next() % 2 == 0 {
                page.words().word(at).store(next(), Ordering::Relaxed);
            }
        }
        // Bounded loops: each side can consume at most one ring's worth.
        let mut consumed = 0;
        while let Ok(Some(_)) = back.poll_request() {
            consumed += 1;
            assert!(consumed <= back.slots());
            let _ = back.push_response(&msg(0));
        }
        let _ = back.publish_responses();
        let _ = back.final_check_for_requests();
        let mut answers = 0;
        while let Ok(Some(_)) = front.poll_response() {
            answers += 1;
            assert!(answers <= front.slots());
        }
        let _ = front.final_check_for_responses();
    }
}

/// Two threads, two rings, traffic in both directions at once; every message carries a
/// sequence number and a checksum, every request gets its response.
#[test]
fn stress_two_threads_both_directions() {
    // 10 million each way optimized (about 0.1 s); fewer in debug builds.
    const MESSAGES: u64 = if cfg!(debug_assertions) { 1_000_000 } else { 10_000_000 };
    let pages = [Page::new(), Page::new()];
    FrontRing::<Msg, Msg>::init(pages[0].words());
    FrontRing::<Msg, Msg>::init(pages[1].words());
    std::thread::scope(|s| {
        for me in 0..2 {
            let pages = &pages;
            s.spawn(move || {
                let mut front: FrontRing<Msg, Msg> = FrontRing::attach_at(pages[me].words(), 0);
                let mut back: BackRing<Msg, Msg> = BackRing::attach(pages[1 - me].words());
                let (mut sent, mut answered, mut served) = (0u64, 0u64, 0u64);
                while answered < MESSAGES || served < MESSAGES {
                    while sent < MESSAGES && front.push_request(&msg(sent)).is_ok() {
                        sent += 1;
                    }
                    front.publish_requests();
                    while let Some(request) = back.poll_request().unwrap() {
                        assert_eq!(request, msg(served), "request out of order or corrupt");
                        back.push_response(&Msg { seq: request.seq, check: !request.check }).unwrap();
                        served += 1;
                    }
                    back.publish_responses();
                    while let Some(response) = front.poll_response().unwrap() {
                        assert_eq!(response, Msg { seq: answered, check: !msg(answered).check });
                        answered += 1;
                    }
                    std::hint::spin_loop();
                }
            });
        }
    });
}
