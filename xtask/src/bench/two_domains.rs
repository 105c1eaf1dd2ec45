//! `cargo xtask bench events`, the part only our hypervisor can run (two domains
//! booted from one bundle): the interdomain event round trip (`evtchn-pingpong`
//! between two domUs: two sends, two upcalls, two domain switches) and the domain
//! switch itself (`bench-switch` in two domUs: each SCHEDOP_yield hands the CPU to
//! the other). Wall-clock under TCG (medians of several boots) and instructions under
//! `-icount shift=0`, where one guest instruction is one nanosecond of system time.

use super::guest_costs::median;
use crate::{artifacts_dir, build};
use pv_tests::bundle::{bundle_with_domus, DomU};
use pv_tests::qemu;
use pv_tests::results::{find, ResultLine};
use pv_tests::scenario::{run, Options};
use std::time::Duration;
use xshell::Shell;

const ROUND_TRIPS: &str = "2000";
const YIELDS: &str = "5000";

/// One boot's two figures: ns per interdomain round trip, and cycles per yield
/// (minus the loop) with the calibration's instructions per cycle.
struct Sample {
    round_trip_ns: f64,
    switch_cycles: f64,
    instructions_per_cycle: f64,
}

fn number(line: &ResultLine, key: &str) -> Result<f64, String> {
    line.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| format!("no number {key} in {line:?}"))
}

fn boot(accel: &[String], hypervisor: &std::path::Path, guest: &[u8], name: &str) -> Result<Sample, String> {
    let pingpong = format!("evtchn-pingpong 2 {ROUND_TRIPS}");
    let pongping = format!("evtchn-pingpong 1 {ROUND_TRIPS}");
    let switch = format!("bench-switch {YIELDS}");
    let domus = [
        DomU { name: "ping", cmdline: &pingpong, config: "" },
        DomU { name: "pong", cmdline: &pongping, config: "" },
        DomU { name: "yield-a", cmdline: &switch, config: "" },
        DomU { name: "yield-b", cmdline: &switch, config: "" },
    ];
    let dir = crate::workspace_root().join("target/bench/events-logs");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let bundle_path = artifacts_dir().join("bench-events-domus.cpio");
    // Each pair is measured alone, in a boot of its own (the peers are domains 1 and 2).
    let results = |domus: &[DomU<'_>], log: &str| -> Result<Vec<ResultLine>, String> {
        std::fs::write(&bundle_path, bundle_with_domus(guest, "hello", domus)).map_err(|e| e.to_string())?;
        let command = qemu::hypervisor_command_with(accel, hypervisor, &bundle_path, "loglvl=info");
        let options = Options { timeout: Duration::from_secs(300), stop_on: vec![], mark: None, log_path: Some(dir.join(log)), input: vec![] };
        let outcome = run(command, &options)?;
        if outcome.timed_out {
            return Err(format!("{log}: timed out"));
        }
        Ok(outcome.results)
    };
    let r = results(&domus[..2], &format!("{name}-pingpong.log"))?;
    let line = find(&r, &[("test", "evtchn-pingpong"), ("role", "bind"), ("status", "pass")]).ok_or("the pingpong did not pass")?;
    let round_trip_ns = number(line, "ns_per_round_trip")?;
    let r = results(&domus[2..], &format!("{name}-switch.log"))?;
    let op = find(&r, &[("test", "bench-switch"), ("op", "yield")]).ok_or("no yield result")?;
    let overhead = find(&r, &[("test", "bench-switch"), ("op", "loop_overhead")]).ok_or("no loop overhead")?;
    let calibration = find(&r, &[("test", "bench-switch"), ("op", "calibration")]).ok_or("no calibration")?;
    let per = |l: &ResultLine| -> Result<f64, String> { Ok(number(l, "total_cycles")? / number(l, "iterations")?) };
    Ok(Sample {
        round_trip_ns,
        switch_cycles: (per(op)? - per(overhead)?).max(0.0),
        instructions_per_cycle: (number(calibration, "nops")? + number(calibration, "loop_instructions")?) / number(calibration, "cycles")?,
    })
}

pub fn bench(sh: &Shell, runs: usize) -> Result<serde_json::Value, String> {
    let built = build(sh, "hello")?;
    qemu::check_qemu()?;
    let guest = std::fs::read(&built.guest).map_err(|e| e.to_string())?;
    let mut samples = Vec::new();
    for round in 1..=runs {
        eprintln!("xtask: bench events (two domains) round {round}/{runs}");
        samples.push(boot(&qemu::tcg_args(), &built.hypervisor, &guest, &format!("tcg-{round}"))?);
    }
    eprintln!("xtask: bench events (two domains) under -icount shift=0");
    let icount = boot(&qemu::tcg_icount_args(), &built.hypervisor, &guest, "icount")?;
    let round_trip = median(&samples.iter().map(|s| s.round_trip_ns).collect::<Vec<_>>());
    let switch = median(&samples.iter().map(|s| s.switch_cycles).collect::<Vec<_>>());
    let switch_instructions = icount.switch_cycles * icount.instructions_per_cycle;
    println!("two domains on pv-hypervisor (TCG medians of {runs} boots; instructions: one boot under -icount shift=0)");
    println!("{:<34} {:>14} {:>14}", "op", "TCG", "instructions");
    println!("{:<34} {:>11.0} ns {:>14.0}", "interdomain event round trip", round_trip, icount.round_trip_ns);
    println!("{:<34} {:>7.0} cycles {:>14.0}", "domain switch (SCHEDOP_yield)", switch, switch_instructions);
    println!("(real Xen: n/a, it boots only dom0 from QEMU; a round trip is two sends, two upcalls and two switches)");
    Ok(serde_json::json!({
        "runs": runs,
        "round_trips_per_boot": ROUND_TRIPS,
        "yields_per_domain": YIELDS,
        "interdomain_round_trip_ns": round_trip,
        "interdomain_round_trip_ns_samples": samples.iter().map(|s| s.round_trip_ns).collect::<Vec<_>>(),
        "interdomain_round_trip_instructions": icount.round_trip_ns,
        "domain_switch_cycles": switch,
        "domain_switch_cycles_samples": samples.iter().map(|s| s.switch_cycles).collect::<Vec<_>>(),
        "domain_switch_instructions": switch_instructions,
    }))
}
