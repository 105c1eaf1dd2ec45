//! Writes cpio "newc" archives: the boot bundle format the hypervisor reads.

/// The entries the hypervisor looks for.
pub const DOM0_KERNEL: &str = "dom0/kernel";
pub const DOM0_CMDLINE: &str = "dom0/cmdline";

const TRAILER: &str = "TRAILER!!!";

/// An archive under construction.
#[derive(Default)]
pub struct NewcWriter {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl NewcWriter {
    pub fn new() -> Self {
        NewcWriter::default()
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.next_inode += 1;
        let fields = [self.next_inode, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    /// Adds a directory entry.
    pub fn directory(mut self, name: &str) -> Self {
        self.entry(name, 0o040755, b"");
        self
    }

    /// Adds a regular file.
    pub fn file(mut self, name: &str, data: &[u8]) -> Self {
        self.entry(name, 0o100644, data);
        self
    }

    /// Adds the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(TRAILER, 0, b"");
        self.bytes
    }
}

/// The standard dom0 bundle: the kernel image and its command line.
pub fn dom0_bundle(kernel: &[u8], cmdline: &str) -> Vec<u8> {
    NewcWriter::new().directory("dom0").file(DOM0_KERNEL, kernel).file(DOM0_CMDLINE, cmdline.as_bytes()).finish()
}

/// Byte offsets of every entry header (for tests that corrupt a chosen entry).
pub fn header_offsets(archive: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 0;
    while at + 110 <= archive.len() && &archive[at..at + 6] == b"070701" {
        offsets.push(at);
        let field = |i: usize| usize::from_str_radix(std::str::from_utf8(&archive[at + 6 + i * 8..at + 14 + i * 8]).unwrap_or("0"), 16).unwrap_or(0);
        let name_end = at + 110 + field(11);
        let data_start = (name_end + 3) & !3;
        at = (data_start + field(6) + 3) & !3;
    }
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_newc() {
        let archive = NewcWriter::new().file("a", b"xyz").finish();
        assert_eq!(&archive[..6], b"070701");
        // 110-byte header + "a\0" = 112, already aligned; then 3 data bytes padded to 4.
        assert_eq!(&archive[110..112], b"a\0");
        assert_eq!(&archive[112..115], b"xyz");
        assert_eq!(archive[115], 0);
        assert_eq!(&archive[116..122], b"070701");
        assert!(archive.windows(10).any(|w| w == b"TRAILER!!!"));
        assert_eq!(archive.len() % 4, 0);
    }

    #[test]
    fn finds_every_header() {
        let archive = dom0_bundle(b"\x7fELF and more", "hello");
        let offsets = header_offsets(&archive);
        assert_eq!(offsets.len(), 4, "dir, kernel, cmdline, trailer");
        assert!(offsets.iter().all(|&o| &archive[o..o + 6] == b"070701"));
    }

    #[test]
    fn agrees_with_system_cpio_when_available() {
        // Cross-check with GNU cpio's reader if it is installed.
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            crate::skip::skip("bundle_agrees_with_system_cpio", "cpio is not installed");
            return;
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&dom0_bundle(b"kernel", "hello")).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "dom0\ndom0/kernel\ndom0/cmdline\n");
    }
}
