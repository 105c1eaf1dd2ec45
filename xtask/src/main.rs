//! `cargo xtask`: the one entry point for building, running, testing, benchmarking and
//! debugging. Run `cargo xtask --help`.

mod bench;
mod fuzz;

use pv_tests::{bundle, qemu};
use std::path::{Path, PathBuf};
use std::time::Instant;
use xshell::{cmd, Shell};

const TARGET: &str = "x86_64-unknown-none";
const HELP: &str = "\
cargo xtask <command> [options]

commands:
  build [--guest-cmdline STR]   build the hypervisor and guest (release, x86_64-unknown-none)
                                into target/pv/, plus target/pv/bundle.cpio (dom0 = guest)
  run [--guest-cmdline STR] [--hv-cmdline STR] [--xen]
                                build, then boot with the serial console on this terminal;
                                --xen boots the same guest as dom0 on real Xen 4.17
                                guest commands: hello (default), fault, badptr, hypercall-count,
                                traps, privops, usermode, hypercalls, memory, ptwr, mmu-attack, mmu-stress, descriptors,
                                entry-attacks, entry-attack NAME,
                                bench-hypercall [N], bench-mmu [N], fuzz SEED COUNT [trace=I]
  test                          host unit tests of every crate, then every QEMU scenario
                                (PV_SKIP_REAL_XEN=1 skips the real-Xen one)
  lint                          rustfmt check (rustfmt.toml) and clippy with warnings denied,
                                for the host crates and for the two kernels' target
  bench [boot|rings|hypercall|mmu|all] [--runs R]
                                boot: boot-to-greeting time, ours vs real Xen (5 runs each);
                                rings: ring-buffer throughput;
                                hypercall: cycles per null hypercall, exception bounce + iret
                                and user syscall; mmu: per mmu_update of one PTE, batch of
                                64, update_va_mapping and writable-page-table store; both
                                ours vs real Xen under TCG (medians of R paired runs,
                                default 5), plus ours' instruction counts under -icount;
                                tables on stdout, JSON in target/bench/
  fuzz [--count N] [--seed S] [--trace-from I]
                                boot with dom0 fuzzing hypercalls and privileged instructions
                                (N calls, default 100000, seed S, default 1; --trace-from prints
                                every call from iteration I); prints the summary and calls/s
  gdb [--guest-cmdline STR]     boot with QEMU waiting for gdb on :1234, symbols loaded
";

type Result<T> = std::result::Result<T, String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = dispatch(&args) {
        eprintln!("xtask: {e}");
        std::process::exit(1);
    }
}

pub fn option(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn dispatch(args: &[String]) -> Result<()> {
    let sh = Shell::new().map_err(|e| e.to_string())?;
    sh.change_dir(workspace_root());
    let guest_cmdline = option(args, "--guest-cmdline").unwrap_or_else(|| "hello".into());
    match args.first().map(String::as_str) {
        Some("build") => build(&sh, &guest_cmdline).map(|_| ()),
        Some("run") => {
            run(&sh, &guest_cmdline, &option(args, "--hv-cmdline").unwrap_or_else(|| "loglvl=info".into()), args.iter().any(|a| a == "--xen"))
        }
        Some("test") => test(&sh),
        Some("lint") => lint(&sh),
        Some("bench") => {
            let runs =
                option(args, "--runs").map(|r| r.parse().ok().filter(|&n| n > 0).ok_or(format!("--runs {r}: not a positive number"))).transpose()?;
            let which = args.get(1).map(String::as_str).filter(|w| !w.starts_with("--")).unwrap_or("all");
            bench::bench(&sh, which, runs)
        }
        Some("gdb") => gdb(&sh, &guest_cmdline),
        Some("fuzz") => fuzz::fuzz(&sh, args),
        Some("--help" | "-h" | "help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command '{other}'\n\n{HELP}")),
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

pub fn artifacts_dir() -> PathBuf {
    workspace_root().join("target/pv")
}

fn ensure_target(sh: &Shell) -> Result<()> {
    let installed = cmd!(sh, "rustup target list --installed").read().map_err(|e| format!("rustup: {e}"))?;
    if !installed.lines().any(|l| l.trim() == TARGET) {
        eprintln!("xtask: adding the {TARGET} target");
        cmd!(sh, "rustup target add {TARGET}").run().map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub struct Artifacts {
    pub hypervisor: PathBuf,
    pub guest: PathBuf,
    pub bundle: PathBuf,
}

pub fn build(sh: &Shell, guest_cmdline: &str) -> Result<Artifacts> {
    ensure_target(sh)?;
    for krate in ["pv-hypervisor", "pv-guest-kernel"] {
        cmd!(sh, "cargo build --release -p {krate} --bin {krate} --target {TARGET}").run().map_err(|e| e.to_string())?;
    }
    let out = artifacts_dir();
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let built = workspace_root().join("target").join(TARGET).join("release");
    for name in ["pv-hypervisor", "pv-guest-kernel"] {
        std::fs::copy(built.join(name), out.join(name)).map_err(|e| format!("copying {name}: {e}"))?;
    }
    let guest = std::fs::read(out.join("pv-guest-kernel")).map_err(|e| e.to_string())?;
    let bundle_path = out.join("bundle.cpio");
    std::fs::write(&bundle_path, bundle::dom0_bundle(&guest, guest_cmdline)).map_err(|e| e.to_string())?;
    Ok(Artifacts { hypervisor: out.join("pv-hypervisor"), guest: out.join("pv-guest-kernel"), bundle: bundle_path })
}

fn describe_status(code: Option<i32>) -> String {
    match code.and_then(hypercall_abi::debug_exit::ExitCode::from_qemu_status) {
        Some(exit) => format!("hypervisor exited: {}", exit.name()),
        None => format!("QEMU exited with status {code:?}"),
    }
}

fn run(sh: &Shell, guest_cmdline: &str, hv_cmdline: &str, on_xen: bool) -> Result<()> {
    let built = build(sh, guest_cmdline)?;
    qemu::check_qemu()?;
    let mut command = if on_xen {
        let xen = qemu::xen_image(&artifacts_dir())?;
        eprintln!("xtask: booting real Xen 4.17; it does not exit when dom0 powers off: press Ctrl-C");
        qemu::xen_command(&xen, &built.guest, guest_cmdline)
    } else {
        qemu::hypervisor_command(&built.hypervisor, &built.bundle, hv_cmdline)
    };
    let status = command.status().map_err(|e| e.to_string())?;
    eprintln!("xtask: {}", describe_status(status.code()));
    Ok(())
}

/// Formatting and clippy, warnings denied: the host build of every crate (tests
/// included) and the kernels' own target, whose code differs by `cfg`.
fn lint(sh: &Shell) -> Result<()> {
    cmd!(sh, "rustup component add rustfmt clippy").run().map_err(|e| e.to_string())?;
    cmd!(sh, "cargo fmt --all --check").run().map_err(|e| format!("{e}: run `cargo fmt --all`"))?;
    cmd!(sh, "cargo clippy --workspace --all-targets -- -D warnings").run().map_err(|e| e.to_string())?;
    cmd!(sh, "cargo clippy -p pv-hypervisor -p pv-guest-kernel -p hypercall-abi --target {TARGET} --release -- -D warnings")
        .run()
        .map_err(|e| e.to_string())
}

fn test(sh: &Shell) -> Result<()> {
    let started = Instant::now();
    // Every skip a test records lands here (pv_tests::skip), for the summary.
    let skip_dir = artifacts_dir().join("skipped");
    let _ = std::fs::remove_dir_all(&skip_dir);
    let _env = sh.push_env(pv_tests::skip::SKIP_DIR_VAR, &skip_dir);
    let mut steps: Vec<(&str, f64)> = Vec::new();
    let mut step = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let t = Instant::now();
        eprintln!("xtask: == {name}");
        f()?;
        steps.push((name, t.elapsed().as_secs_f64()));
        Ok(())
    };
    step("host unit tests", &mut || {
        cmd!(sh, "cargo test -p hypercall-abi -p pv-hypervisor -p pv-tests --lib").run().map_err(|e| e.to_string())?;
        cmd!(sh, "cargo test -p xtask --bins").run().map_err(|e| e.to_string())?;
        cmd!(sh, "cargo test -p ring-buffers --release").run().map_err(|e| e.to_string())
    })?;
    if !workspace_root().join("ring-buffers/tests/loom.rs").exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            return Err("ring-buffers/tests/loom.rs is missing: the loom model checks cannot run under CI".into());
        }
        let reason = "ring-buffers/tests/loom.rs is missing";
        eprintln!("SKIPPED loom model checks: {reason}");
        std::fs::create_dir_all(&skip_dir).and_then(|()| std::fs::write(skip_dir.join("loom model checks"), reason)).map_err(|e| e.to_string())?;
    } else {
        step("loom model checks", &mut || {
            let dir = workspace_root().join("target/loom");
            cmd!(sh, "cargo test -p ring-buffers --release --test loom")
                .env("RUSTFLAGS", "--cfg loom")
                .env("CARGO_TARGET_DIR", dir)
                .run()
                .map_err(|e| e.to_string())
        })?;
    }
    step("build kernels", &mut || build(sh, "hello").map(|_| ()))?;
    step("QEMU scenarios", &mut || {
        qemu::check_qemu()?;
        cmd!(sh, "cargo test -p pv-tests --test scenarios -- --test-threads=2").env("PV_ARTIFACTS", artifacts_dir()).run().map_err(|e| e.to_string())
    })?;
    eprintln!("xtask: test summary");
    for (name, secs) in &steps {
        eprintln!("  {name:<20} {secs:>7.1} s");
    }
    eprintln!("  {:<20} {:>7.1} s", "total", started.elapsed().as_secs_f64());
    let skips = pv_tests::skip::recorded(&skip_dir);
    eprintln!("  skipped: {}", skips.len());
    for (name, reason) in &skips {
        eprintln!("    SKIPPED {name}: {reason}");
    }
    Ok(())
}

fn gdb(sh: &Shell, guest_cmdline: &str) -> Result<()> {
    let built = build(sh, guest_cmdline)?;
    qemu::check_qemu()?;
    let mut command = qemu::hypervisor_command(&built.hypervisor, &built.bundle, "loglvl=debug");
    command.args(["-s", "-S"]);
    let mut child = command.spawn().map_err(|e| e.to_string())?;
    let hv = built.hypervisor.display().to_string();
    let guest = built.guest.display().to_string();
    eprintln!("xtask: QEMU waits for gdb on localhost:1234");
    eprintln!("xtask: gdb -q {hv} -ex 'add-symbol-file {guest}' -ex 'target remote :1234'");
    if cmd!(sh, "which gdb").quiet().ignore_stderr().read().is_ok() {
        let _ = cmd!(sh, "gdb -q {hv} -ex 'add-symbol-file {guest}' -ex 'target remote :1234'").run();
        let _ = child.kill();
    } else {
        eprintln!("xtask: gdb is not installed (apt-get install gdb); QEMU keeps waiting, Ctrl-C to stop");
        let _ = child.wait();
    }
    Ok(())
}
