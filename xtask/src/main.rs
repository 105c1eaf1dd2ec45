//! `cargo xtask`: the one entry point for building, running, testing, benchmarking and
//! debugging. Run `cargo xtask --help`.

mod bench;
mod fuzz;
mod install;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pv_tests::{bundle, qemu};
use std::path::{Path, PathBuf};
use std::time::Instant;
use xshell::{cmd, Shell};

const TARGET: &str = "x86_64-unknown-none";

/// The README's examples, shown by `cargo xtask --help` too.
const EXAMPLES: &str = "\
examples:
  cargo xtask run                                   boot dom0 = our guest, command `hello`
  cargo xtask run --guest-cmdline fault             another guest command (see `run --help`)
  cargo xtask run --xen                             the same guest as dom0 on real Xen 4.17
  cargo xtask run --kernel vmlinux --cmdline 'console=hvc0' --memory 512
                                                    boot your own Xen PV ELF kernel as dom0
  cargo xtask test                                  every host test and QEMU scenario
  cargo xtask bench hypercall --runs 7              ours vs real Xen, medians of 7 runs";

/// The guest commands `--guest-cmdline` can name.
const GUEST_COMMANDS: &str = "guest commands: hello (default), fault [MS], badptr, hypercall-count, traps, privops, \
usermode, hypercalls, memory, ptwr, mmu-attack, mmu-stress [ROUNDS], pagetables, balloon [MIB], heap [MIB], descriptors, \
ldt, evtchn-ops, evtchn-upcall, evtchn-pingpong PEER N, nmi, initrd, sched-ops, watchdog-then-spin TIMEOUT SECONDS, time, sleep [MS], spin [SECONDS], spin-until MS, console-flood [MIB [DELAY_MS]], console-echo [N], watch-domains [N], entry-attacks, entry-attack NAME, bench-hypercall [N], bench-mmu [N], bench-events [N], bench-switch [N], \
fuzz SEED COUNT [trace=I]";

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "Build, run, test, benchmark and debug the PV hypervisor", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Never install missing prerequisites (QEMU, Xen, cpio); say what is missing
    /// instead. Also: PV_NO_INSTALL=1
    #[arg(long, global = true)]
    no_install: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Build the hypervisor and guest (`kernel` profile, x86_64-unknown-none) into target/pv/, plus
    /// target/pv/bundle.cpio (dom0 = our guest)
    Build {
        /// Command line of our guest kernel, put in the bundle
        #[arg(long, default_value = "hello")]
        guest_cmdline: String,
    },
    /// Build, then boot with the serial console on this terminal
    #[command(after_help = GUEST_COMMANDS)]
    Run(RunArgs),
    /// Host unit tests of every crate, then every QEMU scenario (real Xen included)
    Test,
    /// rustfmt check and clippy with warnings denied, host crates and the kernels' target
    Lint,
    /// Measurements: tables on stdout, JSON in target/bench/
    Bench {
        /// boot: boot-to-greeting time; rings: ring-buffer throughput; hypercall: null
        /// hypercall, exception bounce + iret, user syscall; mmu: mmu_update of one PTE,
        /// of 64, update_va_mapping, writable-page-table store; events: event send (masked,
        /// with upcall), set_timer_op (ours vs real Xen under TCG, plus ours' instruction
        /// counts under -icount), then the interdomain round trip and the domain switch
        /// (ours only: two domUs)
        #[arg(value_enum, default_value_t = Benchmark::All)]
        which: Benchmark,
        /// Paired rounds (ours, then Xen) for hypercall and mmu; medians are reported
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        runs: Option<u64>,
    },
    /// Boot with dom0 fuzzing hypercalls and privileged instructions; prints the summary
    /// and calls per second
    Fuzz {
        /// Calls to make
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print every call from this iteration on
        #[arg(long)]
        trace_from: Option<u64>,
    },
    /// Boot with QEMU waiting for gdb on :1234, symbols loaded
    Gdb {
        #[arg(long, default_value = "hello")]
        guest_cmdline: String,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Command line of our guest kernel (dom0): the check it runs
    #[arg(long, default_value = "hello", conflicts_with = "kernel")]
    guest_cmdline: String,
    /// The hypervisor's command line (loglvl=, dom0_mem=)
    #[arg(long, default_value = "loglvl=info")]
    hv_cmdline: String,
    /// Boot the same dom0 on real Xen 4.17 instead
    #[arg(long)]
    xen: bool,
    /// Boot this Xen PV ELF kernel as dom0 instead of our guest
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// The command line for --kernel
    #[arg(long, requires = "kernel", value_name = "STR")]
    cmdline: Option<String>,
    /// dom0's initial ramdisk (start_info's module; on real Xen the second module)
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// dom0's memory in MiB (the machine gets 256 MiB more); our hypervisor only
    #[arg(long, value_name = "MIB", conflicts_with = "xen", value_parser = clap::value_parser!(u64).range(1..))]
    memory: Option<u64>,
    /// QEMU machine type for our hypervisor: microvm boots without the BIOS
    #[arg(long, value_enum, default_value_t = Machine::Pc, conflicts_with = "xen")]
    machine: Machine,
    /// Also start a domU running our guest kernel (repeatable), e.g.
    /// `--domu web,memory=16,weight=512,cap=50:spin 2`
    #[arg(long = "domu", value_name = "NAME[,memory=MIB][,weight=W][,cap=PCT][:COMMAND]", conflicts_with = "xen")]
    domus: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Machine {
    Pc,
    Microvm,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Benchmark {
    Boot,
    Rings,
    Hypercall,
    Mmu,
    Events,
    All,
}

type Result<T> = std::result::Result<T, String>;

fn main() {
    let cli = Cli::parse();
    if let Err(e) = dispatch(cli.command, cli.no_install) {
        eprintln!("xtask: {e}");
        std::process::exit(1);
    }
}

fn dispatch(command: Command, no_install: bool) -> Result<()> {
    let sh = Shell::new().map_err(|e| e.to_string())?;
    sh.change_dir(workspace_root());
    // What the command boots, installed first if missing (install.rs).
    let want = match &command {
        Command::Build { .. } | Command::Lint => None,
        Command::Run(args) if !args.xen => Some(install::Want::Qemu),
        Command::Gdb { .. } | Command::Fuzz { .. } => Some(install::Want::Qemu),
        Command::Bench { which: Benchmark::Rings, .. } => None,
        Command::Run(_) | Command::Test | Command::Bench { .. } => Some(install::Want::QemuAndXen),
    };
    if let Some(want) = want {
        install::ensure(want, no_install)?;
    }
    match command {
        Command::Build { guest_cmdline } => build(&sh, &guest_cmdline).map(|_| ()),
        Command::Run(args) => run(&sh, &args),
        Command::Test => test(&sh),
        Command::Lint => lint(&sh),
        Command::Bench { which, runs } => bench::bench(&sh, which, runs.map(|r| r as usize)),
        Command::Gdb { guest_cmdline } => gdb(&sh, &guest_cmdline),
        Command::Fuzz { count, seed, trace_from } => fuzz::fuzz(&sh, count, seed, trace_from),
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
        cmd!(sh, "cargo build --profile kernel -p {krate} --bin {krate} --target {TARGET}").run().map_err(|e| e.to_string())?;
    }
    let out = artifacts_dir();
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let built = workspace_root().join("target").join(TARGET).join("kernel");
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

fn run(sh: &Shell, args: &RunArgs) -> Result<()> {
    let built = build(sh, &args.guest_cmdline)?;
    qemu::check_qemu()?;
    // dom0: our guest with its command, or the user's kernel with its own.
    // A bzImage is unpacked here for our hypervisor (real Xen takes it as it is).
    let (kernel, dom0_cmdline, unpacked) = match &args.kernel {
        Some(path) => {
            let elf = check_pv_kernel(path)?;
            (path.clone(), args.cmdline.clone().unwrap_or_default(), Some(elf))
        }
        None => (built.guest.clone(), args.guest_cmdline.clone(), None),
    };
    let mut command = if args.xen {
        let xen = qemu::xen_image(&artifacts_dir())?;
        eprintln!("xtask: booting real Xen 4.17; it does not exit when dom0 powers off: press Ctrl-C");
        qemu::xen_command_full(&qemu::accelerator_args(), &xen, &kernel, &dom0_cmdline, args.initrd.as_deref())
    } else {
        let bundle_path = if args.kernel.is_some() || !args.domus.is_empty() || args.initrd.is_some() {
            let image = match unpacked {
                Some(elf) => elf,
                None => std::fs::read(&kernel).map_err(|e| format!("{}: {e}", kernel.display()))?,
            };
            let guest = std::fs::read(&built.guest).map_err(|e| e.to_string())?;
            let domus = args.domus.iter().map(|spec| bundle::parse_domu_option(spec)).collect::<Result<Vec<_>>>()?;
            let path = artifacts_dir().join("run-kernel.cpio");
            let mut writer =
                bundle::NewcWriter::new().directory("dom0").file(bundle::DOM0_KERNEL, &image).file(bundle::DOM0_CMDLINE, dom0_cmdline.as_bytes());
            if let Some(path) = &args.initrd {
                let initrd = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                writer = writer.file("dom0/initrd", &initrd);
            }
            for (name, config, cmdline) in &domus {
                let dir = format!("domU/{name}");
                writer = writer
                    .file(&format!("{dir}/kernel"), &guest)
                    .file(&format!("{dir}/cmdline"), cmdline.as_bytes())
                    .file(&format!("{dir}/config"), config.as_bytes());
            }
            std::fs::write(&path, writer.finish()).map_err(|e| e.to_string())?;
            path
        } else {
            built.bundle.clone()
        };
        let mut hv_cmdline = args.hv_cmdline.clone();
        if let Some(mib) = args.memory {
            hv_cmdline.push_str(&format!(" dom0_mem={mib}M"));
        }
        let mut command = qemu::hypervisor_command(&built.hypervisor, &bundle_path, &hv_cmdline);
        if let Some(mib) = args.memory {
            command.args(["-m", &format!("{}M", mib + 256)]);
        }
        if args.machine == Machine::Microvm {
            command.args(qemu::MICROVM);
        }
        command
    };
    let status = command.status().map_err(|e| e.to_string())?;
    eprintln!("xtask: {}", describe_status(status.code()));
    Ok(())
}

/// A kernel the hypervisor would refuse is refused here first, naming the file and the
/// reason in one line, with the hypervisor's own parser.
/// A Linux bzImage or compressed ELF is unpacked first (`pv_tests::kernel_image`, as
/// Xen unpacks it): the ELF image that goes into the bundle is returned.
fn check_pv_kernel(path: &Path) -> Result<Vec<u8>> {
    use pv_hypervisor::domain::elf_image::{AlignedImage, GuestImage};
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let refused = |reason: &dyn std::fmt::Display| format!("{}: not a Xen PV kernel we can boot: {reason}", path.display());
    let elf = pv_tests::kernel_image::pv_elf(&bytes).map_err(|e| refused(&e))?;
    let aligned = AlignedImage::new(&elf).map_err(|e| refused(&e))?;
    GuestImage::parse(aligned.bytes()).map_err(|e| refused(&e))?;
    Ok(elf)
}

/// Formatting and clippy, warnings denied: the host build of every crate (tests
/// included) and the kernels' own target, whose code differs by `cfg`.
fn lint(sh: &Shell) -> Result<()> {
    ensure_target(sh)?;
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
        // The ABI's doctests include the compile-fail proofs that a guest handle cannot
        // be fetched twice or bypassed.
        cmd!(sh, "cargo test -p hypercall-abi --doc").run().map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn typos_and_unknown_options_are_errors() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("cargo xtask").chain(args.iter().copied()));
        assert!(parse(&["run", "--guest-cmdlin", "fault"]).is_err());
        assert!(parse(&["run", "--cmdline", "x"]).is_err(), "--cmdline needs --kernel");
        assert!(parse(&["run", "--xen", "--memory", "64"]).is_err());
        assert!(parse(&["bench", "hypercal"]).is_err());
        assert!(parse(&["bench", "hypercall", "--runs", "0"]).is_err());
        let Command::Run(run) = parse(&["run", "--kernel", "vmlinux", "--cmdline", "console=hvc0", "--memory", "512"]).unwrap().command else {
            panic!("not run")
        };
        assert_eq!((run.kernel.as_deref(), run.cmdline.as_deref(), run.memory), (Some(Path::new("vmlinux")), Some("console=hvc0"), Some(512)));
        assert!(matches!(parse(&["fuzz", "--count", "10", "--seed", "3"]).unwrap().command, Command::Fuzz { count: 10, seed: 3, trace_from: None }));
    }

    #[test]
    fn a_file_that_is_not_a_pv_kernel_is_named_with_the_reason() {
        let readme = workspace_root().join("README.md");
        let error = check_pv_kernel(&readme).unwrap_err();
        assert!(error.starts_with(&format!("{}: not a Xen PV kernel", readme.display())), "{error}");
        assert!(error.contains("neither ELF nor a payload in gzip, xz or zstd"), "{error}");
        assert!(check_pv_kernel(Path::new("/no/such/kernel")).unwrap_err().starts_with("/no/such/kernel: "));
    }
}
