//! What [`super::decode`] returns: the instructions it knows and their operands.

/// A general-purpose register, in ModRM/REX encoding order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gpr {
    Rax,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    const ALL: [Gpr; 16] = [
        Gpr::Rax,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rsp,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];

    /// The register with encoding `index` (0-15), REX bit included.
    pub fn from_index(index: u8) -> Option<Gpr> {
        Gpr::ALL.get(usize::from(index)).copied()
    }
}

/// Width of an in/out/ins/outs transfer. There is no 64-bit form: REX.W is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperandSize {
    Byte,
    Word,
    Dword,
}

/// Where in/out take the port number from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortOperand {
    Imm8(u8),
    Dx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instruction {
    Cpuid,
    Xsetbv,
    Rdmsr,
    Wrmsr,
    Rdtsc,
    Rdtscp,
    Rdpmc,
    MovFromCr {
        cr: u8,
        gpr: Gpr,
    },
    MovToCr {
        cr: u8,
        gpr: Gpr,
    },
    MovFromDr {
        dr: u8,
        gpr: Gpr,
    },
    MovToDr {
        dr: u8,
        gpr: Gpr,
    },
    Clts,
    Hlt,
    Cli,
    Sti,
    /// Also `wbnoinvd` (F3 0F 09): for a guest both mean "write back the caches".
    Wbinvd,
    Invd,
    Invlpg,
    In {
        size: OperandSize,
        port: PortOperand,
    },
    Out {
        size: OperandSize,
        port: PortOperand,
    },
    /// `rep` is set by either F3 or F2: both repeat string I/O.
    Ins {
        size: OperandSize,
        rep: bool,
    },
    Outs {
        size: OperandSize,
        rep: bool,
    },
    Lgdt,
    Lidt,
    Lldt,
    Ltr,
    Lmsw,
    Sgdt,
    Sidt,
    Sldt,
    Str,
    Smsw,
    Swapgs,
    Int {
        vector: u8,
    },
    Int3,
    /// `into` is #UD in 64-bit mode, decoded anyway so the caller can say so.
    Into,
    /// Anything else. Its `length` is 0 when this decoder does not know it.
    Other,
}

/// A segment override that matters in 64-bit mode (the others have base 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Fs,
    Gs,
}

/// A ModRM memory operand: `segment base + base + index * scale + displacement`, or
/// relative to the next instruction's rip; truncated to 32 bits with the 0x67 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryOperand {
    pub base: Option<Gpr>,
    pub index: Option<Gpr>,
    pub scale: u8,
    pub displacement: i32,
    pub rip_relative: bool,
    pub address_32: bool,
    pub segment: Option<Segment>,
}

/// What a ModRM byte names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Register(Gpr),
    Memory(MemoryOperand),
}
