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
    NonCanonicalRsp,
    CodeSelector,
    StackSelector,
    Rflags,
}

impl BadFrame {
    pub fn describe(self) -> &'static str {
        match self {
            BadFrame::NonCanonicalRip => "non-canonical rip",
            BadFrame::RipBeyond32Bits => "32-bit code selector with rip above 4 GiB",
            BadFrame::NonCanonicalRsp => "non-canonical rsp",
            BadFrame::CodeSelector => "cs is not a guest code selector with RPL 3",
            BadFrame::StackSelector => "ss is not a guest stack selector with RPL 3",
            BadFrame::Rflags => "rflags without IF, or with IOPL, VM or reserved bits",
        }
    }
}

/// RFLAGS bits that are reserved (must be zero): 3, 5, 15 and 22-63.
const RFLAGS_RESERVED: u64 = (1 << 3) | (1 << 5) | (1 << 15) | !((1 << 22) - 1);

/// Checks a return frame. Only the hypervisor's flat ring-3 selectors exist for guests
/// until guest GDTs do (set_gdt).
pub fn check_return_frame(regs: &GuestRegisters) -> Result<(), BadFrame> {
    let cs = regs.cs;
    if cs == FLAT_RING3_CS64 as u64 {
        if !is_canonical(regs.rip) {
            return Err(BadFrame::NonCanonicalRip);
        }
    } else if cs == FLAT_RING3_CS32 as u64 {
        if regs.rip > u32::MAX as u64 {
            return Err(BadFrame::RipBeyond32Bits);
        }
    } else {
        return Err(BadFrame::CodeSelector);
    }
    if regs.ss != FLAT_RING3_SS64 as u64 {
        return Err(BadFrame::StackSelector);
    }
    // `sysretq` does not load RSP from a frame (the exit path moves it there first, in
    // ring 0 with interrupts off), so a non-canonical one only faults later, in the
    // guest, as on Xen, which returns from hypercalls the same way. `iretq` is refused it.
    if !is_canonical(regs.rsp) && !regs.sysret_can_resume() {
        return Err(BadFrame::NonCanonicalRsp);
    }
    if regs.rflags & RFLAGS_IF == 0 || regs.rflags & (RFLAGS_IOPL | RFLAGS_VM | RFLAGS_RESERVED) != 0 {
        return Err(BadFrame::Rflags);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn refuses_each_bad_field() {
        let cases = [
            (GuestRegisters { rip: 0x0000_8000_0000_0000, ..good() }, BadFrame::NonCanonicalRip),
            (GuestRegisters { cs: 0xe023, rip: 0x1_0000_0000, ..good() }, BadFrame::RipBeyond32Bits),
            (GuestRegisters { rsp: 0x1234_0000_0000_0000, rcx: 1, ..good() }, BadFrame::NonCanonicalRsp),
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
