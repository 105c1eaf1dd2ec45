//! A PV guest kernel image: an ELF64 x86_64 executable with Xen ELF notes (elfnote.h).
//! The ELF structure is read with the `object` crate; the Xen rules are ours:
//! - a kernel must carry Xen notes, with XEN_VERSION "xen-3.0..." and LOADER "generic" or
//!   GUEST_OS "linux" (Xen's loader refuses anything else);
//! - VIRT_BASE defaults to 0 and PADDR_OFFSET to 0; segments load at
//!   `p_paddr + (virt_base - paddr_offset)`; the entry is the ENTRY note or `e_entry`;
//! - the kernel may not touch the hypervisor's reserved range.

use core::fmt;
use object::elf::{FileHeader64, EM_X86_64, ET_EXEC, PT_LOAD, PT_NOTE};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;

use hypercall_abi::elfnote::{
    OWNER, XEN_ELFNOTE_ENTRY as NOTE_ENTRY, XEN_ELFNOTE_FEATURES as NOTE_FEATURES, XEN_ELFNOTE_GUEST_OS as NOTE_GUEST_OS,
    XEN_ELFNOTE_HYPERCALL_PAGE as NOTE_HYPERCALL_PAGE, XEN_ELFNOTE_LOADER as NOTE_LOADER, XEN_ELFNOTE_PADDR_OFFSET as NOTE_PADDR_OFFSET,
    XEN_ELFNOTE_SUPPORTED_FEATURES as NOTE_SUPPORTED_FEATURES, XEN_ELFNOTE_VIRT_BASE as NOTE_VIRT_BASE, XEN_ELFNOTE_XEN_VERSION as NOTE_XEN_VERSION,
};
use hypercall_abi::features::feature_from_name;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    NotElf,
    NotElf64,
    NotLittleEndian,
    NotX86_64,
    NotExecutable,
    Malformed(&'static str),
    NoLoadSegments,
    SegmentFileLargerThanMemory,
    AddressOverflow,
    NoXenNotes,
    WrongXenVersion,
    UnsupportedLoader,
    EntryOutsideImage(u64),
    BadHypercallPage(u64),
    OverlapsHypervisor {
        start: u64,
        end: u64,
    },
    /// A Xen note that holds an address given twice (which one counts would be a
    /// guess), or with a description that is not a 4- or 8-byte number.
    DuplicateNote(&'static str),
    MalformedNote(&'static str),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ImageError::NotElf => write!(f, "not an ELF file (bad magic)"),
            ImageError::NotElf64 => write!(f, "not a 64-bit ELF file"),
            ImageError::NotLittleEndian => write!(f, "not a little-endian ELF file"),
            ImageError::NotX86_64 => write!(f, "ELF file is not for x86_64"),
            ImageError::NotExecutable => write!(f, "ELF file is not an executable (ET_EXEC)"),
            ImageError::Malformed(what) => write!(f, "malformed ELF file: {what}"),
            ImageError::NoLoadSegments => write!(f, "ELF file has no loadable segment"),
            ImageError::SegmentFileLargerThanMemory => write!(f, "ELF segment is larger in the file than in memory"),
            ImageError::AddressOverflow => write!(f, "ELF segment addresses overflow"),
            ImageError::NoXenNotes => write!(f, "not a Xen PV kernel: no Xen ELF notes"),
            ImageError::WrongXenVersion => write!(f, "Xen ELF note XEN_VERSION missing or not xen-3.0"),
            ImageError::UnsupportedLoader => write!(f, "Xen ELF notes name neither LOADER=generic nor GUEST_OS=linux"),
            ImageError::EntryOutsideImage(va) => write!(f, "entry point {va:#x} is outside the kernel image"),
            ImageError::BadHypercallPage(va) => write!(f, "hypercall page {va:#x} is not a page-aligned address inside the image"),
            ImageError::OverlapsHypervisor { start, end } => {
                write!(f, "kernel {start:#x}-{end:#x} overlaps the hypervisor's reserved range or is not canonical")
            }
            ImageError::DuplicateNote(name) => write!(f, "Xen ELF note {name} is given more than once"),
            ImageError::MalformedNote(name) => write!(f, "Xen ELF note {name} is not a 4- or 8-byte number"),
        }
    }
}

/// The Xen notes we read (raw; absent notes are `None`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenNotes<'a> {
    pub entry: Option<u64>,
    pub hypercall_page: Option<u64>,
    pub virt_base: Option<u64>,
    pub paddr_offset: Option<u64>,
    pub xen_version: Option<&'a str>,
    pub guest_os: Option<&'a str>,
    pub loader: Option<&'a str>,
    pub features: Option<&'a str>,
    /// XENFEAT bits the kernel requires ('!' in FEATURES) and supports.
    pub required_features: u32,
    pub supported_features: u32,
    /// XEN_ELFNOTE_INIT_P2M: where the kernel wants its p2m list mapped.
    pub init_p2m: Option<u64>,
    /// Whether the image has a SUPPORTED_FEATURES note at all.
    pub has_supported_features_note: bool,
    /// XEN_ELFNOTE_MOD_START_PFN = 1: start_info.mod_start is to be a frame number.
    pub mod_start_pfn: bool,
}

pub struct LoadSegment<'a> {
    pub dest_vaddr: u64,
    pub file_bytes: &'a [u8],
    pub mem_size: u64,
}

pub struct GuestImage<'a> {
    bytes: &'a [u8],
    pub notes: XenNotes<'a>,
    pub virt_base: u64,
    pub virt_offset: u64,
    pub virt_kstart: u64,
    pub virt_kend: u64,
    pub virt_entry: u64,
    pub hypercall_page: Option<u64>,
}

fn note_number(desc: &[u8]) -> Option<u64> {
    match desc.len() {
        4 => Some(u32::from_le_bytes(desc.try_into().ok()?) as u64),
        8 => Some(u64::from_le_bytes(desc.try_into().ok()?)),
        _ => None,
    }
}

/// Records an address note: once, and only as a number.
fn set_address(slot: &mut Option<u64>, desc: &[u8], name: &'static str) -> Result<(), ImageError> {
    if slot.is_some() {
        return Err(ImageError::DuplicateNote(name));
    }
    *slot = Some(note_number(desc).ok_or(ImageError::MalformedNote(name))?);
    Ok(())
}

fn note_string(desc: &[u8]) -> Option<&str> {
    let end = desc.iter().position(|&b| b == 0).unwrap_or(desc.len());
    core::str::from_utf8(&desc[..end]).ok()
}

type Header = FileHeader64<LittleEndian>;

/// An image at an 8-aligned address, where `object` reads ELF structures in place:
/// borrowed when the input already is, copied otherwise (a newc archive aligns its
/// files to 4 bytes only). The copy is a fallible allocation: a kernel larger than
/// the heap can hold is an error, not a panic.
pub struct AlignedImage<'a> {
    borrowed: Option<&'a [u8]>,
    words: alloc::vec::Vec<u64>,
    len: usize,
}

impl<'a> AlignedImage<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<AlignedImage<'a>, ImageError> {
        if (bytes.as_ptr() as usize).is_multiple_of(core::mem::align_of::<u64>()) {
            return Ok(AlignedImage { borrowed: Some(bytes), words: alloc::vec::Vec::new(), len: bytes.len() });
        }
        let mut words = alloc::vec::Vec::new();
        words.try_reserve_exact(bytes.len().div_ceil(8)).map_err(|_| ImageError::Malformed("too large to copy to an aligned buffer"))?;
        words.extend(bytes.chunks(8).map(|chunk| {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            u64::from_le_bytes(word)
        }));
        Ok(AlignedImage { borrowed: None, words, len: bytes.len() })
    }

    pub fn bytes(&self) -> &[u8] {
        match self.borrowed {
            Some(bytes) => bytes,
            None => &zerocopy::IntoBytes::as_bytes(self.words.as_slice())[..self.len],
        }
    }
}

impl<'a> GuestImage<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<GuestImage<'a>, ImageError> {
        if bytes.get(..4) != Some(b"\x7fELF") {
            return Err(ImageError::NotElf);
        }
        match bytes.get(4) {
            Some(2) => {}
            _ => return Err(ImageError::NotElf64),
        }
        if bytes.get(5) != Some(&1) {
            return Err(ImageError::NotLittleEndian);
        }
        let header = Header::parse(bytes).map_err(|_| ImageError::Malformed("truncated ELF header"))?;
        let endian = LittleEndian;
        if header.e_machine(endian) != EM_X86_64 {
            return Err(ImageError::NotX86_64);
        }
        if header.e_type(endian) != ET_EXEC {
            return Err(ImageError::NotExecutable);
        }
        let phdrs = header.program_headers(endian, bytes).map_err(|_| ImageError::Malformed("program headers out of bounds"))?;

        let mut notes = XenNotes::default();
        let mut found_notes = false;
        let mut pstart = u64::MAX;
        let mut pend = 0u64;
        for ph in phdrs {
            match ph.p_type(endian) {
                PT_LOAD => {
                    let (paddr, filesz, memsz) = (ph.p_paddr(endian), ph.p_filesz(endian), ph.p_memsz(endian));
                    if filesz > memsz {
                        return Err(ImageError::SegmentFileLargerThanMemory);
                    }
                    ph.data(endian, bytes).map_err(|_| ImageError::Malformed("segment data out of bounds"))?;
                    if memsz == 0 {
                        continue;
                    }
                    pstart = pstart.min(paddr);
                    pend = pend.max(paddr.checked_add(memsz).ok_or(ImageError::AddressOverflow)?);
                }
                PT_NOTE => {
                    let Some(mut iter) = ph.notes(endian, bytes).map_err(|_| ImageError::Malformed("note segment out of bounds"))? else {
                        continue;
                    };
                    while let Some(note) = iter.next().map_err(|_| ImageError::Malformed("bad note"))? {
                        if note.name() != OWNER {
                            continue;
                        }
                        found_notes = true;
                        let desc = note.desc();
                        match note.n_type(endian).0 {
                            NOTE_ENTRY => set_address(&mut notes.entry, desc, "ENTRY")?,
                            NOTE_HYPERCALL_PAGE => set_address(&mut notes.hypercall_page, desc, "HYPERCALL_PAGE")?,
                            NOTE_VIRT_BASE => set_address(&mut notes.virt_base, desc, "VIRT_BASE")?,
                            NOTE_PADDR_OFFSET => set_address(&mut notes.paddr_offset, desc, "PADDR_OFFSET")?,
                            hypercall_abi::elfnote::XEN_ELFNOTE_INIT_P2M => set_address(&mut notes.init_p2m, desc, "INIT_P2M")?,
                            NOTE_XEN_VERSION => notes.xen_version = note_string(desc),
                            NOTE_GUEST_OS => notes.guest_os = note_string(desc),
                            NOTE_LOADER => notes.loader = note_string(desc),
                            NOTE_FEATURES => notes.features = note_string(desc),
                            NOTE_SUPPORTED_FEATURES => {
                                notes.supported_features |= note_number(desc).unwrap_or(0) as u32;
                                notes.has_supported_features_note = true;
                            }
                            hypercall_abi::elfnote::XEN_ELFNOTE_MOD_START_PFN => notes.mod_start_pfn = note_number(desc) == Some(1),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if !found_notes {
            return Err(ImageError::NoXenNotes);
        }
        if pstart >= pend {
            return Err(ImageError::NoLoadSegments);
        }
        if !notes.xen_version.is_some_and(|v| v.starts_with("xen-3.0")) {
            return Err(ImageError::WrongXenVersion);
        }
        if notes.loader != Some("generic") && notes.guest_os != Some("linux") {
            return Err(ImageError::UnsupportedLoader);
        }
        for feature in notes.features.unwrap_or("").split('|') {
            let (required, name) = match feature.strip_prefix('!') {
                Some(name) => (true, name),
                None => (false, feature),
            };
            if let Some(bit) = feature_from_name(name) {
                notes.supported_features |= 1 << bit;
                if required {
                    notes.required_features |= 1 << bit;
                }
            }
        }

        let virt_base = notes.virt_base.unwrap_or(0);
        let virt_offset = virt_base.wrapping_sub(notes.paddr_offset.unwrap_or(0));
        let virt_kstart = pstart.checked_add(virt_offset).unwrap_or(pstart.wrapping_add(virt_offset));
        let virt_kend = pend.wrapping_add(virt_offset);
        if virt_kend <= virt_kstart {
            return Err(ImageError::AddressOverflow);
        }
        if !crate::mm::is_guest_range(virt_kstart, virt_kend) {
            return Err(ImageError::OverlapsHypervisor { start: virt_kstart, end: virt_kend });
        }
        let virt_entry = notes.entry.unwrap_or(header.e_entry(endian));
        if !(virt_kstart..virt_kend).contains(&virt_entry) {
            return Err(ImageError::EntryOutsideImage(virt_entry));
        }
        if let Some(page) = notes.hypercall_page {
            if page % 4096 != 0 || !(virt_kstart..virt_kend).contains(&page) {
                return Err(ImageError::BadHypercallPage(page));
            }
        }
        Ok(GuestImage { bytes, notes, virt_base, virt_offset, virt_kstart, virt_kend, virt_entry, hypercall_page: notes.hypercall_page })
    }

    /// The loadable segments, at their destination virtual addresses.
    pub fn segments(&self) -> impl Iterator<Item = LoadSegment<'a>> + '_ {
        let endian = LittleEndian;
        let bytes = self.bytes;
        let phdrs = Header::parse(bytes).and_then(|h| h.program_headers(endian, bytes)).unwrap_or(&[]);
        phdrs.iter().filter(move |ph| ph.p_type(endian) == PT_LOAD && ph.p_memsz(endian) > 0).filter_map(move |ph| {
            Some(LoadSegment {
                dest_vaddr: ph.p_paddr(endian).wrapping_add(self.virt_offset),
                file_bytes: ph.data(endian, bytes).ok()?,
                mem_size: ph.p_memsz(endian),
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec::Vec;

    pub struct Note<'a>(pub u32, pub &'a [u8]);

    /// A minimal ELF64 executable: one PT_LOAD of `code` at `load_addr`, one PT_NOTE with
    /// `notes`, entry at `load_addr`.
    pub fn elf(load_addr: u64, code: &[u8], bss: u64, notes: &[Note<'_>]) -> Vec<u8> {
        let mut note_bytes = Vec::new();
        for Note(kind, desc) in notes {
            note_bytes.extend_from_slice(&4u32.to_le_bytes());
            note_bytes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            note_bytes.extend_from_slice(&kind.to_le_bytes());
            note_bytes.extend_from_slice(b"Xen\0");
            note_bytes.extend_from_slice(desc);
            while note_bytes.len() % 4 != 0 {
                note_bytes.push(0);
            }
        }
        let phoff = 64u64;
        let notes_off = phoff + 2 * 56;
        let code_off = (notes_off + note_bytes.len() as u64 + 15) & !15;
        let mut out = Vec::new();
        out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&load_addr.to_le_bytes()); // e_entry
        out.extend_from_slice(&phoff.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&64u16.to_le_bytes());
        out.extend_from_slice(&56u16.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&[0; 6]);
        let mut phdr = |kind: u32, off: u64, addr: u64, filesz: u64, memsz: u64| {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&5u32.to_le_bytes());
            for v in [off, addr, addr, filesz, memsz, 4] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        };
        phdr(1, code_off, load_addr, code.len() as u64, code.len() as u64 + bss);
        phdr(4, notes_off, 0, note_bytes.len() as u64, note_bytes.len() as u64);
        out.extend_from_slice(&note_bytes);
        out.resize(code_off as usize, 0);
        out.extend_from_slice(code);
        out
    }

    pub fn standard_notes(hypercall_page: &[u8; 8]) -> Vec<Note<'_>> {
        std::vec![
            Note(NOTE_XEN_VERSION, b"xen-3.0\0"),
            Note(NOTE_LOADER, b"generic\0"),
            Note(NOTE_FEATURES, b"!writable_page_tables|pae_pgdir_above_4gb|dom0\0"),
            Note(NOTE_HYPERCALL_PAGE, hypercall_page),
        ]
    }

    /// A valid kernel at 1 MiB: 0x3000 bytes of code, hypercall page at 0x101000.
    pub fn valid_kernel() -> Vec<u8> {
        elf(0x100000, &[0x90; 0x3000], 0x1000, &standard_notes(&0x101000u64.to_le_bytes()))
    }

    #[test]
    fn a_hypercall_page_note_given_twice_or_malformed_is_refused() {
        let page = 0x101000u64.to_le_bytes();
        let mut twice = standard_notes(&page);
        twice.push(Note(NOTE_HYPERCALL_PAGE, &page));
        let kernel = elf(0x100000, &[0x90; 0x3000], 0x1000, &twice);
        assert_eq!(GuestImage::parse(&kernel).err(), Some(ImageError::DuplicateNote("HYPERCALL_PAGE")));
        let mut odd = standard_notes(&page);
        odd.pop();
        odd.push(Note(NOTE_HYPERCALL_PAGE, &page[..3]));
        let kernel = elf(0x100000, &[0x90; 0x3000], 0x1000, &odd);
        assert_eq!(GuestImage::parse(&kernel).err(), Some(ImageError::MalformedNote("HYPERCALL_PAGE")));
    }

    #[test]
    fn an_image_at_a_4_but_not_8_aligned_address_parses_like_any_other() {
        let bytes = valid_kernel();
        let mut storage = std::vec![0u64; bytes.len() / 8 + 2];
        let raw = zerocopy::IntoBytes::as_mut_bytes(storage.as_mut_slice());
        raw[4..4 + bytes.len()].copy_from_slice(&bytes);
        let misaligned = &raw[4..4 + bytes.len()];
        assert_eq!(misaligned.as_ptr() as usize % 8, 4);
        let aligned = AlignedImage::new(misaligned).unwrap();
        assert_eq!(aligned.bytes(), &bytes[..]);
        let image = GuestImage::parse(aligned.bytes()).unwrap();
        assert_eq!((image.virt_entry, image.hypercall_page), (0x100000, Some(0x101000)));
    }

    #[test]
    fn parses_a_valid_kernel() {
        let bytes = valid_kernel();
        let image = GuestImage::parse(&bytes).unwrap();
        assert_eq!((image.virt_base, image.virt_kstart, image.virt_kend), (0, 0x100000, 0x104000));
        assert_eq!(image.virt_entry, 0x100000);
        assert_eq!(image.hypercall_page, Some(0x101000));
        assert_eq!(image.notes.required_features, 1 << 0);
        assert_eq!(image.notes.supported_features, (1 << 0) | (1 << 4) | (1 << 11));
        let segments: Vec<_> = image.segments().collect();
        assert_eq!(segments.len(), 1);
        assert_eq!((segments[0].dest_vaddr, segments[0].file_bytes.len(), segments[0].mem_size), (0x100000, 0x3000, 0x4000));
    }

    #[test]
    fn virt_base_and_paddr_offset_move_the_image() {
        let base = 0xffff_ffff_8000_0000u64;
        let zero = 0u64.to_le_bytes();
        let mut notes = standard_notes(&zero);
        notes.pop();
        let vb = base.to_le_bytes();
        notes.push(Note(NOTE_VIRT_BASE, &vb));
        let bytes = elf(0x200000, &[0; 16], 0, &notes);
        let image = GuestImage::parse(&bytes);
        // e_entry (0x200000) is a physical address here, outside the moved image.
        assert_eq!(image.err(), Some(ImageError::EntryOutsideImage(0x200000)));
        let entry = (base + 0x200000).to_le_bytes();
        notes.push(Note(NOTE_ENTRY, &entry));
        let bytes = elf(0x200000, &[0; 16], 0, &notes);
        let image = GuestImage::parse(&bytes).unwrap();
        assert_eq!(image.virt_kstart, base + 0x200000);
        assert_eq!(image.segments().next().unwrap().dest_vaddr, base + 0x200000);
    }

    #[test]
    fn refuses_bad_images_with_the_reason() {
        assert_eq!(GuestImage::parse(b"hello world").err(), Some(ImageError::NotElf));
        let mut b = valid_kernel();
        b[4] = 1;
        assert_eq!(GuestImage::parse(&b).err(), Some(ImageError::NotElf64));
        let mut b = valid_kernel();
        b[5] = 2;
        assert_eq!(GuestImage::parse(&b).err(), Some(ImageError::NotLittleEndian));
        let mut b = valid_kernel();
        b[18] = 3; // EM_386
        assert_eq!(GuestImage::parse(&b).err(), Some(ImageError::NotX86_64));
        let mut b = valid_kernel();
        b[16] = 3; // ET_DYN
        assert_eq!(GuestImage::parse(&b).err(), Some(ImageError::NotExecutable));
        assert_eq!(GuestImage::parse(&elf(0x100000, &[0; 16], 0, &[])).err(), Some(ImageError::NoXenNotes));
        let no_version = [Note(NOTE_LOADER, b"generic\0")];
        assert_eq!(GuestImage::parse(&elf(0x100000, &[0; 16], 0, &no_version)).err(), Some(ImageError::WrongXenVersion));
        let other_loader = [Note(NOTE_XEN_VERSION, b"xen-3.0\0"), Note(NOTE_LOADER, b"bsd\0")];
        assert_eq!(GuestImage::parse(&elf(0x100000, &[0; 16], 0, &other_loader)).err(), Some(ImageError::UnsupportedLoader));
        let odd = 0x100010u64.to_le_bytes();
        let unaligned = standard_notes(&odd);
        assert_eq!(GuestImage::parse(&elf(0x100000, &[0; 0x2000], 0, &unaligned)).err(), Some(ImageError::BadHypercallPage(0x100010)));
        let hv = elf(0xffff_8000_0010_0000, &[0; 16], 0, &standard_notes(&0u64.to_le_bytes())[..3]);
        assert!(matches!(GuestImage::parse(&hv).err(), Some(ImageError::OverlapsHypervisor { .. })));
    }

    #[test]
    fn every_truncation_fails_without_panicking() {
        let bytes = valid_kernel();
        for len in 0..bytes.len() {
            assert!(GuestImage::parse(&bytes[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn random_corruption_never_panics() {
        let mut seed = 0xfeed_u64;
        for _ in 0..3000 {
            let mut bytes = valid_kernel();
            for _ in 0..3 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let at = (seed >> 33) as usize % 400;
                bytes[at] = (seed >> 24) as u8;
            }
            if let Ok(image) = GuestImage::parse(&bytes) {
                let _ = image.segments().count();
            }
        }
    }
}
