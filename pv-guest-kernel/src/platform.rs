//! The platform layer: every operation that would be privileged on bare metal goes
//! through here, as a hypercall. Keeping it narrow is what lets the same kernel later
//! run natively as a baseline.

use hypercall_abi::guest::calls;
use hypercall_abi::ops::console_io::CONSOLEIO_WRITE;
use hypercall_abi::ops::sched_op::{SchedShutdown, SCHEDOP_SHUTDOWN};
use hypercall_abi::ops::traps::TrapInfo;
use hypercall_abi::ops::xen_version::{XENVER_EXTRAVERSION, XENVER_VERSION};
use hypercall_abi::start_info::StartInfo;
use hypercall_abi::{Errno, GuestArray, GuestHandle, GuestOut};

pub use hypercall_abi::ops::sched_op::ShutdownReason;

/// Writes bytes to the hypervisor console.
pub fn console_write(bytes: &[u8]) -> Result<(), Errno> {
    // SAFETY: the buffer is valid for `len` bytes of reading.
    let ret = unsafe { calls::console_io(CONSOLEIO_WRITE, bytes.len() as u32, GuestArray::from_slice(bytes)) };
    Errno::check(ret).map(|_| ())
}

/// Asks the hypervisor to print from an arbitrary address, valid or not: the hypervisor
/// must check it. Used to exercise that check.
pub fn console_write_from_address(address: u64, len: u32) -> Result<(), Errno> {
    // SAFETY: the hypervisor only reads through the address after checking it against
    // our page tables; nothing on our side dereferences it.
    let ret = unsafe { calls::console_io(CONSOLEIO_WRITE, len, GuestArray::from_raw(address)) };
    Errno::check(ret).map(|_| ())
}

/// Notifies the far end of event channel `port` (EVTCHNOP_send).
pub fn evtchn_send(port: u32) -> i64 {
    use hypercall_abi::ops::event_channel::{EvtchnPort, EVTCHNOP_SEND};
    let mut op = EvtchnPort { port };
    // SAFETY: one EvtchnPort, live for the call.
    unsafe { calls::event_channel_op(EVTCHNOP_SEND, GuestHandle::from_mut(&mut op)) }
}

/// Gives the CPU to another domain that can run (SCHEDOP_yield).
pub fn yield_cpu() {
    // SAFETY: yield takes no argument.
    unsafe { calls::sched_op(hypercall_abi::ops::sched_op::SCHEDOP_YIELD, GuestHandle::NULL) };
}

/// The hypervisor's version as (major, minor).
pub fn hypervisor_version() -> (u32, u32) {
    // SAFETY: XENVER_version takes no argument buffer.
    let v = unsafe { calls::xen_version(XENVER_VERSION, GuestHandle::NULL) };
    ((v >> 16) as u32, (v & 0xffff) as u32)
}

/// The hypervisor's extra version string (e.g. ".0" or "-pvhv").
pub fn hypervisor_extraversion() -> [u8; 16] {
    let mut text = [0u8; 16];
    // SAFETY: XENVER_extraversion writes 16 bytes to the buffer.
    let ret = unsafe { calls::xen_version(XENVER_EXTRAVERSION, GuestHandle::from_mut(&mut text)) };
    if ret < 0 {
        text = [0; 16];
    }
    text
}

/// How many times this domain made hypercall `number` (our arch_0 hypercall).
pub fn hypercall_count(number: u64) -> Result<u64, Errno> {
    // SAFETY: hypercall_count takes no pointer.
    let ret = unsafe { calls::hypercall_count(number as u32) };
    Errno::check(ret).map(|n| n as u64)
}

/// Registers the kernel's trap table (an array ended by an entry with address 0).
pub fn set_trap_table(table: &[TrapInfo]) -> i64 {
    if table.last().is_none_or(|t| t.address != 0) {
        return Errno::EINVAL.to_return_value();
    }
    // SAFETY: the array is readable and terminated, as just checked.
    unsafe { calls::set_trap_table(GuestArray::from_slice(table)) }
}

/// Sets (true) or clears the virtual CR0.TS: while set, the next FPU/SSE instruction
/// raises #NM.
pub fn fpu_taskswitch(set: bool) -> i64 {
    // SAFETY: takes no pointer; only changes when #NM is raised.
    unsafe { calls::fpu_taskswitch(u32::from(set)) }
}

/// CR2, the address of the last page fault. A PV kernel runs in ring 3, so this is a
/// privileged instruction the hypervisor emulates (Xen does; so do we).
pub fn read_cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effect; in ring 3 it traps to the hypervisor,
    // which emulates it.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) value, options(nomem, nostack)) };
    value
}

/// `cpuid` through Xen's forced-emulation prefix (ud2; "xen"; cpuid): the hypervisor
/// answers with the guest's CPUID policy, hypervisor leaves included.
pub fn xen_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u32, u32, u32);
    // SAFETY: the hypervisor emulates the prefixed cpuid (and would reflect #UD to our
    // trap table if not); rbx is saved around it since the compiler owns it.
    unsafe {
        core::arch::asm!(
            "mov {saved:r}, rbx",
            ".byte 0x0f, 0x0b, 0x78, 0x65, 0x6e",
            "cpuid",
            "xchg {saved:r}, rbx",
            saved = out(reg) b,
            inout("eax") leaf => a,
            inout("ecx") subleaf => c,
            out("edx") d,
            options(nomem, nostack),
        );
    }
    [a, b, c, d]
}

/// Where the kernel image's virtual addresses start (its VIRT_BASE note says 0).
pub fn virt_base() -> u64 {
    0
}

/// The machine frame behind guest frame `pfn`, from the p2m list the loader built.
pub fn pfn_to_mfn(info: &StartInfo, pfn: u64) -> Option<u64> {
    if pfn >= info.nr_pages {
        return None;
    }
    // SAFETY: the loader maps the p2m list (nr_pages entries) at mfn_list, read-write,
    // and nothing else writes it while we read.
    Some(unsafe { (info.mfn_list as *const u64).add(pfn as usize).read_volatile() })
}

/// Registers (Some) a callback of `callback_type` at `address`.
pub fn register_callback(callback_type: u16, address: u64, mask_events: bool) -> i64 {
    use hypercall_abi::ops::callback::{CallbackRegister, CALLBACKF_MASK_EVENTS, CALLBACKOP_REGISTER};
    let flags = if mask_events { CALLBACKF_MASK_EVENTS } else { 0 };
    let request = CallbackRegister { callback_type, flags, _pad: 0, address };
    // SAFETY: the request is a valid CallbackRegister for the hypervisor to read.
    unsafe { calls::callback_op(CALLBACKOP_REGISTER, GuestHandle::from_ref(&request)) }
}

/// Points the PTE for `va` (in the kernel's address space) at `pte`, flushing it.
pub fn update_va_mapping(va: u64, pte: u64) -> i64 {
    // SAFETY: changing our own mapping; the hypervisor validates the entry, and callers
    // only remap addresses nothing else is using at the time.
    unsafe { calls::update_va_mapping(va, pte, hypercall_abi::ops::mmu::UVMF_INVLPG) }
}

/// One mmuext_op on frame `mfn` (pin, unpin, new base pointers).
pub fn mmuext(cmd: u32, mfn: u64) -> i64 {
    use hypercall_abi::ops::mmu::{MmuextOp, DOMID_SELF};
    let op = MmuextOp { cmd, _pad: 0, arg1: mfn, arg2: 0 };
    // SAFETY: one readable MmuextOp; no done count is asked for.
    unsafe { calls::mmuext_op(GuestArray::from_slice(&[op]), 1, GuestOut::NULL, DOMID_SELF) }
}

/// Sets the kernel stack the hypervisor switches to when user mode is interrupted.
pub fn stack_switch(rsp: u64) -> i64 {
    // SAFETY: the stack is ours and stays reserved for this purpose.
    unsafe { calls::stack_switch(u64::from(hypercall_abi::arch_x86_64::FLAT_KERNEL_SS64), rsp) }
}

/// Stops this domain. Does not return; if the hypervisor refuses, we wait forever.
pub fn shutdown(reason: ShutdownReason) -> ! {
    let request = SchedShutdown { reason: reason as u32 };
    loop {
        // SAFETY: `request` is a valid SchedShutdown for the hypervisor to read.
        unsafe { calls::sched_op(SCHEDOP_SHUTDOWN, GuestHandle::from_ref(&request)) };
    }
}

/// Executes a privileged instruction, which a ring-3 PV kernel must never do: the
/// hypervisor has to stop this domain. The one deliberate exception to this module's
/// rule, used to test fault isolation.
pub fn execute_privileged_instruction() -> ! {
    loop {
        // SAFETY: `hlt` touches no memory; in ring 3 it raises #GP before doing anything.
        unsafe { core::arch::asm!("hlt", options(nomem, nostack)) };
    }
}
