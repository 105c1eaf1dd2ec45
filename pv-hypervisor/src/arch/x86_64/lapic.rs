//! The local APIC's timer, in xAPIC mode through its MMIO page (reached through the
//! direct map, which covers the first 4 GiB of physical addresses), on
//! [`TIMER_VECTOR`]. Where the CPU has it (CPUID.1:ECX bit 24) the timer runs in
//! TSC-deadline mode: armed with the absolute TSC value to fire at (MSR 0x6e0), no
//! calibration needed. Otherwise one-shot mode, counting down at a rate measured
//! against the TSC at boot. The hypervisor arms it for the earliest deadline it has.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The timer's interrupt vector (any free vector above the exceptions and the PICs').
pub const TIMER_VECTOR: u8 = 0xef;
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// A self-IPI that makes the hypervisor look at work an NMI handler left (see
/// [`kick_self`]).
pub const KICK_VECTOR: u8 = 0xee;
const LAPIC_PHYS: u64 = 0xfee0_0000;
const REG_EOI: u64 = 0xb0;
const REG_SPURIOUS: u64 = 0xf0;
const REG_ICR_LOW: u64 = 0x300;
/// ICR destination shorthand "self", fixed delivery mode.
const ICR_TO_SELF: u32 = 0b01 << 18;
const REG_LVT_TIMER: u64 = 0x320;
const REG_INITIAL_COUNT: u64 = 0x380;
const REG_CURRENT_COUNT: u64 = 0x390;
const REG_DIVIDE: u64 = 0x3e0;
/// Divide the bus clock by 16.
const DIVIDE_BY_16: u32 = 0x3;
const LVT_MASKED: u32 = 1 << 16;

/// Timer ticks per second (0 until measured; in TSC-deadline mode, the TSC's rate).
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// Whether the timer runs in TSC-deadline mode.
static TSC_DEADLINE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
const LVT_TSC_DEADLINE: u32 = 0b10 << 17;
const MSR_TSC_DEADLINE: u32 = 0x6e0;
const CPUID_1_ECX_TSC_DEADLINE: u32 = 1 << 24;

fn register(offset: u64) -> *mut u32 {
    (super::phys_to_virt(LAPIC_PHYS) + offset) as *mut u32
}

fn write(offset: u64, value: u32) {
    // SAFETY: the LAPIC's registers are at LAPIC_PHYS (the architectural default, which
    // nothing here moves), mapped by the direct map; 32-bit aligned accesses only.
    unsafe { register(offset).write_volatile(value) }
}

fn read(offset: u64) -> u32 {
    // SAFETY: as in `write`.
    unsafe { register(offset).read_volatile() }
}

/// Enables the LAPIC and measures its timer against `tsc_hz` over 5 ms (some 300,000
/// ticks of QEMU's 62.5 MHz timer: precise to a few parts per million, and short, since
/// it adds to every boot).
pub fn init(tsc_hz: u64) {
    write(REG_SPURIOUS, 0x100 | u32::from(SPURIOUS_VECTOR));
    if super::cpu::cpuid(1, 0)[2] & CPUID_1_ECX_TSC_DEADLINE != 0 {
        TIMER_HZ.store(tsc_hz, Relaxed);
        TSC_DEADLINE.store(true, Relaxed);
        write(REG_LVT_TIMER, LVT_TSC_DEADLINE | u32::from(TIMER_VECTOR));
        log::info!("lapic: timer in TSC-deadline mode");
        return;
    }
    write(REG_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(REG_INITIAL_COUNT, u32::MAX);
    let start = super::cpu::rdtsc();
    let window = tsc_hz / 200;
    while super::cpu::rdtsc() - start < window {
        core::hint::spin_loop();
    }
    let counted = u64::from(u32::MAX - read(REG_CURRENT_COUNT));
    let elapsed = super::cpu::rdtsc() - start;
    write(REG_INITIAL_COUNT, 0);
    let hz = (u128::from(counted) * u128::from(tsc_hz) / u128::from(elapsed.max(1))) as u64;
    TIMER_HZ.store(hz, Relaxed);
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
    log::info!("lapic: timer {} kHz", hz / 1000);
}

/// Fires the timer once, `ns` nanoseconds from now (at least one tick; a deadline
/// beyond the counter's range fires early, and the caller arms it again then).
pub fn arm(ns: u64) {
    let hz = TIMER_HZ.load(Relaxed);
    if TSC_DEADLINE.load(Relaxed) {
        let ticks = (u128::from(ns) * u128::from(hz) / 1_000_000_000).clamp(1, u128::from(u64::MAX >> 1)) as u64;
        write_deadline(super::cpu::rdtsc().saturating_add(ticks));
        return;
    }
    let ticks = (u128::from(ns) * u128::from(hz) / 1_000_000_000).clamp(1, u128::from(u32::MAX)) as u32;
    write(REG_INITIAL_COUNT, ticks);
}

/// IA32_TSC_DEADLINE: the timer fires when the TSC reaches it.
fn write_deadline(tsc: u64) {
    // SAFETY: the MSR exists (CPUID said so at init) and only arms the LAPIC timer.
    unsafe { x86_64::registers::model_specific::Msr::new(MSR_TSC_DEADLINE).write(tsc) };
}

/// Raises [`KICK_VECTOR`] on this CPU. An NMI handler cannot take the hypervisor's lock
/// (it may have interrupted its holder) nor run the scheduler on its IST stack, so it
/// leaves a flag and kicks: the interrupt comes as soon as interrupts are on again, in
/// the guest after the exit or in the idle loop's `hlt`, on the ordinary stack. Safe in
/// an NMI: nothing else writes the ICR.
pub fn kick_self() {
    write(REG_ICR_LOW, ICR_TO_SELF | u32::from(KICK_VECTOR));
}

pub fn end_of_interrupt() {
    write(REG_EOI, 0);
}
