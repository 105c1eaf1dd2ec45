//! A virtual CPU's saved register state.

use core::mem::offset_of;

/// The vector number the syscall entry records: not a CPU vector, it marks a frame as a
/// hypercall.
pub const SYSCALL_VECTOR: u64 = 0x100;
/// The vector the compatibility-mode `syscall` entry records.
pub const SYSCALL32_VECTOR: u64 = 0x101;

/// A guest's general registers plus the CPU's interrupt frame, exactly as the entry code
/// in `arch::x86_64::entry` pushes them (lowest address first). While a vCPU runs in the
/// hypervisor this sits at the top of the hypervisor stack; while it is descheduled, in
/// its [`Vcpu`](super::Domain).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct GuestRegisters {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Exception vector, or [`SYSCALL_VECTOR`] for a hypercall.
    pub vector: u64,
    /// The CPU's error code (0 when the exception has none).
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// The entry assembly depends on this layout.
const _: () = assert!(core::mem::size_of::<GuestRegisters>() == 22 * 8);
const _: () = assert!(offset_of!(GuestRegisters, rax) == 14 * 8);
const _: () = assert!(offset_of!(GuestRegisters, vector) == 15 * 8);
const _: () = assert!(offset_of!(GuestRegisters, rip) == 17 * 8);
const _: () = assert!(offset_of!(GuestRegisters, ss) == 21 * 8);

impl GuestRegisters {
    /// The six hypercall argument registers, in ABI order (RDI, RSI, RDX, R10, R8, R9).
    pub fn hypercall_args(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }

    /// Whether `sysretq` resumes exactly this frame: it takes rip from rcx and rflags from
    /// r11, and loads the flat 64-bit selectors. The caller must have checked the frame
    /// (canonical rip: a non-canonical rcx makes sysretq fault in ring 0 on Intel).
    pub fn sysret_can_resume(&self) -> bool {
        use hypercall_abi::arch_x86_64::{FLAT_RING3_CS64, FLAT_RING3_SS64};
        (self.rcx == self.rip) & (self.r11 == self.rflags) & (self.cs == FLAT_RING3_CS64 as u64) & (self.ss == FLAT_RING3_SS64 as u64)
    }

    /// Whether the frame was taken while running in ring 3 (a guest), not ring 0.
    pub fn from_guest(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// A vCPU's x87, MMX, SSE and AVX state while another vCPU runs: an `xsave` image
/// where the CPU has XSAVE (the 512-byte legacy area, the 64-byte header, then AVX's
/// upper halves; 64-byte aligned as the instruction needs), else the 512-byte `fxsave`
/// image in its first half (Intel SDM vol. 1, 10.5.1 and 13.4).
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct FpuArea(pub [u8; FPU_AREA_SIZE]);

/// Room for the legacy area, the header and AVX (832 bytes on every CPU so far).
pub const FPU_AREA_SIZE: usize = 1024;

/// FCW at byte 0 and MXCSR at byte 24 of the image.
const FCW_OFFSET: usize = 0;
const MXCSR_OFFSET: usize = 24;

impl Default for FpuArea {
    /// The state after `fninit` with SSE exceptions masked: FCW 0x37f, MXCSR 0x1f80, all
    /// registers 0 (what a vCPU starts with). The XSAVE header is zero: `xrstor` puts
    /// every component in its initial state (MXCSR still comes from the legacy area).
    fn default() -> Self {
        let mut image = [0u8; FPU_AREA_SIZE];
        image[FCW_OFFSET..FCW_OFFSET + 2].copy_from_slice(&0x037fu16.to_le_bytes());
        image[MXCSR_OFFSET..MXCSR_OFFSET + 4].copy_from_slice(&0x1f80u32.to_le_bytes());
        FpuArea(image)
    }
}

const _: () = assert!(core::mem::align_of::<FpuArea>() == 64);
