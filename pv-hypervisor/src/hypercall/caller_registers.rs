//! The calling vCPU's saved registers as a hypercall handler sees them: read freely,
//! changed only through [`CallerRegisters::replace`], which marks them replaced.
//!
//! Why: the hypercall exit checks the frame it resumes. A frame nobody replaced is the
//! one the 64-bit syscall entry built (flat ring-3 selectors, rip in rcx and rflags in
//! r11, as `syscall` left them), so the exit path needs only its rip's canonical check
//! before `sysretq`; a replaced one (iret, a continuation) gets the full check. The flag
//! is set by the only way to a `&mut`, so no handler can forget it.

use crate::domain::vcpu::GuestRegisters;
use core::ops::Deref;

pub struct CallerRegisters<'a> {
    regs: &'a mut GuestRegisters,
    replaced: bool,
}

impl<'a> CallerRegisters<'a> {
    pub fn new(regs: &'a mut GuestRegisters) -> CallerRegisters<'a> {
        CallerRegisters { regs, replaced: false }
    }

    /// The registers, to change: the exit path will check the whole frame.
    pub fn replace(&mut self) -> &mut GuestRegisters {
        self.replaced = true;
        self.regs
    }

    /// Whether a handler asked to change them.
    pub fn replaced(&self) -> bool {
        self.replaced
    }

    /// The hypercall's result: RAX is in no check of the frame.
    pub fn set_result(&mut self, rax: u64) {
        self.regs.rax = rax;
    }
}

impl Deref for CallerRegisters<'_> {
    type Target = GuestRegisters;

    fn deref(&self) -> &GuestRegisters {
        self.regs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_and_the_result_leave_the_frame_unreplaced() {
        let mut regs = GuestRegisters { rsp: 0x1000, ..Default::default() };
        let mut caller = CallerRegisters::new(&mut regs);
        assert_eq!(caller.rsp, 0x1000);
        caller.set_result(7);
        assert!(!caller.replaced());
        assert_eq!(regs.rax, 7);
    }

    #[test]
    fn the_only_way_to_change_them_marks_them_replaced() {
        let mut regs = GuestRegisters::default();
        let mut caller = CallerRegisters::new(&mut regs);
        caller.replace().rip = 0x2000;
        assert!(caller.replaced());
        assert_eq!(regs.rip, 0x2000);
    }
}
