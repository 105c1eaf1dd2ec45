//! Guest time (xen.h vcpu_time_info, shared_info's wallclock): system time is
//! nanoseconds since the hypervisor booted, which a guest computes itself from its TSC
//! with the scale the hypervisor publishes (`system_time + (((tsc - tsc_timestamp) <<
//! shift) * mul) >> 32`); the wallclock is the Unix time at system time 0. Everything
//! here is arithmetic; `arch` measures the TSC frequency and reads the RTC.

use crate::mm::guest_walk::MachineMemory;
use core::mem::offset_of;
use hypercall_abi::shared_info::{SharedInfo, VcpuInfo, VcpuTimeInfo};
use zerocopy::IntoBytes;

/// The TSC-to-nanoseconds scale in vcpu_time_info's form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscScale {
    pub mul: u32,
    pub shift: i8,
}

impl TscScale {
    /// The scale for a TSC of `tsc_hz` ticks per second: `shift` puts ns-per-tick in
    /// [0.5, 1) and `mul` is that fraction in 32 bits, the most precision the format has.
    pub fn for_frequency(tsc_hz: u64) -> Option<TscScale> {
        if tsc_hz == 0 {
            return None;
        }
        // f = 1e9 / tsc_hz = mul * 2^(shift - 32), with mul in [2^31, 2^32).
        let (mut num, mut den) = (1_000_000_000u128, u128::from(tsc_hz));
        let mut shift: i32 = 0;
        while num >= den {
            den <<= 1;
            shift += 1;
        }
        while num * 2 < den {
            num <<= 1;
            shift -= 1;
        }
        let mul = u32::try_from((num << 32) / den).ok()?;
        Some(TscScale { mul, shift: i8::try_from(shift).ok()? })
    }

    /// Nanoseconds in `ticks` TSC ticks, as the guest will compute them.
    pub fn to_ns(self, ticks: u64) -> u64 {
        let shifted = if self.shift >= 0 { ticks << self.shift } else { ticks >> -self.shift };
        ((u128::from(shifted) * u128::from(self.mul)) >> 32) as u64
    }
}

/// The hypervisor's clock: the TSC at boot and the scale.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub boot_tsc: u64,
    pub scale: TscScale,
    /// Unix time at system time 0 (boot), in seconds and nanoseconds.
    pub wallclock: (u64, u32),
    /// Reads the TSC (`rdtsc` on the machine, a stand-in in host tests).
    pub read_tsc: fn() -> u64,
}

impl Clock {
    /// System time now: nanoseconds since boot.
    pub fn now_ns(&self) -> u64 {
        self.scale.to_ns((self.read_tsc)().wrapping_sub(self.boot_tsc))
    }

    /// vcpu_time_info as of TSC value `tsc`.
    pub fn time_info_at(&self, tsc: u64, version: u32) -> VcpuTimeInfo {
        VcpuTimeInfo {
            version,
            tsc_timestamp: tsc,
            system_time: self.scale.to_ns(tsc.wrapping_sub(self.boot_tsc)),
            tsc_to_system_mul: self.scale.mul,
            tsc_shift: self.scale.shift,
            ..Default::default()
        }
    }

    /// Publishes the time in the shared_info page at machine frame `mfn`: vCPU 0's
    /// vcpu_time_info and the wallclock, each under its version protocol (odd while
    /// the fields change).
    pub fn publish<M: MachineMemory>(&self, memory: &mut M, mfn: u64, tsc: u64) -> Option<()> {
        let base = mfn * 4096;
        let time_at = base + offset_of!(VcpuInfo, time) as u64;
        let version = memory.read_u64(time_at).map_or(0, |w| w as u32);
        let odd = version.wrapping_add(1) | 1;
        memory.write_bytes(time_at, &odd.to_le_bytes())?;
        let info = self.time_info_at(tsc, odd);
        memory.write_bytes(time_at, info.as_bytes())?;
        memory.write_bytes(time_at, &odd.wrapping_add(1).to_le_bytes())?;

        let wc_at = base + offset_of!(SharedInfo, wc_version) as u64;
        let wc_version = memory.read_u64(wc_at).map_or(0, |w| w as u32);
        let wc_odd = wc_version.wrapping_add(1) | 1;
        memory.write_bytes(wc_at, &wc_odd.to_le_bytes())?;
        let (sec, nsec) = self.wallclock;
        let mut fields = [0u8; 12];
        fields[..4].copy_from_slice(&(sec as u32).to_le_bytes());
        fields[4..8].copy_from_slice(&nsec.to_le_bytes());
        fields[8..].copy_from_slice(&((sec >> 32) as u32).to_le_bytes());
        memory.write_bytes(wc_at + 4, &fields)?;
        memory.write_bytes(wc_at, &wc_odd.wrapping_add(1).to_le_bytes())
    }
}

/// A domain's single-shot timer (set_timer_op): once `deadline` (system time, ns) has
/// passed it fires once, raising VIRQ_TIMER (lost if the domain has not bound it, as
/// on Xen). Whether it fired.
/// The periodic timer (VCPUOP_set_periodic_timer) fires the same way at each period,
/// once however many periods passed (the next one a period after the tick), but only
/// while the vCPU runs: as on Xen, a
/// blocked vCPU is not woken by it (`while_blocked`), and a period that ended while it
/// was blocked fires when it runs again.
pub fn fire_if_due<M: MachineMemory>(domain: &mut crate::domain::Domain, memory: &mut M, now_ns: u64) -> bool {
    fire(domain, memory, now_ns, false)
}

/// As [`fire_if_due`] for a blocked vCPU: the single-shot timer only.
pub fn fire_if_due_while_blocked<M: MachineMemory>(domain: &mut crate::domain::Domain, memory: &mut M, now_ns: u64) -> bool {
    fire(domain, memory, now_ns, true)
}

fn fire<M: MachineMemory>(domain: &mut crate::domain::Domain, memory: &mut M, now_ns: u64, while_blocked: bool) -> bool {
    let single = domain.timer_deadline.is_some_and(|deadline| deadline <= now_ns);
    if single {
        domain.timer_deadline = None;
    }
    let periodic = match domain.periodic_timer {
        Some((period, next)) if next <= now_ns && !while_blocked => {
            // The next period starts from this tick, however late it is (Xen's
            // periodic_last_event).
            domain.periodic_timer = Some((period, now_ns.saturating_add(period)));
            domain.periodic_last_event = now_ns;
            true
        }
        _ => false,
    };
    if single || periodic {
        let mut bits = crate::evtchn::SharedInfoBits { memory, shared_info_mfn: domain.shared_info_mfn };
        domain.events.raise_virq(&mut bits, hypercall_abi::ops::event_channel::VIRQ_TIMER);
    }
    single || periodic
}

/// The earliest time either timer of the domain fires, if any is set.
pub fn next_expiry(domain: &crate::domain::Domain) -> Option<u64> {
    match (domain.timer_deadline, domain.periodic_timer.map(|(_, next)| next)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An RTC reading: calendar date and time of day (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcTime {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl RtcTime {
    /// Seconds since 1970-01-01 (days from the civil calendar, proleptic Gregorian).
    pub fn unix_seconds(&self) -> Option<u64> {
        if !(1970..=9999).contains(&self.year) || !(1..=12).contains(&self.month) || !(1..=31).contains(&self.day) {
            return None;
        }
        if self.hour > 23 || self.minute > 59 || self.second > 60 {
            return None;
        }
        let (y, m) = if self.month <= 2 { (self.year as i64 - 1, self.month as i64 + 9) } else { (self.year as i64, self.month as i64 - 3) };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let day_of_year = (153 * m + 2) / 5 + self.day as i64 - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = era * 146_097 + day_of_era - 719_468;
        u64::try_from(days * 86_400 + i64::from(self.hour * 3600 + self.minute * 60 + self.second)).ok()
    }
}

/// A CMOS RTC register value in BCD (status register B bit 2 clear) as binary.
pub fn from_bcd(value: u8) -> u32 {
    u32::from(value >> 4) * 10 + u32::from(value & 0xf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::test_memory::SparseMemory;

    #[test]
    fn the_scale_turns_ticks_into_nanoseconds() {
        for hz in [1_000_000_000u64, 2_500_000_000, 3_000_000_000, 1_193_182, 100_000_000_000, 7] {
            let scale = TscScale::for_frequency(hz).unwrap();
            assert!(scale.mul >= 1 << 31, "{hz}: full precision");
            let one_second = scale.to_ns(hz);
            assert!(one_second.abs_diff(1_000_000_000) <= 1, "{hz} Hz: {one_second} ns per second");
        }
        assert_eq!(TscScale::for_frequency(0), None);
        // 2 GHz: half a nanosecond per tick, the header's own example.
        assert_eq!(TscScale::for_frequency(2_000_000_000), Some(TscScale { mul: 1 << 31, shift: 0 }));
    }

    #[test]
    fn the_guests_formula_agrees_with_ours() {
        let clock = Clock { boot_tsc: 1000, scale: TscScale::for_frequency(2_400_000_000).unwrap(), wallclock: (1_700_000_000, 5), read_tsc: || 0 };
        let info = clock.time_info_at(2_400_001_000, 2);
        // mul is rounded down: within a nanosecond per second.
        assert!(info.system_time.abs_diff(1_000_000_000) <= 1);
        let later = info.system_time_at(2_400_001_000 + 2_400_000);
        assert!(later.abs_diff(info.system_time + 1_000_000) <= 1, "VcpuTimeInfo's own formula: {later}");
    }

    #[test]
    fn publishing_leaves_even_versions_and_the_wallclock() {
        let mut memory = SparseMemory::default();
        memory.add_frame(3, 0);
        let clock = Clock { boot_tsc: 0, scale: TscScale::for_frequency(1_000_000_000).unwrap(), wallclock: (0x1_2345_6789, 42), read_tsc: || 0 };
        clock.publish(&mut memory, 3, 5_000).unwrap();
        clock.publish(&mut memory, 3, 6_000).unwrap();
        let time_at = 3 * 4096 + 32;
        let word = |at: u64| memory.read_u64(at).unwrap();
        assert_eq!(word(time_at) as u32, 4, "two updates, each odd then even");
        assert_eq!(word(time_at + 16), 6_000, "system_time");
        assert_eq!(word(3 * 4096 + 3072) as u32, 4, "wc_version");
        assert_eq!(word(3 * 4096 + 3076) as u32, 0x2345_6789, "wc_sec");
        assert_eq!(word(3 * 4096 + 3080) as u32, 42, "wc_nsec");
        assert_eq!(word(3 * 4096 + 3084) as u32, 1, "wc_sec_hi");
    }

    #[test]
    fn rtc_dates_become_unix_time() {
        let t = |year, month, day, hour, minute, second| RtcTime { year, month, day, hour, minute, second }.unix_seconds();
        assert_eq!(t(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(t(2000, 3, 1, 0, 0, 0), Some(951_868_800));
        assert_eq!(t(2026, 12, 5, 0, 34, 46), Some(1_796_430_886));
        assert_eq!(t(2024, 2, 29, 12, 0, 0), Some(1_709_208_000));
        assert_eq!(t(2026, 13, 1, 0, 0, 0), None);
        assert_eq!(from_bcd(0x59), 59);
    }
}
