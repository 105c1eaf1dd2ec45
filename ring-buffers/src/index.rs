//! Ring indexes are free-running u32 counters (io/ring.h): they only ever increase, wrap
//! at 2^32, and a slot is `index & (size - 1)`. Distances are wrapping differences, which
//! stay correct across the wrap as long as no distance exceeds 2^31.

use crate::RingError;

/// Entries between `consumer` and `producer` (`producer - consumer`, wrapping).
#[inline]
pub fn distance(producer: u32, consumer: u32) -> u32 {
    producer.wrapping_sub(consumer)
}

/// Xen's notification rule: after moving a producer index from `old` to `new`, the peer
/// asked to be told (its event index `event`) iff `event` lies in `(old, new]`, i.e.
/// `new - event < new - old` in wrapping arithmetic.
#[inline]
pub fn needs_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// Checks a producer index the peer published: at most `limit` entries may lie between
/// our consumer index and it. Returns how many do. A "negative" distance (the producer
/// behind us) wraps to a huge one and is rejected too, so a hostile value can never
/// turn into a long or endless consume loop.
#[inline]
pub fn check_producer(producer: u32, consumer: u32, limit: u32) -> Result<u32, RingError> {
    let unconsumed = distance(producer, consumer);
    if unconsumed > limit {
        return Err(RingError::ProducerOverrun { producer, consumer, limit });
    }
    Ok(unconsumed)
}

/// The largest power of two not above `n` (0 for 0).
pub const fn round_down_pow2(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn notify_rule_examples() {
        // Event at old+1 (the peer is waiting for the next entry): notify.
        assert!(needs_notify(10, 11, 11));
        // Peer wants to hear only later.
        assert!(!needs_notify(10, 12, 20));
        // Event already passed before this batch: no notify.
        assert!(!needs_notify(10, 12, 10));
        // Across the wrap.
        assert!(needs_notify(u32::MAX - 1, 2, u32::MAX));
        assert!(!needs_notify(u32::MAX - 1, 2, 3));
        assert_eq!(round_down_pow2(36), 32);
        assert_eq!(round_down_pow2(336), 256);
        assert_eq!(round_down_pow2(1), 1);
    }

    proptest! {
        #[test]
        fn distance_is_translation_invariant(start: u32, len in 0u32..=1 << 31, shift: u32) {
            let end = start.wrapping_add(len);
            prop_assert_eq!(distance(end, start), len);
            prop_assert_eq!(distance(end.wrapping_add(shift), start.wrapping_add(shift)), len);
        }

        #[test]
        fn notify_iff_event_in_batch(old: u32, batch in 0u32..1 << 20, offset in 0u32..1 << 21) {
            let new = old.wrapping_add(batch);
            let event = old.wrapping_add(offset);
            // The event is inside (old, new] exactly when 0 < offset <= batch.
            prop_assert_eq!(needs_notify(old, new, event), offset > 0 && offset <= batch);
        }

        #[test]
        fn producer_check_accepts_exactly_the_possible(consumer: u32, limit in 0u32..=1 << 16, ahead: u32) {
            let producer = consumer.wrapping_add(ahead);
            let checked = check_producer(producer, consumer, limit);
            if ahead <= limit {
                prop_assert_eq!(checked, Ok(ahead));
            } else {
                prop_assert_eq!(checked, Err(RingError::ProducerOverrun { producer, consumer, limit }));
            }
        }

        #[test]
        fn slot_of_index_wraps_like_the_counter(index: u32, log2 in 0u32..12) {
            let size = 1u32 << log2;
            prop_assert_eq!(index.wrapping_add(size) & (size - 1), index & (size - 1));
        }
    }
}
