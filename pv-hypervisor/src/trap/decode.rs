//! Decoding the privileged instructions a PV guest kernel executes in ring 3 and the
//! hypervisor must emulate (or refuse) after the #GP or #UD they raise.
//!
//! Pure logic over the bytes at the guest's rip: no guest memory access, no allocation,
//! no panic on any input. Only 64-bit mode is decoded (PV guests here are 64-bit). The
//! encodings are the Intel SDM's (Vol. 2, chapter 2 and the instruction pages).

mod instruction;
mod store;
#[cfg(test)]
mod tests;

pub use instruction::{Gpr, Instruction, MemoryOperand, Operand, OperandSize, PortOperand, Segment};
pub use store::{decode_store, Store, StoreKind};

/// `ud2a; .ascii "xen"`: a guest kernel puts this before an instruction to ask the
/// hypervisor to emulate it (arch-x86/xen.h: XEN_EMULATE_PREFIX). Xen honours it only
/// for `cpuid` (arch/x86/pv/emul-inv-op.c); which to honour is the caller's policy.
pub const XEN_EMULATE_PREFIX: [u8; 5] = [0x0f, 0x0b, 0x78, 0x65, 0x6e];

/// An instruction is at most 15 bytes, prefixes included; a longer one raises #GP
/// (Intel SDM Vol. 2A, 2.3.11). The forced-emulation prefix is not part of it.
pub const MAX_INSTRUCTION_LENGTH: usize = 15;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub instruction: Instruction,
    /// Bytes from the start of the input to the end of the instruction, forced-emulation
    /// prefix included; 0 for an `Other` whose length is unknown.
    pub length: usize,
    /// The instruction was preceded by [`XEN_EMULATE_PREFIX`].
    pub forced: bool,
    pub rex_w: bool,
    /// The ModRM operand of the group 6/7 instructions (sgdt, sidt, sldt, str, smsw,
    /// ...): where an emulated store goes.
    pub operand: Option<Operand>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The instruction continues past the bytes given.
    Truncated,
    /// The CPU would raise #UD or #GP for these bytes: a lock prefix on one of the
    /// instructions above, more than 15 bytes, a reserved control or debug register.
    Invalid,
}

/// The legacy prefixes and REX seen before the opcode.
#[derive(Clone, Copy, Default)]
struct Prefixes {
    operand_size: bool,
    address_size: bool,
    rep: bool,
    lock: bool,
    rex: u8,
    segment: Option<Segment>,
}

impl Prefixes {
    fn rex_w(self) -> bool {
        self.rex & 0x08 != 0
    }
    fn rex_r(self) -> u8 {
        (self.rex >> 2) & 1
    }
    fn rex_x(self) -> u8 {
        (self.rex >> 1) & 1
    }
    fn rex_b(self) -> u8 {
        self.rex & 1
    }
    /// Word or Dword for the non-byte forms of in/out/ins/outs.
    fn io_size(self) -> OperandSize {
        if self.operand_size {
            OperandSize::Word
        } else {
            OperandSize::Dword
        }
    }
}

/// Reads one instruction's bytes, refusing to go past the input or the 15-byte limit.
struct Cursor<'a> {
    bytes: &'a [u8],
    start: usize,
    pos: usize,
    operand: Option<Operand>,
}

impl Cursor<'_> {
    /// The limit is checked first: bytes the CPU would never fetch make the instruction
    /// invalid whether or not the caller could read them.
    fn next(&mut self) -> Result<u8, DecodeError> {
        if self.pos.saturating_sub(self.start) >= MAX_INSTRUCTION_LENGTH {
            return Err(DecodeError::Invalid);
        }
        let byte = self.bytes.get(self.pos).copied().ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(byte)
    }

    /// Reads the operand a ModRM byte names, consuming its SIB byte and displacement, and
    /// remembers it as the instruction's operand. In 64-bit mode 0x67 selects 32-bit
    /// addressing, whose ModRM/SIB layout is the 64-bit one (there are no 16-bit forms),
    /// so it never changes the length. mod=00 rm=101 is RIP-relative disp32, and a SIB
    /// base of 101 with mod=00 means disp32 with no base; REX.B does not change either
    /// (Intel SDM Vol. 2A, 2.2.1.6 and Table 2-5).
    fn read_operand(&mut self, modrm: u8, prefixes: Prefixes) -> Result<Operand, DecodeError> {
        let mode = modrm >> 6;
        let rm = modrm & 7;
        let extend = |bits: u8, rex_bit: u8| Gpr::from_index(bits | (rex_bit << 3));
        if mode == 3 {
            let operand = Operand::Register(extend(rm, prefixes.rex_b()).ok_or(DecodeError::Invalid)?);
            self.operand = Some(operand);
            return Ok(operand);
        }
        let mut memory = MemoryOperand {
            base: None,
            index: None,
            scale: 1,
            displacement: 0,
            rip_relative: false,
            address_32: prefixes.address_size,
            segment: prefixes.segment,
        };
        let mut displacement = match mode {
            0 => 0,
            1 => 1,
            _ => 4,
        };
        if rm == 4 {
            let sib = self.next()?;
            let index = (sib >> 3) & 7 | (prefixes.rex_x() << 3);
            // Index 100 (without REX.X) means no index.
            memory.index = if index == 4 { None } else { Gpr::from_index(index) };
            memory.scale = 1 << (sib >> 6);
            if mode == 0 && sib & 7 == 5 {
                displacement = 4;
            } else {
                memory.base = extend(sib & 7, prefixes.rex_b());
            }
        } else if mode == 0 && rm == 5 {
            displacement = 4;
            memory.rip_relative = true;
        } else {
            memory.base = extend(rm, prefixes.rex_b());
        }
        let mut value: u32 = 0;
        for i in 0..displacement {
            value |= u32::from(self.next()?) << (8 * i);
        }
        memory.displacement = if displacement == 1 { i32::from(value as u8 as i8) } else { value as i32 };
        let operand = Operand::Memory(memory);
        self.operand = Some(operand);
        Ok(operand)
    }
}

/// Control registers that exist in 64-bit mode; any other number is #UD (Intel SDM
/// Vol. 2B, MOV—Move to/from Control Registers).
const VALID_CONTROL_REGISTERS: [u8; 5] = [0, 2, 3, 4, 8];

/// Decodes the instruction at the start of `bytes` (the bytes at the guest's rip).
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    // Xen reads all five signature bytes before comparing and injects #PF if it cannot
    // (arch/x86/pv/emul-inv-op.c: emulate_forced_invalid_op), so input that stops inside
    // what may still be the signature is truncated, not a plain ud2.
    if XEN_EMULATE_PREFIX.starts_with(bytes) {
        return Err(DecodeError::Truncated);
    }
    let forced = bytes.starts_with(&XEN_EMULATE_PREFIX);
    let start = if forced { XEN_EMULATE_PREFIX.len() } else { 0 };
    let mut cursor = Cursor { bytes, start, pos: start, operand: None };
    let (prefixes, opcode) = read_prefixes(&mut cursor)?;
    let known = match opcode {
        0x0f => decode_two_byte(&mut cursor, prefixes)?,
        _ => decode_one_byte(&mut cursor, prefixes, opcode)?,
    };
    let (instruction, length) = match known {
        Some(instruction) => (instruction, cursor.pos),
        None => (Instruction::Other, 0),
    };
    if prefixes.lock && instruction != Instruction::Other {
        return Err(DecodeError::Invalid);
    }
    Ok(Decoded { instruction, length, forced, rex_w: prefixes.rex_w(), operand: cursor.operand })
}

/// Consumes prefixes up to the opcode byte and returns it. A REX prefix counts only if
/// it comes last: followed by a legacy prefix it is ignored, as on hardware (Intel SDM
/// Vol. 2A, 2.2.1).
fn read_prefixes(cursor: &mut Cursor) -> Result<(Prefixes, u8), DecodeError> {
    let mut prefixes = Prefixes::default();
    loop {
        let byte = cursor.next()?;
        match byte {
            0x40..=0x4f => {
                prefixes.rex = byte;
                continue;
            }
            0x66 => prefixes.operand_size = true,
            0xf0 => prefixes.lock = true,
            0xf2 | 0xf3 => prefixes.rep = true,
            0x67 => prefixes.address_size = true,
            0x64 => prefixes.segment = Some(Segment::Fs),
            0x65 => prefixes.segment = Some(Segment::Gs),
            // ES, CS, SS and DS overrides have base 0 in 64-bit mode.
            0x26 | 0x2e | 0x36 | 0x3e => {}
            _ => return Ok((prefixes, byte)),
        }
        prefixes.rex = 0;
    }
}

/// `None` is an instruction this decoder cannot measure (an `Other` of length 0).
type Measured = Result<Option<Instruction>, DecodeError>;

fn decode_one_byte(cursor: &mut Cursor, prefixes: Prefixes, opcode: u8) -> Measured {
    let size = prefixes.io_size();
    Ok(Some(match opcode {
        0xf4 => Instruction::Hlt,
        0xfa => Instruction::Cli,
        0xfb => Instruction::Sti,
        0xcc => Instruction::Int3,
        0xce => Instruction::Into,
        0xcd => Instruction::Int { vector: cursor.next()? },
        0xe4 => Instruction::In { size: OperandSize::Byte, port: PortOperand::Imm8(cursor.next()?) },
        0xe5 => Instruction::In { size, port: PortOperand::Imm8(cursor.next()?) },
        0xe6 => Instruction::Out { size: OperandSize::Byte, port: PortOperand::Imm8(cursor.next()?) },
        0xe7 => Instruction::Out { size, port: PortOperand::Imm8(cursor.next()?) },
        0xec => Instruction::In { size: OperandSize::Byte, port: PortOperand::Dx },
        0xed => Instruction::In { size, port: PortOperand::Dx },
        0xee => Instruction::Out { size: OperandSize::Byte, port: PortOperand::Dx },
        0xef => Instruction::Out { size, port: PortOperand::Dx },
        0x6c => Instruction::Ins { size: OperandSize::Byte, rep: prefixes.rep },
        0x6d => Instruction::Ins { size, rep: prefixes.rep },
        0x6e => Instruction::Outs { size: OperandSize::Byte, rep: prefixes.rep },
        0x6f => Instruction::Outs { size, rep: prefixes.rep },
        _ => return Ok(None),
    }))
}

fn decode_two_byte(cursor: &mut Cursor, prefixes: Prefixes) -> Measured {
    let opcode = cursor.next()?;
    Ok(Some(match opcode {
        0xa2 => Instruction::Cpuid,
        0x32 => Instruction::Rdmsr,
        0x30 => Instruction::Wrmsr,
        0x31 => Instruction::Rdtsc,
        0x33 => Instruction::Rdpmc,
        0x06 => Instruction::Clts,
        0x08 => Instruction::Invd,
        // WBNOINVD is F3 0F 09 (Intel SDM Vol. 2D); the cache write-back is what matters.
        0x09 => Instruction::Wbinvd,
        0x0b => Instruction::Other, // ud2
        0x20..=0x23 => decode_mov_cr_dr(cursor, prefixes, opcode)?,
        0x00 => decode_group6(cursor, prefixes)?,
        0x01 => decode_group7(cursor, prefixes)?,
        _ => return Ok(None),
    }))
}

/// 0F 20-23: ModRM.reg (plus REX.R) names the control or debug register, ModRM.rm (plus
/// REX.B) the GPR, and the mod field is ignored, always taken as 11b (Intel SDM Vol.
/// 2B, MOV—Move to/from Control Registers, MOV—Move to/from Debug Registers).
/// AMD's `lock mov cr0` spelling of cr8 is not accepted: lock makes these Invalid.
fn decode_mov_cr_dr(cursor: &mut Cursor, prefixes: Prefixes, opcode: u8) -> Result<Instruction, DecodeError> {
    let modrm = cursor.next()?;
    let register = ((modrm >> 3) & 7) | (prefixes.rex_r() << 3);
    let gpr = Gpr::from_index((modrm & 7) | (prefixes.rex_b() << 3)).ok_or(DecodeError::Invalid)?;
    let is_control = opcode & 1 == 0;
    let valid = if is_control { VALID_CONTROL_REGISTERS.contains(&register) } else { register < 8 };
    if !valid {
        return Err(DecodeError::Invalid);
    }
    Ok(match opcode {
        0x20 => Instruction::MovFromCr { cr: register, gpr },
        0x22 => Instruction::MovToCr { cr: register, gpr },
        0x21 => Instruction::MovFromDr { dr: register, gpr },
        _ => Instruction::MovToDr { dr: register, gpr },
    })
}

/// 0F 00 /r: sldt, str, lldt, ltr take a register or a memory operand alike.
fn decode_group6(cursor: &mut Cursor, prefixes: Prefixes) -> Result<Instruction, DecodeError> {
    let modrm = cursor.next()?;
    cursor.read_operand(modrm, prefixes)?;
    Ok(match (modrm >> 3) & 7 {
        0 => Instruction::Sldt,
        1 => Instruction::Str,
        2 => Instruction::Lldt,
        3 => Instruction::Ltr,
        _ => Instruction::Other, // verr, verw, reserved: length still known
    })
}

/// 0F 01 /r. With mod=11 the /0-/3, /5 and /7 slots are other instructions (vmcall,
/// monitor, xgetbv, ...), named by the whole ModRM byte; smsw and lmsw exist in both
/// forms.
fn decode_group7(cursor: &mut Cursor, prefixes: Prefixes) -> Result<Instruction, DecodeError> {
    let modrm = cursor.next()?;
    cursor.read_operand(modrm, prefixes)?;
    let is_register = modrm >> 6 == 3;
    Ok(match ((modrm >> 3) & 7, is_register) {
        (4, _) => Instruction::Smsw,
        (6, _) => Instruction::Lmsw,
        (0, false) => Instruction::Sgdt,
        (1, false) => Instruction::Sidt,
        (2, false) => Instruction::Lgdt,
        (3, false) => Instruction::Lidt,
        (7, false) => Instruction::Invlpg,
        (2, true) if modrm == 0xd1 => Instruction::Xsetbv,
        (7, true) if modrm == 0xf8 => Instruction::Swapgs,
        (7, true) if modrm == 0xf9 => Instruction::Rdtscp,
        _ => Instruction::Other,
    })
}
