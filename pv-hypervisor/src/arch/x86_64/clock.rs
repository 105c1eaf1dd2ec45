//! The machine's clocks, read once at boot: the TSC frequency (measured against the PIT,
//! whose input runs at 1,193,182 Hz) and the CMOS real-time clock. `crate::time` turns
//! them into what guests read.

use crate::time::{from_bcd, RtcTime};
use x86_64::instructions::port::Port;

const PIT_HZ: u64 = 1_193_182;
/// 10 ms of PIT channel 2.
const PIT_COUNT: u16 = 11_932;
/// Used when there is no PIT (QEMU's microvm) and CPUID does not say.
const FALLBACK_TSC_HZ: u64 = 2_000_000_000;

/// Ticks of the TSC per second, and how that was found.
pub fn tsc_hz() -> (u64, &'static str) {
    if let Some(hz) = measure_against_pit() {
        return (hz, "measured against the PIT");
    }
    // CPUID 0x16: processor base frequency in MHz, where the CPU reports it.
    let max_leaf = super::cpu::cpuid(0, 0)[0];
    if max_leaf >= 0x16 {
        let mhz = u64::from(super::cpu::cpuid(0x16, 0)[0] & 0xffff);
        if mhz != 0 {
            return (mhz * 1_000_000, "CPUID leaf 0x16");
        }
    }
    (FALLBACK_TSC_HZ, "assumed (no PIT, no CPUID frequency)")
}

fn measure_against_pit() -> Option<u64> {
    let mut control = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: the PIT and port 0x61 are the hypervisor's (no guest reaches them); channel
    // 2 drives only the speaker, whose output bit stays off.
    unsafe {
        let before = control.read();
        if before == 0xff {
            return None; // nothing there
        }
        // Gate on, speaker off; channel 2, both bytes, mode 0 (out rises at terminal count).
        control.write((before & !0x02) | 0x01);
        command.write(0b1011_0000);
        channel2.write(PIT_COUNT as u8);
        channel2.write((PIT_COUNT >> 8) as u8);
        // A PIT counts down from what was just written: latch channel 2 and read it
        // back. Where there is none (QEMU's microvm) the read is garbage, and waiting
        // for its output would only time out.
        command.write(0b1000_0000);
        let latched = u16::from(channel2.read()) | (u16::from(channel2.read()) << 8);
        if latched == 0 || latched > PIT_COUNT {
            control.write(before);
            return None;
        }
        let start = super::cpu::rdtsc();
        let mut spins = 0u64;
        while control.read() & 0x20 == 0 {
            spins += 1;
            if spins > 100_000_000 {
                control.write(before);
                return None;
            }
        }
        let ticks = super::cpu::rdtsc() - start;
        control.write(before);
        // Below 10 MHz the measurement is not of a TSC (or not of a PIT).
        let hz = ticks * PIT_HZ / u64::from(PIT_COUNT);
        (hz >= 10_000_000).then_some(hz)
    }
}

fn cmos(register: u8) -> u8 {
    let mut index = Port::<u8>::new(0x70);
    let mut data = Port::<u8>::new(0x71);
    // SAFETY: reading CMOS registers changes nothing; bit 7 of the index (NMI disable)
    // is left clear. Only boot code calls this, before any guest can touch the ports.
    unsafe {
        index.write(register);
        data.read()
    }
}

/// The RTC's date and time (UTC, as QEMU keeps it), if there is an RTC.
pub fn read_rtc() -> Option<RtcTime> {
    // No CMOS (QEMU's microvm): absent ports read as all ones.
    if cmos(0x0b) == 0xff && cmos(0x0a) == 0xff {
        return None;
    }
    // Wait out an update in progress (register A bit 7), at most a few milliseconds.
    let mut spins = 0;
    while cmos(0x0a) & 0x80 != 0 {
        spins += 1;
        if spins > 1_000_000 {
            return None;
        }
    }
    let status_b = cmos(0x0b);
    if status_b == 0xff {
        return None; // no CMOS
    }
    let binary = status_b & 0x04 != 0;
    let value = |raw: u8| if binary { u32::from(raw) } else { from_bcd(raw) };
    let hour_raw = cmos(0x04);
    let mut hour = value(hour_raw & 0x7f);
    if status_b & 0x02 == 0 && hour_raw & 0x80 != 0 {
        hour = (hour % 12) + 12; // 12-hour mode, PM
    }
    Some(RtcTime {
        year: 2000 + value(cmos(0x09)),
        month: value(cmos(0x08)),
        day: value(cmos(0x07)),
        hour,
        minute: value(cmos(0x02)),
        second: value(cmos(0x00)),
    })
}
