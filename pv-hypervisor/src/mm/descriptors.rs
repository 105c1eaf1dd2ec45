//! Guest segment descriptors (set_gdt, update_descriptor). A 64-bit PV guest's own
//! descriptors run at ring 3 at most, whatever it writes (semantics of Xen's
//! check_descriptor, in our own words):
//! - not present: harmless, kept;
//! - code and data segments: kept, with a DPL below 3 raised to 3, so no segment can
//!   ever be used to reach rings 0-2;
//! - a system descriptor of type 0 (the second half of a 16-byte gate): kept;
//! - a call gate: kept only if its target is a guest code selector, and with its DPL
//!   forced to 0, so using it faults (#GP naming the gate) instead of calling anything;
//! - every other system descriptor (TSS, LDT, interrupt and trap gates): refused.

use super::guest_walk::MachineMemory;
use hypercall_abi::arch_x86_64::{FIRST_RESERVED_GDT_ENTRY, FLAT_RING3_CS32, FLAT_RING3_CS64};
use hypercall_abi::Errno;

const PRESENT: u64 = 1 << 47;
const DPL_SHIFT: u32 = 45;
const DPL_MASK: u64 = 3 << DPL_SHIFT;
const CODE_OR_DATA: u64 = 1 << 44;
const TYPE_SHIFT: u32 = 40;
const CALL_GATE_64: u64 = 0xc;

/// Whether a call gate may name `selector` as its target: a guest GDT selector (not
/// null, not an LDT one, below the hypervisor's entries) or a flat guest code selector.
fn gate_target_ok(selector: u16) -> bool {
    if selector & !3 == 0 || selector & 4 != 0 {
        return false;
    }
    ((selector >> 3) as usize) < FIRST_RESERVED_GDT_ENTRY || selector == FLAT_RING3_CS64 || selector == FLAT_RING3_CS32
}

/// The descriptor as the guest may have it, or `None` if it is refused.
pub fn check_descriptor(descriptor: u64) -> Option<u64> {
    if descriptor & PRESENT == 0 {
        return Some(descriptor);
    }
    let fixed = descriptor | DPL_MASK;
    if descriptor & CODE_OR_DATA != 0 {
        return Some(fixed);
    }
    match (descriptor >> TYPE_SHIFT) & 0xf {
        0 => Some(descriptor),
        CALL_GATE_64 if gate_target_ok((descriptor >> 16) as u16) => Some(fixed & !DPL_MASK),
        _ => None,
    }
}

/// Checks every descriptor of frame `mfn` and writes back the fixed-up ones.
pub fn validate_descriptor_frame(memory: &mut impl MachineMemory, mfn: u64) -> Result<(), Errno> {
    let mut fixed = [0u64; 512];
    for (i, slot) in fixed.iter_mut().enumerate() {
        let descriptor = memory.read_u64(mfn * 4096 + i as u64 * 8).ok_or(Errno::EFAULT)?;
        *slot = check_descriptor(descriptor).ok_or(Errno::EINVAL)?;
    }
    for (i, value) in fixed.iter().enumerate() {
        memory.write_bytes(mfn * 4096 + i as u64 * 8, &value.to_le_bytes()).ok_or(Errno::EFAULT)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE64_DPL3: u64 = 0x00af_fa00_0000_ffff;
    const CODE64_DPL0: u64 = 0x00af_9a00_0000_ffff;
    const DATA_DPL1: u64 = 0x00cf_b200_0000_ffff;
    const TSS: u64 = 0x0000_8900_0000_0067;
    const INTERRUPT_GATE: u64 = 0x0000_8e00_0008_0000;

    fn call_gate(target: u16, dpl: u64) -> u64 {
        0x0000_8c00_0000_1000 | ((target as u64) << 16) | (dpl << 45)
    }

    #[test]
    fn segments_never_reach_below_ring_3() {
        assert_eq!(check_descriptor(CODE64_DPL3), Some(CODE64_DPL3));
        assert_eq!(check_descriptor(CODE64_DPL0), Some(CODE64_DPL3), "DPL 0 code raised to 3");
        assert_eq!(check_descriptor(DATA_DPL1).map(|d| (d >> 45) & 3), Some(3));
        assert_eq!(check_descriptor(0), Some(0));
        assert_eq!(check_descriptor(CODE64_DPL0 & !PRESENT), Some(CODE64_DPL0 & !PRESENT), "not present: kept as is");
    }

    #[test]
    fn system_descriptors_and_gates() {
        assert_eq!(check_descriptor(TSS), None);
        assert_eq!(check_descriptor(INTERRUPT_GATE), None);
        assert_eq!(check_descriptor(0x0000_8000_0000_0000), Some(0x0000_8000_0000_0000), "type 0: a gate's upper half");
        // A call gate to guest code is kept but made unusable (DPL 0).
        assert_eq!(check_descriptor(call_gate(0xe033, 3)), Some(call_gate(0xe033, 0)));
        assert_eq!(check_descriptor(call_gate(0x0013, 3)), Some(call_gate(0x0013, 0)));
        // ... and refused when it targets the hypervisor, null or the LDT.
        assert_eq!(check_descriptor(call_gate(0xe008, 3)), None);
        assert_eq!(check_descriptor(call_gate(0x0000, 3)), None);
        assert_eq!(check_descriptor(call_gate(0x0017, 3)), None);
    }
}
