//! Boots one QEMU scenario and collects what happened: the serial log (also saved to a
//! file), the parsed RESULT lines, the exit status, and when the greeting appeared.

use crate::results::{parse_log, ResultLine};
use hypercall_abi::debug_exit::ExitCode;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Options {
    pub timeout: Duration,
    /// Stop QEMU once a line contains this (real Xen never exits QEMU by itself).
    pub stop_on: Vec<&'static str>,
    /// Record when the first line containing this appears.
    pub mark: Option<&'static str>,
    /// Where to save the log.
    pub log_path: Option<PathBuf>,
    /// Typed on the serial console: once a line contains the first text, the bytes
    /// ([`TYPING_DELAY`] later).
    pub input: Vec<(&'static str, &'static [u8])>,
}

/// How long after its trigger line input is typed: a guest prints the line just before
/// it waits (reads, blocks), and the bytes must find it waiting, not on its way there,
/// however slowly a loaded host runs the guest meanwhile.
pub const TYPING_DELAY: Duration = Duration::from_millis(300);

pub struct Outcome {
    pub log: String,
    pub results: Vec<ResultLine>,
    /// QEMU's exit status; `None` if we stopped it (stop line or timeout).
    pub status: Option<i32>,
    pub timed_out: bool,
    pub stopped_on: Option<String>,
    pub mark_after: Option<Duration>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn exit_code(&self) -> Option<ExitCode> {
        self.status.and_then(ExitCode::from_qemu_status)
    }

    /// The last lines of the log, for failure messages.
    pub fn tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

pub fn run(mut command: Command, options: &Options) -> Result<Outcome, String> {
    let started = Instant::now();
    let mut child = command
        .stdin(if options.input.is_empty() { Stdio::null() } else { Stdio::piped() })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stdin = child.stdin.take();
    let mut typed = 0;
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            if lines_tx.send(String::from_utf8_lossy(&line).trim_end_matches('\r').to_string()).is_err() {
                break;
            }
        }
    });

    let mut log = String::new();
    let mut mark_after = None;
    let mut stopped_on = None;
    let mut timed_out = false;
    loop {
        let left = options.timeout.saturating_sub(started.elapsed());
        match lines_rx.recv_timeout(left) {
            Ok(line) => {
                if mark_after.is_none() && options.mark.is_some_and(|m| line.contains(m)) {
                    mark_after = Some(started.elapsed());
                }
                if let (Some((after, bytes)), Some(input)) = (options.input.get(typed), stdin.as_mut()) {
                    if line.contains(after) {
                        use std::io::Write;
                        std::thread::sleep(TYPING_DELAY);
                        let _ = input.write_all(bytes).and_then(|()| input.flush());
                        typed += 1;
                    }
                }
                let stop = options.stop_on.iter().find(|s| line.contains(**s)).map(|s| s.to_string());
                log.push_str(&line);
                log.push('\n');
                if stop.is_some() {
                    stopped_on = stop;
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = if stopped_on.is_some() || timed_out {
        let _ = child.kill();
        let _ = child.wait();
        None
    } else {
        child.wait().map_err(|e| e.to_string())?.code()
    };
    let _ = reader.join();
    if let Some(path) = &options.log_path {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(path, &log);
    }
    Ok(Outcome { results: parse_log(&log), log, status, timed_out, stopped_on, mark_after, elapsed: started.elapsed() })
}
