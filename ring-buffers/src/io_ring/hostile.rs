//! Hostile-peer tests: whatever the peer writes into the shared page, and whenever,
//! every call returns (an error where the peer claims the impossible), stays inside the
//! ring and never loops without bound.

use super::tests::{msg, pair, Msg};
use super::*;
use crate::shared::Page;

fn shared(page: &Page, at: usize) -> u32 {
    page.words().word(at).load(Ordering::Relaxed)
}

fn scribble(page: &Page, at: usize, value: u32) {
    page.words().word(at).store(value, Ordering::Relaxed)
}

#[test]
fn hostile_producer_indexes_are_errors() {
    let page = Page::new();
    let (mut front, mut back) = pair(&page, 0);
    scribble(&page, REQ_PROD, 129);
    assert_eq!(back.poll_request(), Err(RingError::ProducerOverrun { producer: 129, consumer: 0, limit: 128 }));
    scribble(&page, REQ_PROD, u32::MAX);
    assert!(back.poll_request().is_err(), "a producer behind the consumer is an overrun too");
    assert!(back.final_check_for_requests().is_err());
    scribble(&page, REQ_PROD, 128);
    assert!(back.poll_request().unwrap().is_some(), "a full ring is legitimate");

    // Responses nobody asked for: one request published, a second only pushed.
    front.push_request(&msg(1)).unwrap();
    front.publish_requests();
    front.push_request(&msg(2)).unwrap();
    scribble(&page, RSP_PROD, 2);
    assert_eq!(front.poll_response(), Err(RingError::ProducerOverrun { producer: 2, consumer: 0, limit: 1 }));
    assert!(front.final_check_for_responses().is_err());
    scribble(&page, RSP_PROD, 1);
    assert!(front.poll_response().unwrap().is_some());
}

#[test]
fn peer_scribbling_on_our_own_indexes_changes_nothing() {
    let page = Page::new();
    let (mut front, mut back) = pair(&page, 0);
    front.push_request(&msg(1)).unwrap();
    front.publish_requests();
    // The back end rewrites the front end's req_prod and its own req_event wildly.
    scribble(&page, REQ_PROD, 1_000_000);
    scribble(&page, REQ_EVENT, 2);
    front.push_request(&msg(2)).unwrap();
    assert!(front.publish_requests(), "the rule uses our private old index (1), not the scribble");
    assert_eq!(shared(&page, REQ_PROD), 2);
    assert_eq!(back.poll_request(), Ok(Some(msg(1))));
    assert_eq!(back.poll_request(), Ok(Some(msg(2))));
}

/// A small deterministic generator, so failures reproduce.
fn lcg(seed: u64) -> impl FnMut() -> u32 {
    let mut state = seed;
    move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 32) as u32
    }
}

#[test]
fn random_headers_and_slots_never_hang_or_escape() {
    let mut next = lcg(0x5eed);
    for _ in 0..20_000 {
        let page = Page::new();
        let (mut front, mut back) = pair(&page, next());
        for _ in 0..next() % 8 {
            let _ = front.push_request(&msg(7));
        }
        front.publish_requests();
        for at in [REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT, HEADER_BYTES + 4 * (next() as usize % 512)] {
            if next().is_multiple_of(2) {
                scribble(&page, at, next());
            }
        }
        // Each side can consume at most one ring's worth per published index.
        let mut consumed = 0;
        while let Ok(Some(_)) = back.poll_request() {
            consumed += 1;
            assert!(consumed <= back.slots());
            back.push_response(&msg(0)).unwrap();
        }
        back.publish_responses();
        let _ = back.final_check_for_requests();
        let mut answers = 0;
        while let Ok(Some(_)) = front.poll_response() {
            answers += 1;
            assert!(answers <= front.slots());
        }
        let _ = front.final_check_for_responses();
    }
}

/// The peer rewrites the whole page continuously while both ends work: every call
/// returns (possibly an error), none panics or loops without bound.
#[test]
fn concurrent_garbage_writer_is_survived() {
    let page = Page::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut next = lcg(42);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let at = 4 * (next() as usize % 1024);
                // Mostly the header, where the indexes are.
                let at = if next().is_multiple_of(2) { at % 16 } else { at };
                scribble(&page, at, next());
            }
        });
        // Run until the garbage was met many times (it takes the other thread being
        // scheduled), with a deadline so a hang would fail rather than stall the suite.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let (mut errors, mut calls, mut round) = (0u64, 0u64, 0u32);
        while errors < 10_000 || round < 100_000 {
            assert!(std::time::Instant::now() < deadline, "only {errors} errors in {calls} calls");
            round += 1;
            let (mut front, mut back) =
                (FrontRing::<Msg, Msg>::attach_at(page.words(), round).unwrap(), BackRing::<Msg, Msg>::attach_at(page.words(), round).unwrap());
            for _ in 0..3 {
                let _ = front.push_request(&msg(1));
            }
            front.publish_requests();
            let mut taken = 0;
            loop {
                calls += 1;
                match back.poll_request() {
                    Ok(Some(_)) => {
                        taken += 1;
                        assert!(taken <= back.slots());
                        back.push_response(&msg(2)).unwrap();
                    }
                    Ok(None) => break,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            back.publish_responses();
            calls += 1;
            if front.final_check_for_responses().is_err() {
                errors += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(errors < calls, "valid states were met too ({errors} errors in {calls} calls)");
    });
}
