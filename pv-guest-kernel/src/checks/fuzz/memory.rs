//! The guest memory the fuzzer aims at: where things are (found at run time, so the same
//! code works on any layout), the scratch buffer with canaries around it, reads of
//! arbitrary mapped addresses, and checksums of what no hypercall may change.

use crate::checks::probe;
use crate::platform;
use core::cell::UnsafeCell;
use hypercall_abi::start_info::StartInfo;

pub const PAGE: u64 = 4096;
/// Bytes of the scratch buffer the hypervisor may read and write.
pub const SCRATCH_LEN: usize = 8192;
/// The largest structure any fuzzed sub-operation writes (XENVER_capabilities,
/// XENVER_commandline): scratch pointers leave at least this much room.
pub const MAX_WRITE: u64 = 1024;
const CANARY_WORDS: usize = 8;
const CANARY: u64 = 0xca4a_12e5_0f0f_5a5a;
/// Page-table frames checksummed (the initial tables of a small dom0 need 5).
const MAX_PT_FRAMES: usize = 16;

#[repr(C, align(4096))]
struct Scratch {
    below: [u64; CANARY_WORDS],
    bytes: [u8; SCRATCH_LEN],
    above: [u64; CANARY_WORDS],
}

struct ScratchCell(UnsafeCell<Scratch>);
// SAFETY: one vCPU, and only the fuzzer (through raw pointers) and the hypervisor touch it.
unsafe impl Sync for ScratchCell {}

static SCRATCH: ScratchCell = ScratchCell(UnsafeCell::new(Scratch { below: [0; CANARY_WORDS], bytes: [0; SCRATCH_LEN], above: [0; CANARY_WORDS] }));

fn scratch() -> *mut Scratch {
    SCRATCH.0.get()
}

/// The address of scratch byte `offset`.
pub fn scratch_address(offset: u64) -> u64 {
    // SAFETY: only computes an address inside the static.
    unsafe { core::ptr::addr_of_mut!((*scratch()).bytes) as u64 + offset }
}

/// Overwrites the whole scratch buffer with `byte_source` output.
pub fn fill_scratch(mut next: impl FnMut() -> u64) {
    let base = scratch_address(0) as *mut u64;
    for i in 0..SCRATCH_LEN / 8 {
        // SAFETY: inside the buffer; nothing else holds a reference to it.
        unsafe { base.add(i).write_volatile(next()) };
    }
}

/// Writes `bytes` at scratch offset `offset` (clipped to the buffer).
pub fn poke_scratch(offset: u64, bytes: &[u8]) {
    let base = scratch_address(0) as *mut u8;
    for (i, &b) in bytes.iter().enumerate() {
        let at = offset as usize + i;
        if at < SCRATCH_LEN {
            // SAFETY: inside the buffer, as just checked.
            unsafe { base.add(at).write_volatile(b) };
        }
    }
}

pub fn set_canaries() {
    for i in 0..CANARY_WORDS {
        // SAFETY: inside the static; raw pointers, no references kept.
        unsafe {
            core::ptr::addr_of_mut!((*scratch()).below[i]).write_volatile(CANARY ^ i as u64);
            core::ptr::addr_of_mut!((*scratch()).above[i]).write_volatile(!CANARY ^ i as u64);
        }
    }
}

/// Whether both canary blocks still hold what [`set_canaries`] wrote.
pub fn canaries_intact() -> bool {
    (0..CANARY_WORDS).all(|i| {
        // SAFETY: as in set_canaries.
        let (below, above) =
            unsafe { (core::ptr::addr_of!((*scratch()).below[i]).read_volatile(), core::ptr::addr_of!((*scratch()).above[i]).read_volatile()) };
        below == CANARY ^ i as u64 && above == !CANARY ^ i as u64
    })
}

/// Reads a byte of our own mapped memory (address 0 included, which is mapped here and
/// which Rust may not dereference), so the model can see what the hypervisor will read.
pub fn peek_u8(address: u64) -> u8 {
    let value: u8;
    // SAFETY: callers pass only addresses inside the initial mapping (readable).
    unsafe { core::arch::asm!("mov {v}, byte ptr [{a}]", a = in(reg) address, v = out(reg_byte) value, options(nostack, readonly)) };
    value
}

pub fn peek_u16(address: u64) -> u16 {
    u16::from_le_bytes([peek_u8(address), peek_u8(address + 1)])
}

pub fn peek_u32(address: u64) -> u32 {
    u32::from_le_bytes(core::array::from_fn(|i| peek_u8(address + i as u64)))
}

pub fn peek_u64(address: u64) -> u64 {
    let value: u64;
    // SAFETY: as in peek_u8 (unaligned reads are fine on x86).
    unsafe { core::arch::asm!("mov {v}, qword ptr [{a}]", a = in(reg) address, v = out(reg) value, options(nostack, readonly)) };
    value
}

/// Where things are in our address space.
#[derive(Clone, Copy)]
pub struct Layout {
    pub start_info: u64,
    pub pt_base: u64,
    pub nr_pt_frames: u64,
    /// The end of the initial mapping (the first unmapped page above the tables).
    pub v_end: u64,
    pub hypercall_page: u64,
    /// Machine address of the scratch buffer, for aliases through the hypervisor's
    /// direct map.
    pub scratch_maddr: u64,
    /// Where the kernel image starts; everything below is mapped and unused.
    pub kernel_start: u64,
    /// Machine frame of the running L4 (the first initial page-table frame).
    pub l4_mfn: u64,
    /// Machine frame of an L1 of the initial mapping (the one mapping address 0).
    pub low_l1_mfn: u64,
}

impl Layout {
    pub fn find(info: &StartInfo) -> Layout {
        let pt_end = info.pt_base + info.nr_pt_frames * PAGE;
        let scratch_pfn = (scratch_address(0) - platform::virt_base()) / PAGE;
        let scratch_maddr = platform::pfn_to_mfn(info, scratch_pfn).map_or(0, |mfn| mfn << 12) + (scratch_address(0) % PAGE);
        Layout {
            start_info: info as *const StartInfo as u64,
            pt_base: info.pt_base,
            nr_pt_frames: info.nr_pt_frames,
            v_end: first_unmapped_page(pt_end),
            hypercall_page: hypercall_abi::guest::hypercall_page_address(),
            scratch_maddr,
            kernel_start: 0x10_0000,
            l4_mfn: platform::pfn_to_mfn(info, (info.pt_base - platform::virt_base()) / PAGE).unwrap_or(0),
            // The builder lays out L4, L3, L2, then the L1s: the first L1 maps address 0.
            low_l1_mfn: platform::pfn_to_mfn(info, (info.pt_base - platform::virt_base()) / PAGE + 3).unwrap_or(0),
        }
    }
}

/// The first page at or above `from` whose read faults (at most 64 MiB up).
fn first_unmapped_page(from: u64) -> u64 {
    let mut page = from & !(PAGE - 1);
    for _ in 0..16384 {
        let p = probe!("", "mov al, byte ptr [rdi]", page, 0u64);
        if p.trap.is_some() {
            return page;
        }
        page += PAGE;
    }
    page
}

/// FNV-1a over the `len / 8` words at `address` (mapped memory only), each masked with
/// `mask`.
fn checksum(address: u64, len: u64, mask: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for i in 0..len / 8 {
        hash = (hash ^ (peek_u64(address + i * 8) & mask)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Page-table entries without Accessed and Dirty, which the CPU sets as we run (Xen's
/// initial tables do not preset them).
const PTE_MASK: u64 = !0x60;

/// Checksums of what the hypervisor must never change: the hypercall page, the start
/// of start_info (the structure itself) and every initial page-table frame.
pub struct Integrity {
    hypercall_page: u64,
    start_info: u64,
    page_tables: [u64; MAX_PT_FRAMES],
}

pub const START_INFO_BYTES: u64 = core::mem::size_of::<StartInfo>() as u64;

impl Integrity {
    pub fn take(layout: &Layout) -> Integrity {
        let mut page_tables = [0; MAX_PT_FRAMES];
        for (i, sum) in page_tables.iter_mut().enumerate().take(layout.nr_pt_frames as usize) {
            *sum = checksum(layout.pt_base + i as u64 * PAGE, PAGE, PTE_MASK);
        }
        Integrity {
            hypercall_page: checksum(layout.hypercall_page, PAGE, !0),
            start_info: checksum(layout.start_info, START_INFO_BYTES & !7, !0),
            page_tables,
        }
    }

    /// The first region that differs from `other`, by name.
    pub fn first_difference(&self, other: &Integrity) -> Option<&'static str> {
        if self.hypercall_page != other.hypercall_page {
            Some("hypercall_page")
        } else if self.start_info != other.start_info {
            Some("start_info")
        } else if self.page_tables != other.page_tables {
            Some("page_tables")
        } else {
            None
        }
    }
}
