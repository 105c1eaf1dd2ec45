//! Differential conformance: the same guest command on our hypervisor and on real Xen,
//! compared RESULT line by RESULT line, field by field. Xen is the reference: any
//! difference fails, except the fields [`HYPERVISOR_SPECIFIC`] lists with a reason.

use crate::results::{parse_line, ResultLine};
use std::collections::BTreeMap;

/// Fields allowed to differ, as (test, check, field, why). `check` "*" means every
/// check of that test.
pub const HYPERVISOR_SPECIFIC: &[(&str, &str, &str, &str)] = &[
    ("sleep", "slept", "elapsed_ms", "the time each run actually slept, which timer slack and QEMU's pace vary; woke_on_time bounds it"),
    ("hypercalls", "xen_version_get_features_submap_0", "submap", "Xen 4.17 (0x228f0) also offers gnttab_map_avail_bits and memory_op_vnode_supported; grant tables and vNUMA are not implemented here (0x208b0)"),
    ("sleep", "slept", "from_ms", "system time when the sleep began: when the boot got there"),
    ("sleep", "slept", "until_ms", "system time when the sleep ended"),
    (
        "time",
        "wall_time",
        "unix_seconds",
        "the moment each run reads the clock; the time_conforms_to_xen scenario compares it with the host's clock instead",
    ),
    ("privops", "cpuid_vendor", "vendor", "not compared at all: reported for the log (both run on the same QEMU CPU, so it matches anyway)"),
    (
        "privops",
        "smsw_value",
        "value",
        "smsw shows the real CR0, whose TS bit on Xen is its own lazy-FPU state of the moment (0x3b), not the guest's",
    ),
];

/// Where a RESULT line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Hypervisor,
    Guest(u16),
    Unknown,
}

/// Attributes a log line: on pv-hypervisor the hypervisor prefixes its own lines with
/// `(hv) ` and every guest line with `(dN) `; a guest cannot print a line that starts
/// with `(hv) ` (its output always gets its own prefix). On Xen, Xen's lines start with
/// `(XEN) ` and dom0's console output has no prefix.
pub fn source_of(line: &str) -> Source {
    if line.starts_with("(hv) ") || line.starts_with("(XEN) ") {
        return Source::Hypervisor;
    }
    if let Some(rest) = line.strip_prefix("(d") {
        if let Some((id, _)) = rest.split_once(") ") {
            if let Ok(id) = id.parse() {
                return Source::Guest(id);
            }
        }
    }
    if line.contains("RESULT ") {
        return Source::Guest(0);
    }
    Source::Unknown
}

/// dom0's RESULT lines with a `check` field, keyed by (test, check), in log order.
pub fn guest_checks(log: &str) -> Vec<((String, String), ResultLine)> {
    log.lines()
        .filter(|l| source_of(l) == Source::Guest(0))
        .filter_map(parse_line)
        .filter_map(|r| Some(((r.get("test")?.clone(), r.get("check")?.clone()), r)))
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
pub struct Difference {
    pub test: String,
    pub check: String,
    pub field: String,
    pub ours: Option<String>,
    pub xen: Option<String>,
}

#[derive(Debug, Default)]
pub struct Comparison {
    /// Checks whose every compared field matched.
    pub matching: Vec<(String, String)>,
    pub differences: Vec<Difference>,
}

fn specific(test: &str, check: &str, field: &str) -> bool {
    HYPERVISOR_SPECIFIC.iter().any(|(t, c, f, _)| *t == test && (*c == check || *c == "*") && *f == field)
}

/// Compares every check either side printed.
pub fn compare(ours: &str, xen: &str) -> Comparison {
    let ours: BTreeMap<_, _> = guest_checks(ours).into_iter().collect();
    let xen: BTreeMap<_, _> = guest_checks(xen).into_iter().collect();
    let mut result = Comparison::default();
    let keys: std::collections::BTreeSet<_> = ours.keys().chain(xen.keys()).cloned().collect();
    for key in keys {
        let (test, check) = &key;
        let (Some(a), Some(b)) = (ours.get(&key), xen.get(&key)) else {
            let present = |side: &BTreeMap<_, _>| side.contains_key(&key).then(|| "printed".to_string());
            result.differences.push(Difference {
                test: test.clone(),
                check: check.clone(),
                field: "(the whole check)".into(),
                ours: present(&ours),
                xen: present(&xen),
            });
            continue;
        };
        let fields: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).cloned().collect();
        let before = result.differences.len();
        for field in fields {
            if specific(test, check, &field) {
                continue;
            }
            if a.get(&field) != b.get(&field) {
                result.differences.push(Difference {
                    test: test.clone(),
                    check: check.clone(),
                    ours: a.get(&field).cloned(),
                    xen: b.get(&field).cloned(),
                    field,
                });
            }
        }
        if result.differences.len() == before {
            result.matching.push(key);
        }
    }
    result
}

impl Comparison {
    pub fn report(&self) -> String {
        let mut out = format!("{} checks match Xen, {} differences\n", self.matching.len(), self.differences.len());
        for d in &self.differences {
            out += &format!(
                "  {} {}: {} is {} here, {} on Xen\n",
                d.test,
                d.check,
                d.field,
                d.ours.as_deref().unwrap_or("(absent)"),
                d.xen.as_deref().unwrap_or("(absent)")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "(hv) starting\n\
        (d0) RESULT test=traps check=a vector=3 rip=next status=pass\n\
        (d0) RESULT test=traps check=b vector=13 error_code=0x0 status=pass\n\
        (d0) RESULT test=privops check=cpuid_vendor vendor=GenuineIntel\n\
        (hv) RESULT test=traps check=c vector=1\n";
    const XEN: &str = "(XEN) Xen version 4.17\n\
        RESULT test=traps check=a vector=3 rip=next status=pass\n\
        RESULT test=traps check=b vector=13 error_code=0x42a status=pass\n\
        RESULT test=privops check=cpuid_vendor vendor=AuthenticAMD\n\
        RESULT test=traps check=d vector=6\n";

    #[test]
    fn attributes_lines_to_their_source() {
        assert_eq!(source_of("(hv) RESULT event=exit"), Source::Hypervisor);
        assert_eq!(source_of("(XEN) RESULT x=1"), Source::Hypervisor);
        assert_eq!(source_of("(d3) RESULT test=x"), Source::Guest(3));
        assert_eq!(source_of("RESULT test=x"), Source::Guest(0));
        assert_eq!(source_of("plain text"), Source::Unknown);
        // A guest printing "(hv) RESULT ..." arrives as "(d0) (hv) RESULT ...".
        assert_eq!(source_of("(d0) (hv) RESULT event=domain_shutdown"), Source::Guest(0));
    }

    #[test]
    fn compares_field_by_field_and_skips_specific_fields() {
        let c = compare(OURS, XEN);
        assert_eq!(c.matching.len(), 2, "{}", c.report()); // a, and cpuid_vendor (vendor skipped)
        let fields: Vec<_> = c.differences.iter().map(|d| (d.check.as_str(), d.field.as_str())).collect();
        assert_eq!(fields, [("b", "error_code"), ("d", "(the whole check)")]);
        assert!(c.report().contains("traps d: (the whole check) is (absent) here, printed on Xen"), "{}", c.report());
        // Lines from the hypervisor itself are never compared.
        assert!(!c.differences.iter().any(|d| d.check == "c"));
    }
}
