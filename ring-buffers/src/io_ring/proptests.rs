//! Property tests: the ring against a plain model, from any starting index, and the
//! exact rule for rejecting a hostile producer index.

use super::*;
use crate::index::distance;
use crate::shared::AtomicU32;
use proptest::prelude::*;

/// A 64-byte header and eight 8-byte slots: small, so full rings are frequent.
fn area() -> std::vec::Vec<AtomicU32> {
    (0..16 + 16).map(|_| AtomicU32::new(0)).collect()
}

#[derive(Clone, Debug)]
enum Op {
    Push(u8),
    PublishRequests,
    PollRequests(u8),
    Respond(u8),
    PublishResponses,
    PollResponses(u8),
    FinalCheckRequests,
    FinalCheckResponses,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..12).prop_map(Op::Push),
        Just(Op::PublishRequests),
        (0u8..12).prop_map(Op::PollRequests),
        (0u8..12).prop_map(Op::Respond),
        Just(Op::PublishResponses),
        (0u8..12).prop_map(Op::PollResponses),
        Just(Op::FinalCheckRequests),
        Just(Op::FinalCheckResponses),
    ]
}

fn start() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (0u32..64).prop_map(|d| u32::MAX - d), (0u32..64).prop_map(|d| (1 << 31) - d)]
}

/// What each index must be, kept with plain counters (messages carry their number).
#[derive(Default)]
struct Model {
    req_pvt: u64,
    req_pub: u64,
    req_cons: u64,
    rsp_pvt: u64,
    rsp_pub: u64,
    rsp_cons: u64,
    req_event: u64,
    rsp_event: u64,
}

const SLOTS: u64 = 8;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ring_behaves_like_the_model(start in start(), ops in proptest::collection::vec(op(), 1..80)) {
        let words = area();
        let mut front = FrontRing::<u64, u64>::init_at(SharedWords::new(&words), start).unwrap();
        let mut back = BackRing::<u64, u64>::attach_at(SharedWords::new(&words), start).unwrap();
        prop_assert_eq!(front.slots() as u64, SLOTS);
        let mut m = Model { req_event: 1, rsp_event: 1, ..Model::default() };
        // Indexes in the ring are `start + model`, wrapping.
        let at = |n: u64| start.wrapping_add(n as u32);
        for op in ops {
            match op {
                Op::Push(n) => for _ in 0..n {
                    let fits = m.req_pvt - m.rsp_cons < SLOTS;
                    prop_assert_eq!(front.push_request(&m.req_pvt).is_ok(), fits);
                    if fits { m.req_pvt += 1; }
                },
                Op::PublishRequests => {
                    let notify = front.publish_requests();
                    prop_assert_eq!(notify, m.req_pub < m.req_event && m.req_event <= m.req_pvt);
                    m.req_pub = m.req_pvt;
                }
                Op::PollRequests(n) => for _ in 0..n {
                    let expected = (m.req_cons < m.req_pub).then_some(m.req_cons);
                    prop_assert_eq!(back.poll_request(), Ok(expected));
                    if expected.is_some() { m.req_cons += 1; }
                },
                Op::Respond(n) => for _ in 0..n {
                    let owed = m.rsp_pvt < m.req_cons;
                    // The response names its request by number, plus a marker bit.
                    prop_assert_eq!(back.push_response(&(m.rsp_pvt | 1 << 63)).is_ok(), owed);
                    if owed { m.rsp_pvt += 1; }
                },
                Op::PublishResponses => {
                    let notify = back.publish_responses();
                    prop_assert_eq!(notify, m.rsp_pub < m.rsp_event && m.rsp_event <= m.rsp_pvt);
                    m.rsp_pub = m.rsp_pvt;
                }
                Op::PollResponses(n) => for _ in 0..n {
                    let expected = (m.rsp_cons < m.rsp_pub).then_some(m.rsp_cons | 1 << 63);
                    prop_assert_eq!(front.poll_response(), Ok(expected));
                    if expected.is_some() { m.rsp_cons += 1; }
                },
                Op::FinalCheckRequests => {
                    let pending = m.req_cons < m.req_pub;
                    prop_assert_eq!(back.final_check_for_requests(), Ok(pending));
                    if !pending { m.req_event = m.req_cons + 1; }
                }
                Op::FinalCheckResponses => {
                    let pending = m.rsp_cons < m.rsp_pub;
                    prop_assert_eq!(front.final_check_for_responses(), Ok(pending));
                    if !pending { m.rsp_event = m.rsp_cons + 1; }
                }
            }
            // The shared header always shows exactly what was published and asked for.
            let word = |offset: usize| words[offset / 4].load(Ordering::Relaxed);
            prop_assert_eq!(word(REQ_PROD), at(m.req_pub));
            prop_assert_eq!(word(RSP_PROD), at(m.rsp_pub));
            prop_assert_eq!(word(REQ_EVENT), at(m.req_event));
            prop_assert_eq!(word(RSP_EVENT), at(m.rsp_event));
        }
    }

    /// After any history, a hostile `req_prod` is rejected exactly when it claims more
    /// requests than the slots not held by unanswered ones, and `rsp_prod` exactly when
    /// it claims more responses than published requests.
    #[test]
    fn hostile_producer_rejected_exactly_when_impossible(
        start in start(), pushed in 0u32..=8, answered_frac in 0u32..=8, req_prod: u32, rsp_prod: u32,
    ) {
        let words = area();
        let mut front = FrontRing::<u64, u64>::init_at(SharedWords::new(&words), start).unwrap();
        let mut back = BackRing::<u64, u64>::attach_at(SharedWords::new(&words), start).unwrap();
        for seq in 0..pushed { front.push_request(&(seq as u64)).unwrap(); }
        front.publish_requests();
        while back.poll_request().unwrap().is_some() {}
        let answered = answered_frac.min(pushed);
        for _ in 0..answered { back.push_response(&0).unwrap(); }
        back.publish_responses();
        let req_cons = start.wrapping_add(pushed);

        words[REQ_PROD / 4].store(req_prod, Ordering::Relaxed);
        let limit = 8 - (pushed - answered);
        match back.poll_request() {
            Err(e) => {
                prop_assert!(distance(req_prod, req_cons) > limit);
                prop_assert_eq!(e, RingError::ProducerOverrun { producer: req_prod, consumer: req_cons, limit });
            }
            Ok(None) => prop_assert_eq!(req_prod, req_cons),
            Ok(Some(_)) => prop_assert!(distance(req_prod, req_cons) >= 1 && distance(req_prod, req_cons) <= limit),
        }

        words[RSP_PROD / 4].store(rsp_prod, Ordering::Relaxed);
        let ahead = distance(rsp_prod, start);
        match front.poll_response() {
            Err(_) => prop_assert!(ahead > pushed),
            Ok(None) => prop_assert_eq!(ahead, 0),
            Ok(Some(_)) => prop_assert!(ahead >= 1 && ahead <= pushed),
        }
    }
}
