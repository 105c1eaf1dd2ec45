//! The machine-readable lines guests and the hypervisor print:
//! `... RESULT key=value key="quoted value" ...`.

use std::collections::BTreeMap;

pub type ResultLine = BTreeMap<String, String>;

/// Parses the part of `line` after `RESULT `, if any.
pub fn parse_line(line: &str) -> Option<ResultLine> {
    let text = line[line.find("RESULT ")? + "RESULT ".len()..].trim();
    let mut fields = BTreeMap::new();
    let mut at = 0;
    while let Some(eq) = text[at..].find('=').map(|i| at + i) {
        let key = text[at..eq].trim().to_string();
        let value_start = eq + 1;
        let (value, next) = if text[value_start..].starts_with('"') {
            let close = text[value_start + 1..].find('"').map_or(text.len(), |i| value_start + 1 + i);
            (&text[value_start + 1..close], (close + 1).min(text.len()))
        } else {
            let end = text[value_start..].find(' ').map_or(text.len(), |i| value_start + i);
            (&text[value_start..end], end)
        };
        fields.insert(key, value.to_string());
        at = next + (text[next..].len() - text[next..].trim_start().len());
    }
    Some(fields)
}

/// Every RESULT line of a log, in order.
pub fn parse_log(log: &str) -> Vec<ResultLine> {
    log.lines().filter_map(parse_line).collect()
}

/// The first RESULT line whose fields include all of `wanted`.
pub fn find<'a>(results: &'a [ResultLine], wanted: &[(&str, &str)]) -> Option<&'a ResultLine> {
    results.iter().find(|r| wanted.iter().all(|(k, v)| r.get(*k).map(String::as_str) == Some(*v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bare_and_quoted_values_after_any_prefix() {
        let r = parse_line("(d0) RESULT event=greeting nr_pages=16384 flags=0x3 cmd_line=\"hello world\" x=1").unwrap();
        assert_eq!(r["event"], "greeting");
        assert_eq!(r["nr_pages"], "16384");
        assert_eq!(r["cmd_line"], "hello world");
        assert_eq!(r["x"], "1");
        let r = parse_line("(hv) RESULT event=boot_error file=dom0/kernel reason=\"not an ELF file (bad magic)\"").unwrap();
        assert_eq!(r["reason"], "not an ELF file (bad magic)");
        assert_eq!(r["file"], "dom0/kernel");
    }

    #[test]
    fn ignores_other_lines_and_finds_by_fields() {
        let log = "(hv) starting\n(d0) RESULT test=hello status=pass\r\n(hv) RESULT event=exit code=poweroff\n";
        let results = parse_log(log);
        assert_eq!(results.len(), 2);
        assert!(find(&results, &[("test", "hello"), ("status", "pass")]).is_some());
        assert!(find(&results, &[("test", "hello"), ("status", "fail")]).is_none());
        assert_eq!(parse_line("no result here"), None);
        assert_eq!(parse_line("RESULT ").map(|r| r.len()), Some(0));
    }
}
