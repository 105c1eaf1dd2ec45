use super::*;
use Instruction::*;
use OperandSize::{Byte, Dword, Word};

fn decoded(bytes: &[u8]) -> Decoded {
    match decode(bytes) {
        Ok(decoded) => decoded,
        Err(error) => panic!("{bytes:02x?}: {error:?}"),
    }
}

fn with_forced_prefix(bytes: &[u8]) -> Vec<u8> {
    let mut forced = XEN_EMULATE_PREFIX.to_vec();
    forced.extend_from_slice(bytes);
    forced
}

/// Every instruction the decoder knows, in its shortest encoding.
fn known_instructions() -> Vec<(Vec<u8>, Instruction)> {
    let io_imm = PortOperand::Imm8(0x71);
    vec![
        (vec![0x0f, 0xa2], Cpuid),
        (vec![0x0f, 0x32], Rdmsr),
        (vec![0x0f, 0x30], Wrmsr),
        (vec![0x0f, 0x31], Rdtsc),
        (vec![0x0f, 0x01, 0xf9], Rdtscp),
        (vec![0x0f, 0x33], Rdpmc),
        (vec![0x0f, 0x20, 0xd8], MovFromCr { cr: 3, gpr: Gpr::Rax }),
        (vec![0x0f, 0x22, 0xe3], MovToCr { cr: 4, gpr: Gpr::Rbx }),
        (vec![0x0f, 0x21, 0xf9], MovFromDr { dr: 7, gpr: Gpr::Rcx }),
        (vec![0x0f, 0x23, 0xc2], MovToDr { dr: 0, gpr: Gpr::Rdx }),
        (vec![0x0f, 0x06], Clts),
        (vec![0xf4], Hlt),
        (vec![0xfa], Cli),
        (vec![0xfb], Sti),
        (vec![0x0f, 0x09], Wbinvd),
        (vec![0x0f, 0x08], Invd),
        (vec![0x0f, 0x01, 0x38], Invlpg),
        (vec![0x0f, 0x01, 0xf8], Swapgs),
        (vec![0xe4, 0x71], In { size: Byte, port: io_imm }),
        (vec![0xe5, 0x71], In { size: Dword, port: io_imm }),
        (vec![0xec], In { size: Byte, port: PortOperand::Dx }),
        (vec![0xed], In { size: Dword, port: PortOperand::Dx }),
        (vec![0xe6, 0x71], Out { size: Byte, port: io_imm }),
        (vec![0xe7, 0x71], Out { size: Dword, port: io_imm }),
        (vec![0xee], Out { size: Byte, port: PortOperand::Dx }),
        (vec![0xef], Out { size: Dword, port: PortOperand::Dx }),
        (vec![0x6c], Ins { size: Byte, rep: false }),
        (vec![0x6d], Ins { size: Dword, rep: false }),
        (vec![0x6e], Outs { size: Byte, rep: false }),
        (vec![0x6f], Outs { size: Dword, rep: false }),
        (vec![0x0f, 0x01, 0x00], Sgdt),
        (vec![0x0f, 0x01, 0x08], Sidt),
        (vec![0x0f, 0x01, 0x10], Lgdt),
        (vec![0x0f, 0x01, 0x18], Lidt),
        (vec![0x0f, 0x01, 0x20], Smsw),
        (vec![0x0f, 0x01, 0xe0], Smsw),
        (vec![0x0f, 0x01, 0x30], Lmsw),
        (vec![0x0f, 0x01, 0xf0], Lmsw),
        (vec![0x0f, 0x00, 0x00], Sldt),
        (vec![0x0f, 0x00, 0xc8], Str),
        (vec![0x0f, 0x00, 0x10], Lldt),
        (vec![0x0f, 0x00, 0xd8], Ltr),
        (vec![0xcd, 0x80], Int { vector: 0x80 }),
        (vec![0xcc], Int3),
        (vec![0xce], Into),
    ]
}

#[test]
fn every_known_instruction_with_and_without_the_forced_prefix() {
    for (bytes, instruction) in known_instructions() {
        let plain = decoded(&bytes);
        assert_eq!((plain.instruction, plain.length, plain.forced, plain.rex_w), (instruction, bytes.len(), false, false));
        let forced = decoded(&with_forced_prefix(&bytes));
        assert_eq!((forced.instruction, forced.length, forced.forced, forced.rex_w), (instruction, bytes.len() + 5, true, false));
    }
}

#[test]
fn trailing_bytes_are_not_part_of_the_instruction() {
    for (bytes, instruction) in known_instructions() {
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0x90; 20]);
        assert_eq!(decoded(&longer).instruction, instruction);
        assert_eq!(decoded(&longer).length, bytes.len());
    }
}

#[test]
fn segment_address_size_and_empty_rex_prefixes_change_nothing() {
    for (bytes, instruction) in known_instructions() {
        for prefix in [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x67, 0x40] {
            let mut prefixed = vec![prefix];
            prefixed.extend_from_slice(&bytes);
            let found = decoded(&prefixed);
            assert_eq!((found.instruction, found.length), (instruction, bytes.len() + 1), "{prefixed:02x?}");
        }
    }
}

#[test]
fn rex_extends_control_debug_and_general_registers() {
    assert_eq!(decoded(&[0x41, 0x0f, 0x22, 0xc0]).instruction, MovToCr { cr: 0, gpr: Gpr::R8 });
    assert_eq!(decoded(&[0x44, 0x0f, 0x20, 0xc0]).instruction, MovFromCr { cr: 8, gpr: Gpr::Rax });
    assert_eq!(decoded(&[0x45, 0x0f, 0x22, 0xc7]).instruction, MovToCr { cr: 8, gpr: Gpr::R15 });
    assert_eq!(decoded(&[0x41, 0x0f, 0x21, 0xfc]).instruction, MovFromDr { dr: 7, gpr: Gpr::R12 });
    let with_w = decoded(&[0x49, 0x0f, 0x20, 0xd9]);
    assert_eq!(with_w.instruction, MovFromCr { cr: 3, gpr: Gpr::R9 });
    assert!(with_w.rex_w);
    assert_eq!(with_w.length, 4);
}

#[test]
fn mov_cr_dr_ignore_the_mod_field() {
    assert_eq!(decoded(&[0x0f, 0x20, 0x18]), decoded(&[0x0f, 0x20, 0xd8]));
    assert_eq!(decoded(&[0x0f, 0x23, 0x44]).instruction, MovToDr { dr: 0, gpr: Gpr::Rsp });
    assert_eq!(decoded(&[0x0f, 0x23, 0x44]).length, 3);
}

#[test]
fn reserved_control_and_debug_registers_are_invalid() {
    for cr in [1u8, 5, 6, 7] {
        assert_eq!(decode(&[0x0f, 0x20, 0xc0 | (cr << 3)]), Err(DecodeError::Invalid));
        assert_eq!(decode(&[0x0f, 0x22, 0xc0 | (cr << 3)]), Err(DecodeError::Invalid));
    }
    for cr in [9u8, 10, 15] {
        assert_eq!(decode(&[0x44, 0x0f, 0x20, 0xc0 | ((cr & 7) << 3)]), Err(DecodeError::Invalid));
    }
    assert_eq!(decode(&[0x44, 0x0f, 0x21, 0xc0]), Err(DecodeError::Invalid));
    assert_eq!(decode(&[0x44, 0x0f, 0x23, 0xf8]), Err(DecodeError::Invalid));
}

#[test]
fn a_rex_prefix_followed_by_a_legacy_prefix_is_ignored() {
    let decoded = decoded(&[0x4c, 0x66, 0x0f, 0x20, 0xc0]);
    assert_eq!(decoded.instruction, MovFromCr { cr: 0, gpr: Gpr::Rax });
    assert!(!decoded.rex_w);
}

#[test]
fn operand_size_prefix_selects_word_io() {
    assert_eq!(decoded(&[0x66, 0xed]).instruction, In { size: Word, port: PortOperand::Dx });
    assert_eq!(decoded(&[0x66, 0xef]).instruction, Out { size: Word, port: PortOperand::Dx });
    let imm = decoded(&[0x66, 0xe5, 0x60]);
    assert_eq!((imm.instruction, imm.length), (In { size: Word, port: PortOperand::Imm8(0x60) }, 3));
    assert_eq!(decoded(&[0x66, 0xe7, 0x60]).instruction, Out { size: Word, port: PortOperand::Imm8(0x60) });
    // Byte forms have no other size; REX.W does not widen port I/O.
    assert_eq!(decoded(&[0x66, 0xec]).instruction, In { size: Byte, port: PortOperand::Dx });
    assert_eq!(decoded(&[0x48, 0xed]).instruction, In { size: Dword, port: PortOperand::Dx });
}

#[test]
fn rep_prefixes_on_string_io() {
    assert_eq!(decoded(&[0xf3, 0x6c]).instruction, Ins { size: Byte, rep: true });
    assert_eq!(decoded(&[0xf2, 0x6d]).instruction, Ins { size: Dword, rep: true });
    assert_eq!(decoded(&[0xf3, 0x66, 0x6f]).instruction, Outs { size: Word, rep: true });
    let outs = decoded(&[0x2e, 0xf3, 0x6e]);
    assert_eq!((outs.instruction, outs.length), (Outs { size: Byte, rep: true }, 3));
}

#[test]
fn memory_operand_lengths() {
    let cases: [(&[u8], usize); 10] = [
        (&[0x0f, 0x01, 0x04, 0x24], 4),                         // [rsp]: SIB
        (&[0x0f, 0x01, 0x84, 0x24, 0x78, 0x56, 0x34, 0x12], 8), // [rsp+disp32]
        (&[0x0f, 0x01, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00], 8), // SIB, no base: disp32
        (&[0x0f, 0x01, 0x44, 0x8d, 0x10], 5),                   // [rbp+rcx*4+disp8]
        (&[0x0f, 0x01, 0x05, 0xf0, 0xff, 0xff, 0xff], 7),       // RIP-relative
        (&[0x67, 0x0f, 0x01, 0x05, 0x10, 0x00, 0x00, 0x00], 8), // EIP-relative
        (&[0x41, 0x0f, 0x01, 0x45, 0x00], 5),                   // [r13+disp8]
        (&[0x41, 0x0f, 0x01, 0x04, 0x24], 5),                   // [r12]: still SIB
        (&[0x65, 0x0f, 0x01, 0x80, 1, 2, 3, 4], 8),             // gs:[rax+disp32]
        (&[0x0f, 0x01, 0x45, 0x08], 4),                         // [rbp+disp8]
    ];
    for (bytes, length) in cases {
        let sgdt = decoded(bytes);
        assert_eq!((sgdt.instruction, sgdt.length), (Sgdt, length), "{bytes:02x?}");
    }
    assert_eq!(decoded(&[0x0f, 0x01, 0x3d, 1, 2, 3, 4]).length, 7); // invlpg [rip+disp32]
    assert_eq!(decoded(&[0x0f, 0x00, 0x94, 0x24, 1, 2, 3, 4]).instruction, Lldt);
    assert_eq!(decoded(&[0x0f, 0x00, 0x94, 0x24, 1, 2, 3, 4]).length, 8);
}

#[test]
fn every_cut_point_is_truncated() {
    let instructions: [&[u8]; 8] = [
        &[0x0f, 0x01, 0x84, 0x24, 0x78, 0x56, 0x34, 0x12],
        &[0x67, 0x65, 0x0f, 0x01, 0x05, 0x10, 0x00, 0x00, 0x00],
        &[0x44, 0x0f, 0x20, 0xc0],
        &[0x66, 0xe5, 0x60],
        &[0xf3, 0x66, 0x6d],
        &[0xcd, 0x80],
        &[0x0f, 0x00, 0x44, 0x8d, 0x10],
        &[0x0f, 0x01, 0xf9],
    ];
    for bytes in instructions {
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Err(DecodeError::Truncated), "{bytes:02x?} at {cut}");
        }
        let forced = with_forced_prefix(bytes);
        for cut in 0..forced.len() {
            assert_eq!(decode(&forced[..cut]), Err(DecodeError::Truncated), "{forced:02x?} at {cut}");
        }
    }
}

#[test]
fn a_cut_short_forced_prefix_is_truncated() {
    for cut in 0..5 {
        assert_eq!(decode(&XEN_EMULATE_PREFIX[..cut]), Err(DecodeError::Truncated), "{cut}");
    }
    // Once a byte differs it is a plain ud2 followed by something else.
    let ud2 = decoded(&[0x0f, 0x0b, 0x78, 0x90]);
    assert_eq!((ud2.instruction, ud2.length, ud2.forced), (Other, 2, false));
}

#[test]
fn lock_prefix_is_invalid() {
    for (bytes, _) in known_instructions() {
        let mut locked = vec![0xf0];
        locked.extend_from_slice(&bytes);
        assert_eq!(decode(&locked), Err(DecodeError::Invalid), "{locked:02x?}");
        assert_eq!(decode(&with_forced_prefix(&locked)), Err(DecodeError::Invalid));
    }
}

#[test]
fn fifteen_bytes_is_the_limit() {
    let mut longest = vec![0x66; 13];
    longest.extend_from_slice(&[0x0f, 0xa2]);
    assert_eq!(decoded(&longest).length, 15);
    assert_eq!(decoded(&with_forced_prefix(&longest)).length, 20);
    let mut too_long = vec![0x2e; 14];
    too_long.extend_from_slice(&[0x0f, 0xa2]);
    assert_eq!(decode(&too_long), Err(DecodeError::Invalid));
    assert_eq!(decode(&[0x3e; 16]), Err(DecodeError::Invalid));
    // The limit is known even before the input runs out.
    assert_eq!(decode(&[0x3e; 15]), Err(DecodeError::Invalid));
    assert_eq!(decode(&[0x3e; 14]), Err(DecodeError::Truncated));
}

#[test]
fn unknown_instructions_are_other() {
    assert_eq!(decoded(&[0x90]), Decoded { instruction: Other, length: 0, forced: false, rex_w: false, operand: None });
    assert_eq!(decoded(&[0x48, 0x0f, 0xb8, 0xc0]).length, 0);
    let xgetbv = decoded(&[0x0f, 0x01, 0xd0]);
    assert_eq!((xgetbv.instruction, xgetbv.length, xgetbv.forced), (Other, 3, false));
    assert_eq!(decoded(&[0x0f, 0x00, 0x20]).length, 3); // verr [rax]
    assert_eq!(decoded(&[0xf0, 0x90]).instruction, Other);
    assert!(decoded(&with_forced_prefix(&[0x90])).forced);
}

#[test]
fn gpr_from_index() {
    assert_eq!(Gpr::from_index(0), Some(Gpr::Rax));
    assert_eq!(Gpr::from_index(15), Some(Gpr::R15));
    assert_eq!(Gpr::from_index(16), None);
}

/// Every 1..=4 byte sequence over bytes that matter to the decoder: no panic, the length
/// fits the input, and a decoded instruction decodes the same from exactly its bytes
/// (except a ud2 that could be the start of the signature).
#[test]
fn short_sequences_never_panic() {
    const ALPHABET: [u8; 24] = [
        0x0f, 0x00, 0x01, 0x20, 0x21, 0x22, 0x0b, 0x66, 0x67, 0xf0, 0xf3, 0x41, 0x44, 0x04, 0x05, 0x24, 0xc0, 0xe5, 0xcd, 0x6d, 0xa2, 0x78, 0xff,
        0x45,
    ];
    let mut bytes = [0u8; 4];
    let mut count = 0usize;
    for length in 1..=4u32 {
        for mut index in 0..ALPHABET.len().pow(length) {
            for byte in bytes.iter_mut().take(length as usize) {
                *byte = ALPHABET[index % ALPHABET.len()];
                index /= ALPHABET.len();
            }
            let input = &bytes[..length as usize];
            for candidate in [input.to_vec(), with_forced_prefix(input)] {
                count += 1;
                if let Ok(found) = decode(&candidate) {
                    assert!(found.length <= candidate.len(), "{candidate:02x?}");
                    // A bare `0f 0b` may be a cut-short signature, so it alone is truncated.
                    let own_bytes = candidate.get(..found.length).unwrap_or_default();
                    if found.length > 0 && !XEN_EMULATE_PREFIX.starts_with(own_bytes) {
                        assert_eq!(decode(&candidate[..found.length]), Ok(found), "{candidate:02x?}");
                    }
                }
            }
        }
    }
    assert!(count > 600_000);
}

#[test]
fn memory_and_register_operands_of_the_stores() {
    use crate::trap::decode::{MemoryOperand, Operand, Segment};
    // sgdt [rdi]
    let d = decoded(&[0x0f, 0x01, 0x07]);
    let plain = MemoryOperand { base: Some(Gpr::Rdi), index: None, scale: 1, displacement: 0, rip_relative: false, address_32: false, segment: None };
    assert_eq!(d.operand, Some(Operand::Memory(plain)));
    // sidt gs:[r8 + r9*8 - 16]  (65 43 0f 01 4c c8 f0)
    let d = decoded(&[0x65, 0x43, 0x0f, 0x01, 0x4c, 0xc8, 0xf0]);
    let expect = MemoryOperand {
        base: Some(Gpr::R8),
        index: Some(Gpr::R9),
        scale: 8,
        displacement: -16,
        rip_relative: false,
        address_32: false,
        segment: Some(Segment::Gs),
    };
    assert_eq!((d.instruction, d.operand), (Instruction::Sidt, Some(Operand::Memory(expect))));
    // sgdt [rip + 0x100]
    let d = decoded(&[0x0f, 0x01, 0x05, 0x00, 0x01, 0x00, 0x00]);
    assert!(matches!(d.operand, Some(Operand::Memory(MemoryOperand { rip_relative: true, displacement: 0x100, .. }))));
    // str r10 (41 0f 00 ca), smsw eax (0f 01 e0)
    assert_eq!(decoded(&[0x41, 0x0f, 0x00, 0xca]).operand, Some(Operand::Register(Gpr::R10)));
    assert_eq!(decoded(&[0x0f, 0x01, 0xe0]).operand, Some(Operand::Register(Gpr::Rax)));
    // [disp32] through a SIB with no base and no index (0f 01 04 25 10 00 00 00)
    let d = decoded(&[0x0f, 0x01, 0x04, 0x25, 0x10, 0, 0, 0]);
    assert!(matches!(d.operand, Some(Operand::Memory(MemoryOperand { base: None, index: None, displacement: 0x10, .. }))));
}
