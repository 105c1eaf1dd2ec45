//! Debian's stock kernel (package linux-image-amd64: built with CONFIG_XEN_PV, it boots
//! as a PV dom0 on real Xen 4.17), fetched with `apt-get download` and unpacked with
//! `dpkg-deb` into a cache folder the first time the `linux` scenario needs it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let output = command.output().map_err(|e| format!("{what}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{what} failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The vmlinuz (a bzImage) of Debian's current linux-image-amd64, in `cache`.
pub fn vmlinuz(cache: &Path) -> Result<PathBuf, String> {
    let boot = cache.join("root/boot");
    if let Some(found) = find_vmlinuz(&boot) {
        return Ok(found);
    }
    std::fs::create_dir_all(cache).map_err(|e| e.to_string())?;
    // The meta package names the versioned one it depends on.
    run(Command::new("apt-get").args(["download", "-q", "linux-image-amd64"]).current_dir(cache), "apt-get download linux-image-amd64")?;
    let meta = deb_in(cache, "linux-image-amd64_").ok_or("no linux-image-amd64 .deb after apt-get download")?;
    let depends = run(Command::new("dpkg-deb").args(["-f"]).arg(&meta).arg("Depends"), "dpkg-deb -f")?;
    let package = depends
        .split([',', ' ', '('])
        .find(|word| word.starts_with("linux-image-") && word.as_bytes().get(12).is_some_and(u8::is_ascii_digit))
        .ok_or_else(|| format!("linux-image-amd64 depends on no versioned image: {depends}"))?
        .to_string();
    run(Command::new("apt-get").args(["download", "-q", &package]).current_dir(cache), &format!("apt-get download {package}"))?;
    let deb = deb_in(cache, &format!("{package}_")).ok_or_else(|| format!("no {package} .deb after apt-get download"))?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(cache.join("root")), "dpkg-deb -x")?;
    find_vmlinuz(&boot).ok_or_else(|| format!("{package} holds no /boot/vmlinuz-*"))
}

fn deb_in(dir: &Path, prefix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        name.starts_with(prefix) && name.ends_with(".deb")
    })
}

fn find_vmlinuz(boot: &Path) -> Option<PathBuf> {
    std::fs::read_dir(boot).ok()?.flatten().map(|e| e.path()).find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
}
