//! Event channels on the guest side: shared_info mapped where the kernel can reach it,
//! the event callback registered, and the upcall handler that demultiplexes pending
//! ports (the 2-level scan Linux does: take the vCPU's selector, then each selected
//! word's pending and unmasked bits), counting what it saw for the checks and calling
//! the handler bound to each port. [`EventsMasked`] is the PV kernel's `cli`/`sti`.

use crate::console::println;
use crate::platform;
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
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
/// The handler of each of the first 64 ports (a `fn(u32)` as usize; 0: none).
static HANDLERS: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

/// Calls `handler` from the upcall whenever `port` is pending (ports 0-63).
pub fn set_handler(port: u32, handler: fn(u32)) -> bool {
    HANDLERS.get(port as usize).map(|slot| slot.store(handler as usize, SeqCst)).is_some()
}

pub fn clear_handler(port: u32) {
    if let Some(slot) = HANDLERS.get(port as usize) {
        slot.store(0, SeqCst);
    }
}

/// vCPU 0's event mask held set for a scope: the virtual interrupt flag, which a PV
/// kernel uses where a native one has `cli` and `sti` (those trap in ring 3). Dropping
/// it restores the mask it found; when that unmasks events with an upcall pending, the
/// upcall is taken at once (any hypercall: the hypervisor delivers it on the way out),
/// as Linux's xen_restore_fl does, so an event that came while masked is not late.
pub struct EventsMasked {
    restore: u8,
}

impl EventsMasked {
    /// None before shared_info is mapped ([`shared_info`]).
    pub fn new() -> Option<Self> {
        let vcpu = vcpu0()?;
        // SAFETY: vCPU 0's vcpu_info in the mapped shared_info; the mask byte is the
        // guest's, and only this vCPU (us, or our upcall, which restores it) writes it.
        let restore = unsafe {
            let mask = core::ptr::addr_of_mut!((*vcpu).evtchn_upcall_mask);
            let old = mask.read_volatile();
            mask.write_volatile(1);
            old
        };
        // The critical section's accesses stay after the mask is set.
        compiler_fence(SeqCst);
        Some(EventsMasked { restore })
    }
}

impl Drop for EventsMasked {
    fn drop(&mut self) {
        compiler_fence(SeqCst);
        let Some(vcpu) = vcpu0() else { return };
        // SAFETY: as in `new`.
        let pending = unsafe {
            core::ptr::addr_of_mut!((*vcpu).evtchn_upcall_mask).write_volatile(self.restore);
            compiler_fence(SeqCst);
            core::ptr::addr_of!((*vcpu).evtchn_upcall_pending).read_volatile()
        };
        if self.restore == 0 && pending != 0 {
            let _ = platform::hypervisor_version();
        }
    }
}

fn vcpu0() -> Option<*mut hypercall_abi::shared_info::VcpuInfo> {
    let shared = MAPPED.load(SeqCst).then_some(SHARED_INFO_VA as *mut SharedInfo)?;
    // SAFETY: only the address is computed; shared_info is mapped there (MAPPED).
    Some(unsafe { core::ptr::addr_of_mut!((*shared).vcpu_info[0]) })
}

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
                let handler = HANDLERS.get(word * 64 + bit).map_or(0, |h| h.load(SeqCst));
                if handler != 0 {
                    // SAFETY: only `set_handler` stores here, and it stores a fn(u32).
                    let handler: fn(u32) = core::mem::transmute::<usize, fn(u32)>(handler);
                    handler((word * 64 + bit) as u32);
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
