//! The `xl list`-style table of domains (Name, ID, Mem MiB, VCPUs, State, Time(s)),
//! printed when a domain stops; the state column uses xl's six letters (r running,
//! b blocked, p paused, s shutdown, c crashed, d dying), '-' where unset.

use super::{Domain, DomainState};
use core::fmt::{self, Write};

pub const HEADER: &str = "Name                                        ID   Mem VCPUs\tState\tTime(s)";

/// One row, for `domain` having used `cpu_ns` of CPU time.
pub fn write_row(out: &mut impl Write, domain: &Domain, blocked: bool, cpu_ns: u64) -> fmt::Result {
    let mut state = *b"------";
    match domain.state {
        DomainState::Running if blocked => state[1] = b'b',
        DomainState::Running => state[0] = b'r',
        DomainState::Shutdown(_) => state[3] = b's',
        DomainState::Crashed => state[4] = b'c',
    }
    let state = core::str::from_utf8(&state).unwrap_or("------");
    let mib = domain.tot_pages * 4096 / (1024 * 1024);
    let tenths = cpu_ns / 100_000_000;
    write!(out, "{:<40} {:>5} {:>5} {:>5}     {state} {:>9}.{}", domain.name, domain.id, mib, 1, tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::test_support::TestGuest;
    use hypercall_abi::ops::sched_op::ShutdownReason;

    fn row(domain: &Domain, blocked: bool, cpu_ns: u64) -> std::string::String {
        let mut out = std::string::String::new();
        write_row(&mut out, domain, blocked, cpu_ns).unwrap();
        out
    }

    #[test]
    fn rows_look_like_xl_list() {
        let mut g = TestGuest::new();
        g.domain.tot_pages = 16384;
        let running = row(&g.domain, false, 12_345_000_000);
        assert!(running.starts_with("test "));
        let fields: std::vec::Vec<&str> = running.split_whitespace().collect();
        assert_eq!(fields, ["test", "0", "64", "1", "r-----", "12.3"]);
        assert!(row(&g.domain, true, 0).contains(" -b---- "));
        g.domain.state = DomainState::Shutdown(ShutdownReason::Poweroff);
        assert!(row(&g.domain, false, 0).contains(" ---s-- "));
        g.domain.state = DomainState::Crashed;
        assert!(row(&g.domain, false, 0).contains(" ----c- "));
        // The header's columns line up with the row's.
        assert_eq!(HEADER.find("ID").map(|i| i + 2), Some(46));
        assert_eq!(running.find(" 0 ").map(|i| i + 2), Some(46));
    }
}
