//! `cargo xtask bench rings`: messages per second between two threads, our I/O ring
//! beside `rtrb` (a well-known SPSC queue crate), measured in the same run.
//!
//! A message is a request the back end consumes and answers, as in a split driver (a
//! Xen ring slot is free again only once its response is consumed); the reference does
//! the same over two rtrb queues (requests, responses) of the ring's capacity. Rows:
//! one message per publish vs batches of 32, with and without the notification rule and
//! final checks. Runs alternate ours/reference and the best of several is kept, since
//! the machine is shared. Usage: `cargo bench -p ring-buffers --bench rings -- --json PATH`.

use ring_buffers::{BackRing, FrontRing, Page};
use std::time::Instant;

const MESSAGES: u64 = 4_000_000;
const RUNS: usize = 5;

type Msg = [u64; 2];

struct Row {
    name: &'static str,
    batch: usize,
    notify_checks: bool,
}

/// One run of ours: (messages/s, notifications the rule asked for).
fn ours(batch: usize, notify_checks: bool) -> (f64, u64) {
    let page = Page::new();
    FrontRing::<Msg, Msg>::init(page.words()).unwrap();
    let start = Instant::now();
    let notifications = std::thread::scope(|s| {
        let page = &page;
        let server = s.spawn(move || {
            let mut back = BackRing::<Msg, Msg>::attach(page.words()).unwrap();
            let (mut served, mut notifications) = (0, 0u64);
            while served < MESSAGES {
                let mut taken = 0;
                while taken < batch {
                    let Some(request) = back.poll_request().unwrap() else {
                        break;
                    };
                    back.push_response(&[request[0], !request[1]]).unwrap();
                    taken += 1;
                }
                served += taken as u64;
                if taken > 0 {
                    if notify_checks {
                        notifications += back.publish_responses() as u64;
                    } else {
                        back.publish_responses_no_notify();
                    }
                } else if notify_checks {
                    // A real back end would sleep here unless work arrived.
                    let _ = back.final_check_for_requests().unwrap();
                }
            }
            notifications
        });
        let mut front = FrontRing::<Msg, Msg>::attach_at(page.words(), 0).unwrap();
        let (mut sent, mut answered, mut checksum, mut notifications) = (0u64, 0u64, 0u64, 0u64);
        while answered < MESSAGES {
            let mut pushed = 0;
            while pushed < batch && sent < MESSAGES && front.push_request(&[sent, !sent]).is_ok() {
                sent += 1;
                pushed += 1;
            }
            if pushed > 0 {
                if notify_checks {
                    notifications += front.publish_requests() as u64;
                } else {
                    front.publish_requests_no_notify();
                }
            }
            let mut got = 0;
            while let Some(response) = front.poll_response().unwrap() {
                checksum |= (response[0] ^ answered) | (response[0] ^ response[1]);
                answered += 1;
                got += 1;
            }
            if got == 0 && pushed == 0 && notify_checks {
                let _ = front.final_check_for_responses().unwrap();
            }
        }
        assert_eq!(checksum, 0, "every response answers its request, in order");
        notifications + server.join().unwrap()
    });
    (MESSAGES as f64 / start.elapsed().as_secs_f64(), notifications)
}

/// One run of the reference: the same traffic over two rtrb queues, using rtrb's chunk
/// API for batches (its fastest path) and push/pop for single messages.
fn reference(batch: usize, capacity: usize) -> f64 {
    let (mut req_tx, mut req_rx) = rtrb::RingBuffer::<Msg>::new(capacity);
    let (mut rsp_tx, mut rsp_rx) = rtrb::RingBuffer::<Msg>::new(capacity);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut served = 0;
            while served < MESSAGES {
                if batch == 1 {
                    if let Ok(request) = req_rx.pop() {
                        while rsp_tx.push([request[0], !request[1]]).is_err() {}
                        served += 1;
                    }
                    continue;
                }
                let n = req_rx.slots().min(batch);
                if n == 0 {
                    continue;
                }
                let mut requests = [[0u64; 2]; 64];
                let chunk = req_rx.read_chunk(n).unwrap();
                for (slot, request) in requests.iter_mut().zip(chunk) {
                    *slot = request;
                }
                let chunk = loop {
                    if let Ok(chunk) = rsp_tx.write_chunk_uninit(n) {
                        break chunk;
                    }
                };
                chunk.fill_from_iter(requests[..n].iter().map(|r| [r[0], !r[1]]));
                served += n as u64;
            }
        });
        let (mut sent, mut answered, mut checksum) = (0u64, 0u64, 0u64);
        while answered < MESSAGES {
            if batch == 1 {
                if sent < MESSAGES && req_tx.push([sent, !sent]).is_ok() {
                    sent += 1;
                }
                while let Ok(response) = rsp_rx.pop() {
                    checksum |= (response[0] ^ answered) | (response[0] ^ response[1]);
                    answered += 1;
                }
                continue;
            }
            let n = (batch as u64).min(MESSAGES - sent) as usize;
            let n = n.min(req_tx.slots());
            if n > 0 {
                let chunk = req_tx.write_chunk_uninit(n).unwrap();
                sent += chunk.fill_from_iter((sent..sent + n as u64).map(|i| [i, !i])) as u64;
            }
            let ready = rsp_rx.slots();
            if ready > 0 {
                for response in rsp_rx.read_chunk(ready).unwrap() {
                    checksum |= (response[0] ^ answered) | (response[0] ^ response[1]);
                    answered += 1;
                }
            }
        }
        assert_eq!(checksum, 0, "every response answers its request, in order");
    });
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json_path = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1)).cloned();
    let slots = FrontRing::<Msg, Msg>::attach_at(Page::new().words(), 0).unwrap().slots() as usize;
    let rows = [
        Row { name: "single, notify checks", batch: 1, notify_checks: true },
        Row { name: "single, no notify checks", batch: 1, notify_checks: false },
        Row { name: "batched 32, notify checks", batch: 32, notify_checks: true },
        Row { name: "batched 32, no notify checks", batch: 32, notify_checks: false },
    ];
    println!("{MESSAGES} request/response messages between two threads, 16-byte messages, {slots} slots, best of {RUNS}");
    println!("{:<30} {:>14} {:>14} {:>7} {:>16}", "row", "ours msg/s", "rtrb msg/s", "ratio", "notifies/1k msg");
    let mut entries = Vec::new();
    for row in &rows {
        let (mut best_ours, mut best_theirs, mut notifications) = (0f64, 0f64, 0u64);
        for _ in 0..RUNS {
            let (rate, notified) = ours(row.batch, row.notify_checks);
            if rate > best_ours {
                (best_ours, notifications) = (rate, notified);
            }
            best_theirs = best_theirs.max(reference(row.batch, slots));
        }
        let ratio = best_ours / best_theirs;
        let per_k = notifications as f64 * 1000.0 / MESSAGES as f64;
        let shown = if row.notify_checks { format!("{per_k:.2}") } else { "-".into() };
        println!("{:<30} {best_ours:>14.0} {best_theirs:>14.0} {ratio:>7.2} {shown:>16}", row.name);
        entries.push(serde_json::json!({
            "row": row.name,
            "batch": row.batch,
            "notify_checks": row.notify_checks,
            "ours_msgs_per_s": best_ours.round(),
            "rtrb_msgs_per_s": best_theirs.round(),
            "ratio": ratio,
            "notifications_per_1k_msgs": if row.notify_checks { Some(per_k) } else { None },
        }));
    }
    let json = serde_json::json!({
        "benchmark": "rings",
        "messages_per_run": MESSAGES,
        "runs": RUNS,
        "slots": slots,
        "reference": "rtrb 0.3",
        "rows": entries,
    });
    let json = serde_json::to_string_pretty(&json).expect("plain numbers and strings serialise") + "\n";
    if let Some(path) = json_path {
        let path = std::path::Path::new(&path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).expect("create the JSON directory");
        }
        std::fs::write(path, json).expect("write the JSON");
        println!("written: {}", path.display());
    }
}
