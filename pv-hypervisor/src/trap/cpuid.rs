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

/// XCR0 components (the XSAVE state a guest may enable with XSETBV).
pub const XCR0_X87: u64 = 1;
pub const XCR0_SSE: u64 = 2;
pub const XCR0_AVX: u64 = 4;
/// What a PV guest may enable: x87, SSE and AVX, as Xen 4.17 offers them on this
/// CPU (leaf 0xD eax 0x7). MPX, AVX-512, PKRU and the rest stay hidden.
const XCR0_OFFERED: u64 = XCR0_X87 | XCR0_SSE | XCR0_AVX;
/// The legacy area and the XSAVE header: the size of an XSAVE image with x87 and SSE.
pub const XSAVE_LEGACY_SIZE: u32 = 576;
const LEAF1_ECX_XSAVE: u32 = 1 << 26;
const LEAF1_ECX_OSXSAVE: u32 = 1 << 27;
const LEAF1_ECX_AVX: u32 = 1 << 28;

#[derive(Clone, Debug)]
pub struct CpuidPolicy {
    leaves: [(u32, u32, [u32; 4]); MAX_LEAVES],
    count: usize,
    /// The version leaf 0x40000001 reports: major << 16 | minor.
    version: u32,
    /// Machine address width for leaf 0x40000005.
    machine_address_bits: u32,
    /// The XCR0 bits a guest may set (0: no XSAVE), and where the AVX state ends in
    /// an XSAVE image (its size with AVX on).
    xcr0_max: u64,
    avx_end: u32,
}

impl CpuidPolicy {
    /// Records the host's leaves through `host(leaf, subleaf)` and filters them.
    pub fn from_host(mut host: impl FnMut(u32, u32) -> [u32; 4], version: u32, machine_address_bits: u32) -> Self {
        let xsave = host(1, 0)[2] & LEAF1_ECX_XSAVE != 0 && host(0, 0)[0] >= 0xd;
        let host_xcr0 = if xsave { u64::from(host(0xd, 0)[0]) } else { 0 };
        let [avx_size, avx_offset, _, _] = if xsave { host(0xd, 2) } else { [0; 4] };
        let avx_end = avx_offset + avx_size;
        // x87 and SSE are always there with XSAVE; AVX only if its state fits the
        // image a vCPU keeps (vcpu::FpuArea).
        let avx = host_xcr0 & XCR0_AVX != 0 && avx_size != 0 && avx_end as usize <= crate::domain::vcpu::FPU_AREA_SIZE;
        let xcr0_max = if !xsave {
            0
        } else if avx {
            XCR0_OFFERED
        } else {
            XCR0_X87 | XCR0_SSE
        };
        let mut policy = CpuidPolicy {
            leaves: [(0, 0, [0; 4]); MAX_LEAVES],
            count: 0,
            version,
            machine_address_bits,
            xcr0_max,
            avx_end: if avx { avx_end } else { 0 },
        };
        let basic_max = host(0, 0)[0].min(0x1f);
        let extended_max = host(0x8000_0000, 0)[0].clamp(0x8000_0000, 0x8000_0021);
        let mut record = |policy: &mut CpuidPolicy, leaf: u32, sub: u32| {
            if policy.count < MAX_LEAVES {
                let regs = xsave_filter(leaf, sub, filter(leaf, sub, host(leaf, sub)), xcr0_max, avx_end);
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

    /// As [`leaf`](Self::leaf) for a vCPU whose XCR0 is `xcr0`: leaf 0xD's ebx is the
    /// size of an XSAVE image of what that XCR0 enables.
    pub fn leaf_for(&self, leaf: u32, subleaf: u32, xcr0: u64) -> [u32; 4] {
        let mut regs = self.leaf(leaf, subleaf);
        if (leaf, subleaf) == (0xd, 0) && self.xcr0_max != 0 {
            regs[1] = self.xsave_size(xcr0);
        }
        regs
    }

    /// The XCR0 bits a guest may set with XSETBV; 0 without XSAVE.
    pub fn xcr0_max(&self) -> u64 {
        self.xcr0_max
    }

    /// Whether XSETBV may set XCR0 to `value`: x87 always on, AVX only with SSE,
    /// nothing the policy does not offer (the architectural rules, and Xen's).
    pub fn xcr0_allowed(&self, value: u64) -> bool {
        value & XCR0_X87 != 0 && value & !self.xcr0_max == 0 && (value & XCR0_AVX == 0 || value & XCR0_SSE != 0)
    }

    fn xsave_size(&self, xcr0: u64) -> u32 {
        if xcr0 & XCR0_AVX != 0 && self.avx_end != 0 {
            self.avx_end
        } else {
            XSAVE_LEGACY_SIZE
        }
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

/// XSAVE as offered: OSXSAVE shown whenever XSAVE is (as Xen shows a PV guest, whatever
/// its virtual CR4 says), AVX hidden without XSAVE, leaf 0xD limited to the offered
/// components (subleaf 0: what XCR0 may hold, the largest image; 1: XSAVEOPT only; 2:
/// AVX's place).
fn xsave_filter(leaf: u32, subleaf: u32, regs: [u32; 4], xcr0_max: u64, avx_end: u32) -> [u32; 4] {
    let [a, b, c, d] = regs;
    match (leaf, subleaf) {
        (1, _) if xcr0_max == 0 => [a, b, c & !(LEAF1_ECX_XSAVE | LEAF1_ECX_OSXSAVE | LEAF1_ECX_AVX), d],
        (1, _) if xcr0_max & XCR0_AVX == 0 => [a, b, (c | LEAF1_ECX_OSXSAVE) & !LEAF1_ECX_AVX, d],
        (1, _) => [a, b, c | LEAF1_ECX_OSXSAVE, d],
        (0xd, _) if xcr0_max == 0 => [0; 4],
        (0xd, 0) => {
            let max = if xcr0_max & XCR0_AVX != 0 { avx_end } else { XSAVE_LEGACY_SIZE };
            [a & xcr0_max as u32, XSAVE_LEGACY_SIZE, max, 0]
        }
        (0xd, 1) => [a & 1, 0, 0, 0],
        (0xd, 2) if xcr0_max & XCR0_AVX != 0 => regs,
        (0xd, _) => [0; 4],
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

    /// A host with XSAVE, AVX at 576 (256 bytes), and MPX and PKRU besides (0x21f).
    fn xsave_host(leaf: u32, sub: u32) -> [u32; 4] {
        match (leaf, sub) {
            (1, _) => [0, 0, (1 << 26) | (1 << 28), 0],
            (0xd, 0) => [0x21f, 0xa88, 0xa88, 0],
            (0xd, 1) => [0xf, 0, 0, 0],
            (0xd, 2) => [256, 576, 0, 0],
            _ => fake_host(leaf, sub),
        }
    }

    #[test]
    fn xsave_offers_x87_sse_and_avx_as_xen_does() {
        let p = CpuidPolicy::from_host(xsave_host, 0x4_0011, 36);
        assert_eq!(p.leaf(1, 0)[2] & (7 << 26), 7 << 26, "xsave, osxsave, avx");
        assert_eq!(p.leaf_for(0xd, 0, 3), [0x7, 0x240, 0x340, 0], "Xen 4.17's leaf 0xD");
        assert_eq!(p.leaf_for(0xd, 0, 7)[1], 0x340, "the size follows XCR0");
        assert_eq!(p.leaf(0xd, 1), [1, 0, 0, 0], "xsaveopt only");
        assert_eq!(p.leaf(0xd, 2), [256, 576, 0, 0]);
        assert_eq!(p.xcr0_max(), 7);
        for (value, ok) in [(3, true), (7, true), (1, true), (2, false), (5, false), (0x17, false), (0x207, false)] {
            assert_eq!(p.xcr0_allowed(value), ok, "{value:#x}");
        }
    }

    #[test]
    fn without_xsave_nothing_of_it_shows() {
        let p = CpuidPolicy::from_host(|l, s| if l == 1 { [0, 0, 1 << 28, 0] } else { fake_host(l, s) }, 0x4_0011, 36);
        assert_eq!(p.leaf(1, 0)[2] & (7 << 26), 0);
        assert_eq!(p.leaf_for(0xd, 0, 3), [0; 4]);
        assert!(!p.xcr0_allowed(3));
    }
}
