//! `cargo xtask bench rings`: messages per second between two threads, our I/O ring
//! beside `rtrb` (a well-known SPSC queue), in the same run.
//!
//! Every message is a request the back end consumes and answers, as in a split driver;
//! the reference does the same over two rtrb queues (requests, responses) of the same
//! capacity. Rows: one message per publish vs batches, with and without the
//! notification check. Usage: `cargo bench -p ring-buffers --bench rings -- --json PATH`.

use ring_buffers::io_ring::{BackRing, FrontRing};
use ring_buffers::shared::Page;
use std::time::Instant;

const MESSAGES: u64 = 5_000_000;
const BATCH: u64 = 32;

type Msg = [u64; 2];

fn ours(batch: u64, notify_checks: bool) -> f64 {
    let page = Page::new();
    FrontRing::<Msg, Msg>::init(page.words());
    let start = Instant::now();
    std::thread::scope(|s| {
        let page = &page;
        s.spawn(move || {
            let mut back = BackRing::<Msg, Msg>::attach(page.words());
            let mut served = 0;
            while served < MESSAGES {
                let mut any = false;
                while let Some(request) = back.poll_request().unwrap() {
                    back.push_response(&request).unwrap();
                    served += 1;
                    any = true;
                }
                if any {
                    if notify_checks {
                        back.publish_responses();
                    } else {
                        back.publish_responses_no_notify();
                    }
                }
                if notify_checks && !any {
                    let _ = back.final_check_for_requests();
                }
            }
        });
        let mut front = FrontRing::<Msg, Msg>::attach_at(page.words(), 0);
        let (mut sent, mut answered, mut checksum) = (0u64, 0u64, 0u64);
        while answered < MESSAGES {
            let mut pushed = 0;
            while pushed < batch && sent < MESSAGES && front.push_request(&[sent, !sent]).is_ok() {
                sent += 1;
                pushed += 1;
            }
            if pushed > 0 {
                if notify_checks {
                    front.publish_requests();
                } else {
                    front.publish_requests_no_notify();
                }
            }
            while let Some(response) = front.poll_response().unwrap() {
                checksum = checksum.wrapping_add(response[0]);
                answered += 1;
            }
        }
        assert_eq!(checksum, MESSAGES * (MESSAGES - 1) / 2);
    });
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

fn reference(batch: u64, capacity: usize) -> f64 {
    let (mut req_tx, mut req_rx) = rtrb::RingBuffer::<Msg>::new(capacity);
    let (mut rsp_tx, mut rsp_rx) = rtrb::RingBuffer::<Msg>::new(capacity);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut served = 0;
            while served < MESSAGES {
                while let Ok(request) = req_rx.pop() {
                    while rsp_tx.push(request).is_err() {}
                    served += 1;
                }
            }
        });
        let (mut sent, mut answered, mut checksum) = (0u64, 0u64, 0u64);
        while answered < MESSAGES {
            let mut pushed = 0;
            if batch == 1 {
                if sent < MESSAGES && req_tx.push([sent, !sent]).is_ok() {
                    sent += 1;
                }
            } else {
                let n = (batch.min(MESSAGES - sent) as usize).min(req_tx.slots());
                if n > 0 {
                    if let Ok(chunk) = req_tx.write_chunk_uninit(n) {
                        let first = sent;
                        pushed = chunk.fill_from_iter((first..first + n as u64).map(|i| [i, !i])) as u64;
                        sent += pushed;
                    }
                }
            }
            let _ = pushed;
            let ready = rsp_rx.slots();
            if ready > 0 {
                if let Ok(chunk) = rsp_rx.read_chunk(ready) {
                    for response in chunk.into_iter() {
                        checksum = checksum.wrapping_add(response[0]);
                        answered += 1;
                    }
                }
            }
        }
        assert_eq!(checksum, MESSAGES * (MESSAGES - 1) / 2);
    });
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

fn best_of(runs: usize, f: impl Fn() -> f64) -> f64 {
    (0..runs).map(|_| f()).fold(0.0, f64::max)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json_path = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1)).cloned();
    let slots = FrontRing::<Msg, Msg>::attach_at(Page::new().words(), 0).slots() as usize;
    let rows = [
        ("single, notify checks", 1, true),
        ("single, no notify checks", 1, false),
        ("batched 32, notify checks", BATCH, true),
        ("batched 32, no notify checks", BATCH, false),
    ];
    println!("{MESSAGES} request/response messages between two threads, {slots} slots, best of 5");
    println!("{:<30} {:>14} {:>14} {:>8}", "row", "ours msg/s", "rtrb msg/s", "ratio");
    let mut json = String::from("{\n  \"messages\": ");
    json.push_str(&format!("{MESSAGES},\n  \"slots\": {slots},\n  \"rows\": [\n"));
    for (i, (name, batch, notify)) in rows.iter().enumerate() {
        let ours = best_of(5, || ours(*batch, *notify));
        let theirs = best_of(5, || reference(*batch, slots));
        let ratio = ours / theirs;
        println!("{name:<30} {ours:>14.0} {theirs:>14.0} {ratio:>8.2}");
        json.push_str(&format!(
            "    {{\"row\": \"{name}\", \"ours_msgs_per_s\": {ours:.0}, \"rtrb_msgs_per_s\": {theirs:.0}, \"ratio\": {ratio:.3}}}{}\n",
            if i + 1 < rows.len() { "," } else { "" }
        ));
    }
    json.push_str("  ]\n}\n");
    if let Some(path) = json_path {
        let path = std::path::Path::new(&path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the JSON directory");
        }
        std::fs::write(path, json).expect("write the JSON");
        println!("written: {}", path.display());
    }
}
