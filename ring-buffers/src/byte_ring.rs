//! Byte rings: the console ring (io/console.h) and the xenstore ring (io/xs_wire.h).
//!
//! Each direction is a power-of-two byte array with a free-running producer and consumer
//! index. The writer owns the producer index and the data bytes; the reader owns the
//! consumer index. Console page: `in[1024]` @0, `out[2048]` @1024, then `in_cons`,
//! `in_prod`, `out_cons`, `out_prod` @3072.. (u32 each). Xenstore page: `req[1024]` @0,
//! `rsp[1024]` @1024, then `req_cons`, `req_prod`, `rsp_cons`, `rsp_prod` @2048...

use crate::index::distance;
use crate::shared::{Ordering, SharedWords};
use crate::RingError;

/// One direction of a byte ring inside a shared page.
#[derive(Clone, Copy)]
pub struct ByteRingLayout {
    pub data: usize,
    pub size: u32,
    pub cons: usize,
    pub prod: usize,
}

/// Guest-to-backend console output and backend-to-guest input (io/console.h).
pub const CONSOLE_OUT: ByteRingLayout = ByteRingLayout { data: 1024, size: 2048, cons: 3080, prod: 3084 };
pub const CONSOLE_IN: ByteRingLayout = ByteRingLayout { data: 0, size: 1024, cons: 3072, prod: 3076 };
/// Xenstore requests (client to server) and responses (io/xs_wire.h).
pub const XENSTORE_REQ: ByteRingLayout = ByteRingLayout { data: 0, size: 1024, cons: 2048, prod: 2052 };
pub const XENSTORE_RSP: ByteRingLayout = ByteRingLayout { data: 1024, size: 1024, cons: 2056, prod: 2060 };

/// The side that writes bytes.
pub struct ByteWriter<'a> {
    mem: SharedWords<'a>,
    layout: ByteRingLayout,
}

/// The side that reads bytes.
pub struct ByteReader<'a> {
    mem: SharedWords<'a>,
    layout: ByteRingLayout,
}

fn check(published: u32, consumed: u32, size: u32) -> Result<u32, RingError> {
    let used = distance(published, consumed);
    if used > size {
        return Err(RingError::PeerOverrun { published, consumed });
    }
    Ok(used)
}

impl<'a> ByteWriter<'a> {
    pub fn new(mem: SharedWords<'a>, layout: ByteRingLayout) -> Self {
        assert!(layout.size.is_power_of_two() && layout.prod + 4 <= mem.len_bytes());
        ByteWriter { mem, layout }
    }

    /// Writes as much of `data` as fits; returns how much. The consumer index is the
    /// reader's: read once and checked.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, RingError> {
        let l = self.layout;
        // We are the only writer of prod, so our own last store is current.
        let prod = self.mem.word(l.prod).load(Ordering::Relaxed);
        // Acquire: the reader finished with the bytes before it advanced cons.
        let cons = self.mem.word(l.cons).load(Ordering::Acquire);
        let used = check(prod, cons, l.size).map_err(|_| RingError::PeerOverrun { published: prod, consumed: cons })?;
        let n = data.len().min((l.size - used) as usize);
        for (i, &b) in data[..n].iter().enumerate() {
            let at = prod.wrapping_add(i as u32) & (l.size - 1);
            self.mem.write_byte(l.data + at as usize, b);
        }
        // Release: the bytes are visible before the index that announces them.
        self.mem.word(l.prod).store(prod.wrapping_add(n as u32), Ordering::Release);
        Ok(n)
    }
}

impl<'a> ByteReader<'a> {
    pub fn new(mem: SharedWords<'a>, layout: ByteRingLayout) -> Self {
        assert!(layout.size.is_power_of_two() && layout.prod + 4 <= mem.len_bytes());
        ByteReader { mem, layout }
    }

    /// Reads up to `out.len()` bytes; returns how many.
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, RingError> {
        let l = self.layout;
        let cons = self.mem.word(l.cons).load(Ordering::Relaxed);
        // Acquire: the writer's bytes are visible once we see its index.
        let prod = self.mem.word(l.prod).load(Ordering::Acquire);
        let available = check(prod, cons, l.size)?;
        let n = out.len().min(available as usize);
        for (i, slot) in out[..n].iter_mut().enumerate() {
            let at = cons.wrapping_add(i as u32) & (l.size - 1);
            *slot = self.mem.read_byte(l.data + at as usize);
        }
        // Release: we are done with the bytes before the writer may reuse them.
        self.mem.word(l.cons).store(cons.wrapping_add(n as u32), Ordering::Release);
        Ok(n)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::shared::Page;

    #[test]
    fn console_round_trip_fills_and_drains() {
        let page = Page::new();
        let mut w = ByteWriter::new(page.words(), CONSOLE_OUT);
        let mut r = ByteReader::new(page.words(), CONSOLE_OUT);
        let mut out = [0u8; 4096];
        assert_eq!(r.read(&mut out), Ok(0), "empty");
        let data: std::vec::Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        assert_eq!(w.write(&data), Ok(2048), "full at the ring size");
        assert_eq!(w.write(b"x"), Ok(0));
        assert_eq!(r.read(&mut out[..100]), Ok(100));
        assert_eq!(&out[..100], &data[..100]);
        assert_eq!(w.write(&data[2048..]), Ok(100));
        assert_eq!(r.read(&mut out), Ok(2048));
        assert_eq!(&out[..1948], &data[100..2048]);
        assert_eq!(&out[1948..2048], &data[2048..2148]);
        // The input direction lives in its own bytes.
        assert_eq!(page.words().read_byte(0), 0);
    }

    #[test]
    fn wraps_near_u32_max() {
        let page = Page::new();
        for at in [XENSTORE_REQ.cons, XENSTORE_REQ.prod] {
            page.words().word(at).store(u32::MAX - 10, Ordering::Relaxed);
        }
        let mut w = ByteWriter::new(page.words(), XENSTORE_REQ);
        let mut r = ByteReader::new(page.words(), XENSTORE_REQ);
        let mut out = [0u8; 64];
        for round in 0..100u8 {
            assert_eq!(w.write(&[round; 37]), Ok(37));
            assert_eq!(r.read(&mut out), Ok(37));
            assert!(out[..37].iter().all(|&b| b == round));
        }
    }

    #[test]
    fn garbage_indexes_are_errors() {
        let page = Page::new();
        page.words().word(CONSOLE_IN.prod).store(5000, Ordering::Relaxed);
        let mut r = ByteReader::new(page.words(), CONSOLE_IN);
        assert!(r.read(&mut [0; 16]).is_err());
        page.words().word(CONSOLE_OUT.cons).store(7, Ordering::Relaxed); // cons ahead of prod
        let mut w = ByteWriter::new(page.words(), CONSOLE_OUT);
        assert!(w.write(b"hi").is_err());
    }
}
