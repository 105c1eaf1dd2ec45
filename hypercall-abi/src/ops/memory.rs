//! memory_op commands and structures (memory.h; the M2P bounds from
//! arch-x86/xen-x86_64.h).

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
pub const XENMEM_MACHPHYS_MFN_LIST: u32 = 5;
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
pub const XENMEM_MEMORY_MAP: u32 = 9;
pub const XENMEM_MACHINE_MEMORY_MAP: u32 = 10;
pub const XENMEM_MACHPHYS_MAPPING: u32 = 12;

/// The command is the low 6 bits of memory_op's first argument; the bits above carry
/// the extent a preempted reservation op continues from (memory.h MEMOP_*).
pub const MEMOP_CMD_MASK: u32 = (1 << MEMOP_EXTENT_SHIFT) - 1;
pub const MEMOP_EXTENT_SHIFT: u32 = 6;

/// increase_reservation, decrease_reservation and populate_physmap's argument.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MemoryReservation {
    /// Guest handle of an array of `nr_extents` frame numbers (in or out by command).
    pub extent_start: u64,
    pub nr_extents: u64,
    /// Each extent is 2^extent_order pages.
    pub extent_order: u32,
    /// XENMEMF_* flags; the low 8 bits are the address width the frames must fit.
    pub mem_flags: u32,
    pub domid: u16,
    pub _pad: [u8; 6],
}

const _: () = assert!(size_of::<MemoryReservation>() == 32);
const _: () = assert!(offset_of!(MemoryReservation, nr_extents) == 8);
const _: () = assert!(offset_of!(MemoryReservation, extent_order) == 16);
const _: () = assert!(offset_of!(MemoryReservation, mem_flags) == 20);
const _: () = assert!(offset_of!(MemoryReservation, domid) == 24);

/// machphys_mfn_list's argument: the M2P table's frames, one per 2 MiB of table.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MachphysMfnList {
    pub max_extents: u32,
    pub _pad0: u32,
    pub extent_start: u64,
    pub nr_extents: u32,
    pub _pad1: u32,
}

const _: () = assert!(size_of::<MachphysMfnList>() == 24);
const _: () = assert!(offset_of!(MachphysMfnList, extent_start) == 8);
const _: () = assert!(offset_of!(MachphysMfnList, nr_extents) == 16);

/// machphys_mapping's answer: where the read-only M2P table is in every guest.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MachphysMapping {
    pub v_start: u64,
    pub v_end: u64,
    /// The largest machine frame number the table can hold.
    pub max_mfn: u64,
}

const _: () = assert!(size_of::<MachphysMapping>() == 24);

/// memory_map and machine_memory_map's argument: on call the room in `buffer` (in
/// entries), on return the entries written.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MemoryMap {
    pub nr_entries: u32,
    pub _pad: u32,
    pub buffer: u64,
}

const _: () = assert!(size_of::<MemoryMap>() == 16);
const _: () = assert!(offset_of!(MemoryMap, buffer) == 8);

/// One memory-map entry, in the BIOS E820 layout: 20 bytes, packed.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, packed)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

const _: () = assert!(size_of::<E820Entry>() == 20);
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// The read-only machine-to-phys table every 64-bit PV guest sees
/// (arch-x86/xen-x86_64.h): one u64 guest frame number per machine frame.
pub const MACH2PHYS_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
pub const MACH2PHYS_VIRT_END: u64 = 0xFFFF_8040_0000_0000;
pub const MACH2PHYS_NR_ENTRIES: u64 = (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 3;
/// An M2P entry for a frame no guest has a physical address for.
pub const INVALID_M2P_ENTRY: u64 = u64::MAX;

const _: () = assert!(MACH2PHYS_NR_ENTRIES - 1 == 0x7_ffff_ffff);
