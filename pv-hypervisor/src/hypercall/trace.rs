//! `trace=hypercalls`: one line per hypercall, with its decoded arguments and result,
//! like xentrace; and the per-domain table of counts and time at the domain's end.
//! Formatting only: `arch` decides when to trace and measures the time.

use crate::domain::COUNTED_HYPERCALLS;
use core::fmt;
use hypercall_abi::{Errno, HypercallInfo};

/// `name(arg=value, ...) = result` for hypercall `number` with its argument registers.
pub struct Call {
    pub number: u64,
    pub args: [u64; 6],
    pub result: i64,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match HypercallInfo::lookup(self.number) {
            Some(info) => {
                write!(f, "{}(", info.name)?;
                for (i, ((name, ty), value)) in info.args.iter().zip(self.args).enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    // Integers by value, addresses and raw words in hex.
                    match *ty {
                        "u32" => write!(f, "{sep}{name}={}", value as u32)?,
                        "u16" => write!(f, "{sep}{name}={}", value as u16)?,
                        _ => write!(f, "{sep}{name}={value:#x}")?,
                    }
                }
                write!(f, ")")?;
            }
            None => write!(
                f,
                "hypercall_{}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x})",
                self.number, self.args[0], self.args[1], self.args[2], self.args[3], self.args[4], self.args[5]
            )?,
        }
        match Errno::check(self.result) {
            Err(e) => write!(f, " = {} ({e:?})", self.result),
            Ok(v) => write!(f, " = {v:#x}"),
        }
    }
}

/// One table row per hypercall number the domain made: name, count and, when it was
/// traced, the TSC cycles spent in them.
pub fn table_rows<'a>(counts: &'a [u64; COUNTED_HYPERCALLS + 1], cycles: &'a [u64; COUNTED_HYPERCALLS]) -> impl Iterator<Item = Row> + 'a {
    (0..COUNTED_HYPERCALLS).filter(|&n| counts[n] > 0).map(|n| Row {
        name: HypercallInfo::lookup(n as u64).map_or("unknown", |i| i.name),
        number: n as u64,
        count: counts[n],
        cycles: cycles[n],
    })
}

pub struct Row {
    pub name: &'static str,
    pub number: u64,
    pub count: u64,
    pub cycles: u64,
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<22} {:>3} {:>10}", self.name, self.number, self.count)?;
        if self.cycles > 0 {
            write!(f, " {:>14} {:>10}", self.cycles, self.cycles / self.count)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercall_abi::nr;
    use std::format;

    #[test]
    fn decodes_arguments_and_results() {
        let call = Call { number: nr::xen_version, args: [0, 0, 0, 0, 0, 0], result: 0x4_0011 };
        assert_eq!(format!("{call}"), "xen_version(cmd=0, arg=0x0) = 0x40011");
        let call = Call { number: nr::mmu_update, args: [0x1000, 3, 0, 0x7ff0, 9, 9], result: -22 };
        assert_eq!(format!("{call}"), "mmu_update(requests=0x1000, count=3, done_out=0x0, foreign_domid=32752) = -22 (EINVAL)");
        let call = Call { number: 63, args: [1, 2, 3, 4, 5, 6], result: -38 };
        assert_eq!(format!("{call}"), "hypercall_63(0x1, 0x2, 0x3, 0x4, 0x5, 0x6) = -38 (ENOSYS)");
    }

    #[test]
    fn the_table_lists_what_was_called() {
        let mut counts = [0u64; COUNTED_HYPERCALLS + 1];
        let mut cycles = [0u64; COUNTED_HYPERCALLS];
        counts[nr::console_io as usize] = 4;
        cycles[nr::console_io as usize] = 4000;
        counts[nr::sched_op as usize] = 1;
        let rows: std::vec::Vec<std::string::String> = table_rows(&counts, &cycles).map(|r| format!("{r}")).collect();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].starts_with("console_io") && rows[0].ends_with(" 1000"), "{}", rows[0]);
        assert!(rows[1].starts_with("sched_op") && rows[1].trim_end().ends_with('1'), "{}", rows[1]);
    }
}
