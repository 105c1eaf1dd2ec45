//! Decoding the instructions a guest kernel writes a page-table entry with, for the
//! writable page-table assist (trap::ptwr): `mov` from a register or an immediate,
//! `xchg` and `cmpxchg`, each with a memory destination. Same rules as
//! [`decode`](super::decode): pure, no panic, 64-bit mode only.

use super::{read_prefixes, Cursor, DecodeError, Gpr, MemoryOperand, Operand};

/// One store to memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Store {
    pub kind: StoreKind,
    /// Bytes written: 1, 2, 4 or 8.
    pub size: u8,
    pub destination: MemoryOperand,
    /// The instruction's length in bytes.
    pub length: usize,
    /// A REX prefix was present: byte registers 4-7 are then spl, bpl, sil and dil,
    /// not ah, ch, dh and bh.
    pub rex: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// `mov [m], reg`.
    MovRegister(Gpr),
    /// `mov [m], imm`: the immediate sign-extended to the operand size.
    MovImmediate(i64),
    /// `xchg [m], reg` (locked whether or not it says so).
    Xchg(Gpr),
    /// `cmpxchg [m], reg`: compares with rax (of the operand size).
    Cmpxchg(Gpr),
}

/// Decodes `bytes` as one of the stores above. `Ok(None)`: some other instruction
/// (including these opcodes with a register destination).
pub fn decode_store(bytes: &[u8]) -> Result<Option<Store>, DecodeError> {
    let mut cursor = Cursor { bytes, start: 0, pos: 0, operand: None };
    let (prefixes, opcode) = read_prefixes(&mut cursor)?;
    let wide = if prefixes.rex_w() {
        8
    } else if prefixes.operand_size {
        2
    } else {
        4
    };
    let (opcode, two_byte) = if opcode == 0x0f { (cursor.next()?, true) } else { (opcode, false) };
    let size = match (two_byte, opcode) {
        (false, 0x88 | 0x86 | 0xc6) | (true, 0xb0) => 1,
        (false, 0x89 | 0x87 | 0xc7) | (true, 0xb1) => wide,
        _ => return Ok(None),
    };
    let modrm = cursor.next()?;
    let source = Gpr::from_index(((modrm >> 3) & 7) | (prefixes.rex_r() << 3)).ok_or(DecodeError::Invalid)?;
    let Operand::Memory(destination) = cursor.read_operand(modrm, prefixes)? else {
        return Ok(None);
    };
    let kind = match (two_byte, opcode) {
        (false, 0x88 | 0x89) => StoreKind::MovRegister(source),
        (false, 0x86 | 0x87) => StoreKind::Xchg(source),
        (true, _) => StoreKind::Cmpxchg(source),
        // C6/C7 are `mov` only with ModRM.reg 0 (the others are xabort/xbegin or
        // reserved, never a plain store).
        _ if (modrm >> 3) & 7 != 0 => return Ok(None),
        _ => StoreKind::MovImmediate(read_immediate(&mut cursor, size)?),
    };
    // lock is allowed on xchg and cmpxchg only (Intel SDM Vol. 2A, LOCK).
    if prefixes.lock && matches!(kind, StoreKind::MovRegister(_) | StoreKind::MovImmediate(_)) {
        return Err(DecodeError::Invalid);
    }
    Ok(Some(Store { kind, size, destination, length: cursor.pos, rex: prefixes.rex != 0 }))
}

/// An immediate of `size` bytes, at most 4 (a 64-bit `mov` takes a sign-extended imm32).
fn read_immediate(cursor: &mut Cursor, size: u8) -> Result<i64, DecodeError> {
    let bytes = size.min(4);
    let mut value: u32 = 0;
    for i in 0..bytes {
        value |= u32::from(cursor.next()?) << (8 * i);
    }
    Ok(match bytes {
        1 => i64::from(value as u8 as i8),
        2 => i64::from(value as u16 as i16),
        _ => i64::from(value as i32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(bytes: &[u8]) -> Store {
        decode_store(bytes).unwrap().unwrap()
    }

    #[test]
    fn the_stores_a_kernel_writes_ptes_with() {
        // mov [rdi], rsi: Linux's native_set_pte.
        let s = store(&[0x48, 0x89, 0x37]);
        assert_eq!((s.kind, s.size, s.length), (StoreKind::MovRegister(Gpr::Rsi), 8, 3));
        assert_eq!(s.destination.base, Some(Gpr::Rdi));
        // xchg [rdi], rax: native_ptep_get_and_clear.
        let s = store(&[0x48, 0x87, 0x07]);
        assert_eq!((s.kind, s.size), (StoreKind::Xchg(Gpr::Rax), 8));
        // lock cmpxchg [r8+rcx*8+0x10], r9
        let s = store(&[0xf0, 0x4d, 0x0f, 0xb1, 0x4c, 0xc8, 0x10]);
        assert_eq!((s.kind, s.size, s.length), (StoreKind::Cmpxchg(Gpr::R9), 8, 7));
        assert_eq!(
            (s.destination.base, s.destination.index, s.destination.scale, s.destination.displacement),
            (Some(Gpr::R8), Some(Gpr::Rcx), 8, 0x10)
        );
        // mov qword [rax], -1 (imm32 sign-extended) and mov dword [rax+4], 0x1234
        let s = store(&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!((s.kind, s.size, s.length), (StoreKind::MovImmediate(-1), 8, 7));
        let s = store(&[0xc7, 0x40, 0x04, 0x34, 0x12, 0x00, 0x00]);
        assert_eq!((s.kind, s.size, s.destination.displacement), (StoreKind::MovImmediate(0x1234), 4, 4));
        // 32-bit and 16-bit forms are measured (the caller decides what to do with them).
        assert_eq!(store(&[0x89, 0x37]).size, 4);
        assert_eq!(store(&[0x66, 0x89, 0x37]).size, 2);
        assert_eq!(store(&[0x88, 0x37]).size, 1);
        // A segment override is kept for the caller to apply.
        assert_eq!(store(&[0x65, 0x48, 0x89, 0x37]).destination.segment, Some(super::super::Segment::Gs));
    }

    #[test]
    fn anything_else_is_not_a_store() {
        for bytes in [&[0x48, 0x89, 0xf7][..], &[0x48, 0x8b, 0x37], &[0x0f, 0xa2], &[0xc7, 0xf8, 0, 0, 0, 0], &[0x48, 0x87, 0xc0]] {
            assert_eq!(decode_store(bytes), Ok(None), "{bytes:x?}");
        }
        assert_eq!(decode_store(&[0xf0, 0x48, 0x89, 0x37]), Err(DecodeError::Invalid), "lock mov");
        assert_eq!(decode_store(&[0x48, 0xc7, 0x00, 0xff]), Err(DecodeError::Truncated));
        assert_eq!(decode_store(&[0x48]), Err(DecodeError::Truncated));
        assert_eq!(decode_store(&[0x66; 15]), Err(DecodeError::Invalid), "past 15 bytes");
    }

    #[test]
    fn no_input_makes_it_panic() {
        // Every two-byte prefix of a store shape, and a spread of three-byte inputs.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let _ = decode_store(&[a, b]);
                let _ = decode_store(&[0x48, a, b]);
                let _ = decode_store(&[0x0f, a, b, 0x44]);
            }
        }
    }
}
