//! `cargo xtask fuzz`: boots our hypervisor with dom0 running `fuzz SEED COUNT` (the
//! hostile-guest hypercall fuzzer in pv-guest-kernel/src/checks/fuzz.rs), prints its
//! summary and how many calls per second it made in QEMU wall time.

use crate::{artifacts_dir, build};
use hypercall_abi::debug_exit::ExitCode;
use pv_tests::bundle::dom0_bundle;
use pv_tests::qemu;
use pv_tests::results::find;
use pv_tests::scenario::{run, Options};
use std::time::Duration;
use xshell::Shell;

/// Printed by the guest when the first fuzzed call is about to be made.
const FUZZ_START: &str = "fuzz: seed=";

pub fn fuzz(sh: &Shell, count: u64, seed: u64, trace_from: Option<u64>) -> Result<(), String> {
    let mut cmdline = format!("fuzz {seed} {count}");
    if let Some(from) = trace_from {
        cmdline.push_str(&format!(" trace={from}"));
    }
    let built = build(sh, &cmdline)?;
    qemu::check_qemu()?;
    let guest = std::fs::read(&built.guest).map_err(|e| e.to_string())?;
    let bundle = artifacts_dir().join("fuzz.cpio");
    std::fs::write(&bundle, dom0_bundle(&guest, &cmdline)).map_err(|e| e.to_string())?;
    let log_path = artifacts_dir().join(format!("fuzz-{seed}-{count}.log"));
    // A generous bound: 100,000 calls take seconds; the timeout only catches a hang.
    let timeout = Duration::from_secs(120 + count / 1000);
    let options = Options { timeout, stop_on: vec![], mark: Some(FUZZ_START), log_path: Some(log_path.clone()), input: vec![] };
    let outcome = run(qemu::hypervisor_command(&built.hypervisor, &bundle, "loglvl=info"), &options)?;

    for line in outcome
        .log
        .lines()
        .filter(|l| l.contains("fuzz: FAIL") || l.contains("known deviation") || l.contains("fuzz: coverage") || l.contains("RESULT "))
    {
        println!("{line}");
    }
    let exit = outcome.exit_code();
    println!("log: {}", log_path.display());
    if outcome.timed_out {
        return Err(format!("QEMU timed out after {timeout:?} (a hang?); log tail:\n{}", outcome.tail(20)));
    }
    let summary = find(&outcome.results, &[("test", "fuzz")])
        .ok_or_else(|| format!("no fuzz RESULT line (hypervisor exit {exit:?}); log tail:\n{}", outcome.tail(20)))?;
    let calls: f64 = summary.get("calls").and_then(|c| c.parse().ok()).unwrap_or(0.0);
    let total = outcome.elapsed.as_secs_f64();
    let fuzzing = outcome.mark_after.map_or(total, |m| total - m.as_secs_f64());
    println!(
        "{calls} calls in {fuzzing:.2} s of fuzzing ({total:.2} s QEMU wall time in all, {}): {:.0} calls/s",
        qemu::accelerator_args().join(" "),
        calls / fuzzing.max(1e-9)
    );
    if exit != Some(ExitCode::Poweroff) {
        return Err(format!("the hypervisor did not power off cleanly: {exit:?} (status {:?})", outcome.status));
    }
    if summary.get("status").map(String::as_str) != Some("pass") {
        return Err("the fuzzer found failures (see the FAIL lines above)".into());
    }
    Ok(())
}
