//! The domUs a boot bundle names: `domU/NAME/kernel`, `domU/NAME/cmdline` and
//! `domU/NAME/config`, the last in xl.cfg's `key = value` form with the keys a domU
//! built at boot needs: `memory` (MiB, default 32), `weight` (1-65535, default 256, as
//! `xl sched-credit`) and `cap` (percent of one CPU, 0 = none). Every mistake is
//! refused with the file's name and the reason.

use super::bundle::Bundle;
use crate::sched::SchedParams;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

pub const DEFAULT_MEMORY_MIB: u64 = 32;
/// Small enough to build (kernel, tables, start_info), large enough to be useful.
const MEMORY_MIB: core::ops::RangeInclusive<u64> = 4..=65536;
/// A domain id is 15 bits in Xen (DOMID_FIRST_RESERVED is 0x7ff0).
pub const MAX_DOMUS: usize = 64;

/// One domU's inputs.
#[derive(Debug, PartialEq, Eq)]
pub struct DomUFiles<'a> {
    pub name: &'a str,
    pub kernel: &'a [u8],
    pub cmdline: &'a [u8],
    pub config: DomUConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomUConfig {
    pub memory_mib: u64,
    pub sched: SchedParams,
}

impl Default for DomUConfig {
    fn default() -> Self {
        DomUConfig { memory_mib: DEFAULT_MEMORY_MIB, sched: SchedParams::default() }
    }
}

/// Why a domU's inputs are refused: the bundle file and the reason.
pub type Refusal = (String, String);

/// Parses an xl.cfg-style config: `key = value` lines, `#` comments, values optionally
/// quoted.
pub fn parse_config(text: &str) -> Result<DomUConfig, String> {
    let mut config = DomUConfig::default();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| format!("line {}: expected 'key = value'", number + 1))?;
        let (key, value) = (key.trim(), value.trim().trim_matches('"'));
        let number_in = |range: core::ops::RangeInclusive<u64>| -> Result<u64, String> {
            let n: u64 = value.parse().map_err(|_| format!("line {}: {key} = '{value}' is not a number", number + 1))?;
            if range.contains(&n) {
                Ok(n)
            } else {
                Err(format!("line {}: {key} = {n} is outside {}-{}", number + 1, range.start(), range.end()))
            }
        };
        match key {
            "memory" => config.memory_mib = number_in(MEMORY_MIB)?,
            "weight" => config.sched.weight = number_in(1..=65535)? as u32,
            "cap" => config.sched.cap = number_in(0..=100)? as u32,
            other => return Err(format!("line {}: unknown key '{other}' (known: memory, weight, cap)", number + 1)),
        }
    }
    Ok(config)
}

/// Every domU in the bundle, sorted by name (their domain ids follow that order).
pub fn domu_files<'a>(bundle: &Bundle<'a>) -> Result<Vec<DomUFiles<'a>>, Refusal> {
    let mut names: Vec<&'a str> = Vec::new();
    for (path, _) in bundle.entries() {
        let Some(rest) = path.strip_prefix("domU/") else { continue };
        let Some((name, file)) = rest.split_once('/') else { continue };
        if !matches!(file, "kernel" | "cmdline" | "config") {
            return Err((path.to_string(), String::from("unknown file (a domU has kernel, cmdline and config)")));
        }
        if name.is_empty() || name.len() > 32 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err((path.to_string(), String::from("a domU name is 1-32 letters, digits, '-' or '_'")));
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.len() > MAX_DOMUS {
        return Err((String::from("bundle"), format!("{} domUs; at most {MAX_DOMUS}", names.len())));
    }
    names.sort_unstable();
    names
        .into_iter()
        .map(|name| {
            let file = |f: &str| bundle.file(&format!("domU/{name}/{f}"));
            let kernel = file("kernel").ok_or_else(|| (format!("domU/{name}/kernel"), String::from("missing from the boot bundle")))?;
            let cmdline = file("cmdline").unwrap_or(b"");
            let config = match file("config") {
                None => DomUConfig::default(),
                Some(bytes) => {
                    let text = core::str::from_utf8(bytes).map_err(|_| (format!("domU/{name}/config"), String::from("not UTF-8 text")))?;
                    parse_config(text).map_err(|reason| (format!("domU/{name}/config"), reason))?
                }
            };
            Ok(DomUFiles { name, kernel, cmdline: cmdline.strip_suffix(b"\n").unwrap_or(cmdline), config })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bundle::tests::archive;

    #[test]
    fn configs_parse_like_xl_cfg() {
        let c = parse_config("# a domU\nmemory = 64\nweight=512 # twice the default\ncap = \"50\"\n\n").unwrap();
        assert_eq!(c, DomUConfig { memory_mib: 64, sched: SchedParams { weight: 512, cap: 50 } });
        assert_eq!(parse_config("").unwrap(), DomUConfig::default());
        assert_eq!(parse_config("memory = lots").unwrap_err(), "line 1: memory = 'lots' is not a number");
        assert_eq!(parse_config("\nweight = 0").unwrap_err(), "line 2: weight = 0 is outside 1-65535");
        assert_eq!(parse_config("cap = 101").unwrap_err(), "line 1: cap = 101 is outside 0-100");
        assert_eq!(parse_config("vcpus = 2").unwrap_err(), "line 1: unknown key 'vcpus' (known: memory, weight, cap)");
        assert_eq!(parse_config("memory").unwrap_err(), "line 1: expected 'key = value'");
    }

    #[test]
    fn domus_come_sorted_with_their_files() {
        let bytes = archive(&[
            ("dom0/kernel", b"k0"),
            ("domU/web/kernel", b"kw"),
            ("domU/web/config", b"memory = 16"),
            ("domU/db/kernel", b"kd"),
            ("domU/db/cmdline", b"spin 2\n"),
        ]);
        let bundle = Bundle::parse(&bytes).unwrap();
        let domus = domu_files(&bundle).unwrap();
        assert_eq!(domus.len(), 2);
        assert_eq!((domus[0].name, domus[0].kernel, domus[0].cmdline), ("db", &b"kd"[..], &b"spin 2"[..]));
        assert_eq!(domus[1].config.memory_mib, 16);
        assert_eq!(domus[0].config, DomUConfig::default());
    }

    #[test]
    fn mistakes_name_the_file() {
        let refused = |files: &[(&str, &[u8])]| {
            let bytes = archive(files);
            domu_files(&Bundle::parse(&bytes).unwrap()).unwrap_err()
        };
        assert_eq!(refused(&[("domU/a/cmdline", b"x")]).0, "domU/a/kernel");
        assert_eq!(refused(&[("domU/a/kernel", b"k"), ("domU/a/config", b"cap = x")]).0, "domU/a/config");
        assert_eq!(refused(&[("domU/a/kernel", b"k"), ("domU/a/initrd", b"")]).0, "domU/a/initrd");
        assert_eq!(refused(&[("domU/a b/kernel", b"k")]).0, "domU/a b/kernel");
    }
}
