//! Serial input, routed as Xen routes it: to dom0 (which reads it with
//! CONSOLEIO_read after VIRQ_CONSOLE) or, after CTRL-a three times, to the hypervisor,
//! whose debug keys answer it; CTRL-a three times again switches back.

/// CTRL-a.
const SWITCH_KEY: u8 = 0x01;
/// Bytes dom0 has not read yet; more are dropped (Xen's ring is smaller still).
pub const RING_BYTES: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialInput {
    to_hypervisor: bool,
    switch_keys: u8,
    ring: [u8; RING_BYTES],
    start: usize,
    len: usize,
}

/// What one received byte means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A debug key for the hypervisor.
    DebugKey(u8),
    /// Queued for dom0: raise VIRQ_CONSOLE.
    ForDom0,
    /// Input now goes to the hypervisor (true) or dom0 (false).
    Switched(bool),
    /// Swallowed (a CTRL-a of a possible switch, or dom0's ring is full).
    Nothing,
}

impl Default for SerialInput {
    fn default() -> Self {
        SerialInput { to_hypervisor: false, switch_keys: 0, ring: [0; RING_BYTES], start: 0, len: 0 }
    }
}

impl SerialInput {
    pub fn feed(&mut self, byte: u8) -> Input {
        if byte == SWITCH_KEY {
            self.switch_keys += 1;
            if self.switch_keys == 3 {
                self.switch_keys = 0;
                self.to_hypervisor = !self.to_hypervisor;
                return Input::Switched(self.to_hypervisor);
            }
            return Input::Nothing;
        }
        self.switch_keys = 0;
        if self.to_hypervisor {
            return Input::DebugKey(byte);
        }
        if self.len == RING_BYTES {
            return Input::Nothing;
        }
        self.ring[(self.start + self.len) % RING_BYTES] = byte;
        self.len += 1;
        Input::ForDom0
    }

    /// Copies up to `out.len()` queued bytes, oldest first, leaving them queued; how many.
    pub fn peek(&self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        for (i, slot) in out[..n].iter_mut().enumerate() {
            *slot = self.ring[(self.start + i) % RING_BYTES];
        }
        n
    }

    /// Drops the `n` oldest queued bytes (after `peek` handed them on).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.start = (self.start + n) % RING_BYTES;
        self.len -= n;
    }

    /// Takes up to `out.len()` queued bytes; how many.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = self.peek(out);
        self.consume(n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_go_to_dom0_until_ctrl_a_three_times() {
        let mut input = SerialInput::default();
        assert_eq!(input.feed(b'l'), Input::ForDom0);
        assert_eq!(input.feed(1), Input::Nothing);
        assert_eq!(input.feed(b's'), Input::ForDom0, "one CTRL-a is not a switch");
        assert_eq!([input.feed(1), input.feed(1), input.feed(1)], [Input::Nothing, Input::Nothing, Input::Switched(true)]);
        assert_eq!(input.feed(b'q'), Input::DebugKey(b'q'));
        assert_eq!([input.feed(1), input.feed(1), input.feed(1)][2], Input::Switched(false));
        let mut out = [0u8; 8];
        assert_eq!(input.read(&mut out), 2);
        assert_eq!(&out[..2], b"ls");
        assert_eq!(input.read(&mut out), 0);
    }

    #[test]
    fn a_full_ring_drops_and_wraps() {
        let mut input = SerialInput::default();
        for i in 0..RING_BYTES + 5 {
            input.feed(b'a' + (i % 26) as u8);
        }
        let mut out = [0u8; 10];
        assert_eq!(input.read(&mut out), 10);
        for _ in 0..10 {
            assert_eq!(input.feed(b'z'), Input::ForDom0);
        }
        assert_eq!(input.feed(b'z'), Input::Nothing, "full again");
        let mut all = [0u8; RING_BYTES];
        assert_eq!(input.read(&mut all), RING_BYTES);
        assert_eq!(&all[RING_BYTES - 10..], &[b'z'; 10]);
    }
}
