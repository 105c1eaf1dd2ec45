//! The guest's debug registers: what it may put in them (semantics of Xen's
//! set_debugreg: breakpoints only on guest addresses, no general-detect, no I/O
//! breakpoints without CR4.DE, which a PV guest never has) and the values it reads.

use super::state::{TrapState, DR6_DEFAULT, DR7_DEFAULT};
use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_END;
use hypercall_abi::Errno;

/// DR6 bits a guest can see set: B0-B3, BD, BS, BT.
const DR6_STATUS: u64 = 0xe00f;
/// DR7 bit 13: general detect (a #DB on any debug-register access).
const DR7_GD: u64 = 1 << 13;
/// DR7 bits that must read as zero (11, 12, 14, 15).
const DR7_RESERVED_ZERO: u64 = 0xd800;

/// Whether DR7 enables an I/O breakpoint (R/W = 10b) for any of the four.
fn io_breakpoint_enabled(dr7: u64) -> bool {
    (0..4).any(|i| (dr7 >> (2 * i)) & 3 != 0 && (dr7 >> (16 + 4 * i)) & 3 == 2)
}

/// The register a DR number names: DR4 and DR5 alias DR6 and DR7 (no CR4.DE).
fn alias(register: u32) -> Result<usize, Errno> {
    match register {
        0..=3 | 6 | 7 => Ok(register as usize),
        4 => Ok(6),
        5 => Ok(7),
        _ => Err(Errno::ENODEV),
    }
}

/// set_debugreg and `mov drN, reg`.
pub fn set(traps: &mut TrapState, register: u32, value: u64) -> Result<(), Errno> {
    let index = alias(register)?;
    let value = match index {
        // Xen's rule (observed by the fuzzer on 4.17): below 2^47, or above the
        // hypervisor's range; the breakpoint's length is not considered.
        0..=3 => {
            if (1 << 47..HYPERVISOR_VIRT_END).contains(&value) {
                return Err(Errno::EPERM);
            }
            value
        }
        6 => {
            if value >> 32 != 0 {
                return Err(Errno::EINVAL);
            }
            (value & DR6_STATUS) | DR6_DEFAULT
        }
        _ => {
            if value >> 32 != 0 {
                return Err(Errno::EINVAL);
            }
            if value & DR7_GD != 0 || io_breakpoint_enabled(value) {
                return Err(Errno::EPERM);
            }
            (value & !DR7_RESERVED_ZERO) | DR7_DEFAULT
        }
    };
    traps.debugreg[index] = value;
    traps.exit.debugreg_dirty = true;
    Ok(())
}

/// get_debugreg and `mov reg, drN`.
pub fn get(traps: &TrapState, register: u32) -> Result<u64, Errno> {
    Ok(traps.debugreg[alias(register)?])
}

/// A #DB reached the guest: the status bits the CPU set go into its DR6.
pub fn record_debug_status(traps: &mut TrapState, hardware_dr6: u64) {
    traps.debugreg[6] |= hardware_dr6 & DR6_STATUS;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakpoints_only_on_guest_addresses() {
        let mut t = TrapState::default();
        assert_eq!(set(&mut t, 0, 0x10_2000), Ok(()));
        assert_eq!(get(&t, 0), Ok(0x10_2000));
        assert_eq!(set(&mut t, 1, 0xffff_8300_0000_0000), Err(Errno::EPERM), "the hypervisor's range");
        assert_eq!(set(&mut t, 2, 0x8000_0000_0000), Err(Errno::EPERM), "non-canonical");
        assert_eq!(set(&mut t, 3, 0x7fff_ffff_fffc), Ok(()), "Xen does not count the length");
        assert_eq!(set(&mut t, 3, 0xffff_8800_0000_0000), Ok(()), "above the hypervisor's range");
        assert_eq!(set(&mut t, 8, 0), Err(Errno::ENODEV));
        assert_eq!(get(&t, 9), Err(Errno::ENODEV));
    }

    #[test]
    fn dr6_and_dr7_keep_their_fixed_bits() {
        let mut t = TrapState::default();
        assert_eq!(get(&t, 6), Ok(0xffff_0ff0));
        assert_eq!(get(&t, 5), Ok(0x400), "DR5 aliases DR7");
        assert_eq!(set(&mut t, 6, 0x1_0000_0000), Err(Errno::EINVAL));
        assert_eq!(set(&mut t, 6, 0x4001), Ok(()));
        assert_eq!(get(&t, 4), Ok(0xffff_4ff1));
        assert_eq!(set(&mut t, 7, 0x2003), Err(Errno::EPERM), "general detect");
        assert_eq!(set(&mut t, 7, 0x2_0001), Err(Errno::EPERM), "I/O breakpoint");
        assert_eq!(set(&mut t, 7, 0x3_0000), Ok(()), "an I/O type that is not enabled");
        assert_eq!(set(&mut t, 7, 0xd803 | (1 << 16)), Ok(()));
        assert_eq!(get(&t, 7), Ok(0x1_0403), "reserved bits fixed, write breakpoint on DR0 enabled");
        record_debug_status(&mut t, 0xffff_4ff1);
        assert_eq!(get(&t, 6).map(|v| v & 0xe00f), Ok(0x4001));
    }
}
