//! The PVH start-of-day structure QEMU hands us in EBX (arch-x86/hvm/start_info.h):
//! magic, command line, modules (our boot bundle is module 0) and the memory map.

use super::phys_to_virt;
use zerocopy::{FromBytes, Immutable, KnownLayout};

pub const HVM_START_MAGIC: u32 = 0x336e_c578;
pub const MEMMAP_TYPE_RAM: u32 = 1;

#[derive(FromBytes, Immutable, KnownLayout, Clone, Copy)]
#[repr(C)]
struct HvmStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}
const _: () = assert!(core::mem::size_of::<HvmStartInfo>() == 56);

#[derive(FromBytes, Immutable, KnownLayout, Clone, Copy)]
#[repr(C)]
pub struct HvmModule {
    pub paddr: u64,
    pub size: u64,
    pub cmdline_paddr: u64,
    pub reserved: u64,
}
const _: () = assert!(core::mem::size_of::<HvmModule>() == 32);

#[derive(FromBytes, Immutable, KnownLayout, Clone, Copy)]
#[repr(C)]
pub struct MemmapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
    pub reserved: u32,
}
const _: () = assert!(core::mem::size_of::<MemmapEntry>() == 24);

/// What boot needs from the start-of-day structure. Slices point into the direct map.
pub struct PvhInfo {
    pub cmdline: &'static str,
    pub modules: &'static [HvmModule],
    pub memmap: &'static [MemmapEntry],
}

/// Reads `count` records of `T` at physical address `paddr`.
///
/// # Safety
/// The range must be memory the loader filled and that stays untouched for the
/// hypervisor's lifetime (boot reserves it in the frame allocator).
unsafe fn slice_at<T: FromBytes + Immutable + KnownLayout>(paddr: u64, count: usize) -> &'static [T] {
    if paddr == 0 || count == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller; T is plain data valid for any bytes, and the
    // loader placed these records at their natural alignment.
    unsafe { core::slice::from_raw_parts(phys_to_virt(paddr) as *const T, count) }
}

/// Parses the structure at `paddr`, or says what is wrong with it.
///
/// # Safety
/// `paddr` must be the address QEMU passed in EBX.
pub unsafe fn read(paddr: u64) -> Result<PvhInfo, &'static str> {
    // SAFETY: the loader wrote the start info there (caller's guarantee).
    let info: &HvmStartInfo = unsafe { &slice_at::<HvmStartInfo>(paddr, 1)[0] };
    if info.magic != HVM_START_MAGIC {
        return Err("not booted through PVH: bad start-info magic");
    }
    if info.version < 1 || info.memmap_paddr == 0 {
        return Err("the boot loader gave no memory map (PVH start info version 0)");
    }
    // SAFETY: addresses and counts come from the loader's own structure.
    let (modules, memmap) = unsafe {
        (
            slice_at::<HvmModule>(info.modlist_paddr, info.nr_modules as usize),
            slice_at::<MemmapEntry>(info.memmap_paddr, info.memmap_entries as usize),
        )
    };
    // SAFETY: as above; the command line is NUL-terminated.
    let cmdline = unsafe { c_string_at(info.cmdline_paddr) };
    Ok(PvhInfo { cmdline, modules, memmap })
}

/// A NUL-terminated string at `paddr` (at most 4 KiB; non-UTF-8 yields "").
unsafe fn c_string_at(paddr: u64) -> &'static str {
    // SAFETY: the caller passes a loader-provided string address (or 0).
    let bytes: &[u8] = unsafe { slice_at(paddr, 4096) };
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(0);
    core::str::from_utf8(&bytes[..len]).unwrap_or("")
}
