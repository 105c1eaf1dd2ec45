//! x86_64: boot (PVH), descriptor tables, trap and syscall entry, serial, QEMU exit.

pub mod boot;
pub mod clock;
pub mod cpu;
pub mod entry;
pub mod gdt;
pub mod gdt_area;
pub mod high_memory;
pub mod idt;
pub mod lapic;
pub mod machine_memory;
pub mod pic;
pub mod ports;
pub mod protect;
pub mod pvh;
pub mod serial;
pub mod start;

/// Where all of physical memory (up to DIRECTMAP_MAX) is mapped in every address space.
/// L4 slot 262: inside the range Xen reserves for the hypervisor
/// (0xFFFF800000000000-0xFFFF880000000000, arch-x86/xen-x86_64.h).
pub const DIRECTMAP_BASE: u64 = 0xFFFF_8300_0000_0000;
/// The most physical memory the direct map covers (2 MiB pages: the boot code maps the
/// first 4 GiB, `high_memory` the rest of RAM). RAM beyond is not used.
pub const DIRECTMAP_MAX: u64 = 64 << 30;

/// The direct-map virtual address of a physical address in the direct map.
pub const fn phys_to_virt(paddr: u64) -> u64 {
    DIRECTMAP_BASE + paddr
}

static BOOT_L4: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Remembers the boot L4 (the hypervisor's own address space).
pub fn set_boot_l4_phys(l4: u64) {
    BOOT_L4.store(l4, core::sync::atomic::Ordering::Relaxed);
}

/// The hypervisor's own L4: maps the hypervisor and nothing of any guest.
pub fn boot_l4_phys() -> u64 {
    BOOT_L4.load(core::sync::atomic::Ordering::Relaxed)
}
