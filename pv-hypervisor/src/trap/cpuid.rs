//! What `cpuid` tells a PV guest (through the forced-emulation prefix, or after a #GP
//! where CPUID faulting exists): the host's leaves with the features a PV guest must not
//! use hidden, and the hypervisor leaves at 0x40000000 as Xen lays them out
//! (arch-x86/cpuid.h; the hidden set follows Xen's PV policy in
//! arch-x86/cpufeatureset.h, where only 'A'-marked features reach PV guests).

/// Signature "XenVMMXenVMM" in ebx, ecx, edx of leaf 0x40000000 (arch-x86/cpuid.h).
pub const XEN_SIGNATURE: [u32; 3] = [0x566e_6558, 0x6558_4d4d, 0x4d4d_566e];
pub const HYPERVISOR_BASE: u32 = 0x4000_0000;
/// The last hypervisor leaf Xen 4.17 reports (XEN_CPUID_MAX_NUM_LEAVES 5).
pub const HYPERVISOR_LAST: u32 = HYPERVISOR_BASE + 5;

const fn bits(list: &[u32]) -> u32 {
    let mut mask = 0;
    let mut i = 0;
    while i < list.len() {
        mask |= 1 << list[i];
        i += 1;
    }
    mask
}

/// Leaf 1 ECX: DTES64, MONITOR, DS-CPL, VMX, SMX, EIST, TM2, xTPR, PDCM, PCID, DCA,
/// TSC-deadline.
const LEAF1_ECX_HIDDEN: u32 = bits(&[2, 3, 4, 5, 6, 7, 8, 14, 15, 17, 18, 24]);
/// Leaf 1 ECX bit 31: "running under a hypervisor".
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: VME, PSE, MTRR, PGE, PSE36, DS, ACPI, TM, PBE.
const LEAF1_EDX_HIDDEN: u32 = bits(&[1, 3, 12, 13, 17, 21, 22, 29, 31]);
/// Leaf 7.0 EBX: TSC_ADJUST, SGX, HLE, SMEP, INVPCID, PQM, MPX, PQE, SMAP.
const LEAF7_EBX_HIDDEN: u32 = bits(&[1, 2, 4, 7, 10, 12, 14, 15, 20]);
/// Leaf 7.0 ECX: UMIP, PKU, OSPKE, CET_SS, MOVDIRI, MOVDIR64B, ENQCMD.
const LEAF7_ECX_HIDDEN: u32 = bits(&[2, 3, 4, 7, 27, 28, 29]);
/// Leaf 0x80000001 ECX: SVM, ExtApicSpace, CR8_LEGACY, OSVW, IBS, SKINIT, WDT, LWP,
/// NodeId, TopologyExtensions, MONITORX.
const EXT1_ECX_HIDDEN: u32 = bits(&[2, 3, 4, 9, 10, 12, 13, 15, 19, 22, 29]);
/// Leaf 0x80000001 EDX: 1 GiB pages (no superpages for PV).
const EXT1_EDX_HIDDEN: u32 = bits(&[26]);

/// Host leaves kept: the basic range and the extended range, subleaf 0 except leaf 7,
/// 0xb and 0xd whose subleaves matter. Anything not recorded reads as zeros.
const MAX_LEAVES: usize = 48;

#[derive(Clone, Debug)]
pub struct CpuidPolicy {
    leaves: [(u32, u32, [u32; 4]); MAX_LEAVES],
    count: usize,
    /// The version leaf 0x40000001 reports: major << 16 | minor.
    version: u32,
    /// Machine address width for leaf 0x40000005.
    machine_address_bits: u32,
}

impl CpuidPolicy {
    /// Records the host's leaves through `host(leaf, subleaf)` and filters them.
    pub fn from_host(mut host: impl FnMut(u32, u32) -> [u32; 4], version: u32, machine_address_bits: u32) -> Self {
        let mut policy = CpuidPolicy { leaves: [(0, 0, [0; 4]); MAX_LEAVES], count: 0, version, machine_address_bits };
        let basic_max = host(0, 0)[0].min(0x1f);
        let extended_max = host(0x8000_0000, 0)[0].clamp(0x8000_0000, 0x8000_0021);
        let mut record = |policy: &mut CpuidPolicy, leaf: u32, sub: u32| {
            if policy.count < MAX_LEAVES {
                let regs = filter(leaf, sub, host(leaf, sub));
                policy.leaves[policy.count] = (leaf, sub, regs);
                policy.count += 1;
            }
        };
        for leaf in 0..=basic_max {
            let subleaves = if matches!(leaf, 7 | 0xb | 0xd) { 0..3 } else { 0..1 };
            for sub in subleaves {
                record(&mut policy, leaf, sub);
            }
        }
        for leaf in 0x8000_0000..=extended_max {
            record(&mut policy, leaf, 0);
        }
        policy
    }

    /// What the guest gets for `cpuid` with eax = `leaf`, ecx = `subleaf`.
    pub fn leaf(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        if (HYPERVISOR_BASE..=HYPERVISOR_LAST).contains(&leaf) {
            return self.hypervisor_leaf(leaf, subleaf);
        }
        let indexed = matches!(leaf, 7 | 0xb | 0xd);
        self.leaves[..self.count].iter().find(|(l, s, _)| *l == leaf && (!indexed || *s == subleaf)).map_or([0; 4], |(_, _, regs)| *regs)
    }

    fn hypervisor_leaf(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let [b, c, d] = XEN_SIGNATURE;
        match leaf - HYPERVISOR_BASE {
            0 => [HYPERVISOR_LAST, b, c, d],
            1 => [self.version, 0, 0, 0],
            // No hypercall-page MSR and no MMU_PT_UPDATE_PRESERVE_AD (yet): a PV guest
            // gets its hypercall page from the ELF note.
            2 => [0, 0, 0, 0],
            5 if subleaf == 0 => [0, self.machine_address_bits, 0, 0],
            // 3 (time) comes with virtual time; 4 is HVM-only.
            _ => [0; 4],
        }
    }
}

/// The PV view of one host leaf.
fn filter(leaf: u32, subleaf: u32, regs: [u32; 4]) -> [u32; 4] {
    let [a, b, c, d] = regs;
    match (leaf, subleaf) {
        // The initial APIC id (ebx 31:24) is the host's, not the guest's.
        (1, _) => [a, b & 0x00ff_ffff, (c & !LEAF1_ECX_HIDDEN) | LEAF1_ECX_HYPERVISOR, d & !LEAF1_EDX_HIDDEN],
        (7, 0) => [a, b & !LEAF7_EBX_HIDDEN, c & !LEAF7_ECX_HIDDEN, d],
        // MONITOR/MWAIT parameters, thermal and power, performance monitoring: hidden.
        (5 | 6 | 0xa, _) => [0; 4],
        (0x8000_0001, _) => [a, b, c & !EXT1_ECX_HIDDEN, d & !EXT1_EDX_HIDDEN],
        _ => regs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_host(leaf: u32, sub: u32) -> [u32; 4] {
        match leaf {
            0 => [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65], // "AuthenticAMD"
            1 => [0x0006_0fb1, 0x0300_0800, !(1 << 31), 0xffff_ffff],
            7 if sub == 0 => [0, 0xffff_ffff, 0xffff_ffff, 0],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0001 => [0, 0, 0xffff_ffff, 0xffff_ffff],
            _ => [leaf, sub, 0, 0],
        }
    }

    #[test]
    fn hypervisor_leaves_are_xens() {
        let p = CpuidPolicy::from_host(fake_host, 0x4_0011, 36);
        assert_eq!(p.leaf(0x4000_0000, 0), [0x4000_0005, 0x566e_6558, 0x6558_4d4d, 0x4d4d_566e]);
        let text: std::vec::Vec<u8> = XEN_SIGNATURE.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(&text, b"XenVMMXenVMM");
        assert_eq!(p.leaf(0x4000_0001, 0), [0x4_0011, 0, 0, 0]);
        assert_eq!(p.leaf(0x4000_0005, 0), [0, 36, 0, 0]);
        assert_eq!(p.leaf(0x4000_0006, 0), [0; 4], "past the last leaf");
    }

    #[test]
    fn virtualisation_and_monitor_are_hidden() {
        let p = CpuidPolicy::from_host(fake_host, 0x4_0011, 36);
        let [_, b, c, d] = p.leaf(1, 0);
        assert_eq!(c & (1 << 5), 0, "vmx");
        assert_eq!(c & (1 << 3), 0, "monitor");
        assert_ne!(c & (1 << 31), 0, "hypervisor bit");
        assert_eq!(d & (1 << 13), 0, "pge");
        assert_eq!(b >> 24, 0, "apic id");
        assert_eq!(p.leaf(0x8000_0001, 0)[2] & (1 << 2), 0, "svm");
        let [_, b7, c7, _] = p.leaf(7, 0);
        assert_eq!((b7 & (1 << 7), b7 & (1 << 20), c7 & (1 << 2)), (0, 0, 0), "smep smap umip");
        assert_eq!(p.leaf(0, 0)[1], 0x6874_7541, "vendor passes through");
        assert_eq!(p.leaf(7, 1), [7, 1, 0, 0], "subleaves are kept apart");
        assert_eq!(p.leaf(0x8000_0009, 0), [0; 4], "past the extended range");
    }
}
