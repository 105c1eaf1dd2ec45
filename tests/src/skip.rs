//! Skipping a check whose prerequisite is missing, visibly. Under CI (`CI=true`) a skip
//! is a failure: nothing may pass there by not running. Elsewhere the skip is printed
//! and recorded as a file in `$PV_SKIP_DIR` (set by `cargo xtask test`), whose summary
//! counts and lists them: a passing test's own output is hidden by the test runner.

use std::path::PathBuf;

/// The environment variable naming the folder skips are recorded in.
pub const SKIP_DIR_VAR: &str = "PV_SKIP_DIR";

/// Records that `name` did not run because of `reason`; panics under CI.
pub fn skip(name: &str, reason: &str) {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{name}: cannot be skipped under CI ({reason})");
    eprintln!("SKIPPED {name}: {reason}");
    if let Some(dir) = std::env::var_os(SKIP_DIR_VAR).map(PathBuf::from) {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(name), reason);
    }
}

/// The skips recorded in `dir`, as (name, reason), sorted by name.
pub fn recorded(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut skips: Vec<(String, String)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(entry.path()).unwrap_or_default()))
        .collect();
    skips.sort();
    skips
}
