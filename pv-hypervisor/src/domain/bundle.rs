//! The boot bundle: a cpio "newc" archive (the format `cpio -H newc` and the Linux initramfs
//! use) passed as the PVH module. It holds the dom0 kernel and its command line, and later
//! the images dom0 may start. The whole archive is validated before anything is used.
//!
//! newc entry: the magic "070701", 13 fields of 8 ASCII hex digits (ino, mode, uid, gid,
//! nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check), the
//! name (namesize bytes with its NUL), padding to 4 bytes, the data, padding to 4 bytes.
//! The archive ends with an entry named "TRAILER!!!".

use core::fmt;

pub const DOM0_KERNEL: &str = "dom0/kernel";
pub const DOM0_CMDLINE: &str = "dom0/cmdline";
/// dom0's initial ramdisk (optional): start_info's module.
pub const DOM0_INITRD: &str = "dom0/initrd";

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";
const MODE_TYPE_MASK: u32 = 0o170000;
const MODE_REGULAR: u32 = 0o100000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    Empty,
    BadMagic { offset: usize },
    TruncatedHeader { offset: usize },
    BadHexField { offset: usize },
    NameNotUtf8 { offset: usize },
    TruncatedName { offset: usize },
    TruncatedData { offset: usize },
    MissingTrailer,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BundleError::Empty => write!(f, "empty (not a cpio newc archive)"),
            BundleError::BadMagic { offset } => write!(f, "not a cpio newc archive: bad magic at offset {offset}"),
            BundleError::TruncatedHeader { offset } => write!(f, "truncated cpio header at offset {offset}"),
            BundleError::BadHexField { offset } => write!(f, "corrupt cpio header at offset {offset}: field is not hex"),
            BundleError::NameNotUtf8 { offset } => write!(f, "entry name at offset {offset} is not UTF-8"),
            BundleError::TruncatedName { offset } => write!(f, "entry name at offset {offset} runs past the end"),
            BundleError::TruncatedData { offset } => write!(f, "file data of the entry at offset {offset} runs past the end"),
            BundleError::MissingTrailer => write!(f, "truncated cpio archive: no TRAILER!!! entry"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry<'a> {
    name: &'a str,
    mode: u32,
    data: &'a [u8],
}

/// A validated archive.
pub struct Bundle<'a> {
    bytes: &'a [u8],
}

fn hex_field(header: &[u8], index: usize, offset: usize) -> Result<u32, BundleError> {
    let start = 6 + index * 8;
    let digits = header.get(start..start + 8).ok_or(BundleError::TruncatedHeader { offset })?;
    let text = core::str::from_utf8(digits).map_err(|_| BundleError::BadHexField { offset })?;
    u32::from_str_radix(text, 16).map_err(|_| BundleError::BadHexField { offset })
}

fn align4(value: usize) -> Option<usize> {
    Some(value.checked_add(3)? & !3)
}

/// Parses the entry at `offset`; returns it and the offset of the next one.
fn entry_at(bytes: &[u8], offset: usize) -> Result<(Entry<'_>, usize), BundleError> {
    let header = bytes.get(offset..offset + HEADER_LEN).ok_or(BundleError::TruncatedHeader { offset })?;
    if &header[..6] != MAGIC {
        return Err(BundleError::BadMagic { offset });
    }
    let mode = hex_field(header, 1, offset)?;
    let file_size = hex_field(header, 6, offset)? as usize;
    let name_size = hex_field(header, 11, offset)? as usize;
    let name_start = offset + HEADER_LEN;
    let name_end = name_start.checked_add(name_size).ok_or(BundleError::TruncatedName { offset })?;
    let raw_name = bytes.get(name_start..name_end).ok_or(BundleError::TruncatedName { offset })?;
    let raw_name = raw_name.strip_suffix(&[0]).unwrap_or(raw_name);
    let name = core::str::from_utf8(raw_name).map_err(|_| BundleError::NameNotUtf8 { offset })?;
    let data_start = align4(name_end).ok_or(BundleError::TruncatedData { offset })?;
    let data_end = data_start.checked_add(file_size).ok_or(BundleError::TruncatedData { offset })?;
    let data = bytes.get(data_start..data_end).ok_or(BundleError::TruncatedData { offset })?;
    let next = align4(data_end).ok_or(BundleError::TruncatedData { offset })?;
    Ok((Entry { name, mode, data }, next))
}

impl<'a> Bundle<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Bundle<'a>, BundleError> {
        if bytes.is_empty() {
            return Err(BundleError::Empty);
        }
        let mut offset = 0;
        loop {
            let (entry, next) = entry_at(bytes, offset)?;
            if entry.name == TRAILER {
                return Ok(Bundle { bytes });
            }
            if next >= bytes.len() {
                return Err(BundleError::MissingTrailer);
            }
            offset = next;
        }
    }

    /// Regular files, in archive order, with names normalised (no leading "./" or "/").
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        let bytes = self.bytes;
        let mut offset = Some(0usize);
        core::iter::from_fn(move || loop {
            let (entry, next) = entry_at(bytes, offset?).ok()?;
            if entry.name == TRAILER {
                offset = None;
                return None;
            }
            offset = Some(next);
            if entry.mode & MODE_TYPE_MASK == MODE_REGULAR {
                let name = entry.name.trim_start_matches("./").trim_start_matches('/');
                return Some((name, entry.data));
            }
        })
    }

    pub fn file(&self, name: &str) -> Option<&'a [u8]> {
        self.entries().find(|(n, _)| *n == name).map(|(_, data)| data)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec::Vec;

    fn push_entry(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
        let header = std::format!(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            1,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    /// A newc archive of regular files (used by other modules' tests too).
    pub fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        push_entry(&mut out, "dom0", 0o040755, b"");
        for (name, data) in files {
            push_entry(&mut out, name, 0o100644, data);
        }
        push_entry(&mut out, TRAILER, 0, b"");
        out
    }

    #[test]
    fn finds_files_and_skips_directories() {
        let bytes = archive(&[("./dom0/kernel", b"\x7fELF..."), ("dom0/cmdline", b"hello")]);
        let b = Bundle::parse(&bytes).unwrap();
        assert_eq!(b.file(DOM0_KERNEL), Some(&b"\x7fELF..."[..]));
        assert_eq!(b.file(DOM0_CMDLINE), Some(&b"hello"[..]));
        assert_eq!(b.file("dom0"), None);
        assert_eq!(b.entries().count(), 2);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = archive(&[("dom0/kernel", &[0xab; 37]), ("dom0/cmdline", b"fault")]);
        for len in 0..bytes.len() {
            assert!(Bundle::parse(&bytes[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn corruption_is_reported_with_its_offset() {
        let mut bytes = archive(&[("dom0/kernel", b"abc")]);
        let second = 112 + 4; // "dom0" entry: 110 + 5 name bytes, padded to 116
        bytes[second] = b'X';
        assert_eq!(Bundle::parse(&bytes).err(), Some(BundleError::BadMagic { offset: second }));
        let mut bytes = archive(&[("dom0/kernel", b"abc")]);
        bytes[second + 6 + 6 * 8] = b'Z';
        assert_eq!(Bundle::parse(&bytes).err(), Some(BundleError::BadHexField { offset: second }));
        let mut bytes = archive(&[("dom0/kernel", b"abc")]);
        bytes[second + 6 + 6 * 8..second + 6 + 7 * 8].copy_from_slice(b"FFFFFFFF");
        assert_eq!(Bundle::parse(&bytes).err(), Some(BundleError::TruncatedData { offset: second }));
        assert_eq!(Bundle::parse(b"").err(), Some(BundleError::Empty));
        assert!(Bundle::parse(b"hello, this is not an archive at all, definitely not one of the cpio kind at all ......................").is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x1234_5678_u64;
        for _ in 0..2000 {
            let mut bytes = archive(&[("dom0/kernel", b"0123456789")]);
            for _ in 0..4 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let at = (seed >> 33) as usize % bytes.len();
                bytes[at] = (seed >> 24) as u8;
            }
            let _ = Bundle::parse(&bytes).map(|b| b.entries().count());
        }
    }
}
