//! Generators for the hypercalls that change the guest's CPU and memory state
//! (segment bases, debug registers, IOPL, the PV MMU, descriptors, multicall). The
//! fuzzer must stay alive, so these are hostile-only or harmless: every MMU request is
//! one the hypervisor must refuse, no breakpoint is ever enabled, and what a call may
//! change is put back afterwards (`Restore`).

use super::args::{scratch_ptr, Rng};
use super::memory::{self, Layout, PAGE};
use super::model::{Call, Expect, Restore, EBUSY, EFAULT, EINVAL, ENODEV, ENOSYS, EPERM, ESRCH};
use hypercall_abi::nr;
use hypercall_abi::ops::mmu::*;

const HYPERVISOR_ADDRESS: u64 = 0xffff_8300_0000_0000;
/// Marks the MMU_MACHPHYS_UPDATE request in `mmu_update`.
const MACHPHYS: i64 = i64::MIN;
/// Marks a mapping of a hypervisor's own frame in `update_va_mapping`.
const HYPERVISOR_OWNED: i64 = i64::MIN + 1;
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;
const UNMAPPED: u64 = 0x7fff_dead_0000;
/// A machine frame far beyond any RAM QEMU gives here.
const NO_SUCH_FRAME: u64 = 0xf_ffff_0000;
/// A hypervisor frame (its image lives at 2 MiB): never any guest's.
const HYPERVISOR_FRAME: u64 = 0x200;
/// An unused page of the initial mapping (below the kernel image).
const SPARE_VA: u64 = 0x8_0000;

fn canonical(v: u64) -> bool {
    let top = (v as i64) >> 47;
    top == 0 || top == -1
}

pub fn set_segment_base(rng: &mut Rng, mut args: [u64; 6]) -> Call {
    let other = rng.below(16) as u32;
    let which = rng.pick(&[0u32, 1, 2, 3, 4, 0xffff_ffff, other]);
    let base = rng.pick(&[0, memory::scratch_address(0), NON_CANONICAL, HYPERVISOR_ADDRESS, u64::MAX, 0xe02b, 0xe008]);
    args[0] = rng.widen(which);
    args[1] = base;
    let expect = match which {
        0..=2 if canonical(base) => 0,
        3 => 0,
        _ => EINVAL,
    };
    Call { restore: Restore::SegmentBases, ..Call::new(nr::set_segment_base, args, Expect::Exact(expect)) }
}

pub fn set_debugreg(rng: &mut Rng, mut args: [u64; 6]) -> Call {
    let register = rng.pick(&[0u32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xffff_ffff]);
    args[0] = rng.widen(register);
    let (value, expect) = match register {
        // A guest address is accepted (no breakpoint is ever enabled), anything else not.
        // (Xen's rule: below 2^47 or above its range, whatever the length.)
        0..=3 => {
            let value = rng.pick(&[HYPERVISOR_ADDRESS, NON_CANONICAL, 0x7fff_ffff_fffc, memory::scratch_address(0)]);
            (value, if value == HYPERVISOR_ADDRESS || value == NON_CANONICAL { EPERM } else { 0 })
        }
        4 | 6 => rng.pick(&[(0, 0), (0xffff_4ff1, 0), (1 << 32, EINVAL), (u64::MAX, EINVAL)]),
        // DR7: only values that enable nothing, or that must be refused.
        5 | 7 => rng.pick(&[(0x400, 0), (0, 0), (1 << 13, EPERM), (0x2_0001, EPERM), (1 << 33, EINVAL)]),
        _ => (0, ENODEV),
    };
    args[1] = value;
    Call { restore: Restore::DebugRegisters, ..Call::new(nr::set_debugreg, args, Expect::Exact(expect)) }
}

pub fn get_debugreg(rng: &mut Rng, mut args: [u64; 6]) -> Call {
    let register = rng.pick(&[0u32, 3, 4, 5, 6, 7, 8, 0xffff_ffff]);
    args[0] = rng.widen(register);
    let expect = if register <= 7 { Expect::NonNegative } else { Expect::Exact(ENODEV) };
    Call::new(nr::get_debugreg, args, expect)
}

pub fn physdev_op(rng: &mut Rng, mut args: [u64; 6]) -> Call {
    let cmd = rng.pick(&[6u32, 6, 6, 0, 7, 100, 0xffff_ffff]);
    // set_iobitmap (7) exists on Xen, not here yet: only ever with an unreadable
    // argument, which Xen refuses before acting on it.
    args[0] = rng.widen(cmd);
    let p = scratch_ptr(rng);
    let iopl = rng.pick(&[0u32, 1, 3, 4, 0xffff_ffff]);
    if let Some(offset) = p.scratch {
        memory::poke_scratch(offset, &iopl.to_le_bytes());
    }
    let unreadable = cmd == 7 || rng.percent(20);
    args[1] = if unreadable { UNMAPPED } else { p.addr };
    let expect = match cmd {
        6 if unreadable => Expect::Exact(EFAULT),
        6 if iopl <= 3 => Expect::Exact(0),
        6 => Expect::Exact(EINVAL),
        7 => Expect::Xen { xen: EFAULT, ours: ENOSYS, kind: "physdev_set_iobitmap_not_implemented" },
        _ => Expect::Exact(ENOSYS),
    };
    Call { restore: Restore::Iopl, ..Call::new(nr::physdev_op, args, expect) }
}

/// update_va_mapping only where it must fail: addresses without an L1, or the spare
/// page with an entry naming a page table writable, a frame not ours, reserved bits.
pub fn update_va_mapping(rng: &mut Rng, l: &Layout, mut args: [u64; 6]) -> Call {
    let flags = rng.pick(&[UVMF_NONE, UVMF_TLB_FLUSH, UVMF_INVLPG, UVMF_INVLPG | UVMF_ALL]);
    let (va, pte, expect) = match rng.below(6) {
        0 => (HYPERVISOR_ADDRESS, 0, EINVAL),
        1 => (NON_CANONICAL, 0, EINVAL),
        2 => (UNMAPPED, 0, EINVAL),
        3 => (SPARE_VA, (l.l4_mfn << 12) | 0x67, EBUSY),
        4 => (SPARE_VA, (NO_SUCH_FRAME << 12) | 0x65, EPERM),
        _ => (SPARE_VA, (HYPERVISOR_FRAME << 12) | 0x65, HYPERVISOR_OWNED),
    };
    args[0] = va;
    args[1] = pte;
    args[2] = if rng.percent(10) { 3 } else { flags };
    let expect = if expect == HYPERVISOR_OWNED {
        // Frame 0x200 is each hypervisor's own memory, owned differently by each.
        Expect::OneOf(&[EINVAL, EBUSY])
    } else {
        Expect::Exact(expect)
    };
    Call::new(nr::update_va_mapping, args, expect)
}

/// mmu_update with one request the hypervisor must refuse (or none at all).
pub fn mmu_update(rng: &mut Rng, l: &Layout, mut args: [u64; 6]) -> Call {
    let p = scratch_ptr(rng);
    let spare_pte = (l.low_l1_mfn << 12) + ((SPARE_VA >> 12) & 511) * 8;
    let (request, expect) = match rng.below(6) {
        0 => (MmuUpdate { ptr: (l.l4_mfn << 12) + 262 * 8, val: 0 }, EINVAL),
        // Not a page table but a plain page of ours: simply written (as on Xen).
        1 => (MmuUpdate { ptr: (l.scratch_maddr + 7) & !7, val: 0 }, 0),
        2 => (MmuUpdate { ptr: NO_SUCH_FRAME << 12, val: 0 }, EINVAL),
        3 => (MmuUpdate { ptr: spare_pte | MMU_MACHPHYS_UPDATE, val: 0 }, MACHPHYS),
        4 => (MmuUpdate { ptr: spare_pte | 3, val: 0 }, EINVAL),
        // Our L4 mapped writable: a page table cannot be (Xen 4.17: -EBUSY).
        _ => (MmuUpdate { ptr: spare_pte, val: (l.l4_mfn << 12) | 0x67 }, EBUSY),
    };
    if let Some(offset) = p.scratch {
        memory::poke_scratch(offset, &request.ptr.to_le_bytes());
        memory::poke_scratch(offset + 8, &request.val.to_le_bytes());
    }
    let count = rng.pick(&[1u32, 1, 1, 0]);
    let foreign = rng.pick(&[DOMID_SELF, DOMID_SELF, DOMID_SELF, 0, 5]);
    args[0] = p.addr;
    args[1] = rng.widen(count);
    args[2] = 0;
    args[3] = u64::from(foreign);
    // Naming itself by number is refused like any other domain (Xen: -ESRCH).
    let expect = if foreign != DOMID_SELF {
        Expect::Exact(ESRCH)
    } else if count == 0 {
        Expect::Exact(0)
    } else if expect == MACHPHYS {
        // The M2P entry of our own L1 (the fuzzer never reads the table back).
        Expect::Exact(0)
    } else {
        Expect::Exact(expect)
    };
    Call::new(nr::mmu_update, args, expect)
}

/// mmuext_op with one operation that must be refused, or a flush.
pub fn mmuext_op(rng: &mut Rng, l: &Layout, mut args: [u64; 6]) -> Call {
    let p = scratch_ptr(rng);
    let scratch_mfn = l.scratch_maddr >> 12;
    let (cmd, mfn, expect) = match rng.below(9) {
        0 => (MMUEXT_PIN_L1_TABLE, NO_SUCH_FRAME, EINVAL),
        1 => (MMUEXT_PIN_L2_TABLE, HYPERVISOR_FRAME, EINVAL),
        2 => (MMUEXT_PIN_L4_TABLE, l.l4_mfn, EINVAL),
        3 => (MMUEXT_PIN_L1_TABLE, scratch_mfn, EINVAL),
        4 => (MMUEXT_UNPIN_TABLE, scratch_mfn, EINVAL),
        5 => (MMUEXT_NEW_BASEPTR, 0, EINVAL),
        6 => (MMUEXT_NEW_USER_BASEPTR, NO_SUCH_FRAME, EINVAL),
        7 => (MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        _ => (99, 0, ENOSYS),
    };
    if let Some(offset) = p.scratch {
        memory::poke_scratch(offset, &u64::from(cmd).to_le_bytes());
        memory::poke_scratch(offset + 8, &mfn.to_le_bytes());
        memory::poke_scratch(offset + 16, &0u64.to_le_bytes());
    }
    args[0] = p.addr;
    args[1] = 1;
    args[2] = 0;
    args[3] = u64::from(DOMID_SELF);
    Call::new(nr::mmuext_op, args, Expect::Exact(expect))
}

/// set_gdt with a list that must be refused, or an empty GDT.
pub fn set_gdt(rng: &mut Rng, l: &Layout, mut args: [u64; 6]) -> Call {
    let p = scratch_ptr(rng);
    let frame = rng.pick(&[NO_SUCH_FRAME, HYPERVISOR_FRAME, l.scratch_maddr >> 12, l.l4_mfn]);
    if let Some(offset) = p.scratch {
        memory::poke_scratch(offset, &frame.to_le_bytes());
    }
    let (list, entries, expect) = match rng.below(4) {
        0 => (p.addr, 16u32, EINVAL),
        1 => (p.addr, 7169, EINVAL),
        2 => (UNMAPPED, 16, EFAULT),
        _ => (p.addr, 0, 0),
    };
    args[0] = list;
    args[1] = rng.widen(entries);
    Call::new(nr::set_gdt, args, Expect::Exact(expect))
}

/// update_descriptor where it must fail, or into the scratch buffer (a plain page): a
/// data segment is written, a TSS refused (descriptors are checked wherever they go).
pub fn update_descriptor(rng: &mut Rng, l: &Layout, mut args: [u64; 6]) -> Call {
    const DATA: u64 = 0x00cf_f200_0000_ffff;
    const TSS: u64 = 0x0000_8900_0000_0067;
    let scratch = (l.scratch_maddr + 7) & !7;
    let (maddr, descriptor, expect) = match rng.below(6) {
        0 => (l.scratch_maddr | 3, DATA, EINVAL),
        1 => (NO_SUCH_FRAME << 12, DATA, EINVAL),
        2 => (l.l4_mfn << 12, DATA, EINVAL),
        3 => (HYPERVISOR_FRAME << 12, DATA, EINVAL),
        4 => (scratch, TSS, EINVAL),
        _ => (scratch, DATA, 0),
    };
    args[0] = maddr;
    args[1] = descriptor;
    Call::new(nr::update_descriptor, args, Expect::Exact(expect))
}

/// multicall of harmless calls (including a nested multicall, which gets -EINVAL).
pub fn multicall(rng: &mut Rng, mut args: [u64; 6]) -> Call {
    let p = scratch_ptr(rng);
    let count = rng.below(4);
    if let Some(offset) = p.scratch {
        for i in 0..count {
            let (op, a0, a1): (u64, u64, u64) = rng.pick(&[
                (nr::xen_version, 0, 0),
                (nr::vm_assist, 0, 6),
                (11, 0, 0),
                (nr::multicall, 0, 0),
                (nr::hypercall_count, 17, 0),
                (nr::set_gdt, 0, 7169),
            ]);
            let at = offset + i * 64;
            memory::poke_scratch(at, &op.to_le_bytes());
            memory::poke_scratch(at + 16, &a0.to_le_bytes());
            memory::poke_scratch(at + 24, &a1.to_le_bytes());
        }
    }
    let unreadable = count > 0 && rng.percent(10);
    args[0] = if unreadable { UNMAPPED } else { p.addr };
    args[1] = count;
    let expect = if unreadable { EFAULT } else { 0 };
    let _ = PAGE;
    Call::new(nr::multicall, args, Expect::Exact(expect))
}
