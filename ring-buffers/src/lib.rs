//! Shared-memory rings, byte-compatible with Xen's (io/ring.h, io/console.h,
//! io/xs_wire.h), for frontends and backends in different domains.
//!
//! The shared area is written by another domain at any time, so it is never a Rust
//! struct: it is an array of 32-bit atomic words ([`SharedWords`]) and every access is an
//! atomic load or store. Each side keeps its own indexes privately; an index the peer
//! publishes is read once, checked, and turned into an error ([`RingError`]) when it
//! claims the impossible. Nothing the peer writes can make us read or write outside the
//! ring or loop forever.
//!
//! - [`io_ring`]: the request/response ring ([`FrontRing`], [`BackRing`]) with
//!   notification suppression.
//! - [`console`] and [`xenstore`]: the byte-stream rings, built on [`byte_ring`].
//! - [`index`]: free-running u32 index arithmetic.
//!
//! docs/ring-protocol.md explains the protocol and the race the final check closes.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod byte_ring;
pub mod console;
pub mod index;
pub mod io_ring;
pub mod shared;
pub mod xenstore;

pub use io_ring::{BackRing, FrontRing, PushError};
pub use shared::SharedWords;
#[cfg(not(loom))]
pub use shared::{Page, SharedPages};

/// Why a ring operation failed. Every variant but `AreaTooSmall` means the peer wrote an
/// index no correct peer writes: the driver should stop using the ring and disconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The peer's producer index claims more unconsumed entries than it can have made
    /// (more than the free slots, more responses than requests, more bytes than the
    /// ring holds).
    ProducerOverrun { producer: u32, consumer: u32, limit: u32 },
    /// The peer's consumer index is ahead of our producer index or more than a ring
    /// behind it.
    ConsumerOutOfRange { producer: u32, consumer: u32 },
    /// The shared area given at setup cannot hold the ring's layout.
    AreaTooSmall { bytes: usize, needed: usize },
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            RingError::ProducerOverrun { producer, consumer, limit } => {
                write!(f, "peer producer index {producer} is {} past consumer {consumer}, at most {limit} possible", producer.wrapping_sub(consumer))
            }
            RingError::ConsumerOutOfRange { producer, consumer } => {
                write!(f, "peer consumer index {consumer} is not within one ring behind producer {producer}")
            }
            RingError::AreaTooSmall { bytes, needed } => {
                write!(f, "shared area of {bytes} bytes, the ring needs at least {needed}")
            }
        }
    }
}
