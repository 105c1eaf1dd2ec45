//! The last check before any return to a guest: the frame `iretq` will load must send
//! the CPU to ring 3, to guest code, with nothing a guest may not have. A frame that
//! fails would fault inside the hypervisor (non-canonical rip: #GP in ring 0) or hand
//! the guest more than ring 3; the domain is crashed instead.

use super::bounce::{RFLAGS_IF, RFLAGS_IOPL, RFLAGS_VM};
use crate::domain::vcpu::GuestRegisters;
use crate::mm::is_canonical;
use hypercall_abi::arch_x86_64::{FLAT_RING3_CS32, FLAT_RING3_CS64, FLAT_RING3_SS64};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFrame {
    NonCanonicalRip,
    RipBeyond32Bits,
    CodeSelector,
    StackSelector,
    Rflags,
}

impl BadFrame {
    pub fn describe(self) -> &'static str {
        match self {
            BadFrame::NonCanonicalRip => "non-canonical rip",
            BadFrame::RipBeyond32Bits => "32-bit code selector with rip above 4 GiB",
            BadFrame::CodeSelector => "cs is not a guest code selector with RPL 3",
            BadFrame::StackSelector => "ss is not a guest stack selector with RPL 3",
            BadFrame::Rflags => "rflags without IF, or with IOPL, VM or reserved bits",
        }
    }
}

/// RFLAGS bits that are reserved (must be zero): 3, 5, 15 and 22-63.
const RFLAGS_RESERVED: u64 = (1 << 3) | (1 << 5) | (1 << 15) | !((1 << 22) - 1);

/// Descriptor bits the checks read.
const PRESENT: u64 = 1 << 47;
const DPL3: u64 = 3 << 45;
const CODE_OR_DATA: u64 = 1 << 44;
const CODE: u64 = 1 << 43;
const WRITABLE_DATA: u64 = 1 << 41;
const LONG_MODE: u64 = 1 << 53;
const GRANULARITY: u64 = 1 << 55;

/// What a code selector from a guest's own GDT allows, or None if `iretq` would refuse
/// it: present, a code segment, DPL 3 (RPL 3 is required of the selector itself).
fn guest_code_segment(descriptor: u64) -> Option<CodeSegment> {
    let ok = descriptor & (PRESENT | CODE_OR_DATA | CODE) == PRESENT | CODE_OR_DATA | CODE && descriptor & DPL3 == DPL3;
    if !ok {
        return None;
    }
    if descriptor & LONG_MODE != 0 {
        return Some(CodeSegment::Long);
    }
    let raw_limit = (descriptor & 0xffff) | ((descriptor >> 32) & 0xf_0000);
    let limit = if descriptor & GRANULARITY != 0 { (raw_limit << 12) | 0xfff } else { raw_limit };
    Some(CodeSegment::Compat { limit })
}

enum CodeSegment {
    Long,
    Compat { limit: u64 },
}

/// Whether a stack selector's descriptor is a present, writable data segment of DPL 3.
fn guest_stack_segment(descriptor: u64) -> bool {
    descriptor & (PRESENT | CODE_OR_DATA | CODE | WRITABLE_DATA | DPL3) == PRESENT | CODE_OR_DATA | WRITABLE_DATA | DPL3
}

/// Whether `mov` from ring 3 may load a data segment register (DS, ES, FS, GS) with a
/// selector naming this descriptor: present, and a data segment or a readable code
/// segment, of DPL 3 (guest descriptors always have it; conforming code would not need
/// it, but the CPU then accepts it anyway).
pub fn loadable_data_segment(descriptor: u64) -> bool {
    const READABLE_CODE: u64 = 1 << 41;
    let present_segment = descriptor & (PRESENT | CODE_OR_DATA | DPL3) == PRESENT | CODE_OR_DATA | DPL3;
    let code = descriptor & CODE != 0;
    present_segment && (!code || descriptor & READABLE_CODE != 0)
}

/// The frame almost every exit has: flat 64-bit selectors, a canonical rip, IF set, no
/// IOPL, VM or reserved bits (rsp is not checked: neither `iretq` nor `sysretq` faults
/// on it, see [`check_return_frame`]). Whatever this accepts, [`check_return_frame`]
/// accepts too (a host test holds the two to that), and whatever it refuses goes to
/// that full check.
#[inline(always)]
pub fn is_plain_flat_frame(regs: &GuestRegisters) -> bool {
    plain_flat_frame_differences(regs) == 0
}

/// Nonzero for a non-canonical address: a canonical one plus 2^47 is below 2^48.
#[inline(always)]
pub fn non_canonical(va: u64) -> u64 {
    va.wrapping_add(1 << 47) >> 48
}

/// Zero for rflags a guest may be resumed with (IF on; no IOPL, VM or reserved bits),
/// else the offending bits.
#[inline(always)]
pub fn rflags_differences(rflags: u64) -> u64 {
    (rflags & (RFLAGS_IF | RFLAGS_IOPL | RFLAGS_VM | RFLAGS_RESERVED)) ^ RFLAGS_IF
}

/// Zero for a plain flat frame ([`is_plain_flat_frame`]), else the bits by which it is
/// not one. Plain arithmetic, no comparisons: the exit path ORs it with its other
/// conditions into one word and branches once (every instruction counts there).
#[inline(always)]
pub fn plain_flat_frame_differences(regs: &GuestRegisters) -> u64 {
    (regs.cs ^ FLAT_RING3_CS64 as u64) | (regs.ss ^ FLAT_RING3_SS64 as u64) | non_canonical(regs.rip) | rflags_differences(regs.rflags)
}

/// Checks a return frame. Besides the hypervisor's flat ring-3 selectors, selectors
/// with RPL 3 into the guest's own GDT or LDT pass if `guest_descriptor` (which reads
/// the descriptor the selector names in the table the guest installed) shows a segment
/// `iretq` accepts.
#[inline(always)]
pub fn check_return_frame(regs: &GuestRegisters, guest_descriptor: &dyn Fn(u16) -> Option<u64>) -> Result<(), BadFrame> {
    let cs = regs.cs;
    let code = if cs == FLAT_RING3_CS64 as u64 {
        Some(CodeSegment::Long)
    } else if cs == FLAT_RING3_CS32 as u64 {
        Some(CodeSegment::Compat { limit: u32::MAX as u64 })
    } else if cs & 3 == 3 && cs <= u16::MAX as u64 {
        guest_descriptor(cs as u16).and_then(guest_code_segment)
    } else {
        None
    };
    match code {
        Some(CodeSegment::Long) if !is_canonical(regs.rip) => return Err(BadFrame::NonCanonicalRip),
        Some(CodeSegment::Compat { limit }) if regs.rip > limit => return Err(BadFrame::RipBeyond32Bits),
        Some(_) => {}
        None => return Err(BadFrame::CodeSelector),
    }
    let ss = regs.ss;
    let stack_ok =
        ss == FLAT_RING3_SS64 as u64 || (ss & 3 == 3 && ss <= u16::MAX as u64 && guest_descriptor(ss as u16).is_some_and(guest_stack_segment));
    if !stack_ok {
        return Err(BadFrame::StackSelector);
    }
    // RSP is not checked: neither `iretq` nor `sysretq` faults on a non-canonical one
    // (only RIP must be canonical; the stack fault comes later, in the guest), and a
    // guest may hold any value in it when an interrupt or a hypercall takes it, which
    // Xen resumes as it was (so does a native kernel). Refusing it crashed a guest that
    // a timer interrupt caught between two such instructions.
    if regs.rflags & RFLAGS_IF == 0 || regs.rflags & (RFLAGS_IOPL | RFLAGS_VM | RFLAGS_RESERVED) != 0 {
        return Err(BadFrame::Rflags);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: u16) -> Option<u64> {
        None
    }

    fn check_return_frame(regs: &GuestRegisters) -> Result<(), BadFrame> {
        super::check_return_frame(regs, &none)
    }

    fn good() -> GuestRegisters {
        GuestRegisters { rip: 0x10_0000, cs: 0xe033, rflags: 0x202, rsp: 0x12_0000, ss: 0xe02b, ..Default::default() }
    }

    #[test]
    fn accepts_guest_frames() {
        assert_eq!(check_return_frame(&good()), Ok(()));
        let compat = GuestRegisters { cs: 0xe023, rip: 0xffff_f000, ..good() };
        assert_eq!(check_return_frame(&compat), Ok(()));
        let high = GuestRegisters { rip: 0xffff_ffff_8000_0000, rsp: 0xffff_ffff_8010_0000, ..good() };
        assert_eq!(check_return_frame(&high), Ok(()));
        // A hypercall return (rcx/r11 = rip/rflags) leaves by sysretq: any rsp will do.
        let hypercall = GuestRegisters { rsp: 0x8000_0000_0000_0000, rcx: 0x10_0000, r11: 0x202, ..good() };
        assert_eq!(check_return_frame(&hypercall), Ok(()));
    }

    #[test]
    fn the_fast_check_accepts_only_what_the_full_check_accepts() {
        // Values at and around every boundary the checks draw.
        let addresses = [0, 0x10_0000, 0x7fff_ffff_ffff, 0x8000_0000_0000, 0xffff_7fff_ffff_ffff, 0xffff_8000_0000_0000, u64::MAX, 1 << 63];
        let selectors = [0xe033, 0xe02b, 0xe023, 0xe030, 0xe008, 0x0b, 0, 0x1_e033];
        let flags = [0x202, 0x2, 0x3202, 0x2_0202, 0x202 | (1 << 40), 0x200, 0x1202, 0x20_0202];
        let mut accepted = 0;
        for rip in addresses {
            for rsp in addresses {
                for cs in selectors {
                    for ss in selectors {
                        for rflags in flags {
                            let regs = GuestRegisters { rip, rsp, cs, ss, rflags, ..good() };
                            if is_plain_flat_frame(&regs) {
                                accepted += 1;
                                assert_eq!(check_return_frame(&regs), Ok(()), "{regs:x?}");
                            }
                        }
                    }
                }
            }
        }
        // Five canonical values for rip, any of the eight rsp, one cs, one ss, three
        // rflags (0x202, 0x200 and 0x20_0202: the ID bit is not reserved).
        assert_eq!(accepted, 5 * 8 * 3);
        assert!(is_plain_flat_frame(&good()));
    }

    #[test]
    fn any_rsp_is_resumed_as_it_was() {
        // An interrupted guest or an iret frame with a non-canonical rsp: iretq loads it
        // without faulting, and the guest meets its own #SS later, as on Xen.
        let interrupted = GuestRegisters { rsp: 0x1234_0000_0000_0000, rcx: 1, ..good() };
        assert_eq!(check_return_frame(&interrupted), Ok(()));
    }

    #[test]
    fn refuses_each_bad_field() {
        let cases = [
            (GuestRegisters { rip: 0x0000_8000_0000_0000, ..good() }, BadFrame::NonCanonicalRip),
            (GuestRegisters { cs: 0xe023, rip: 0x1_0000_0000, ..good() }, BadFrame::RipBeyond32Bits),
            (GuestRegisters { cs: 0xe008, ..good() }, BadFrame::CodeSelector),
            (GuestRegisters { cs: 0xe030, ..good() }, BadFrame::CodeSelector),
            (GuestRegisters { cs: 0xe00b, ..good() }, BadFrame::CodeSelector),
            (GuestRegisters { ss: 0xe010, ..good() }, BadFrame::StackSelector),
            (GuestRegisters { ss: 0, ..good() }, BadFrame::StackSelector),
            (GuestRegisters { rflags: 0x002, ..good() }, BadFrame::Rflags),
            (GuestRegisters { rflags: 0x3202, ..good() }, BadFrame::Rflags),
            (GuestRegisters { rflags: 0x2_0202, ..good() }, BadFrame::Rflags),
            (GuestRegisters { rflags: 0x202 | (1 << 40), ..good() }, BadFrame::Rflags),
        ];
        for (regs, why) in cases {
            assert_eq!(check_return_frame(&regs), Err(why), "{regs:x?}");
        }
    }
}

#[cfg(test)]
mod guest_gdt_tests {
    use super::*;

    const CODE64: u64 = 0x00af_fa00_0000_ffff;
    const CODE32_1MIB: u64 = 0x000f_fa00_0000_ffff; // byte granular: limit 0xfffff
    const DATA: u64 = 0x00cf_f200_0000_ffff;
    const CODE64_NOT_PRESENT: u64 = CODE64 & !(1 << 47);

    /// A GDT, and no LDT (entry::guest_descriptor finds LDT selectors in the LDT).
    fn gdt(selector: u16) -> Option<u64> {
        if selector & 4 != 0 {
            return None;
        }
        match selector >> 3 {
            1 => Some(CODE64),
            2 => Some(DATA),
            3 => Some(CODE32_1MIB),
            4 => Some(CODE64_NOT_PRESENT),
            _ => Some(0),
        }
    }

    fn frame(cs: u64, ss: u64, rip: u64) -> GuestRegisters {
        GuestRegisters { rip, cs, rflags: 0x202, rsp: 0x1000, ss, rcx: 1, ..Default::default() }
    }

    #[test]
    fn data_segment_registers_take_data_and_readable_code_of_dpl_3() {
        assert!(loadable_data_segment(DATA));
        assert!(loadable_data_segment(CODE64), "readable code");
        assert!(!loadable_data_segment(CODE64 & !(1 << 41)), "execute-only code");
        assert!(!loadable_data_segment(CODE64_NOT_PRESENT));
        assert!(!loadable_data_segment(DATA & !(3 << 45)), "DPL 0");
        assert!(!loadable_data_segment(0x0000_8900_0000_0067), "a TSS");
        assert!(!loadable_data_segment(0));
    }

    #[test]
    fn the_guests_own_segments_are_checked_like_the_cpu_would() {
        assert_eq!(check_return_frame(&frame(0x0b, 0x13, 0x40_0000), &gdt), Ok(()));
        assert_eq!(check_return_frame(&frame(0x1b, 0x13, 0xf_ffff), &gdt), Ok(()));
        assert_eq!(check_return_frame(&frame(0x1b, 0x13, 0x10_0000), &gdt), Err(BadFrame::RipBeyond32Bits), "past the limit");
        assert_eq!(check_return_frame(&frame(0x08, 0x13, 0x1000), &gdt), Err(BadFrame::CodeSelector), "RPL 0");
        assert_eq!(check_return_frame(&frame(0x13, 0x13, 0x1000), &gdt), Err(BadFrame::CodeSelector), "data as code");
        assert_eq!(check_return_frame(&frame(0x23, 0x13, 0x1000), &gdt), Err(BadFrame::CodeSelector), "not present");
        assert_eq!(check_return_frame(&frame(0x0f, 0x13, 0x1000), &gdt), Err(BadFrame::CodeSelector), "LDT selector, no LDT");
        assert_eq!(check_return_frame(&frame(0x0b, 0x0b, 0x1000), &gdt), Err(BadFrame::StackSelector), "code as stack");
        assert_eq!(check_return_frame(&frame(0x0b, 0x2b, 0x1000), &gdt), Err(BadFrame::StackSelector), "null descriptor");
        assert_eq!(check_return_frame(&frame(0x0b, 0x13, 0x8000_0000_0000), &gdt), Err(BadFrame::NonCanonicalRip));
    }
}
