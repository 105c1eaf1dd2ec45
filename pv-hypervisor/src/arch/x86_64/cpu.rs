//! Small CPU operations used outside `arch`.

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;
use hypercall_abi::debug_exit::{ExitCode, ISA_DEBUG_EXIT_PORT};
use x86_64::instructions::port::Port;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr2, Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

/// The faulting address of the last page fault.
pub fn cr2() -> u64 {
    Cr2::read_raw()
}

/// Physical address of the current top-level page table.
pub fn cr3() -> u64 {
    Cr3::read().0.start_address().as_u64()
}

/// Switches address space.
///
/// # Safety
/// `l4_phys` must be a page-aligned L4 that maps the hypervisor's slots exactly like the
/// current one, so the code and stack running now stay mapped.
pub unsafe fn load_cr3(l4_phys: u64) {
    let frame = PhysFrame::containing_address(PhysAddr::new(l4_phys));
    // SAFETY: the caller guarantees the hypervisor stays mapped in the new tables.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    LOADED.store(frame.start_address().as_u64() | (LOADED.load(Relaxed) & TS_BIT), Relaxed);
}

/// What the CPU holds for the running vCPU: the L4 [`load_cr3`] loaded last (0 before
/// the first) with CR0.TS as [`set_task_switched`] left it in bit 0, free in a
/// page-aligned address. One word: the exit path compares both with one load instead
/// of reading CR3 and CR0.
static LOADED: AtomicU64 = AtomicU64::new(0);
const TS_BIT: u64 = 1;

/// Switches to `l4_phys` unless it is already loaded; true if it loaded CR3.
///
/// # Safety
/// As for [`load_cr3`].
#[inline(always)]
pub unsafe fn switch_cr3(l4_phys: u64) -> bool {
    if LOADED.load(Relaxed) & !TS_BIT == l4_phys {
        return false;
    }
    // SAFETY: the caller's guarantee.
    unsafe { load_cr3(l4_phys) };
    true
}

/// Sets or clears CR0.TS: set, the next FPU/SSE instruction raises #NM. The hypervisor
/// itself never uses the FPU (soft-float target), so TS only ever stands for the guest's
/// virtual TS.
pub fn set_task_switched(set: bool) {
    let loaded = LOADED.load(Relaxed);
    if (loaded & TS_BIT != 0) != set {
        LOADED.store(loaded ^ TS_BIT, Relaxed);
        let cr0 = Cr0::read();
        // SAFETY: TS only makes FPU/SSE instructions fault; the hypervisor executes none.
        unsafe { Cr0::write(if set { cr0 | Cr0Flags::TASK_SWITCHED } else { cr0 - Cr0Flags::TASK_SWITCHED }) };
    }
}

/// Zero when the exit path would change neither CR3 nor CR0.TS for a vCPU that wants
/// `cr3_and_ts` (its page-aligned L4 with its virtual TS in bit 0,
/// `TrapState::cr3_and_ts`): a word the exit path ORs with its other conditions.
#[inline(always)]
pub fn cr3_and_ts_differences(cr3_and_ts: u64) -> u64 {
    LOADED.load(Relaxed) ^ cr3_and_ts
}

/// Drops every non-global TLB entry (reloads CR3).
pub fn flush_tlb() {
    x86_64::instructions::tlb::flush_all();
}

/// Drops the translation of one linear address (`invlpg`); a non-canonical one names
/// no translation and is skipped, since `invlpg` of it is a no-op only on some CPUs.
pub fn flush_page(va: u64) {
    if let Ok(va) = x86_64::VirtAddr::try_new(va) {
        x86_64::instructions::tlb::flush(va);
    }
}

/// Cycle counter, for timing.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is clear, so it is allowed.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Ends the QEMU run with `code` (QEMU exits with `(code << 1) | 1`); halts forever if
/// there is no isa-debug-exit device.
pub fn exit_qemu(code: ExitCode) -> ! {
    let mut port = Port::<u32>::new(ISA_DEBUG_EXIT_PORT);
    // SAFETY: writing to the debug-exit port has no effect other than stopping QEMU; on
    // a machine without the device the write goes nowhere.
    unsafe { port.write(code as u32) };
    halt_forever()
}

/// Waits for an interrupt with interrupts enabled just for the wait (sti's one-
/// instruction shadow covers hlt: one arriving between the two still wakes it).
pub fn wait_for_interrupt() {
    // SAFETY: the IDT handles every vector the hardware can raise here (the LAPIC timer
    // and spurious vectors resume the interrupted hlt); interrupts are off again after.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}

pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// One CPUID query.
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    // SAFETY: CPUID exists on every x86_64 CPU and only reads identification data.
    // (Newer compilers treat the intrinsic as safe; rust-version 1.85 does not.)
    #[allow(unused_unsafe)]
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, subleaf) };
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// The hardening the CPU offers, switched on at boot.
#[derive(Clone, Copy, Debug, Default)]
pub struct Protections {
    pub nx: bool,
    pub smep: bool,
    pub smap: bool,
    pub umip: bool,
}

const EFER: u32 = 0xC000_0080;
const EFER_NXE: u64 = 1 << 11;
const CR0_NE: u64 = 1 << 5;
const CR0_AM: u64 = 1 << 18;
const CR4_MCE: u64 = 1 << 6;
const CR4_UMIP: u64 = 1 << 11;
const CR4_SMEP: u64 = 1 << 20;
const CR4_SMAP: u64 = 1 << 21;

/// Read by the entry stubs: with SMAP on they `clac`, because a guest can enter with
/// RFLAGS.AC set (popf in ring 3 may set it) and AC in ring 0 switches SMAP off.
#[no_mangle]
static SMAP_ENABLED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Turns on what guards the hypervisor from guests and from itself: NX (so guest
/// page-fault error codes report instruction fetches, and guest PTEs may use it), SMEP
/// (ring 0 never runs guest pages), SMAP (ring 0 never touches guest mappings: guest
/// memory is only reached through the direct map, so no stac/clac window is needed),
/// UMIP (sgdt/sidt/sldt/str/smsw in ring 3 fault instead of showing hypervisor
/// addresses), machine-check reporting, native FPU error reporting (CR0.NE), and
/// alignment checking for ring 3 (CR0.AM: a guest that sets RFLAGS.AC gets #AC, as on
/// Xen, whose CR0 a PV guest reads as 0x80050033).
pub fn enable_protections() -> Protections {
    let ext = cpuid(0x8000_0001, 0);
    let leaf7 = if cpuid(0, 0)[0] >= 7 { cpuid(7, 0) } else { [0; 4] };
    let found =
        Protections { nx: ext[3] & (1 << 20) != 0, smep: leaf7[1] & (1 << 7) != 0, smap: leaf7[1] & (1 << 20) != 0, umip: leaf7[2] & (1 << 2) != 0 };
    // SAFETY: each bit is set only where CPUID says the CPU has the feature. NX, SMEP and
    // SMAP restrict what ring 0 may do with user and NX pages, which the hypervisor
    // never relies on (it runs from supervisor pages and reaches guest memory through
    // the direct map); UMIP only affects ring 3; MCE and NE change how errors are
    // reported, to handlers that exist.
    unsafe {
        let mut efer = x86_64::registers::model_specific::Msr::new(EFER);
        if found.nx {
            efer.write(efer.read() | EFER_NXE);
        }
        let mut cr4: u64;
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        cr4 |= CR4_MCE;
        if found.smep {
            cr4 |= CR4_SMEP;
        }
        if found.smap {
            cr4 |= CR4_SMAP;
        }
        if found.umip {
            cr4 |= CR4_UMIP;
        }
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nomem, nostack));
        let mut cr0: u64;
        core::arch::asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        core::arch::asm!("mov cr0, {}", in(reg) cr0 | CR0_NE | CR0_AM, options(nomem, nostack));
        SMAP_ENABLED.store(found.smap, core::sync::atomic::Ordering::Relaxed);
    }
    found
}

/// CR0, CR4 and EFER as a PV guest may see them (trap::emulate's host view): CR0
/// without TS, CR4 limited to the bits Xen shows (PAE, MCE, OSFXSR, OSXMMEXCPT), EFER
/// to SCE, LME, LMA and NXE.
pub fn guest_visible_control_registers() -> (u64, u64, u64) {
    let cr0: u64;
    let cr4: u64;
    // SAFETY: reading control registers has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
    }
    // SAFETY: reading EFER has no side effects.
    let efer = unsafe { x86_64::registers::model_specific::Msr::new(EFER).read() };
    let cr4_shown = (1 << 5) | CR4_MCE | (1 << 9) | (1 << 10);
    let efer_shown = 1 | (1 << 8) | (1 << 10) | EFER_NXE;
    (cr0 & !(1 << 3), cr4 & cr4_shown, efer & efer_shown)
}

const MSR_FS_BASE: u32 = 0xC000_0100;
const MSR_GS_BASE: u32 = 0xC000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xC000_0102;

/// Loads the guest's segment bases: `gs` is the active GS base, `shadow_gs` the one
/// `swapgs` would switch to.
pub fn load_segment_bases(fs: u64, gs: u64, shadow_gs: u64) {
    // SAFETY: the values are canonical (checked by trap::emulate); the hypervisor never
    // uses FS or GS itself, so only the guest sees them.
    unsafe {
        x86_64::registers::model_specific::Msr::new(MSR_FS_BASE).write(fs);
        x86_64::registers::model_specific::Msr::new(MSR_GS_BASE).write(gs);
        x86_64::registers::model_specific::Msr::new(MSR_KERNEL_GS_BASE).write(shadow_gs);
    }
}

/// Loads the guest's breakpoints: DR0-DR3 and DR7 (DR6 is reset to its idle value).
/// Every address was checked to be a guest address (trap::debugreg), so no breakpoint
/// can fire in the hypervisor, which never touches guest addresses.
pub fn load_debug_registers(dr: &[u64; 8]) {
    // Skipped when the CPU holds these already: the common case on a domain switch,
    // where nobody uses breakpoints (six debug-register writes saved per switch).
    let wanted = [dr[0], dr[1], dr[2], dr[3], dr[7]];
    let mut loaded = LOADED_DEBUG_REGISTERS.lock();
    if *loaded == Some(wanted) {
        return;
    }
    *loaded = Some(wanted);
    // SAFETY: writing debug registers only arms breakpoints on the checked addresses.
    unsafe {
        core::arch::asm!("mov dr0, {}", in(reg) dr[0], options(nomem, nostack));
        core::arch::asm!("mov dr1, {}", in(reg) dr[1], options(nomem, nostack));
        core::arch::asm!("mov dr2, {}", in(reg) dr[2], options(nomem, nostack));
        core::arch::asm!("mov dr3, {}", in(reg) dr[3], options(nomem, nostack));
        core::arch::asm!("mov dr6, {}", in(reg) 0xffff_0ff0u64, options(nomem, nostack));
        core::arch::asm!("mov dr7, {}", in(reg) dr[7], options(nomem, nostack));
    }
}

/// DR0-DR3 and DR7 as last loaded (None: unknown, at boot).
static LOADED_DEBUG_REGISTERS: spin::Mutex<Option<[u64; 5]>> = spin::Mutex::new(None);

/// Reads DR6 and resets it to its idle value (the CPU never clears its status bits).
pub fn take_debug_status() -> u64 {
    let dr6: u64;
    // SAFETY: reading and resetting DR6 has no other effect.
    unsafe {
        core::arch::asm!("mov {}, dr6", out(reg) dr6, options(nomem, nostack));
        core::arch::asm!("mov dr6, {}", in(reg) 0xffff_0ff0u64, options(nomem, nostack));
    }
    dr6
}

/// Loads a GS selector for the guest; the caller writes the GS bases after it (loading
/// a selector also loads its segment's base).
pub fn load_gs_selector(selector: u16) {
    // SAFETY: only the null selector or the flat ring-3 data selector reach here
    // (set_segment_base); the hypervisor never uses GS.
    unsafe { core::arch::asm!("mov gs, {0:x}", in(reg) selector, options(nomem, nostack)) };
}

/// The XCR0 bits any guest may enable, once `enable_xsave` turned XSAVE on (0: off).
static XCR0_MAX: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
const CR4_OSXSAVE: u64 = 1 << 18;

/// Turns XSAVE on where the CPU has it (CR4.OSXSAVE), with XCR0 = x87 | SSE, the state
/// every vCPU starts with; guests may enable up to `xcr0_max` (the CPUID policy's).
pub fn enable_xsave(xcr0_max: u64) {
    if xcr0_max == 0 {
        return;
    }
    // SAFETY: the caller's policy found XSAVE in CPUID; OSXSAVE only makes XSAVE,
    // XSETBV and XGETBV usable, and x87 | SSE is a valid XCR0 on every such CPU.
    unsafe {
        let mut cr4: u64;
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        core::arch::asm!("mov cr4, {}", in(reg) cr4 | CR4_OSXSAVE, options(nomem, nostack));
    }
    XCR0_MAX.store(xcr0_max, core::sync::atomic::Ordering::Relaxed);
    set_xcr0(0b11);
}

/// Loads XCR0 (the guest's: `xgetbv` shows it and AVX works only if it says so). A
/// no-op without XSAVE.
pub fn set_xcr0(value: u64) {
    if XCR0_MAX.load(core::sync::atomic::Ordering::Relaxed) == 0 {
        return;
    }
    // SAFETY: OSXSAVE is on (XCR0_MAX is set only then) and callers pass values the
    // CPUID policy allowed (trap::cpuid::CpuidPolicy::xcr0_allowed) or the maximum.
    unsafe { core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nomem, nostack)) };
}

/// Switches the x87/SSE/AVX state from one vCPU to another: saves the CPU's into
/// `out`, loads `into`. CR0.TS is cleared first (saving with TS set would fault here);
/// the exit path sets it again, and XCR0, for the incoming vCPU. With XSAVE, XCR0 is
/// the maximum meanwhile, so whatever either vCPU enabled is saved and restored.
pub fn switch_fpu(out: &mut crate::domain::vcpu::FpuArea, into: &crate::domain::vcpu::FpuArea) {
    set_task_switched(false);
    let max = XCR0_MAX.load(core::sync::atomic::Ordering::Relaxed);
    if max == 0 {
        // SAFETY: both areas are 64-byte aligned and hold 512 bytes and more (FpuArea);
        // CR4.OSFXSR is on and TS is clear; `into` came from fxsave or is FpuArea's
        // default, whose reserved MXCSR bits are 0, so fxrstor cannot fault.
        unsafe {
            core::arch::asm!("fxsave64 [{}]", in(reg) out.0.as_mut_ptr(), options(nostack));
            core::arch::asm!("fxrstor64 [{}]", in(reg) into.0.as_ptr(), options(nostack, readonly));
        }
        return;
    }
    set_xcr0(max);
    // SAFETY: both areas are 64-byte aligned and large enough for every component in
    // `max` (the policy offers AVX only if its state fits FpuArea); OSXSAVE is on and TS
    // clear; `into` came from xsave with the same mask, or is FpuArea's default (a zero
    // header, valid MXCSR), so xrstor cannot fault.
    unsafe {
        core::arch::asm!("xsave64 [{}]", in(reg) out.0.as_mut_ptr(), in("eax") max as u32, in("edx") (max >> 32) as u32, options(nostack));
        core::arch::asm!("xrstor64 [{}]", in(reg) into.0.as_ptr(), in("eax") max as u32, in("edx") (max >> 32) as u32, options(nostack, readonly));
    }
}

/// DS, ES, FS and GS as the guest left them (the hypervisor never loads them).
pub fn data_selectors() -> [u16; 4] {
    let (ds, es, fs, gs): (u16, u16, u16, u16);
    // SAFETY: reading segment registers has no effect.
    unsafe {
        core::arch::asm!("mov {0:x}, ds", "mov {1:x}, es", "mov {2:x}, fs", "mov {3:x}, gs",
            out(reg) ds, out(reg) es, out(reg) fs, out(reg) gs, options(nomem, nostack));
    }
    [ds, es, fs, gs]
}

/// Loads a vCPU's DS, ES, FS and GS, as trap::entry::loadable_data_selectors kept them
/// (each null, a hypervisor ring-3 segment, or one whose descriptor in the guest's GDT
/// or LDT it found loadable), with the guest's GDT and LDT in the windows. The caller
/// loads FS/GS bases afterwards.
pub fn load_data_selectors(selectors: [u16; 4]) {
    let [ds, es, fs, gs] = selectors;
    // SAFETY: every selector was checked against the descriptor the CPU reads now (the
    // GDT and LDT windows hold the guest's frames, typed read-only for the guest, so the
    // descriptors cannot have changed): loads that cannot fault. The hypervisor itself
    // does not use these registers.
    unsafe {
        core::arch::asm!("mov ds, {0:x}", "mov es, {1:x}", "mov fs, {2:x}", "mov gs, {3:x}",
            in(reg) ds, in(reg) es, in(reg) fs, in(reg) gs, options(nomem, nostack));
    }
}
