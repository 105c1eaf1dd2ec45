//! Finding QEMU, choosing the accelerator, and the command lines that boot our hypervisor
//! and real Xen.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const QEMU: &str = "qemu-system-x86_64";
pub const MIN_QEMU: (u32, u32) = (8, 0);
/// Debian's Xen 4.17 hypervisor image (package xen-hypervisor-4.17-amd64).
pub const XEN_IMAGE_GZ: &str = "/boot/xen-4.17-amd64.gz";
/// What Xen 4.17 prints when dom0 powers off; Xen does not end QEMU by itself.
pub const XEN_DOM0_HALTED: &str = "Hardware Dom0 halted";
/// What Xen prints when dom0 shuts down any other way (crash, reboot).
pub const XEN_DOM0_SHUTDOWN: &str = "Hardware Dom0 shutdown";

/// Parses "QEMU emulator version 10.0.2 (...)".
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("version ")? + "version ".len()..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Checks QEMU is installed and recent enough; the error says how to get it.
pub fn check_qemu() -> Result<(u32, u32), String> {
    let install = "install qemu-system-x86 >= 8.0 (on Debian 12: `apt-get install -t bookworm-backports qemu-system-x86`; Debian 12's own 7.2 mis-reports #GP error codes)";
    let out = Command::new(QEMU).arg("--version").output().map_err(|_| format!("{QEMU} not found: {install}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_version(&text).ok_or_else(|| format!("cannot read the version of {QEMU} from {text:?}"))?;
    if version < MIN_QEMU {
        return Err(format!("{QEMU} {}.{} is too old: {install}", version.0, version.1));
    }
    Ok(version)
}

/// KVM only where 64-bit PV guests can run on it: /dev/kvm usable and the CPU shows
/// vmx or svm. These machines expose a software /dev/kvm without them.
pub fn kvm_usable() -> bool {
    let device_ok = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    let cpu_ok = std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.lines().filter(|l| l.starts_with("flags")).any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm")))
        .unwrap_or(false);
    device_ok && cpu_ok
}

pub fn accelerator_args() -> Vec<String> {
    if kvm_usable() {
        ["-accel", "kvm", "-cpu", "host"].map(String::from).to_vec()
    } else {
        ["-accel", "tcg", "-cpu", "max"].map(String::from).to_vec()
    }
}

/// TCG whatever the host offers: for measurements that must say what they ran on.
pub fn tcg_args() -> Vec<String> {
    ["-accel", "tcg", "-cpu", "max"].map(String::from).to_vec()
}

/// TCG with QEMU's instruction counter: with shift=0 the virtual clock, and with it the
/// guest's TSC, advances 1 ns per guest instruction. KVM cannot count instructions.
pub fn tcg_icount_args() -> Vec<String> {
    let mut args = tcg_args();
    args.extend(["-icount", "shift=0"].map(String::from));
    args
}

/// QEMU's `microvm` machine, added after the default `pc` (QEMU takes the last
/// `-machine`): it boots our PVH entry without the BIOS, with serial and the ISA
/// debug-exit port, and without the PIC, PIT and RTC, which the hypervisor does not use.
pub const MICROVM: [&str; 2] = ["-machine", "microvm,pic=off,pit=off,rtc=off,isa-serial=on"];

fn base_command(accel: &[String]) -> Command {
    let mut cmd = Command::new(QEMU);
    cmd.args(["-machine", "pc", "-m", "512M", "-smp", "1", "-display", "none", "-no-reboot", "-monitor", "none", "-net", "none"]);
    cmd.args(accel);
    cmd
}

/// Boots our hypervisor with `bundle` as its PVH module; serial on stdout.
pub fn hypervisor_command(hypervisor: &Path, bundle: &Path, hv_cmdline: &str) -> Command {
    hypervisor_command_with(&accelerator_args(), hypervisor, bundle, hv_cmdline)
}

/// [`hypervisor_command`] with the accelerator arguments given.
pub fn hypervisor_command_with(accel: &[String], hypervisor: &Path, bundle: &Path, hv_cmdline: &str) -> Command {
    hypervisor_command_on(Serial::Plain, accel, hypervisor, bundle, hv_cmdline)
}

/// What stdin and stdout carry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    /// The serial port only.
    Plain,
    /// The serial port multiplexed with QEMU's monitor (`mon:stdio`): CTRL-a c switches
    /// between them, so a scenario can type monitor commands such as `nmi`. CTRL-a is
    /// then QEMU's, not the guest's.
    WithMonitor,
}

impl Serial {
    fn arg(self) -> &'static str {
        match self {
            Serial::Plain => "stdio",
            Serial::WithMonitor => "mon:stdio",
        }
    }
}

/// Typed on a [`Serial::WithMonitor`] console: to the monitor, its `nmi` command (an
/// NMI on every CPU, as from a front-panel button), back to the serial port.
pub const MONITOR_NMI: &[u8] = b"\x01cnmi\n\x01c";

/// [`hypervisor_command_with`], with stdio as `serial` says.
pub fn hypervisor_command_on(serial: Serial, accel: &[String], hypervisor: &Path, bundle: &Path, hv_cmdline: &str) -> Command {
    let mut cmd = base_command(accel);
    cmd.args(["-serial", serial.arg(), "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    cmd.arg("-kernel").arg(hypervisor).arg("-initrd").arg(bundle).arg("-append").arg(hv_cmdline);
    cmd
}

/// Boots real Xen with `guest` as dom0 (multiboot module; Xen strips the first word of
/// the module command line, the file name, and gives dom0 the rest).
pub fn xen_command(xen: &Path, guest: &Path, guest_cmdline: &str) -> Command {
    xen_command_with(&accelerator_args(), xen, guest, guest_cmdline)
}

/// [`xen_command`] with the accelerator arguments given.
pub fn xen_command_with(accel: &[String], xen: &Path, guest: &Path, guest_cmdline: &str) -> Command {
    xen_command_full(accel, xen, guest, guest_cmdline, None)
}

/// [`xen_command_with`], with dom0's initial ramdisk as the second multiboot module.
pub fn xen_command_full(accel: &[String], xen: &Path, guest: &Path, guest_cmdline: &str, initrd: Option<&Path>) -> Command {
    xen_command_on(Serial::Plain, accel, xen, guest, guest_cmdline, initrd)
}

/// [`xen_command_full`], with stdio as `serial` says.
pub fn xen_command_on(serial: Serial, accel: &[String], xen: &Path, guest: &Path, guest_cmdline: &str, initrd: Option<&Path>) -> Command {
    let mut cmd = base_command(accel);
    cmd.args(["-serial", serial.arg()]);
    cmd.arg("-kernel").arg(xen);
    cmd.args(["-append", "console=com1 com1=115200,8n1 dom0_mem=64M loglvl=all guest_loglvl=all noreboot"]);
    // QEMU's multiboot modules: comma-separated, a comma inside one doubled.
    let mut modules = format!("{} {}", guest.display(), guest_cmdline.replace(',', ",,"));
    if let Some(initrd) = initrd {
        modules.push_str(&format!(",{}", initrd.display().to_string().replace(',', ",,")));
    }
    cmd.arg("-initrd").arg(modules);
    cmd
}

/// The gunzipped Xen image, cached in `dir`; the error names the package to install.
pub fn xen_image(dir: &Path) -> Result<PathBuf, String> {
    let out = dir.join("xen-4.17");
    if out.exists() {
        return Ok(out);
    }
    if !Path::new(XEN_IMAGE_GZ).exists() {
        return Err(format!("{XEN_IMAGE_GZ} not found: install the Debian package xen-hypervisor-4.17-amd64"));
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let unpacked = Command::new("gzip").args(["-dc", XEN_IMAGE_GZ]).output().map_err(|e| format!("gzip: {e}"))?;
    if !unpacked.status.success() {
        return Err(format!("gzip -dc {XEN_IMAGE_GZ} failed"));
    }
    std::fs::write(&out, unpacked.stdout).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_qemu_versions() {
        assert_eq!(super::parse_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)"), Some((10, 0)));
        assert_eq!(super::parse_version("QEMU emulator version 7.2.15"), Some((7, 2)));
        assert_eq!(super::parse_version("nonsense"), None);
    }
}
