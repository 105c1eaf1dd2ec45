//! Byte-stream rings: one direction of the console ring (io/console.h) or of the
//! xenstore ring (io/xs_wire.h).
//!
//! Each direction is a power-of-two byte array with a free-running producer and consumer
//! index (u32, masked to find the byte, as io/console.h and io/xs_wire.h define). The
//! writer owns the producer index and the free bytes; the reader owns the consumer
//! index. Each side keeps its own index privately and only publishes it, so the peer
//! scribbling on it changes nothing for us; the peer's index is read once per call and
//! checked to be within one ring of ours. There is no event index: a side that moved
//! its index notifies the other (the caller does, when a call returns a non-zero count).

use crate::index::{check_producer, distance};
use crate::shared::{Ordering, SharedWords};
use crate::RingError;

/// Where one direction lives in its shared page (byte offsets).
#[derive(Clone, Copy, Debug)]
pub struct ByteRingLayout {
    pub data: usize,
    /// A power of two.
    pub size: u32,
    pub cons: usize,
    pub prod: usize,
}

impl ByteRingLayout {
    /// Checks the layout (a programming error if wrong) and that `mem` holds it.
    fn check(&self, mem: &SharedWords<'_>) -> Result<(), RingError> {
        assert!(self.size.is_power_of_two() && self.size >= 4, "ring size must be a power of two >= 4");
        assert!(self.data.is_multiple_of(4) && self.cons.is_multiple_of(4) && self.prod.is_multiple_of(4), "fields must be word-aligned");
        let needed = (self.data + self.size as usize).max(self.cons + 4).max(self.prod + 4);
        if mem.len_bytes() < needed {
            return Err(RingError::AreaTooSmall { bytes: mem.len_bytes(), needed });
        }
        Ok(())
    }

    /// The (up to two) contiguous pieces of the data array holding `len` bytes from
    /// free-running index `index`, as (byte offset, length) pairs.
    fn pieces(&self, index: u32, len: usize) -> [(usize, usize); 2] {
        let start = (index & (self.size - 1)) as usize;
        let first = len.min(self.size as usize - start);
        [(self.data + start, first), (self.data, len - first)]
    }
}

/// The side that writes bytes (owns `prod`).
pub struct ByteWriter<'a> {
    mem: SharedWords<'a>,
    layout: ByteRingLayout,
    prod: u32,
}

/// The side that reads bytes (owns `cons`).
pub struct ByteReader<'a> {
    mem: SharedWords<'a>,
    layout: ByteRingLayout,
    cons: u32,
}

impl<'a> ByteWriter<'a> {
    /// Attaches, resuming from the producer index in the page (a page set up by the
    /// domain builder or by an earlier run of this side). If the peer had corrupted it,
    /// the first `write` finds the consumer out of range and says so.
    pub fn attach(mem: SharedWords<'a>, layout: ByteRingLayout) -> Result<Self, RingError> {
        layout.check(&mem)?;
        let prod = mem.word(layout.prod).load(Ordering::Relaxed);
        Ok(ByteWriter { mem, layout, prod })
    }

    /// Writes as much of `data` as fits and publishes it; returns how much.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, RingError> {
        let l = self.layout;
        // Acquire: the reader finished reading the bytes it released before advancing
        // `cons`, so our writes into them below cannot overtake its reads.
        let cons = self.mem.word(l.cons).load(Ordering::Acquire);
        let used = distance(self.prod, cons);
        if used > l.size {
            return Err(RingError::ConsumerOutOfRange { producer: self.prod, consumer: cons });
        }
        let n = data.len().min((l.size - used) as usize);
        if n == 0 {
            return Ok(0);
        }
        let mut done = 0;
        for (offset, len) in l.pieces(self.prod, n) {
            self.mem.write_bytes(offset, &data[done..done + len]);
            done += len;
        }
        self.prod = self.prod.wrapping_add(n as u32);
        // Release: the bytes are visible no later than the index that announces them.
        self.mem.word(l.prod).store(self.prod, Ordering::Release);
        Ok(n)
    }
}

impl<'a> ByteReader<'a> {
    /// Attaches, resuming from the consumer index in the page (see `ByteWriter`).
    pub fn attach(mem: SharedWords<'a>, layout: ByteRingLayout) -> Result<Self, RingError> {
        layout.check(&mem)?;
        let cons = mem.word(layout.cons).load(Ordering::Relaxed);
        Ok(ByteReader { mem, layout, cons })
    }

    /// Reads up to `out.len()` bytes, copied out of the page; returns how many. A writer
    /// claiming more bytes than the ring holds is an error.
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, RingError> {
        let l = self.layout;
        // Acquire: the writer's bytes are visible once we see the index covering them.
        let prod = self.mem.word(l.prod).load(Ordering::Acquire);
        let available = check_producer(prod, self.cons, l.size)?;
        let n = out.len().min(available as usize);
        if n == 0 {
            return Ok(0);
        }
        let mut done = 0;
        for (offset, len) in l.pieces(self.cons, n) {
            self.mem.read_bytes(offset, &mut out[done..done + len]);
            done += len;
        }
        self.cons = self.cons.wrapping_add(n as u32);
        // Release: our reads of the bytes are done before the writer may reuse them.
        self.mem.word(l.cons).store(self.cons, Ordering::Release);
        Ok(n)
    }
}

/// Both directions of a page, as one side sees them: it writes one, reads the other.
pub struct ByteDuplex<'a> {
    pub tx: ByteWriter<'a>,
    pub rx: ByteReader<'a>,
}

impl<'a> ByteDuplex<'a> {
    pub fn attach(mem: SharedWords<'a>, tx: ByteRingLayout, rx: ByteRingLayout) -> Result<Self, RingError> {
        Ok(ByteDuplex { tx: ByteWriter::attach(mem, tx)?, rx: ByteReader::attach(mem, rx)? })
    }

    /// Writes what fits of `data`; notify the peer if the count is non-zero.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, RingError> {
        self.tx.write(data)
    }

    /// Reads what is there; notify the peer if the count is non-zero (it may be waiting
    /// for space).
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, RingError> {
        self.rx.read(out)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
