//! What `run` and `test` need on the machine, installed when it is missing: QEMU >= 8.0,
//! and for the real-Xen comparison the Xen 4.17 hypervisor package and cpio. Each step
//! is printed before it runs, as root directly and otherwise through sudo.
//! `--no-install` or `PV_NO_INSTALL=1` turns it off; on a system we do not know how to
//! install on, one message names exactly what to install. A missing QEMU stops the
//! command; a missing Xen or cpio is a warning, and the tests that need them skip.

use pv_tests::qemu;
use std::path::Path;
use std::process::Command;

/// Set (to anything but empty or 0) to never install.
pub const NO_INSTALL_VAR: &str = "PV_NO_INSTALL";
const XEN_IMAGE_GZ: &str = "/boot/xen-4.17-amd64.gz";
const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/pv-hypervisor-backports.sources";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// QEMU only (`run`).
    Qemu,
    /// QEMU, real Xen and cpio (`test`, `run --xen`, `bench`).
    QemuAndXen,
}

/// The systems we install on, from /etc/os-release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// Debian 12: QEMU from bookworm-backports (its own 7.2 is too old).
    DebianBookworm,
    /// Debian 13 or later, Ubuntu 24.04 or later: QEMU >= 8 in the main archive.
    AptWithRecentQemu,
    Other,
}

pub fn system_from_os_release(text: &str) -> System {
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(|v| v.trim_matches('"'));
    let version = field("VERSION_ID").and_then(|v| v.split('.').next()?.parse::<u32>().ok()).unwrap_or(0);
    match field("ID") {
        Some("debian") if field("VERSION_CODENAME") == Some("bookworm") || version == 12 => System::DebianBookworm,
        Some("debian") if version >= 13 || field("VERSION_CODENAME").is_some_and(|c| c == "trixie" || c == "sid") => System::AptWithRecentQemu,
        Some("ubuntu") if version >= 24 => System::AptWithRecentQemu,
        _ => System::Other,
    }
}

/// The apt steps that install what is missing, in order (each a command line).
pub fn plan(system: System, qemu_ok: bool, xen_ok: bool, cpio_ok: bool, want: Want) -> Result<Vec<Vec<String>>, String> {
    let mut packages: Vec<&str> = Vec::new();
    let mut steps: Vec<Vec<String>> = Vec::new();
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let need_xen = want == Want::QemuAndXen;
    if qemu_ok && (!need_xen || (xen_ok && cpio_ok)) {
        return Ok(steps);
    }
    if system == System::Other {
        let mut missing = Vec::new();
        if !qemu_ok {
            missing.push("QEMU >= 8.0 (qemu-system-x86_64)");
        }
        if need_xen && !xen_ok {
            missing.push("the Xen 4.17 hypervisor image at /boot/xen-4.17-amd64.gz (Debian: xen-hypervisor-4.17-amd64)");
        }
        if need_xen && !cpio_ok {
            missing.push("cpio");
        }
        return Err(format!("cannot install on this system (not Debian 12+ or Ubuntu 24.04+); install {}", missing.join(", ")));
    }
    if !qemu_ok && system == System::DebianBookworm {
        steps.push(vec!["write".into(), BACKPORTS_SOURCE.into()]);
    }
    steps.push(words("apt-get update -q"));
    if !qemu_ok && system == System::DebianBookworm {
        steps.push(words("apt-get install -y -q -t bookworm-backports qemu-system-x86"));
    } else if !qemu_ok {
        packages.push("qemu-system-x86");
    }
    if need_xen && !xen_ok {
        packages.push("xen-hypervisor-4.17-amd64");
    }
    if need_xen && !cpio_ok {
        packages.push("cpio");
    }
    if !packages.is_empty() {
        let mut step = words("apt-get install -y -q");
        step.extend(packages.iter().map(|p| p.to_string()));
        steps.push(step);
    }
    Ok(steps)
}

/// Whether apt already knows bookworm-backports (from any sources file).
fn backports_configured() -> bool {
    let mention = |path: &Path| std::fs::read_to_string(path).is_ok_and(|t| t.contains("bookworm-backports"));
    mention(Path::new("/etc/apt/sources.list"))
        || std::fs::read_dir("/etc/apt/sources.list.d").is_ok_and(|dir| dir.flatten().any(|entry| mention(&entry.path())))
}

fn installing_allowed(no_install_flag: bool) -> bool {
    let env_off = std::env::var(NO_INSTALL_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    !no_install_flag && !env_off
}

fn have(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs what `want` needs and is missing (or says what to install), then checks.
pub fn ensure(want: Want, no_install_flag: bool) -> Result<(), String> {
    let qemu_ok = qemu::check_qemu().is_ok();
    let xen_ok = Path::new(XEN_IMAGE_GZ).exists();
    let cpio_ok = have("cpio");
    let system = system_from_os_release(&std::fs::read_to_string("/etc/os-release").unwrap_or_default());
    // Without Xen or cpio the tests that need them still run, and say SKIPPED (or fail
    // under CI, pv_tests::skip): only a missing QEMU stops everything.
    let warn = |what: &str| eprintln!("xtask: warning: {what}; the tests that need it will say SKIPPED (and fail under CI)");
    let steps = match plan(system, qemu_ok, xen_ok, cpio_ok, want) {
        Err(missing) if qemu_ok => {
            warn(&missing);
            return Ok(());
        }
        other => other?,
    };
    if steps.is_empty() {
        return Ok(());
    }
    if !installing_allowed(no_install_flag) && qemu_ok {
        warn("real Xen or cpio is missing and installing is off (--no-install or PV_NO_INSTALL)");
        return Ok(());
    }
    if !installing_allowed(no_install_flag) {
        let what: Vec<String> = steps
            .iter()
            .map(|s| if s[0] == "write" { "add the bookworm-backports suite to apt's sources".to_string() } else { s.join(" ") })
            .collect();
        return Err(format!("missing prerequisites and installing is off (--no-install or {NO_INSTALL_VAR}); as root run: {}", what.join("; ")));
    }
    let sudo = if is_root() {
        None
    } else if have("sudo") {
        Some("sudo")
    } else {
        return Err("missing prerequisites, and not root with no sudo to install them".into());
    };
    for step in &steps {
        if step[0] == "write" && backports_configured() {
            continue;
        }
        if step[0] == "write" {
            eprintln!("xtask: install: adding bookworm-backports to apt's sources ({})", step[1]);
            let source = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
            let mut command = Command::new(sudo.unwrap_or("tee"));
            if sudo.is_some() {
                command.arg("tee");
            }
            let mut child =
                command.arg(&step[1]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().map_err(|e| e.to_string())?;
            use std::io::Write;
            child.stdin.take().map(|mut i| i.write_all(source.as_bytes())).transpose().map_err(|e| e.to_string())?;
            if !child.wait().map_err(|e| e.to_string())?.success() {
                return Err(format!("could not write {}", step[1]));
            }
            continue;
        }
        eprintln!("xtask: install: {}{}", sudo.map_or(String::new(), |s| format!("{s} ")), step.join(" "));
        let mut command = Command::new(sudo.unwrap_or(&step[0]));
        command.args(if sudo.is_some() { &step[..] } else { &step[1..] }).env("DEBIAN_FRONTEND", "noninteractive");
        let status = command.status().map_err(|e| e.to_string())?;
        // xen-hypervisor's post-install script complains outside Xen but the package
        // installs; the checks below are what count.
        if !status.success() && !step.iter().any(|w| w.starts_with("xen-hypervisor")) {
            return Err(format!("`{}` failed", step.join(" ")));
        }
    }
    qemu::check_qemu()?;
    if want == Want::QemuAndXen && !Path::new(XEN_IMAGE_GZ).exists() {
        return Err(format!("{XEN_IMAGE_GZ} is still missing after installing xen-hypervisor-4.17-amd64"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_systems() {
        let debian12 = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n";
        assert_eq!(system_from_os_release(debian12), System::DebianBookworm);
        assert_eq!(system_from_os_release("ID=ubuntu\nVERSION_ID=\"24.04\"\n"), System::AptWithRecentQemu);
        assert_eq!(system_from_os_release("ID=ubuntu\nVERSION_ID=\"22.04\"\n"), System::Other);
        assert_eq!(system_from_os_release("ID=debian\nVERSION_ID=\"13\"\n"), System::AptWithRecentQemu);
        assert_eq!(system_from_os_release("ID=fedora\nVERSION_ID=40\n"), System::Other);
        assert_eq!(system_from_os_release(""), System::Other);
    }

    #[test]
    fn plans_only_what_is_missing() {
        assert!(plan(System::DebianBookworm, true, true, true, Want::QemuAndXen).unwrap().is_empty());
        assert!(plan(System::Other, true, false, false, Want::Qemu).unwrap().is_empty(), "run needs no Xen");
        let steps = plan(System::DebianBookworm, false, true, true, Want::Qemu).unwrap();
        let lines: Vec<String> = steps.iter().map(|s| s.join(" ")).collect();
        assert_eq!(lines[0], format!("write {BACKPORTS_SOURCE}"));
        assert_eq!(lines[1], "apt-get update -q");
        assert_eq!(lines[2], "apt-get install -y -q -t bookworm-backports qemu-system-x86");
        assert_eq!(lines.len(), 3);
        let steps = plan(System::AptWithRecentQemu, false, false, false, Want::QemuAndXen).unwrap();
        assert_eq!(steps.last().unwrap().join(" "), "apt-get install -y -q qemu-system-x86 xen-hypervisor-4.17-amd64 cpio");
        let refused = plan(System::Other, false, false, true, Want::QemuAndXen).unwrap_err();
        assert!(refused.contains("QEMU >= 8.0") && refused.contains("xen-4.17") && !refused.contains("cpio"), "{refused}");
    }
}
