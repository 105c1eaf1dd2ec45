//! x86_64 PV constants (arch-x86/xen-x86_64.h, arch-x86/xen.h).

/// Flat segment selectors in the hypervisor's part of every GDT. Guest kernel and user
/// both run in ring 3 and use the same values (RPL 3).
pub const FLAT_RING3_CS32: u16 = 0xe023;
pub const FLAT_RING3_CS64: u16 = 0xe033;
pub const FLAT_RING3_DS32: u16 = 0xe02b;
pub const FLAT_RING3_DS64: u16 = 0x0000;
pub const FLAT_RING3_SS32: u16 = 0xe02b;
pub const FLAT_RING3_SS64: u16 = 0xe02b;
pub const FLAT_KERNEL_CS64: u16 = FLAT_RING3_CS64;
pub const FLAT_KERNEL_DS64: u16 = FLAT_RING3_DS64;
pub const FLAT_KERNEL_SS64: u16 = FLAT_RING3_SS64;
pub const FLAT_USER_CS64: u16 = FLAT_RING3_CS64;
pub const FLAT_USER_SS64: u16 = FLAT_RING3_SS64;

/// Guest GDT pages from this one on belong to the hypervisor (arch-x86/xen.h).
pub const FIRST_RESERVED_GDT_PAGE: usize = 14;
pub const FIRST_RESERVED_GDT_BYTE: usize = FIRST_RESERVED_GDT_PAGE * 4096;
pub const FIRST_RESERVED_GDT_ENTRY: usize = FIRST_RESERVED_GDT_BYTE / 8;

/// The virtual range every guest leaves to the hypervisor (L4 slots 256-271).
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;
/// The read-only machine-to-phys table guests may read starts the reserved range
/// (`ops::memory` has its bounds).
const _: () = assert!(crate::ops::memory::MACH2PHYS_VIRT_START == HYPERVISOR_VIRT_START);

pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// Bytes per stub in the hypercall page (xen.h: the guest calls page + 32 * nr).
pub const HYPERCALL_STUB_SIZE: usize = 32;

const _: () = assert!(FIRST_RESERVED_GDT_ENTRY == 7168);
const _: () = assert!((FLAT_RING3_CS64 as usize >> 3) >= FIRST_RESERVED_GDT_ENTRY);
