//! Event channels on the guest side: shared_info mapped where the kernel can reach it,
//! the event callback registered, and the upcall handler that demultiplexes pending
//! ports (the 2-level scan Linux does: take the vCPU's selector, then each selected
//! word's pending and unmasked bits), counting what it saw for the checks.

use crate::console::println;
use crate::platform;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use hypercall_abi::shared_info::{SharedInfo, VcpuTimeInfo};
use hypercall_abi::start_info::StartInfo;

/// Where shared_info is mapped (an otherwise unused page of the lower half).
const SHARED_INFO_VA: u64 = 0x7f00_0000_0000;
/// The pseudo-vector the event callback's entry stub records (traps.rs).
pub const CALLBACK_EVENT: u64 = 0x100;

static MAPPED: AtomicBool = AtomicBool::new(false);
/// Upcalls taken, ports seen, the last port, and whether every upcall ran with events
/// masked (as the hypervisor must arrange).
pub static UPCALLS: AtomicU64 = AtomicU64::new(0);
pub static PORTS_SEEN: AtomicU64 = AtomicU64::new(0);
pub static LAST_PORT: AtomicU64 = AtomicU64::new(u64::MAX);
pub static MASKED_IN_EVERY_UPCALL: AtomicBool = AtomicBool::new(true);
/// How often each of the first 64 ports was seen.
pub static SEEN_PER_PORT: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

/// shared_info, mapped on first use.
pub fn shared_info(info: &StartInfo) -> Option<*mut SharedInfo> {
    if !MAPPED.load(SeqCst) {
        crate::mm::with(|m| {
            let kernel = m.kernel_space().l4();
            m.map(kernel, SHARED_INFO_VA, info.shared_info >> 12, crate::mm::DATA)
        })
        .ok()?;
        MAPPED.store(true, SeqCst);
    }
    Some(SHARED_INFO_VA as *mut SharedInfo)
}

/// Registers the event callback (events stay masked until the caller unmasks them).
pub fn register_callback() -> i64 {
    use hypercall_abi::ops::callback::CALLBACKTYPE_EVENT;
    let entry = crate::traps::callback_entry(CALLBACKTYPE_EVENT).unwrap_or(0);
    platform::register_callback(CALLBACKTYPE_EVENT, entry, true)
}

/// vCPU 0's evtchn_upcall_mask now, if shared_info is mapped.
pub fn upcall_mask() -> Option<u8> {
    let shared = MAPPED.load(SeqCst).then_some(SHARED_INFO_VA as *const SharedInfo)?;
    // SAFETY: mapped at SHARED_INFO_VA (MAPPED); a byte read of the guest's own flag.
    Some(unsafe { core::ptr::addr_of!((*shared).vcpu_info[0].evtchn_upcall_mask).read_volatile() })
}

/// The upcall: called from the event callback's stub with events masked.
pub fn upcall() {
    let Some(shared) = MAPPED.load(SeqCst).then_some(SHARED_INFO_VA as *mut SharedInfo) else {
        println!("event upcall before shared_info was mapped");
        return;
    };
    UPCALLS.fetch_add(1, SeqCst);
    // SAFETY: shared_info is mapped writable at SHARED_INFO_VA (MAPPED); the hypervisor
    // writes it only while we are in a hypercall or trap (one vCPU), and the fields
    // touched here are the guest's to clear.
    unsafe {
        let vcpu = core::ptr::addr_of_mut!((*shared).vcpu_info[0]);
        if core::ptr::addr_of!((*vcpu).evtchn_upcall_mask).read_volatile() == 0 {
            MASKED_IN_EVERY_UPCALL.store(false, SeqCst);
        }
        core::ptr::addr_of_mut!((*vcpu).evtchn_upcall_pending).write_volatile(0);
        let selector_at = core::ptr::addr_of_mut!((*vcpu).evtchn_pending_sel);
        let selector = selector_at.read_volatile();
        selector_at.write_volatile(0);
        for word in (0..64).filter(|w| selector & (1 << w) != 0) {
            let pending_at = core::ptr::addr_of_mut!((*shared).evtchn_pending[word]);
            let ready = pending_at.read_volatile() & !core::ptr::addr_of!((*shared).evtchn_mask[word]).read_volatile();
            pending_at.write_volatile(pending_at.read_volatile() & !ready);
            for bit in (0..64).filter(|b| ready & (1 << b) != 0) {
                PORTS_SEEN.fetch_add(1, SeqCst);
                LAST_PORT.store((word * 64 + bit) as u64, SeqCst);
                if let Some(count) = SEEN_PER_PORT.get(word * 64 + bit) {
                    count.fetch_add(1, SeqCst);
                }
            }
        }
    }
}

/// A consistent copy of vCPU 0's vcpu_time_info: retried while the version is odd or
/// changes under us (the hypervisor's update protocol, xen.h).
pub fn time_info(shared: *const SharedInfo) -> VcpuTimeInfo {
    loop {
        // SAFETY: `shared` is the shared_info mapping from `shared_info`; the loop
        // follows the version protocol, so a torn copy is never returned.
        let (before, info, after) = unsafe {
            let at = core::ptr::addr_of!((*shared).vcpu_info[0].time);
            let before = core::ptr::addr_of!((*at).version).read_volatile();
            let info = at.read_volatile();
            (before, info, core::ptr::addr_of!((*at).version).read_volatile())
        };
        if before % 2 == 0 && before == after {
            return info;
        }
    }
}

/// System time now (ns since the hypervisor booted), from our own TSC.
pub fn now_ns(shared: *const SharedInfo) -> u64 {
    // SAFETY: rdtsc is allowed in ring 3 (CR4.TSD clear on both hypervisors).
    let tsc = unsafe { core::arch::x86_64::_rdtsc() };
    time_info(shared).system_time_at(tsc)
}
