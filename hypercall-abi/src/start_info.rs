//! `start_info` (xen.h): what the domain builder tells a PV kernel at entry (RSI points at
//! it). The hypervisor (or the toolstack's builder) writes every field before the first
//! instruction; the guest only reads it.

use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const MAX_GUEST_CMDLINE: usize = 1024;

/// The domain is privileged (may use dom0-only operations).
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// The domain is the initial domain (dom0).
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// mod_start/mod_len describe a multiboot module.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// mod_start is a PFN, not a virtual address.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// first_p2m_pfn/nr_p2m_frames are valid.
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// Bits 8-15 are reserved for power-management options.
pub const SIF_PM_MASK: u32 = 0xff << 8;

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug)]
#[repr(C)]
pub struct StartInfo {
    /// "xen-<version>-<platform>", here "xen-3.0-x86_64", zero padded.
    pub magic: [u8; 32],
    /// Total pages of guest memory.
    pub nr_pages: u64,
    /// Machine address of the shared_info page.
    pub shared_info: u64,
    /// SIF_* flags.
    pub flags: u32,
    pub _pad0: u32,
    /// Machine frame of the xenstore ring page (domU).
    pub store_mfn: u64,
    /// Event channel of the xenstore ring.
    pub store_evtchn: u32,
    pub _pad1: u32,
    /// domU: console ring mfn (u64) and event channel (u32); dom0: info_off and info_size
    /// of the VGA console information (u32 each). See [`StartInfo::domu_console`].
    pub console: [u8; 16],
    /// Virtual address of the initial L4 page table.
    pub pt_base: u64,
    /// Number of initial page-table frames.
    pub nr_pt_frames: u64,
    /// Virtual address of the p2m list (pfn -> mfn, one u64 per page).
    pub mfn_list: u64,
    /// Virtual address (or pfn with SIF_MOD_START_PFN) of the initial module.
    pub mod_start: u64,
    /// Size in bytes of the initial module.
    pub mod_len: u64,
    /// The kernel command line, NUL-terminated.
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    /// First pfn and count of the p2m list's frames (with SIF_VIRT_P2M_4TOOLS).
    pub first_p2m_pfn: u64,
    pub nr_p2m_frames: u64,
}

const _: () = assert!(core::mem::size_of::<StartInfo>() == 1168);
const _: () = assert!(offset_of!(StartInfo, magic) == 0);
const _: () = assert!(offset_of!(StartInfo, nr_pages) == 32);
const _: () = assert!(offset_of!(StartInfo, shared_info) == 40);
const _: () = assert!(offset_of!(StartInfo, flags) == 48);
const _: () = assert!(offset_of!(StartInfo, store_mfn) == 56);
const _: () = assert!(offset_of!(StartInfo, store_evtchn) == 64);
const _: () = assert!(offset_of!(StartInfo, console) == 72);
const _: () = assert!(offset_of!(StartInfo, pt_base) == 88);
const _: () = assert!(offset_of!(StartInfo, nr_pt_frames) == 96);
const _: () = assert!(offset_of!(StartInfo, mfn_list) == 104);
const _: () = assert!(offset_of!(StartInfo, mod_start) == 112);
const _: () = assert!(offset_of!(StartInfo, mod_len) == 120);
const _: () = assert!(offset_of!(StartInfo, cmd_line) == 128);
const _: () = assert!(offset_of!(StartInfo, first_p2m_pfn) == 1152);
const _: () = assert!(offset_of!(StartInfo, nr_p2m_frames) == 1160);

impl StartInfo {
    pub const MAGIC: &'static [u8] = b"xen-3.0-x86_64";

    /// The command line up to its NUL.
    pub fn cmd_line_bytes(&self) -> &[u8] {
        let len = self.cmd_line.iter().position(|&b| b == 0).unwrap_or(MAX_GUEST_CMDLINE);
        &self.cmd_line[..len]
    }

    /// The magic string up to its NUL.
    pub fn magic_bytes(&self) -> &[u8] {
        let len = self.magic.iter().position(|&b| b == 0).unwrap_or(self.magic.len());
        &self.magic[..len]
    }

    /// domU view of the console field: (ring mfn, event channel).
    pub fn domu_console(&self) -> (u64, u32) {
        let mut mfn = [0u8; 8];
        let mut evtchn = [0u8; 4];
        mfn.copy_from_slice(&self.console[0..8]);
        evtchn.copy_from_slice(&self.console[8..12]);
        (u64::from_le_bytes(mfn), u32::from_le_bytes(evtchn))
    }

    /// Sets the domU view of the console field.
    pub fn set_domu_console(&mut self, mfn: u64, evtchn: u32) {
        self.console[0..8].copy_from_slice(&mfn.to_le_bytes());
        self.console[8..12].copy_from_slice(&evtchn.to_le_bytes());
    }

    /// dom0 view of the console field: (info_off, info_size).
    pub fn dom0_console(&self) -> (u32, u32) {
        let mut off = [0u8; 4];
        let mut size = [0u8; 4];
        off.copy_from_slice(&self.console[0..4]);
        size.copy_from_slice(&self.console[4..8]);
        (u32::from_le_bytes(off), u32::from_le_bytes(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn string_helpers_stop_at_nul() {
        let mut info = StartInfo::new_zeroed();
        info.magic[..14].copy_from_slice(StartInfo::MAGIC);
        info.cmd_line[..5].copy_from_slice(b"hello");
        assert_eq!(info.magic_bytes(), StartInfo::MAGIC);
        assert_eq!(info.cmd_line_bytes(), b"hello");
        info.cmd_line = [b'x'; MAX_GUEST_CMDLINE];
        assert_eq!(info.cmd_line_bytes().len(), MAX_GUEST_CMDLINE);
    }

    #[test]
    fn console_union_views() {
        let mut info = StartInfo::new_zeroed();
        info.console[..8].copy_from_slice(&0x1234u64.to_le_bytes());
        info.console[8..12].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(info.domu_console(), (0x1234, 7));
        assert_eq!(info.dom0_console(), (0x1234, 0));
    }
}
