//! Two-thread stress tests: millions of messages, each with a sequence number and a
//! checksum, requests and responses flowing in both directions at once.

use super::tests::{msg, Msg};
use super::*;
use crate::shared::Page;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Messages each thread sends (and so also serves) in the polling test.
pub const POLLING_MESSAGES: u64 = if cfg!(debug_assertions) { 1_000_000 } else { 10_000_000 };
/// Messages each thread sends in the test that sleeps on notifications.
pub const SLEEPING_MESSAGES: u64 = if cfg!(debug_assertions) { 200_000 } else { 2_000_000 };

/// The answer to a request: a different checksum, so a response can never be mistaken
/// for the request still sitting in its slot.
fn answer(request: &Msg) -> Msg {
    Msg { seq: request.seq, check: !request.check }
}

/// A latched event channel: a notification sent while nobody waits stays pending, as an
/// event channel's pending bit does.
struct EventChannel {
    pending: Mutex<bool>,
    wake: Condvar,
}

impl EventChannel {
    fn new() -> Self {
        EventChannel { pending: Mutex::new(false), wake: Condvar::new() }
    }

    fn notify(&self) {
        *self.pending.lock().unwrap() = true;
        self.wake.notify_one();
    }

    /// Sleeps until notified. A lost wake-up would sleep forever: fail instead.
    fn wait(&self) {
        let mut pending = self.pending.lock().unwrap();
        while !*pending {
            let (guard, timeout) = self.wake.wait_timeout(pending, Duration::from_secs(20)).unwrap();
            assert!(!timeout.timed_out(), "lost wake-up: asleep 20 s with no notification");
            pending = guard;
        }
        *pending = false;
    }
}

/// One thread's share: front end of `mine` (sending `count` requests), back end of
/// `theirs` (answering the other thread's). With `channels`, it sleeps whenever the
/// final checks say there is nothing to do, and relies on notifications to wake.
fn run_side(mine: &Page, theirs: &Page, count: u64, channels: Option<(&EventChannel, &EventChannel)>) {
    let mut front: FrontRing<Msg, Msg> = FrontRing::attach_at(mine.words(), 0).unwrap();
    let mut back: BackRing<Msg, Msg> = BackRing::attach(theirs.words()).unwrap();
    let (mut sent, mut answered, mut served) = (0u64, 0u64, 0u64);
    let notify_peer = || {
        if let Some((_, peer)) = channels {
            peer.notify();
        }
    };
    while answered < count || served < count {
        let mut progress = false;
        while sent < count && front.push_request(&msg(sent)).is_ok() {
            sent += 1;
            progress = true;
        }
        if front.publish_requests() {
            notify_peer();
        }
        while let Some(request) = back.poll_request().unwrap() {
            assert_eq!(request, msg(served), "request out of order or corrupt");
            back.push_response(&answer(&request)).unwrap();
            served += 1;
            progress = true;
        }
        if back.publish_responses() {
            notify_peer();
        }
        while let Some(response) = front.poll_response().unwrap() {
            assert_eq!(response, answer(&msg(answered)), "response out of order or corrupt");
            answered += 1;
            progress = true;
        }
        match channels {
            Some((me, _)) if !progress && (answered < count || served < count) => {
                // Both final checks run before sleeping: each re-arms its event index.
                let responses = front.final_check_for_responses().unwrap();
                let requests = back.final_check_for_requests().unwrap();
                let can_send = sent < count && front.free_requests() > 0;
                if !responses && !requests && !can_send {
                    me.wait();
                }
            }
            _ => std::hint::spin_loop(),
        }
    }
}

fn run_pair(count: u64, sleeping: bool) {
    let pages = [Page::new(), Page::new()];
    for page in &pages {
        FrontRing::<Msg, Msg>::init(page.words()).unwrap();
    }
    let channels = [EventChannel::new(), EventChannel::new()];
    std::thread::scope(|s| {
        for me in 0..2 {
            let (pages, channels) = (&pages, &channels);
            s.spawn(move || {
                let channels = sleeping.then(|| (&channels[me], &channels[1 - me]));
                run_side(&pages[me], &pages[1 - me], count, channels);
            });
        }
    });
}

#[test]
fn stress_polling_both_directions() {
    run_pair(POLLING_MESSAGES, false);
    std::println!("stress (polling): {} requests + {} responses each way", POLLING_MESSAGES, POLLING_MESSAGES);
}

#[test]
fn stress_sleeping_on_notifications_both_directions() {
    run_pair(SLEEPING_MESSAGES, true);
    std::println!("stress (sleeping): {} requests + {} responses each way", SLEEPING_MESSAGES, SLEEPING_MESSAGES);
}
