//! `console-echo N`: dom0's side of the serial console. Binds VIRQ_CONSOLE and
//! VIRQ_DEBUG, says it is ready, then blocks until N typed bytes have arrived (read
//! with CONSOLEIO_read after each VIRQ_CONSOLE) and the hypervisor's `q` debug key has
//! raised VIRQ_DEBUG, or 30 s passed; reports what it got.

use super::evtchn_ops::{map_shared_info, op};
use crate::console::println;
use crate::events::{now_ns, SEEN_PER_PORT};
use core::sync::atomic::Ordering::SeqCst;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::console_io::CONSOLEIO_READ;
use hypercall_abi::ops::event_channel::*;
use hypercall_abi::ops::sched_op::SCHEDOP_BLOCK;
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::{GuestArray, GuestHandle};

const GIVE_UP_NS: u64 = 30_000_000_000;

fn bind(virq: u32) -> Option<u32> {
    let mut bind = EvtchnBindVirq { virq, vcpu: 0, port: 0 };
    (op(EVTCHNOP_BIND_VIRQ, &mut bind) == 0).then_some(bind.port)
}

pub fn run(info: &StartInfo, command: &str) {
    let Some(wanted) = super::numeric_argument("console-echo", command, 5, 1..=64) else { return };
    let Some(shared) = map_shared_info(info) else { return };
    if crate::traps::install() != 0 || crate::events::register_callback() != 0 {
        println!("RESULT test=console-echo status=fail reason=callbacks");
        return;
    }
    let (Some(console), Some(debug), Some(timer)) = (bind(VIRQ_CONSOLE), bind(VIRQ_DEBUG), bind(VIRQ_TIMER)) else {
        println!("RESULT test=console-echo status=fail reason=bind-virq");
        return;
    };
    let count = |port: u32| SEEN_PER_PORT.get(port as usize).map_or(0, |c| c.load(SeqCst));
    let time = shared.0 as *const hypercall_abi::shared_info::SharedInfo;
    let give_up = now_ns(time) + GIVE_UP_NS;
    let mut got = [0u8; 64];
    let mut have = 0usize;
    let _ = timer;
    println!("RESULT test=console-echo check=ready");
    // Events masked while checking: an event that comes after the check leaves its
    // upcall pending, and SCHEDOP_block (which enables events) then returns at once.
    shared.set_upcall_mask(true);
    while (have < wanted as usize || count(debug) == 0) && now_ns(time) < give_up {
        // SAFETY: `got[have..]` is writable for the call's count.
        let n = unsafe { calls::console_io(CONSOLEIO_READ, (wanted as usize - have) as u32, GuestArray::from_mut_slice(&mut got[have..])) };
        if n > 0 {
            have += n as usize;
            continue;
        }
        // SAFETY: set_timer_op and block take no pointer; the timer bounds the wait.
        unsafe {
            calls::set_timer_op(give_up);
            calls::sched_op(SCHEDOP_BLOCK, GuestHandle::NULL);
        }
        shared.set_upcall_mask(true);
    }
    shared.set_upcall_mask(true);
    let text = core::str::from_utf8(&got[..have]).unwrap_or("?");
    let pass = have == wanted as usize && count(console) > 0 && count(debug) > 0;
    println!(
        "RESULT test=console-echo status={} got=\"{text}\" console_virqs={} debug_virqs={}",
        if pass { "pass" } else { "fail" },
        count(console),
        count(debug)
    );
}
