//! Tests of the byte rings, the console and xenstore pages.

use super::*;
use crate::console::{self, CONSOLE_IN, CONSOLE_OUT};
use crate::shared::Page;
use crate::xenstore::{self, XENSTORE_REQ, XENSTORE_RSP};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::vec::Vec;

fn set(page: &Page, at: usize, value: u32) {
    page.words().word(at).store(value, Ordering::Relaxed);
}

fn get(page: &Page, at: usize) -> u32 {
    page.words().word(at).load(Ordering::Relaxed)
}

#[test]
fn console_round_trip_fills_and_drains() {
    let page = Page::new();
    let mut guest = console::front(page.words()).unwrap();
    let mut daemon = console::back(page.words()).unwrap();
    let mut out = [0u8; 4096];
    assert_eq!(daemon.read(&mut out), Ok(0), "empty");
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(guest.write(&data), Ok(2048), "full at the ring size");
    assert_eq!(guest.write(b"x"), Ok(0));
    assert_eq!((get(&page, CONSOLE_OUT.prod), get(&page, CONSOLE_OUT.cons)), (2048, 0));
    assert_eq!(daemon.read(&mut out[..100]), Ok(100));
    assert_eq!(&out[..100], &data[..100]);
    assert_eq!(guest.write(&data[2048..]), Ok(100), "wraps inside the array");
    assert_eq!(daemon.read(&mut out), Ok(2048));
    assert_eq!(&out[..1948], &data[100..2048]);
    assert_eq!(&out[1948..2048], &data[2048..2148]);
    let mut raw = [0u8; 1024];
    page.words().read_bytes(CONSOLE_IN.data, &mut raw);
    assert_eq!(raw, [0; 1024], "output never lands in the input array");

    // Input, the other way.
    assert_eq!(daemon.write(b"ls\n"), Ok(3));
    assert_eq!(guest.read(&mut out), Ok(3));
    assert_eq!(&out[..3], b"ls\n");
    assert_eq!((get(&page, CONSOLE_IN.prod), get(&page, CONSOLE_IN.cons)), (3, 3));
}

#[test]
fn xenstore_round_trip_in_both_directions() {
    let page = Page::new();
    let mut client = xenstore::client(page.words()).unwrap();
    let mut server = xenstore::server(page.words()).unwrap();
    let mut buf = [0u8; 1500];
    assert_eq!(client.write(&[1; 1500]), Ok(1024));
    assert_eq!(server.read(&mut buf), Ok(1024));
    assert_eq!(server.write(&[2; 600]), Ok(600));
    assert_eq!(client.read(&mut buf), Ok(600));
    assert!(buf[..600].iter().all(|&b| b == 2));
    assert_eq!(get(&page, XENSTORE_REQ.prod), 1024);
    assert_eq!(get(&page, XENSTORE_RSP.prod), 600);
}

#[test]
fn attach_resumes_from_the_page() {
    let page = Page::new();
    set(&page, CONSOLE_OUT.prod, 10);
    set(&page, CONSOLE_OUT.cons, 4);
    let mut guest = console::front(page.words()).unwrap();
    let mut daemon = console::back(page.words()).unwrap();
    assert_eq!(daemon.read(&mut [0; 64]), Ok(6), "six bytes left by an earlier run");
    assert_eq!(guest.write(b"abc"), Ok(3));
    assert_eq!(get(&page, CONSOLE_OUT.prod), 13);
}

#[test]
fn small_area_is_an_error() {
    let words: Vec<_> = (0..512).map(|_| crate::shared::AtomicU32::new(0)).collect();
    let half = SharedWords::new(&words);
    assert_eq!(console::front(half).err(), Some(RingError::AreaTooSmall { bytes: 2048, needed: 3088 }));
    assert!(xenstore::client(half).is_err());
}

#[test]
fn wraps_near_u32_max() {
    let page = Page::new();
    for at in [XENSTORE_REQ.cons, XENSTORE_REQ.prod] {
        set(&page, at, u32::MAX - 10);
    }
    let mut w = ByteWriter::attach(page.words(), XENSTORE_REQ).unwrap();
    let mut r = ByteReader::attach(page.words(), XENSTORE_REQ).unwrap();
    let mut out = [0u8; 64];
    for round in 0..100u8 {
        assert_eq!(w.write(&[round; 37]), Ok(37));
        assert_eq!(r.read(&mut out), Ok(37));
        assert!(out[..37].iter().all(|&b| b == round));
    }
    assert_eq!(get(&page, XENSTORE_REQ.prod), (u32::MAX - 10).wrapping_add(3700));
}

#[test]
fn garbage_indexes_are_errors() {
    let page = Page::new();
    let mut guest = console::front(page.words()).unwrap();
    set(&page, CONSOLE_IN.prod, 1025);
    assert_eq!(guest.read(&mut [0; 16]), Err(RingError::ProducerOverrun { producer: 1025, consumer: 0, limit: 1024 }));
    set(&page, CONSOLE_IN.prod, 1024);
    assert_eq!(guest.read(&mut [0; 16]), Ok(16), "a full ring is legitimate");
    set(&page, CONSOLE_OUT.cons, 7);
    assert_eq!(guest.write(b"hi"), Err(RingError::ConsumerOutOfRange { producer: 0, consumer: 7 }));
    set(&page, CONSOLE_OUT.cons, 0);
    set(&page, CONSOLE_OUT.prod, 99);
    assert_eq!(guest.write(b"hi"), Ok(2), "our own producer index is private");
    assert_eq!(get(&page, CONSOLE_OUT.prod), 2);
}

proptest! {
    /// Any interleaving of writes and reads of any sizes, from any starting index,
    /// behaves like a byte queue bounded by the ring size.
    #[test]
    fn byte_ring_behaves_like_a_bounded_queue(start: u32, ops in proptest::collection::vec((any::<bool>(), 0usize..1500), 1..60)) {
        let page = Page::new();
        set(&page, XENSTORE_RSP.prod, start);
        set(&page, XENSTORE_RSP.cons, start);
        let mut w = ByteWriter::attach(page.words(), XENSTORE_RSP).unwrap();
        let mut r = ByteReader::attach(page.words(), XENSTORE_RSP).unwrap();
        let mut model = VecDeque::new();
        let mut counter = 0u8;
        for (write, len) in ops {
            if write {
                let data: Vec<u8> = (0..len).map(|_| { counter = counter.wrapping_add(13); counter }).collect();
                let n = w.write(&data).unwrap();
                prop_assert_eq!(n, len.min(1024 - model.len()));
                model.extend(&data[..n]);
            } else {
                let mut out = std::vec![0u8; len];
                let n = r.read(&mut out).unwrap();
                prop_assert_eq!(n, len.min(model.len()));
                let expected: Vec<u8> = model.drain(..n).collect();
                prop_assert_eq!(&out[..n], &expected[..]);
            }
        }
    }

    /// Garbage in all four index words: every call returns, within the ring, and an
    /// error exactly when the peer's index is more than a ring away from ours.
    #[test]
    fn garbage_in_the_indexes_is_caught(values: [u32; 4], len in 0usize..3000) {
        let page = Page::new();
        for (at, value) in [CONSOLE_IN.cons, CONSOLE_IN.prod, CONSOLE_OUT.cons, CONSOLE_OUT.prod].into_iter().zip(values) {
            set(&page, at, value);
        }
        let mut guest = console::front(page.words()).unwrap();
        let written = guest.write(&std::vec![0xab; len]);
        let used = values[3].wrapping_sub(values[2]);
        match written {
            Ok(n) => prop_assert!(used <= 2048 && n == len.min((2048 - used) as usize)),
            Err(_) => prop_assert!(used > 2048),
        }
        let mut out = std::vec![0u8; len];
        let read = guest.read(&mut out);
        let available = values[1].wrapping_sub(values[0]);
        match read {
            Ok(n) => prop_assert!(available <= 1024 && n == len.min(available as usize)),
            Err(_) => prop_assert!(available > 1024),
        }
    }
}

/// Two threads stream bytes through the xenstore request ring: every byte arrives, in
/// order (a position-derived pattern), with a running checksum compared at the end.
#[test]
fn stress_two_threads_byte_stream() {
    const BYTES: u64 = if cfg!(debug_assertions) { 2_000_000 } else { 50_000_000 };
    let pattern = |i: u64| (i ^ (i >> 8) ^ (i >> 16)) as u8;
    let page = Page::new();
    std::thread::scope(|s| {
        let page = &page;
        s.spawn(move || {
            let mut w = ByteWriter::attach(page.words(), XENSTORE_REQ).unwrap();
            let mut chunk = [0u8; 300];
            let mut sent = 0u64;
            while sent < BYTES {
                let len = chunk.len().min((BYTES - sent) as usize);
                for (i, b) in chunk[..len].iter_mut().enumerate() {
                    *b = pattern(sent + i as u64);
                }
                sent += w.write(&chunk[..len]).unwrap() as u64;
            }
        });
        let mut r = ByteReader::attach(page.words(), XENSTORE_REQ).unwrap();
        let mut buf = [0u8; 700];
        let (mut got, mut sum) = (0u64, 0u64);
        while got < BYTES {
            let n = r.read(&mut buf).unwrap();
            for &b in &buf[..n] {
                assert_eq!(b, pattern(got), "byte {got}");
                sum = sum.wrapping_mul(31).wrapping_add(b as u64);
                got += 1;
            }
        }
        let expected = (0..BYTES).fold(0u64, |s, i| s.wrapping_mul(31).wrapping_add(pattern(i) as u64));
        assert_eq!(sum, expected);
    });
}
