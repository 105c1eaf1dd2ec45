//! `cargo xtask bench`: measurements, printed as a table and written as JSON.

mod guest_costs;
mod two_domains;

use crate::{artifacts_dir, build, Benchmark};
use pv_tests::bundle::dom0_bundle;
use pv_tests::qemu;
use pv_tests::scenario::{run, Options};
use std::time::Duration;
use xshell::{cmd, Shell};

const RUNS: usize = 5;
const GREETING: &str = "event=greeting";

/// `runs`: rounds of the hypercall and mmu benchmarks (`--runs`), default
/// [`guest_costs::DEFAULT_RUNS`].
pub fn bench(sh: &Shell, which: Benchmark, runs: Option<usize>) -> Result<(), String> {
    let runs = runs.unwrap_or(guest_costs::DEFAULT_RUNS);
    match which {
        Benchmark::Boot => boot(sh),
        Benchmark::Rings => rings(sh),
        Benchmark::Hypercall => guest_costs::bench(sh, runs, &guest_costs::HYPERCALL),
        Benchmark::Mmu => guest_costs::bench(sh, runs, &guest_costs::MMU),
        Benchmark::Events => events(sh, runs),
        Benchmark::All => {
            boot(sh)?;
            rings(sh)?;
            guest_costs::bench(sh, runs, &guest_costs::HYPERCALL)?;
            guest_costs::bench(sh, runs, &guest_costs::MMU)?;
            events(sh, runs)
        }
    }
}

/// The single-domain event costs on both hypervisors, then the two-domain ones on ours;
/// the latter go into target/bench/events-two-domains.json.
fn events(sh: &Shell, runs: usize) -> Result<(), String> {
    guest_costs::bench(sh, runs, &guest_costs::EVENTS)?;
    let json = two_domains::bench(sh, runs)?;
    let path = crate::workspace_root().join("target/bench/events-two-domains.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap_or_default() + "\n").map_err(|e| e.to_string())?;
    println!("written: target/bench/events-two-domains.json");
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Seconds from QEMU start to the guest's greeting line, on our hypervisor and on real
/// Xen, same QEMU and accelerator.
fn boot(sh: &Shell) -> Result<(), String> {
    let built = build(sh, "hello")?;
    qemu::check_qemu()?;
    let xen = qemu::xen_image(&artifacts_dir())?;
    let bundle = artifacts_dir().join("bench-hello.cpio");
    let guest = std::fs::read(&built.guest).map_err(|e| e.to_string())?;
    std::fs::write(&bundle, dom0_bundle(&guest, "hello")).map_err(|e| e.to_string())?;
    let accel = qemu::accelerator_args().join(" ");
    let mut rows = Vec::new();
    // Ours on QEMU's pc and microvm machines (microvm skips the BIOS); Xen on pc.
    for (name, timeout) in [("pv-hypervisor", 90), ("pv-hv microvm", 90), ("xen-4.17", 240)] {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let command = match name {
                "xen-4.17" => qemu::xen_command(&xen, &built.guest, "hello"),
                "pv-hv microvm" => {
                    let mut command = qemu::hypervisor_command(&built.hypervisor, &bundle, "loglvl=info");
                    command.args(qemu::MICROVM);
                    command
                }
                _ => qemu::hypervisor_command(&built.hypervisor, &bundle, "loglvl=info"),
            };
            let options =
                Options { timeout: Duration::from_secs(timeout), stop_on: vec![GREETING], mark: Some(GREETING), log_path: None, input: vec![] };
            let outcome = run(command, &options)?;
            let t = outcome.mark_after.ok_or_else(|| format!("{name}: no greeting; log tail:\n{}", outcome.tail(20)))?;
            times.push(t.as_secs_f64());
        }
        rows.push((name, times));
    }
    println!("boot to greeting, {RUNS} runs each, QEMU {accel}");
    println!("{:<15} {:>9} {:>9} {:>9}", "hypervisor", "median s", "min s", "max s");
    let mut runs = serde_json::Map::new();
    for (name, times) in &rows {
        let min = times.iter().cloned().fold(f64::MAX, f64::min);
        let max = times.iter().cloned().fold(0.0, f64::max);
        let med = median(times.clone());
        println!("{name:<15} {med:>9.3} {min:>9.3} {max:>9.3}");
        runs.insert(name.to_string(), serde_json::json!({"median_s": med, "min_s": min, "max_s": max, "samples_s": times}));
    }
    let json = serde_json::json!({"accelerator": accel, "runs": runs});
    let ratio = median(rows[2].1.clone()) / median(rows[0].1.clone());
    println!("real Xen / pv-hypervisor (both pc): {ratio:.1}x");
    let out = crate::workspace_root().join("target/bench");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("boot.json"), serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n").map_err(|e| e.to_string())?;
    println!("written: target/bench/boot.json");
    Ok(())
}

fn rings(sh: &Shell) -> Result<(), String> {
    if !crate::workspace_root().join("ring-buffers/benches/rings.rs").exists() {
        return Err("the ring-buffer benchmark (ring-buffers/benches/rings.rs) does not exist yet".into());
    }
    let json = crate::workspace_root().join("target/bench/rings.json");
    cmd!(sh, "cargo bench -p ring-buffers --bench rings -- --json {json}").run().map_err(|e| e.to_string())
}
