//! The PVH entry: QEMU jumps to `pvh_start32` in 32-bit protected mode with paging off
//! and `ebx` = physical address of the hvm_start_info (arch-x86/hvm/start_info.h).
//!
//! The 32-bit code builds the hypervisor's page tables (kept for good: they become the
//! hypervisor's own L4, whose slot 262 every guest L4 shares), enables long mode and
//! jumps to `start::pvh_entry64` in the direct map. Physical memory below 4 GiB is mapped
//! twice with 2 MiB pages: identity (slot 0, used only until the first guest runs on its
//! own L4) and at `DIRECTMAP_BASE` (slot 262).

core::arch::global_asm!(
    // XEN_ELFNOTE_PHYS32_ENTRY (18): the 32-bit physical entry QEMU uses (elfnote.h).
    ".pushsection .note.Xen, \"a\", @note",
    ".balign 4",
    ".long 4",  // name size ("Xen\0")
    ".long 4",  // descriptor size
    ".long 18", // XEN_ELFNOTE_PHYS32_ENTRY
    ".asciz \"Xen\"",
    ".balign 4",
    ".long pvh_start32",
    ".balign 4",
    ".popsection",
    // Page tables: L4, one L3, four L2s of 2 MiB pages = 4 GiB. Zeroed by the code below
    // as well, so nothing depends on the loader clearing NOBITS memory.
    ".pushsection .boot32.bss, \"aw\", @nobits",
    ".balign 4096",
    ".globl boot_pml4",
    "boot_pml4: .skip 4096",
    "boot_pdpt: .skip 4096",
    "boot_pd: .skip 4096 * 4",
    ".popsection",
    ".pushsection .boot32, \"ax\"",
    ".code32",
    ".globl pvh_start32",
    "pvh_start32:",
    "cli",
    "cld",
    "mov esi, ebx", // keep the start-info address in esi until the Rust entry
    "mov edi, offset boot_pml4",
    "xor eax, eax",
    "mov ecx, (6 * 4096) / 4",
    "rep stosd",
    "mov eax, offset boot_pdpt",
    "or eax, 0x3", // present | writable
    "mov [boot_pml4], eax",
    "mov [boot_pml4 + 262 * 8], eax",
    "mov eax, offset boot_pd",
    "or eax, 0x3",
    "mov ecx, 0",
    "2:",
    "mov [boot_pdpt + ecx * 8], eax",
    "add eax, 4096",
    "inc ecx",
    "cmp ecx, 4",
    "jb 2b",
    "mov edi, offset boot_pd",
    "xor ecx, ecx",
    "3:",
    "mov eax, ecx",
    "shl eax, 21",
    "or eax, 0x83", // present | writable | 2 MiB page
    "mov [edi + ecx * 8], eax",
    "inc ecx",
    "cmp ecx, 2048",
    "jb 3b",
    // CR4: PAE, and OSFXSR | OSXMMEXCPT so guests may use SSE.
    "mov eax, cr4",
    "or eax, (1 << 5) | (1 << 9) | (1 << 10)",
    "mov cr4, eax",
    "mov eax, offset boot_pml4",
    "mov cr3, eax",
    // EFER: LME (long mode) and SCE (syscall, the hypercall instruction).
    "mov ecx, 0xC0000080",
    "rdmsr",
    "or eax, (1 << 8) | (1 << 0)",
    "wrmsr",
    // CR0: PG | WP (ring 0 honours read-only pages: guest page tables stay read-only
    // even to the hypervisor's own accidental writes through guest mappings) | PE | MP;
    // EM and TS clear.
    "mov eax, cr0",
    "or eax, (1 << 31) | (1 << 16) | (1 << 1) | 1",
    "and eax, ~((1 << 2) | (1 << 3))",
    "mov cr0, eax",
    "lgdt [boot_gdt_descriptor]",
    // Far return into the 64-bit code segment (pushes kept 32-bit wide via registers).
    "mov eax, 0x08",
    "push eax",
    "mov eax, offset boot_long_mode",
    "push eax",
    "retf",
    ".code64",
    "boot_long_mode:",
    "mov ax, 0x10",
    "mov ds, ax",
    "mov es, ax",
    "mov ss, ax",
    "xor eax, eax",
    "mov fs, ax",
    "mov gs, ax",
    "movabs rax, offset hv_stack_top",
    "mov rsp, rax",
    "mov edi, esi",
    "movabs rax, offset pvh_entry64",
    "call rax",
    "ud2",
    ".balign 8",
    "boot_gdt:",
    ".quad 0",
    ".quad 0x00AF9A000000FFFF", // 0x08: 64-bit ring-0 code
    ".quad 0x00CF92000000FFFF", // 0x10: ring-0 data
    "boot_gdt_descriptor:",
    ".word boot_gdt_descriptor - boot_gdt - 1",
    ".long boot_gdt",
    ".popsection",
    // The hypervisor stack: boot runs on it, then it is the stack of every entry from a
    // guest (TSS.RSP0 and the syscall entry both start at its top).
    ".pushsection .bss.hv_stack, \"aw\", @nobits",
    ".balign 4096",
    // Unmapped once the hypervisor's own mappings are set up (protect.rs): running off
    // the bottom of the stack faults instead of overwriting whatever lies below.
    // 128 KiB: building a domain at boot came within ~3 KiB of 64 KiB (the builder
    // holds a 6 KiB Domain, shared_info, start_info and a page buffer at once; one more
    // Domain temporary ran into the guard page).
    ".globl hv_stack_guard",
    "hv_stack_guard: .skip 4096",
    "hv_stack_bottom: .skip 128 * 1024",
    ".globl hv_stack_top",
    "hv_stack_top:",
    ".popsection",
);

extern "C" {
    static hv_stack_top: u8;
    static hv_stack_guard: u8;
    static boot_pml4: u8;
}

/// The guard page below the hypervisor stack.
pub fn hypervisor_stack_guard() -> u64 {
    core::ptr::addr_of!(hv_stack_guard) as u64
}

/// The hypervisor's own L4 (the boot page tables, kept for good).
pub fn boot_l4_address() -> u64 {
    core::ptr::addr_of!(boot_pml4) as u64
}

/// Top of the hypervisor stack: where every entry from a guest starts.
pub fn hypervisor_stack_top() -> u64 {
    core::ptr::addr_of!(hv_stack_top) as u64
}
