//! Loom model checks of the notification protocol: across every interleaving loom
//! explores, no request is lost and no wake-up is lost.
//!
//! Run with: RUSTFLAGS="--cfg loom" cargo test -p ring-buffers --release --test loom
#![cfg(loom)]

use loom::sync::atomic::AtomicU32;
use loom::sync::{Arc, Notify};
use ring_buffers::io_ring::{BackRing, FrontRing};
use ring_buffers::SharedWords;

/// Interleavings explored, summed over the models (printed at the end of each).
static EXPLORED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A ring with one-word messages in 16 + 2 words: 64-byte header, two 4-byte slots
/// (the smallest ring that still wraps), so the state space stays small.
fn shared() -> Arc<Vec<AtomicU32>> {
    Arc::new((0..16 + 2).map(|_| AtomicU32::new(0)).collect())
}

/// The front end publishes `count` requests, notifying when the rule says so; the back
/// end consumes, and sleeps only after a final check says nothing is left. The event
/// channel is a latched notification (`Notify`: a notify before the wait is not lost,
/// like a pending bit). If the front end fails to notify while the back end sleeps with
/// work pending, the back end never wakes and loom reports the deadlock.
fn lost_wakeup_model(count: u32) {
    loom::model(move || {
        EXPLORED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let words = shared();
        FrontRing::<u32, u32>::init(SharedWords::new(&words));
        let event_channel = Arc::new(Notify::new());

        let producer = {
            let (words, event_channel) = (words.clone(), event_channel.clone());
            loom::thread::spawn(move || {
                let mut front = FrontRing::<u32, u32>::attach_at(SharedWords::new(&words), 0);
                for value in 0..count {
                    front.push_request(&value).unwrap();
                    if front.publish_requests() {
                        event_channel.notify();
                    }
                }
            })
        };

        let mut back = BackRing::<u32, u32>::attach(SharedWords::new(&words));
        let mut next = 0;
        loop {
            while let Some(value) = back.poll_request().unwrap() {
                assert_eq!(value, next, "requests arrive in order, intact");
                next += 1;
                back.push_response(&value).unwrap();
                back.publish_responses();
            }
            if next == count {
                break;
            }
            if back.final_check_for_requests().unwrap() {
                continue;
            }
            // Asleep until the event channel fires.
            event_channel.wait();
        }
        producer.join().unwrap();
        assert_eq!(next, count, "every request consumed");
    });
}

#[test]
fn no_lost_wakeup_or_message_one_request() {
    lost_wakeup_model(1);
    println!("loom interleavings explored so far: {}", EXPLORED.load(std::sync::atomic::Ordering::Relaxed));
}

#[test]
fn no_lost_wakeup_or_message_two_requests() {
    lost_wakeup_model(2);
    println!("loom interleavings explored so far: {}", EXPLORED.load(std::sync::atomic::Ordering::Relaxed));
}
