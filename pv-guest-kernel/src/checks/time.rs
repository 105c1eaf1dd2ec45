//! `time`: the time a PV kernel reads without a hypercall: vCPU 0's vcpu_time_info
//! (system time from its own TSC with the published scale, under the version
//! protocol) and shared_info's wallclock. Checks that both are published and sane, and
//! prints the wall time it computes (`unix_seconds`, which differs between runs: the
//! scenario compares it with the host's clock instead).

use super::Tally;
use crate::console::println;
use crate::events::time_info;
use hypercall_abi::shared_info::SharedInfo;
use hypercall_abi::start_info::StartInfo;

/// 2024-01-01 and 2100-01-01, Unix time.
const PLAUSIBLE: core::ops::Range<u64> = 1_704_067_200..4_102_444_800;

fn rdtsc() -> u64 {
    // SAFETY: rdtsc is allowed in ring 3 (CR4.TSD clear on both hypervisors).
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn wallclock(shared: *const SharedInfo) -> (u32, u64, u32) {
    // SAFETY: as in `time_info`.
    unsafe {
        let version = core::ptr::addr_of!((*shared).wc_version).read_volatile();
        let sec = core::ptr::addr_of!((*shared).wc_sec).read_volatile();
        let sec_hi = core::ptr::addr_of!((*shared).wc_sec_hi).read_volatile();
        let nsec = core::ptr::addr_of!((*shared).wc_nsec).read_volatile();
        (version, (u64::from(sec_hi) << 32) | u64::from(sec), nsec)
    }
}

fn line(tally: &mut Tally, check: &str, value: bool) {
    tally.line(check, value, format_args!("value={}", u8::from(value)));
}

pub fn run(info: &StartInfo) {
    let mut tally = Tally::new("time");
    let Some(shared) = crate::events::shared_info(info) else {
        println!("RESULT test=time status=fail reason=cannot-map-shared-info");
        return;
    };
    let t = time_info(shared);
    line(&mut tally, "time_info_published", t.tsc_to_system_mul != 0 && t.version != 0);
    line(&mut tally, "scale_in_range", (-31..=31).contains(&t.tsc_shift));
    let mut last = 0;
    let mut monotonic = true;
    for _ in 0..1000 {
        let now = time_info(shared).system_time_at(rdtsc());
        monotonic &= now >= last;
        last = now;
    }
    line(&mut tally, "system_time_monotonic", monotonic);
    line(&mut tally, "system_time_running", last > 0 && last >= t.system_time);
    let (wc_version, wc_sec, wc_nsec) = wallclock(shared);
    line(&mut tally, "wallclock_version_even", wc_version % 2 == 0 && wc_version != 0);
    let now_ns = time_info(shared).system_time_at(rdtsc());
    let unix = wc_sec + (u64::from(wc_nsec) + now_ns) / 1_000_000_000;
    line(&mut tally, "wallclock_plausible", PLAUSIBLE.contains(&unix));
    println!("RESULT test=time check=wall_time unix_seconds={unix}");
    tally.finish();
}
