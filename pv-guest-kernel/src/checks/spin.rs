//! `spin SECONDS`: CPU-bound work for that much system time, never entering the
//! hypervisor on purpose (the clock is read from the TSC through vcpu_time_info), so
//! only preemption shares the CPU. Reports the work done and the work per second: with
//! several domains spinning at once, each one's work is its CPU share.

use crate::console::println;
use crate::events::now_ns;
use hypercall_abi::start_info::StartInfo;

/// Iterations between two reads of the clock.
const BATCH: u64 = 4096;

pub fn run(info: &StartInfo, command: &str) {
    // `spin-until MS` ends at system time MS instead: domains started together then
    // also stop together, so none runs alone at the end.
    let until = command.starts_with("spin-until");
    let Some(amount) = super::numeric_argument("spin", command, 1, 1..=600_000) else { return };
    let Some(shared) = crate::events::shared_info(info) else {
        println!("RESULT test=spin status=fail reason=cannot-map-shared-info");
        return;
    };
    let started = now_ns(shared);
    let end = if until { amount * 1_000_000 } else { started + amount * 1_000_000_000 };
    let seconds = (end.saturating_sub(started)) / 1_000_000_000;
    let mut work = 0u64;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    loop {
        for _ in 0..BATCH {
            // A little arithmetic the optimiser cannot fold away.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
        }
        work += BATCH;
        if now_ns(shared) >= end {
            break;
        }
    }
    let elapsed = now_ns(shared) - started;
    let per_second = work as u128 * 1_000_000_000 / u128::from(elapsed.max(1));
    println!(
        "RESULT test=spin status=pass seconds={seconds} work={work} per_second={per_second} elapsed_ms={} noise={}",
        elapsed / 1_000_000,
        core::hint::black_box(state) & 1
    );
}
