//! `cargo xtask bench hypercall` and `cargo xtask bench mmu`: a guest bench command
//! (`bench-hypercall`, `bench-mmu`) on our hypervisor and on real Xen 4.17, both under
//! TCG, in paired rounds (ours, then Xen), then once on ours under `-icount shift=0` to
//! count instructions. Each [`Suite`] names its command and the ops it reports.
//!
//! Cycles are TCG's TSC, which follows the host clock: they compare the two hypervisors
//! on the same emulator, not on hardware. Under `-icount shift=0` each guest instruction
//! advances the virtual clock (and so the TSC) by 1 ns, and the guest's calibration line
//! (1,000,000 nops) gives the exact instructions per TSC cycle. Real Xen 4.17 does not
//! run under `-icount` (QEMU 10 stops with "Bad icount read" while Xen sets up its
//! timer), so it has no instruction count.

use crate::{artifacts_dir, build};
use pv_tests::bundle::dom0_bundle;
use pv_tests::qemu;
use pv_tests::results::{find, ResultLine};
use pv_tests::scenario::{run, Options};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use xshell::Shell;

pub const DEFAULT_RUNS: usize = 5;
/// Every bench command also reports this, the loop alone: subtracted from each op.
const BASELINE: &str = "loop_overhead";

/// One benchmark: the guest command (also its RESULT lines' `test=`), its ops in table
/// order, and what the table is about.
pub struct Suite {
    pub name: &'static str,
    pub command: &'static str,
    pub ops: &'static [&'static str],
    pub title: &'static str,
}

pub const HYPERCALL: Suite = Suite {
    name: "hypercall",
    command: "bench-hypercall",
    ops: &["null_hypercall", "exception_bounce_iret", "user_syscall"],
    title: "guest entry costs",
};

pub const MMU: Suite = Suite {
    name: "mmu",
    command: "bench-mmu",
    ops: &["mmu_update_one", "mmu_update_batch64", "update_va_mapping", "ptwr_write"],
    title: "page-table update costs (batch64: per call of 64)",
};

pub const EVENTS: Suite = Suite {
    name: "events",
    command: "bench-events",
    ops: &["evtchn_send_masked", "evtchn_send_upcall", "set_timer_op"],
    title: "event-channel and timer costs in one domain",
};

/// What one boot of a bench command printed.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Cycles per op by op name, the baseline included: total_cycles / iterations, which
    /// keeps the fraction the guest's integer cycles_per_op drops.
    pub cycles_per_op: BTreeMap<String, f64>,
    pub iterations: u64,
    /// Instructions the calibration loop executed (nops plus its own loop) and the TSC
    /// cycles it took.
    pub calibration_instructions: u64,
    pub calibration_cycles: u64,
}

fn number(line: &ResultLine, key: &str) -> Result<u64, String> {
    let text = line.get(key).ok_or_else(|| format!("RESULT line without {key}: {line:?}"))?;
    text.parse().map_err(|_| format!("{key}={text} is not a number"))
}

/// Reads one run's RESULT lines; the run must have ended with status=pass and measured
/// every op.
pub fn parse_run(suite: &Suite, results: &[ResultLine]) -> Result<Run, String> {
    let test = suite.command;
    if find(results, &[("test", test), ("status", "pass")]).is_none() {
        let failed = find(results, &[("test", test), ("status", "fail")]);
        return Err(format!("{test} did not pass: {failed:?}"));
    }
    let mut cycles_per_op = BTreeMap::new();
    let mut iterations = 0;
    for op in suite.ops.iter().chain([&BASELINE]) {
        let line = find(results, &[("test", test), ("op", op)]).ok_or_else(|| format!("no result for op={op}"))?;
        iterations = number(line, "iterations")?;
        if iterations == 0 {
            return Err(format!("op={op} ran 0 iterations"));
        }
        cycles_per_op.insert(op.to_string(), number(line, "total_cycles")? as f64 / iterations as f64);
    }
    let calibration = find(results, &[("test", test), ("op", "calibration")]).ok_or("no calibration line")?;
    let loop_instructions = calibration.get("loop_instructions").map_or(Ok(0), |_| number(calibration, "loop_instructions"))?;
    Ok(Run {
        cycles_per_op,
        iterations,
        calibration_instructions: number(calibration, "nops")? + loop_instructions,
        calibration_cycles: number(calibration, "cycles")?,
    })
}

impl Run {
    /// cycles_per_op of `op` minus this run's loop overhead.
    pub fn net_cycles(&self, op: &str) -> f64 {
        let cycles = self.cycles_per_op.get(op).copied().unwrap_or(0.0);
        let baseline = self.cycles_per_op.get(BASELINE).copied().unwrap_or(0.0);
        (cycles - baseline).max(0.0)
    }

    /// Guest instructions per op, meaningful for a run under `-icount` only.
    pub fn instructions(&self, op: &str) -> f64 {
        if self.calibration_cycles == 0 {
            return 0.0;
        }
        self.net_cycles(op) * self.calibration_instructions as f64 / self.calibration_cycles as f64
    }
}

/// The median; the mean of the middle two for an even count, 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub op: &'static str,
    pub ours: f64,
    pub xen: f64,
    /// ours / Xen; below 1 means ours is cheaper.
    pub ratio: f64,
    pub ours_instructions: Option<f64>,
    /// The lowest and highest of Xen's runs: its cost moves by a sixth from one boot to
    /// the next under TCG (ours by a few percent), which the ratio inherits.
    pub xen_range: (f64, f64),
}

/// Per op: the median over runs of (cycles_per_op - that run's loop overhead), for each
/// hypervisor, their ratio, and the instruction count of the `-icount` run if any.
pub fn summarise(suite: &Suite, ours: &[Run], xen: &[Run], icount: Option<&Run>) -> Vec<Row> {
    suite
        .ops
        .iter()
        .map(|&op| {
            let net = |runs: &[Run]| median(&runs.iter().map(|r| r.net_cycles(op)).collect::<Vec<_>>());
            let (o, x) = (net(ours), net(xen));
            let xen_samples = xen.iter().map(|r| r.net_cycles(op));
            let xen_range = (xen_samples.clone().fold(f64::INFINITY, f64::min), xen_samples.fold(f64::NEG_INFINITY, f64::max));
            Row {
                op,
                ours: o,
                xen: x,
                ratio: if x > 0.0 { o / x } else { f64::NAN },
                ours_instructions: icount.map(|r| r.instructions(op)),
                xen_range,
            }
        })
        .collect()
}

fn boot(suite: &Suite, command: std::process::Command, timeout_s: u64, stop_on: Vec<&'static str>, log: &Path) -> Result<Run, String> {
    let options = Options { timeout: Duration::from_secs(timeout_s), stop_on, mark: None, log_path: Some(log.to_path_buf()), input: vec![] };
    let outcome = run(command, &options)?;
    if outcome.timed_out {
        return Err(format!("timed out after {timeout_s} s (log: {})", log.display()));
    }
    parse_run(suite, &outcome.results).map_err(|e| format!("{e}; log {}; tail:\n{}", log.display(), outcome.tail(15)))
}

pub fn bench(sh: &Shell, runs: usize, suite: &Suite) -> Result<(), String> {
    let name = suite.name;
    let built = build(sh, "hello")?;
    qemu::check_qemu()?;
    let xen_image = qemu::xen_image(&artifacts_dir())?;
    let guest = std::fs::read(&built.guest).map_err(|e| e.to_string())?;
    let bundle = artifacts_dir().join(format!("{}.cpio", suite.command));
    std::fs::write(&bundle, dom0_bundle(&guest, suite.command)).map_err(|e| e.to_string())?;
    let out = crate::workspace_root().join("target/bench");
    let logs = out.join(format!("{name}-logs"));
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let tcg = qemu::tcg_args();

    let (mut ours, mut xen) = (Vec::new(), Vec::new());
    for round in 1..=runs {
        eprintln!("xtask: bench {name} round {round}/{runs}: pv-hypervisor, then xen-4.17");
        let command = qemu::hypervisor_command_with(&tcg, &built.hypervisor, &bundle, "loglvl=info");
        ours.push(boot(suite, command, 90, vec![], &logs.join(format!("ours-{round}.log"))).map_err(|e| format!("pv-hypervisor: {e}"))?);
        let command = qemu::xen_command_with(&tcg, &xen_image, &built.guest, suite.command);
        let stop = vec![qemu::XEN_DOM0_HALTED, qemu::XEN_DOM0_SHUTDOWN];
        xen.push(boot(suite, command, 300, stop, &logs.join(format!("xen-{round}.log"))).map_err(|e| format!("xen-4.17: {e}"))?);
    }
    eprintln!("xtask: bench {name}: pv-hypervisor under -icount shift=0");
    let command = qemu::hypervisor_command_with(&qemu::tcg_icount_args(), &built.hypervisor, &bundle, "loglvl=info");
    let icount = boot(suite, command, 300, vec![], &logs.join("ours-icount.log")).map_err(|e| format!("pv-hypervisor under -icount: {e}"))?;

    let rows = summarise(suite, &ours, &xen, Some(&icount));
    let what = format!("TCG, medians of {runs} paired runs");
    println!("{}", table(suite, &rows, &ours, &xen, &what, &icount));
    std::fs::write(out.join(format!("{name}.json")), json(&rows, &ours, &xen, &icount, &what)).map_err(|e| e.to_string())?;
    println!("written: target/bench/{name}.json (logs in target/bench/{name}-logs/)");
    Ok(())
}

fn table(suite: &Suite, rows: &[Row], ours: &[Run], xen: &[Run], what: &str, icount: &Run) -> String {
    let iterations = ours.first().map_or(0, |r| r.iterations);
    let baseline = |runs: &[Run]| median(&runs.iter().map(|r| r.cycles_per_op[BASELINE]).collect::<Vec<_>>());
    let mut text = format!("{}, TSC cycles per op minus loop overhead ({what}; {iterations} iterations per run)\n", suite.title);
    text.push_str(&format!(
        "{:<22} {:>12} {:>12} {:>15} {:>9} {:>18} {:>17}\n",
        "op", "ours cycles", "Xen cycles", "Xen runs range", "ours/Xen", "ours instructions", "Xen instructions"
    ));
    for row in rows {
        let instructions = row.ours_instructions.map_or("n/a".into(), |i| format!("{i:.0}"));
        let range = format!("{:.0}-{:.0}", row.xen_range.0, row.xen_range.1);
        text.push_str(&format!(
            "{:<22} {:>12.0} {:>12.0} {:>15} {:>9.2} {:>18} {:>17}\n",
            row.op, row.ours, row.xen, range, row.ratio, instructions, "n/a"
        ));
    }
    text.push_str(&format!("loop overhead subtracted (median cycles per iteration): ours {:.1}, Xen {:.1}\n", baseline(ours), baseline(xen)));
    text.push_str(&format!(
        "instructions: one run of ours under -icount shift=0 ({:.3} instructions per TSC cycle by the nop calibration);\n",
        icount.calibration_instructions as f64 / icount.calibration_cycles.max(1) as f64
    ));
    text.push_str("Xen n/a: QEMU stops Xen 4.17 under -icount ('Bad icount read')");
    text
}

fn json(rows: &[Row], ours: &[Run], xen: &[Run], icount: &Run, what: &str) -> String {
    let mut ops = serde_json::Map::new();
    for row in rows {
        ops.insert(
            row.op.to_string(),
            serde_json::json!({
                "ours_cycles": row.ours,
                "xen_cycles": row.xen,
                "ratio": row.ratio,
                "ours_instructions": row.ours_instructions,
                "xen_instructions": null,
                "ours_samples": ours.iter().map(|r| r.net_cycles(row.op)).collect::<Vec<_>>(),
                "xen_samples": xen.iter().map(|r| r.net_cycles(row.op)).collect::<Vec<_>>(),
            }),
        );
    }
    let json = serde_json::json!({
        "what": what,
        "unit": "TSC cycles per op minus loop overhead",
        "accelerator": qemu::tcg_args().join(" "),
        "runs": ours.len(),
        "iterations": ours.first().map_or(0, |r| r.iterations),
        "icount": {
            "qemu_args": qemu::tcg_icount_args().join(" "),
            "instructions_per_cycle": icount.calibration_instructions as f64 / icount.calibration_cycles.max(1) as f64,
            "xen": "n/a: QEMU stops Xen 4.17 under -icount (Bad icount read)",
        },
        "ops": ops,
        "loop_overhead_samples": {
            "ours": ours.iter().map(|r| r.cycles_per_op[BASELINE]).collect::<Vec<_>>(),
            "xen": xen.iter().map(|r| r.cycles_per_op[BASELINE]).collect::<Vec<_>>(),
        },
    });
    serde_json::to_string_pretty(&json).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use pv_tests::results::parse_log;

    fn log(null: u64, bounce: u64, overhead: u64, calibration_cycles: u64) -> String {
        format!(
            "(d0) RESULT event=greeting cmd_line=\"bench-hypercall\"\n\
             (d0) RESULT test=bench-hypercall op=loop_overhead iterations=4 cycles_per_op={overhead} total_cycles={}\n\
             (d0) RESULT test=bench-hypercall op=null_hypercall iterations=4 cycles_per_op={null} total_cycles={}\n\
             RESULT test=bench-hypercall op=exception_bounce_iret iterations=4 cycles_per_op={bounce} total_cycles={}\n\
             (d0) RESULT test=bench-hypercall op=user_syscall iterations=4 cycles_per_op={bounce} total_cycles={}\n\
             (d0) RESULT test=bench-hypercall op=calibration nops=1000000 loop_instructions=2000 cycles={calibration_cycles}\n\
             (d0) RESULT test=bench-hypercall status=pass\n",
            4 * overhead,
            4 * null,
            4 * bounce,
            4 * bounce
        )
    }

    fn parsed(null: u64, bounce: u64, overhead: u64) -> Run {
        parse_run(&HYPERCALL, &parse_log(&log(null, bounce, overhead, 501_000))).unwrap()
    }

    #[test]
    fn parses_a_run() {
        let run = parsed(1048, 5855, 22);
        assert_eq!(run.iterations, 4);
        assert_eq!(run.cycles_per_op["null_hypercall"], 1048.0);
        assert_eq!(run.cycles_per_op["loop_overhead"], 22.0);
        assert_eq!(run.calibration_instructions, 1_002_000);
        assert_eq!(run.net_cycles("exception_bounce_iret"), 5833.0);
        // Under -icount: 1,002,000 instructions in 501,000 cycles is 2 per cycle.
        assert_eq!(run.instructions("null_hypercall"), 2052.0);
    }

    #[test]
    fn keeps_the_fraction_of_cycles_per_op() {
        let text = log(1, 2, 0, 10).replace("iterations=4 cycles_per_op=1 total_cycles=4", "iterations=3 cycles_per_op=1 total_cycles=5");
        let run = parse_run(&HYPERCALL, &parse_log(&text)).unwrap();
        assert!((run.cycles_per_op["null_hypercall"] - 5.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn refuses_incomplete_or_failed_runs() {
        let full = log(1, 2, 0, 10);
        let without_pass = full.replace("status=pass", "status=fail");
        assert!(parse_run(&HYPERCALL, &parse_log(&without_pass)).is_err());
        let without_op = full.lines().filter(|l| !l.contains("null_hypercall")).collect::<Vec<_>>().join("\n");
        assert!(parse_run(&HYPERCALL, &parse_log(&without_op)).unwrap_err().contains("null_hypercall"));
        let garbled = full.replace("total_cycles=8", "total_cycles=eight");
        assert!(parse_run(&HYPERCALL, &parse_log(&garbled)).unwrap_err().contains("eight"));
        let no_iterations = full.replace("iterations=4", "iterations=0");
        assert!(parse_run(&HYPERCALL, &parse_log(&no_iterations)).is_err());
    }

    #[test]
    fn medians_odd_even_and_empty() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn summarises_medians_of_net_cycles_and_ratio() {
        // Each run's own overhead is subtracted before the median.
        let ours = [parsed(120, 1020, 20), parsed(110, 1010, 10), parsed(500, 9000, 0)];
        let xen = [parsed(210, 520, 10), parsed(220, 530, 20), parsed(200, 500, 0)];
        let rows = summarise(&HYPERCALL, &ours, &xen, Some(&ours[0]));
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].op, rows[0].ours, rows[0].xen, rows[0].ratio), ("null_hypercall", 100.0, 200.0, 0.5));
        assert_eq!((rows[1].op, rows[1].ours, rows[1].xen, rows[1].ratio), ("exception_bounce_iret", 1000.0, 510.0, 1000.0 / 510.0));
        assert_eq!(rows[0].ours_instructions, Some(200.0));
        assert_eq!(rows[0].xen_range, (200.0, 200.0));
        assert_eq!(rows[1].xen_range, (500.0, 510.0));
        assert_eq!(summarise(&HYPERCALL, &ours, &xen, None)[0].ours_instructions, None);
    }
}
