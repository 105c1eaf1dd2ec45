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

/// One domU for [`bundle_with_domus`]: its name, command line and config text
/// (`key = value` lines: memory, weight, cap).
pub struct DomU<'a> {
    pub name: &'a str,
    pub cmdline: &'a str,
    pub config: &'a str,
}

/// dom0 and domUs, all running `kernel`.
pub fn bundle_with_domus(kernel: &[u8], dom0_cmdline: &str, domus: &[DomU<'_>]) -> Vec<u8> {
    let mut writer = NewcWriter::new().directory("dom0").file(DOM0_KERNEL, kernel).file(DOM0_CMDLINE, dom0_cmdline.as_bytes());
    for domu in domus {
        let dir = format!("domU/{}", domu.name);
        writer = writer
            .directory(&dir)
            .file(&format!("{dir}/kernel"), kernel)
            .file(&format!("{dir}/cmdline"), domu.cmdline.as_bytes())
            .file(&format!("{dir}/config"), domu.config.as_bytes());
    }
    writer.finish()
}

/// Parses `NAME[,key=value...]:CMDLINE` (the command line's `--domu`) into name, config
/// text and command line.
pub fn parse_domu_option(spec: &str) -> Result<(String, String, String), String> {
    let (head, cmdline) = spec.split_once(':').unwrap_or((spec, "hello"));
    let mut parts = head.split(',');
    let name = parts.next().filter(|n| !n.is_empty()).ok_or_else(|| format!("--domu '{spec}': no name before ':'"))?;
    let mut config = String::new();
    for setting in parts {
        let (key, value) = setting.split_once('=').ok_or_else(|| format!("--domu '{spec}': '{setting}' is not key=value"))?;
        config.push_str(&format!("{key} = {value}\n"));
    }
    Ok((name.to_string(), config, cmdline.to_string()))
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
