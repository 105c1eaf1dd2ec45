//! The guest's own CPU state through hypercalls: set_segment_base (arch-x86/xen-x86_64.h
//! SEGBASE_*) and set_debugreg/get_debugreg (xen.h). `arch` loads what changed into the
//! CPU before the guest runs again.

use super::HypercallContext;
use crate::mm::guest_walk::MachineMemory;
use crate::mm::is_canonical;
use crate::trap::debugreg;
use hypercall_abi::arch_x86_64::FLAT_RING3_DS32;
use hypercall_abi::ops::physdev::{PhysdevSetIopl, PHYSDEVOP_SET_IOPL};
use hypercall_abi::ops::traps::{SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER, SEGBASE_GS_USER_SEL};
use hypercall_abi::{Errno, GuestHandle};

pub fn set_segment_base<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, which: u32, base: u64) -> Result<i64, Errno> {
    let traps = &mut ctx.domain.traps;
    let slot = match which {
        SEGBASE_FS => &mut traps.fs_base,
        SEGBASE_GS_USER => &mut traps.gs_base_user,
        SEGBASE_GS_KERNEL => &mut traps.gs_base_kernel,
        SEGBASE_GS_USER_SEL => {
            // The selector is loaded now and the user GS base becomes its segment's base:
            // 0 for the flat data selector. A selector that cannot be loaded leaves the
            // null selector, without an error (Xen's fault fixup does the same).
            let selector = base as u16;
            let selector = if selector & !3 == FLAT_RING3_DS32 & !3 { FLAT_RING3_DS32 } else { 0 };
            traps.gs_selector = selector;
            traps.exit.gs_selector_pending = true;
            traps.gs_base_user = 0;
            traps.exit.segment_bases_dirty = true;
            return Ok(0);
        }
        _ => return Err(Errno::EINVAL),
    };
    if !is_canonical(base) {
        return Err(Errno::EINVAL);
    }
    *slot = base;
    traps.exit.segment_bases_dirty = true;
    Ok(0)
}

/// physdev_op: PHYSDEVOP_set_iopl sets the virtual IOPL that in/out/cli/sti emulation
/// checks (physdev.h); the other commands need devices this hypervisor does not pass
/// through yet.
pub fn physdev_op<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
    match cmd {
        PHYSDEVOP_SET_IOPL => {
            let request: PhysdevSetIopl = arg.into_in().read(ctx)?;
            if request.iopl > 3 {
                return Err(Errno::EINVAL);
            }
            ctx.domain.traps.iopl = request.iopl as u8;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

pub fn set_debugreg<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, register: u32, value: u64) -> Result<i64, Errno> {
    debugreg::set(&mut ctx.domain.traps, register, value).map(|()| 0)
}

pub fn get_debugreg<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, register: u32) -> Result<i64, Errno> {
    debugreg::get(&ctx.domain.traps, register).map(|v| v as i64)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::TestGuest;
    use hypercall_abi::nr;

    #[test]
    fn segment_bases() {
        let mut g = TestGuest::new();
        assert_eq!(g.call(nr::set_segment_base, [0, 0x7000_1000, 0, 0, 0, 0]), 0);
        assert_eq!(g.domain.traps.fs_base, 0x7000_1000);
        assert!(g.domain.traps.exit.segment_bases_dirty);
        assert_eq!(g.call(nr::set_segment_base, [1, 0xffff_ffff_8000_0000, 0, 0, 0, 0]), 0);
        assert_eq!(g.domain.traps.gs_base_user, 0xffff_ffff_8000_0000);
        assert_eq!(g.call(nr::set_segment_base, [2, 0x8000_0000_0000, 0, 0, 0, 0]), -22, "non-canonical");
        assert_eq!(g.call(nr::set_segment_base, [4, 0, 0, 0, 0, 0]), -22);
        assert_eq!(g.call(nr::set_segment_base, [3, 0xe028, 0, 0, 0, 0]), 0);
        assert_eq!((g.domain.traps.exit.gs_selector_pending, g.domain.traps.gs_selector), (true, 0xe02b));
        assert_eq!(g.call(nr::set_segment_base, [3, 0xe008, 0, 0, 0, 0]), 0, "a ring-0 selector loads null");
        assert_eq!((g.domain.traps.exit.gs_selector_pending, g.domain.traps.gs_selector), (true, 0));
    }

    #[test]
    fn set_iopl() {
        use super::super::test_support::GUEST_DATA_VA;
        let mut g = TestGuest::new();
        g.poke(GUEST_DATA_VA, &1u32.to_le_bytes());
        assert_eq!(g.call(nr::physdev_op, [6, GUEST_DATA_VA, 0, 0, 0, 0]), 0);
        assert_eq!(g.domain.traps.iopl, 1);
        g.poke(GUEST_DATA_VA, &4u32.to_le_bytes());
        assert_eq!(g.call(nr::physdev_op, [6, GUEST_DATA_VA, 0, 0, 0, 0]), -22);
        assert_eq!(g.call(nr::physdev_op, [6, 0x10, 0, 0, 0, 0]), -14);
        assert_eq!(g.call(nr::physdev_op, [99, GUEST_DATA_VA, 0, 0, 0, 0]), -38);
    }

    #[test]
    fn debug_registers() {
        let mut g = TestGuest::new();
        assert_eq!(g.call(nr::set_debugreg, [0, 0x40_0000, 0, 0, 0, 0]), 0);
        assert_eq!(g.call(nr::get_debugreg, [0, 0, 0, 0, 0, 0]), 0x40_0000);
        assert_eq!(g.call(nr::set_debugreg, [1, 0xffff_8300_0000_0000, 0, 0, 0, 0]), -1);
        assert_eq!(g.call(nr::get_debugreg, [8, 0, 0, 0, 0, 0]), -19);
        assert_eq!(g.call(nr::get_debugreg, [7, 0, 0, 0, 0, 0]), 0x400);
    }
}
