//! `xsave`: the extended processor state a PV guest may use (AVX's YMM registers), as
//! Xen 4.17 offers it: CPUID says XSAVE and OSXSAVE, leaf 0xD lists what XCR0 may
//! enable, `xgetbv` reads XCR0 directly, `xsetbv` (privileged) is emulated under the
//! architectural rules, AVX instructions work once XCR0 enables them and fault (#UD)
//! when it does not, and the YMM registers keep their values across hypercalls. One
//! RESULT line per check, compared with Xen's.
//!
//! `avx-keep MS`: holds a pattern of its own in YMM0 and spins MS milliseconds checking
//! it: run in two domains at once, which preempt each other every slice, a domain
//! switch that does not save and restore the AVX state shows as the other's pattern.

use super::{probe, report, Expect, Tally};
use crate::platform;
use hypercall_abi::start_info::StartInfo;

const X87: u64 = 1;
const SSE: u64 = 2;
const AVX: u64 = 4;
const CR4_OSXSAVE: u64 = 1 << 18;

fn xgetbv() -> super::Probed {
    probe!("xor ecx, ecx", "xgetbv")
}

fn xsetbv(xcr: u64, value: u64) -> super::Probed {
    probe!("mov ecx, esi\nmov eax, edi\nxor edx, edx", "xsetbv", value, xcr)
}

/// `mov cr4` with OSXSAVE added to what the guest reads there (emulated).
fn set_cr4_osxsave() -> super::Probed {
    let cr4 = probe!("", "mov rax, cr4").rax;
    probe!("mov rax, rdi", "mov cr4, rax", cr4 | CR4_OSXSAVE, 0u64)
}

fn ymm_instruction() -> super::Probed {
    probe!("", "vxorps ymm1, ymm1, ymm1")
}

/// Loads 32 bytes into YMM0, makes a hypercall, stores YMM0 back: whether it survived.
fn ymm0_survives_a_hypercall(pattern: [u64; 4]) -> bool {
    let mut out = [0u64; 4];
    // SAFETY: AVX is enabled by the caller (XCR0 bit 2); the kernel is built without
    // SSE, so no compiled code holds anything in YMM0; the hypercall stub clobbers rcx
    // and r11 and returns in rax.
    unsafe {
        core::arch::asm!(
            "vmovdqu ymm0, [{src}]",
            "call {entry}",
            "vmovdqu [{dst}], ymm0",
            "vzeroupper",
            src = in(reg) pattern.as_ptr(),
            dst = in(reg) out.as_mut_ptr(),
            entry = in(reg) hypercall_abi::guest::hypercall_page_address() + hypercall_abi::nr::xen_version * 32,
            inout("rdi") 0u64 => _,
            inout("rsi") 0u64 => _,
            out("rax") _, out("rcx") _, out("r11") _,
        );
    }
    out == pattern
}

pub fn run(_info: &StartInfo) {
    let mut tally = Tally::new("xsave");
    tally.ret("set_trap_table", crate::traps::install(), 0);
    let bit = |v: u32, n: u32| (v >> n) & 1;
    let leaf1 = platform::xen_cpuid(1, 0);
    let (xsave, osxsave, avx) = (bit(leaf1[2], 26), bit(leaf1[2], 27), bit(leaf1[2], 28));
    tally.line("cpuid_features", xsave == 1 && osxsave == 1 && avx == 1, format_args!("xsave={xsave} osxsave={osxsave} avx={avx}"));
    let leafd = |sub| platform::xen_cpuid(0xd, sub);
    let [eax, ebx, ecx, edx] = leafd(0);
    tally.line("cpuid_d_0", eax == 0x7 && edx == 0, format_args!("xcr0_low={eax:#x} xcr0_high={edx:#x} size_now={ebx:#x} size_max={ecx:#x}"));
    let [avx_size, avx_offset, _, _] = leafd(2);
    tally.line("cpuid_d_2_avx", avx_size == 256 && avx_offset == 576, format_args!("size={avx_size} offset={avx_offset}"));

    let p = xgetbv();
    let initial = p.rax & 0xffff_ffff;
    let pass = report("xsave", "xgetbv", &p, &Expect::none());
    tally.add(pass);
    tally.line("xcr0_at_start", initial == X87 | SSE, format_args!("xcr0={initial:#x}"));
    tally.add(report("xsave", "avx_while_disabled", &ymm_instruction(), &Expect::fault(6, 0)));

    // XSETBV needs CR4.OSXSAVE in the guest's own (virtual) CR4, which it sets with a
    // `mov` to CR4 that the hypervisor emulates; until then XSETBV is #UD.
    tally.add(report("xsave", "xsetbv_before_cr4_osxsave", &xsetbv(0, X87 | SSE | AVX), &Expect::fault(6, 0)));
    let cr4 = probe!("", "mov rax, cr4").rax;
    tally.line("cr4_at_start", cr4 & CR4_OSXSAVE == 0, format_args!("osxsave={}", (cr4 >> 18) & 1));
    tally.add(report("xsave", "cr4_set_osxsave", &set_cr4_osxsave(), &Expect::none()));
    // Any other CR4 bit written is ignored (PGE here), as on Xen.
    tally.add(report("xsave", "cr4_write_ignores_pge", &probe!("mov rax, rdi", "mov cr4, rax", cr4 | CR4_OSXSAVE | (1 << 7), 0u64), &Expect::none()));
    let cr4_after = probe!("", "mov rax, cr4").rax;
    tally.line("cr4_after", cr4_after == cr4 | CR4_OSXSAVE, format_args!("value={cr4_after:#x}"));
    tally.add(report("xsave", "xsetbv_avx", &xsetbv(0, X87 | SSE | AVX), &Expect::none()));
    let now = xgetbv().rax & 0xffff_ffff;
    tally.line("xcr0_after_set", now == X87 | SSE | AVX, format_args!("xcr0={now:#x}"));
    let size_now = leafd(0)[1];
    tally.line("cpuid_d_0_size_follows_xcr0", size_now == 0x340, format_args!("size_now={size_now:#x}"));
    tally.add(report("xsave", "avx_while_enabled", &ymm_instruction(), &Expect::none()));
    let kept = ymm0_survives_a_hypercall([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210, 0x1111_2222_3333_4444, 0x5555_6666_7777_8888]);
    tally.line("ymm_survives_a_hypercall", kept, format_args!("kept={}", u8::from(kept)));

    // The architectural rules for XCR0, and what the policy offers.
    tally.add(report("xsave", "xsetbv_without_x87", &xsetbv(0, SSE), &Expect::fault(13, 0)));
    tally.add(report("xsave", "xsetbv_avx_without_sse", &xsetbv(0, X87 | AVX), &Expect::fault(13, 0)));
    tally.add(report("xsave", "xsetbv_beyond_the_policy", &xsetbv(0, X87 | SSE | AVX | (1 << 9)), &Expect::fault(13, 0)));
    tally.add(report("xsave", "xsetbv_xcr1", &xsetbv(1, X87 | SSE), &Expect::fault(13, 0)));
    let still = xgetbv().rax & 0xffff_ffff;
    tally.line("refused_writes_change_nothing", still == X87 | SSE | AVX, format_args!("xcr0={still:#x}"));

    tally.add(report("xsave", "xsetbv_back_to_sse", &xsetbv(0, X87 | SSE), &Expect::none()));
    tally.add(report("xsave", "avx_disabled_again", &ymm_instruction(), &Expect::fault(6, 0)));
    tally.finish();
}

/// `avx-keep MS`, for two domains at once (see the module doc).
pub fn keep(info: &StartInfo, command: &str) {
    let mut tally = Tally::new("avx-keep");
    let Some(ms) = super::numeric_argument("avx-keep", command, 300, 1..=60_000) else { return };
    tally.ret("set_trap_table", crate::traps::install(), 0);
    tally.add(report("avx-keep", "cr4_set_osxsave", &set_cr4_osxsave(), &Expect::none()));
    let enabled = report("avx-keep", "xsetbv_avx", &xsetbv(0, X87 | SSE | AVX), &Expect::none());
    tally.add(enabled);
    let Some(shared) = crate::events::shared_info(info).filter(|_| enabled) else {
        return tally.finish();
    };
    // Our own pattern: start_info's fields differ between domains.
    let seed = info.pt_base ^ (info.store_mfn << 20) ^ info.nr_pages ^ u64::from(info.flags);
    let pattern = [seed, !seed, seed.rotate_left(17), seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)];
    let mut out = [0u64; 4];
    // SAFETY: AVX is enabled (above); the kernel is built without SSE, so no compiled
    // code between this load and the reads below touches YMM0.
    unsafe { core::arch::asm!("vmovdqu ymm0, [{}]", in(reg) pattern.as_ptr()) };
    let start = crate::events::now_ns(shared);
    let (mut last, mut preempted, mut kept) = (start, 0u64, true);
    while last - start < ms * 1_000_000 {
        // SAFETY: stores YMM0's 32 bytes into `out`.
        unsafe { core::arch::asm!("vmovdqu [{}], ymm0", in(reg) out.as_mut_ptr()) };
        kept &= out == pattern;
        let now = crate::events::now_ns(shared);
        // A gap of a millisecond or more: another domain ran (a slice is 10 ms).
        if now - last > 1_000_000 {
            preempted += 1;
        }
        last = now;
    }
    // SAFETY: clears the upper halves before ordinary code runs on.
    unsafe { core::arch::asm!("vzeroupper") };
    tally.line("ymm_kept_across_preemption", kept && preempted > 0, format_args!("preempted={preempted} kept={}", u8::from(kept)));
    tally.finish();
}
