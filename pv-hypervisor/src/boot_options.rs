//! The hypervisor command line (QEMU `-append`): space-separated `name=value` options.

use core::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootOptions {
    /// `loglvl=error|warn|info|debug|trace|all` (Xen spells "all"; we map it to trace).
    pub log_level: log::LevelFilter,
    /// `dom0_mem=<size>[K|M|G]`: dom0's memory, in 4 KiB pages.
    pub dom0_pages: u64,
    /// `selftest=write-text|stack-guard|execute-data`: after the hypervisor's own
    /// protections are on, deliberately break one, to show it holds (the hypervisor
    /// must stop with a fatal page fault). `selftest=lost-debug-frame`: see
    /// [`SelfTest::LostDebugFrame`]. For the boundary scenarios.
    pub selftest: Option<SelfTest>,
    /// `trace=hypercalls[:DOMID]`: log every hypercall (of one domain) with its decoded
    /// arguments and result, and time them for the table printed at the domain's end.
    pub trace: Option<TraceHypercalls>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceHypercalls {
    All,
    Domain(u16),
}

impl TraceHypercalls {
    /// Whether domain `id`'s hypercalls are traced.
    pub fn covers(self, id: u16) -> bool {
        match self {
            TraceHypercalls::All => true,
            TraceHypercalls::Domain(traced) => traced == id,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// Write to the hypervisor's own code.
    WriteText,
    /// Touch the guard page below the hypervisor stack.
    StackGuard,
    /// Jump into the hypervisor's own data.
    ExecuteData,
    /// Just before dom0 first runs: a #DB at the #DB entry itself, over the frame of the
    /// #DB it interrupted (what `mov ss` + `int1` under a data breakpoint does on
    /// hardware). Must crash dom0 only, as the attack would.
    LostDebugFrame,
}

pub const DEFAULT_DOM0_MEM: u64 = 64 << 20;

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions { log_level: log::LevelFilter::Info, dom0_pages: DEFAULT_DOM0_MEM / 4096, selftest: None, trace: None }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct OptionError<'a> {
    pub option: &'a str,
    pub reason: &'static str,
}

impl fmt::Display for OptionError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "option '{}': {}", self.option, self.reason)
    }
}

/// Parses a size such as `64M`, `65536K`, `1G` or plain bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 10),
        b'M' | b'm' => (&text[..text.len() - 1], 20),
        b'G' | b'g' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let value: u64 = digits.parse().ok()?;
    value.checked_mul(1 << shift)
}

impl BootOptions {
    pub fn parse(cmdline: &str) -> Result<BootOptions, OptionError<'_>> {
        let mut options = BootOptions::default();
        for word in cmdline.split_ascii_whitespace() {
            let (name, value) = word.split_once('=').unwrap_or((word, ""));
            match name {
                "loglvl" => {
                    options.log_level = match value {
                        "none" => log::LevelFilter::Off,
                        "error" => log::LevelFilter::Error,
                        "warn" | "warning" => log::LevelFilter::Warn,
                        "info" => log::LevelFilter::Info,
                        "debug" => log::LevelFilter::Debug,
                        "trace" | "all" => log::LevelFilter::Trace,
                        _ => return Err(OptionError { option: word, reason: "expected none, error, warn, info, debug or all" }),
                    }
                }
                "dom0_mem" => {
                    let bytes = parse_size(value).ok_or(OptionError { option: word, reason: "expected a size such as 64M" })?;
                    if bytes < (4 << 20) {
                        return Err(OptionError { option: word, reason: "dom0 needs at least 4M" });
                    }
                    options.dom0_pages = bytes / 4096;
                }
                "selftest" => {
                    options.selftest = Some(match value {
                        "write-text" => SelfTest::WriteText,
                        "stack-guard" => SelfTest::StackGuard,
                        "execute-data" => SelfTest::ExecuteData,
                        "lost-debug-frame" => SelfTest::LostDebugFrame,
                        _ => return Err(OptionError { option: word, reason: "expected write-text, stack-guard, execute-data or lost-debug-frame" }),
                    });
                }
                "trace" => {
                    let bad = OptionError { option: word, reason: "expected hypercalls or hypercalls:DOMID" };
                    options.trace = Some(match value.split_once(':') {
                        None if value == "hypercalls" => TraceHypercalls::All,
                        Some(("hypercalls", domain)) => TraceHypercalls::Domain(domain.trim_start_matches('d').parse().map_err(|_| bad)?),
                        _ => return Err(bad),
                    });
                }
                // Unknown options are ignored, as Xen does, so shared command lines work.
                _ => log::warn!("ignoring unknown option '{word}'"),
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_options() {
        let o = BootOptions::parse("loglvl=debug dom0_mem=32M console=com1").unwrap();
        assert_eq!(o.log_level, log::LevelFilter::Debug);
        assert_eq!(o.dom0_pages, 32 * 256);
        assert_eq!(BootOptions::parse("").unwrap(), BootOptions::default());
        assert_eq!(parse_size("65536K"), Some(64 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("99999999999999999999G"), None);
    }

    #[test]
    fn bad_values_name_the_option() {
        let e = BootOptions::parse("dom0_mem=lots").unwrap_err();
        assert_eq!(e.option, "dom0_mem=lots");
        assert!(BootOptions::parse("dom0_mem=1M").is_err());
        assert_eq!(BootOptions::parse("selftest=stack-guard").unwrap().selftest, Some(SelfTest::StackGuard));
        assert_eq!(BootOptions::parse("selftest=lost-debug-frame").unwrap().selftest, Some(SelfTest::LostDebugFrame));
        assert!(BootOptions::parse("selftest=everything").is_err());
        assert!(BootOptions::parse("loglvl=loud").unwrap_err().to_string().contains("loglvl=loud"));
        assert_eq!(BootOptions::parse("trace=hypercalls").unwrap().trace, Some(TraceHypercalls::All));
        assert_eq!(BootOptions::parse("trace=hypercalls:d3").unwrap().trace, Some(TraceHypercalls::Domain(3)));
        assert_eq!(BootOptions::parse("trace=hypercalls:0").unwrap().trace, Some(TraceHypercalls::Domain(0)));
        assert!(TraceHypercalls::All.covers(7) && TraceHypercalls::Domain(3).covers(3) && !TraceHypercalls::Domain(3).covers(0));
        assert!(BootOptions::parse("trace=everything").is_err());
        assert!(BootOptions::parse("trace=hypercalls:dx").is_err());
    }
}
