//! Shared-memory rings, byte-compatible with Xen's (io/ring.h, io/console.h,
//! io/xs_wire.h), for frontends and backends in different domains.
//!
//! The shared page is written by another domain at any time, so it is never a Rust
//! struct: it is an array of 32-bit atomic words ([`SharedWords`]) and every access is an
//! atomic load or store. Indexes the peer publishes are read once, checked, and turned
//! into an error ([`RingError`]) when they claim the impossible; nothing the peer writes
//! can make us read or write outside the ring or loop forever.
//!
//! - [`io_ring`]: the request/response ring with notification suppression.
//! - [`byte_ring`]: the console and xenstore byte rings.
//! - [`index`]: free-running u32 index arithmetic.
//!
//! docs/ring-protocol.md explains the protocol and the race the final check closes.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod byte_ring;
pub mod index;
pub mod io_ring;
pub mod shared;

pub use shared::SharedWords;

/// What a misbehaving peer can make an operation fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The peer's producer index claims more unconsumed entries than the ring holds (or
    /// than were ever requested): the peer is broken or hostile. The caller should
    /// disconnect it.
    PeerOverrun { published: u32, consumed: u32 },
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::PeerOverrun { published, consumed } => {
                write!(f, "peer published index {published} with {consumed} consumed: more than the ring can hold")
            }
        }
    }
}
