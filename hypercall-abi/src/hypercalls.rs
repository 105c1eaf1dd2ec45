//! THE hypercall table: the single definition of the interface.
//!
//! Numbers and argument lists follow xen/include/public/xen.h and the prototypes in
//! Xen's public headers (an `unsigned int`/`int` argument is a `u32`, `domid_t` a `u16`,
//! a pointer a typed guest handle from [`crate::handle`]: [`GuestArray`], [`GuestOut`], or
//! [`GuestHandle`] when the command decides the type). Project-specific hypercalls live in Xen's
//! architecture-specific range 48-55 (`__HYPERVISOR_arch_0..7`), from 50 up, because
//! x86 Xen already uses 48 (`mca`) and 49 (`paging_domctl_cont`); [`OUR_EXTENSIONS`]
//! lists them and a compile-time check keeps them off every number Xen uses.
//!
//! To add or implement a hypercall, see docs/adding-a-hypercall.md.

use crate::ops::mmu::{MmuUpdate, MmuextOp};
use crate::ops::multicall::MulticallEntry;
use crate::ops::traps::TrapInfo;
use crate::{Errno, GuestArray, GuestHandle, GuestOut, HypercallArg};

/// Metadata of one table entry (for docs, tests and tracing).
#[derive(Clone, Copy, Debug)]
pub struct HypercallInfo {
    pub name: &'static str,
    pub number: u64,
    /// `(name, type)` of each argument, in register order.
    pub args: &'static [(&'static str, &'static str)],
    /// Whether `pv-hypervisor` implements it (otherwise it answers `-ENOSYS`).
    pub handled: bool,
    pub doc: &'static str,
}

impl HypercallInfo {
    /// The entry for `number`, if the table has one.
    pub fn lookup(number: u64) -> Option<&'static HypercallInfo> {
        HYPERCALLS.iter().find(|h| h.number == number)
    }
}

define_hypercalls! {
    handled {
        /// Physical device operations (`ops::physdev`): so far PHYSDEVOP_set_iopl, the
        /// virtual I/O privilege level; other commands answer -ENOSYS.
        physdev_op = 33 (cmd: u32, arg: GuestHandle);
        /// Installs a GDT of `entries` descriptors held in the guest frames listed (at
        /// most 14); each frame is checked whole and stays typed as descriptors in use.
        set_gdt = 2 (frame_list: GuestArray<u64>, entries: u32);
        /// Writes one descriptor at machine address `maddr`, checked if it lies in a
        /// descriptor frame.
        update_descriptor = 10 (maddr: u64, descriptor: u64);
        /// Writes debug register `register` (0-7): breakpoint addresses must be guest
        /// addresses; DR7 may not enable general detect or I/O breakpoints.
        set_debugreg = 8 (register: u32, value: u64);
        /// Reads debug register `register` (0-7) as the guest last set it (DR6 with the
        /// bits of its last #DB).
        get_debugreg = 9 (register: u32);
        /// Runs `count` `ops::multicall::MulticallEntry`s in order, writing each result
        /// back; iret inside one crashes the domain, a nested multicall gets -EINVAL.
        multicall = 13 (calls: GuestArray<MulticallEntry>, count: u32);
        /// Sets the FS base, the kernel or user GS base, or loads the user GS selector
        /// (`ops::traps::SEGBASE_*`).
        set_segment_base = 25 (which: u32, base: u64);
        /// Batch of page-table updates (`ops::mmu::MmuUpdate` array), each validated;
        /// `done_out` gets the count done; `foreign_domid` must be DOMID_SELF.
        mmu_update = 1 (requests: GuestArray<MmuUpdate>, count: u32, done_out: GuestOut<u32>, foreign_domid: u16);
        /// Writes the PTE that maps `va` in the kernel's address space (validated like
        /// mmu_update); `flags` UVMF_* choose the TLB flush.
        update_va_mapping = 14 (va: u64, pte: u64, flags: u64);
        /// Extended MMU operations (`ops::mmu::MmuextOp` array): pin/unpin, new (user)
        /// base pointer, TLB flushes.
        mmuext_op = 26 (ops: GuestArray<MmuextOp>, count: u32, done_out: GuestOut<u32>, foreign_domid: u16);
        /// Registers the virtual IDT: an array of `ops::traps::TrapInfo` ended by an entry
        /// with address 0; later calls change only the vectors they name; NULL clears all.
        set_trap_table = 0 (traps: GuestArray<TrapInfo>);
        /// Sets the kernel stack used when the guest enters its kernel from user mode.
        stack_switch = 3 (ss: u64, rsp: u64);
        /// Registers event, failsafe and syscall callback addresses (legacy form).
        set_callbacks = 4 (event_address: u64, failsafe_address: u64, syscall_address: u64);
        /// Sets or clears the virtual CR0.TS for lazy FPU switching: while set, the
        /// guest's next FPU/SSE instruction raises #NM.
        fpu_taskswitch = 5 (set: u32);
        /// Enables or disables a VM assist (`ops::vm_assist`).
        vm_assist = 21 (cmd: u32, assist_type: u32);
        /// Returns from a guest exception frame (`ops::traps::IretContext` on the guest
        /// stack); never returns to its caller.
        iret = 23 ();
        /// Registers and unregisters callbacks (`ops::callback`: event, failsafe,
        /// syscall, syscall32, sysenter, NMI).
        callback_op = 30 (cmd: u32, arg: GuestHandle);
        /// Version and feature queries: `cmd` is an `ops::xen_version` XENVER_* number,
        /// `arg` points at the command's output structure (unused by XENVER_version).
        xen_version = 17 (cmd: u32, arg: GuestHandle);
        /// Console access: CONSOLEIO_write writes `count` bytes from `buffer`;
        /// CONSOLEIO_read (dom0 only) reads up to `count` bytes into it.
        console_io = 18 (cmd: u32, count: u32, buffer: GuestArray<u8>);
        /// Scheduler operations: `cmd` is an `ops::sched_op` SCHEDOP_* number, `arg`
        /// points at its argument structure (e.g. `SchedShutdown`).
        sched_op = 29 (cmd: u32, arg: GuestHandle);
        /// Memory information and reservations (`ops::memory`): `cmd`'s low 6 bits are
        /// the XENMEM_* command, the bits above the extent a reservation continues
        /// from: increase/decrease_reservation and populate_physmap (single pages),
        /// maximum_ram_page, current/maximum_reservation, machphys_mapping,
        /// machphys_mfn_list, machine_memory_map and memory_map.
        memory_op = 12 (cmd: u64, arg: GuestHandle);
        /// Arms the vCPU's single-shot timer for absolute system time `timeout_ns` (0
        /// cancels it); it raises VIRQ_TIMER, at once if the time has passed.
        set_timer_op = 15 (timeout_ns: u64);
        /// Per-vCPU operations (`ops::vcpu` VCPUOP_*): is_up, and the single-shot and
        /// periodic timers (VIRQ_TIMER); the others answer -ENOSYS so far.
        vcpu_op = 24 (cmd: u32, vcpu_id: u32, arg: GuestHandle);
        /// Event-channel operations (`ops::event_channel` EVTCHNOP_*): the 2-level
        /// ABI's commands; the FIFO ones answer as for a domain that is not using it.
        event_channel_op = 32 (cmd: u32, arg: GuestHandle);
        /// Registers (`ops::nmi::XennmiCallback`) or unregisters the NMI callback, the
        /// same trap-table entry 2 that callback_op's CALLBACKTYPE_NMI sets.
        nmi_op = 28 (cmd: u32, arg: GuestHandle);
        /// Ours (arch_2): how many times the calling domain has made hypercall
        /// `number` so far, this call included when it asks about itself. The worked
        /// example of docs/adding-a-hypercall.md.
        hypercall_count = 50 (number: u32);
    }
    not_implemented {
        /// Old form of sched_op with an integer argument.
        sched_op_compat = 6 (cmd: u32, arg: u64);
        /// Platform-wide operations for dom0 (formerly dom0_op).
        platform_op = 7 (op: GuestHandle);
        /// Old form of event_channel_op with a combined argument.
        event_channel_op_compat = 16 (op: GuestHandle);
        /// Old form of physdev_op with a combined argument.
        physdev_op_compat = 19 (op: GuestHandle);
        /// Grant-table operations on `count` argument structures.
        grant_table_op = 20 (cmd: u32, args: GuestHandle, count: u32);
        /// update_va_mapping in another domain's address space.
        update_va_mapping_otherdomain = 22 (va: u64, pte: u64, flags: u64, domid: u16);
        /// Security-module operations.
        xsm_op = 27 (op: GuestHandle);
        /// Profiling.
        xenoprof_op = 31 (op: u32, arg: GuestHandle);
        /// HVM operations.
        hvm_op = 34 (op: u64, arg: GuestHandle);
        /// System control for the toolstack.
        sysctl = 35 (op: GuestHandle);
        /// Domain control for the toolstack.
        domctl = 36 (op: GuestHandle);
        /// Kexec.
        kexec_op = 37 (op: u64, arg: GuestHandle);
        /// Retired (was tmem).
        tmem_op = 38 (op: GuestHandle);
        /// Argo inter-domain messaging.
        argo_op = 39 (cmd: u32, arg1: GuestHandle, arg2: GuestHandle, arg3: u64, arg4: u64);
        /// Performance-monitoring unit.
        xenpmu_op = 40 (op: u32, arg: GuestHandle);
        /// Device-model operations on `domid`.
        dm_op = 41 (domid: u16, nr_buffers: u32, buffers: GuestHandle);
        /// Hypervisor file system.
        hypfs_op = 42 (cmd: u32, arg1: GuestHandle, arg2: u64, arg3: GuestHandle, arg4: u64);
        /// x86 arch_0: machine-check log access (Linux dom0's mcelog driver calls it).
        mca = 48 (op: GuestHandle);
        /// x86 arch_1: continuation of a paging domctl (toolstack only).
        paging_domctl_cont = 49 (op: GuestHandle);
    }
}

/// Every number Xen 4.17 assigns on x86 (xen.h `__HYPERVISOR_*`; 11 was never used):
/// 0-42 and the two arch-specific ones x86 takes, 48 `mca` and 49 `paging_domctl_cont`.
pub const XEN_NUMBERS: &[u64] = &[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39,
    40, 41, 42, 48, 49,
];

/// Our own extensions. They live in the arch-specific range (48-55) above the numbers
/// x86 Xen already uses there, so a guest written for Xen never reaches one by accident.
pub const OUR_EXTENSIONS: &[u64] = &[nr::hypercall_count];

/// The first arch-specific number x86 Xen leaves free.
pub const FIRST_OWN_NUMBER: u64 = 50;
/// The last arch-specific number (`__HYPERVISOR_arch_7`).
pub const LAST_OWN_NUMBER: u64 = 55;

const _: () = {
    let mut i = 0;
    while i < OUR_EXTENSIONS.len() {
        assert!(OUR_EXTENSIONS[i] >= FIRST_OWN_NUMBER && OUR_EXTENSIONS[i] <= LAST_OWN_NUMBER);
        let mut j = 0;
        while j < XEN_NUMBERS.len() {
            assert!(OUR_EXTENSIONS[i] != XEN_NUMBERS[j], "an extension takes a number Xen uses");
            j += 1;
        }
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn numbers_match_xen_h() {
        assert_eq!(nr::set_trap_table, 0);
        assert_eq!(nr::mmu_update, 1);
        assert_eq!(nr::memory_op, 12);
        assert_eq!(nr::xen_version, 17);
        assert_eq!(nr::console_io, 18);
        assert_eq!(nr::iret, 23);
        assert_eq!(nr::mmuext_op, 26);
        assert_eq!(nr::sched_op, 29);
        assert_eq!(nr::event_channel_op, 32);
        assert_eq!(nr::domctl, 36);
        assert_eq!(nr::hypfs_op, 42);
    }

    #[test]
    fn table_is_consistent() {
        let mut seen = HashSet::new();
        for h in HYPERCALLS {
            assert!(seen.insert(h.number), "duplicate number {}", h.number);
            assert!(h.args.len() <= 6);
            assert!(!h.doc.is_empty(), "{} has no doc", h.name);
        }
        // Every Xen number is in the table, and every other entry is one of ours.
        for n in XEN_NUMBERS {
            assert!(seen.contains(n), "hypercall {n} missing");
        }
        for h in HYPERCALLS.iter().filter(|h| !XEN_NUMBERS.contains(&h.number)) {
            assert!(OUR_EXTENSIONS.contains(&h.number), "{} ({}) is neither Xen's nor listed as ours", h.name, h.number);
            assert!((FIRST_OWN_NUMBER..=LAST_OWN_NUMBER).contains(&h.number), "{} is outside 50-55", h.name);
        }
    }

    struct Recorder {
        calls: std::vec::Vec<(&'static str, [u64; 3])>,
    }

    impl HypercallHandler for Recorder {
        fn xen_version(&mut self, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
            self.calls.push(("xen_version", [cmd as u64, arg.address(), 0]));
            Ok(0x4_0011)
        }
        fn console_io(&mut self, cmd: u32, count: u32, buffer: GuestArray<u8>) -> Result<i64, Errno> {
            self.calls.push(("console_io", [cmd as u64, count as u64, buffer.address()]));
            Err(Errno::EFAULT)
        }
        fn sched_op(&mut self, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
            self.calls.push(("sched_op", [cmd as u64, arg.address(), 0]));
            Ok(0)
        }
        fn event_channel_op(&mut self, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
            self.calls.push(("event_channel_op", [cmd as u64, arg.address(), 0]));
            Ok(0)
        }
        fn nmi_op(&mut self, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
            self.calls.push(("nmi_op", [cmd as u64, arg.address(), 0]));
            Ok(0)
        }
        fn set_timer_op(&mut self, timeout_ns: u64) -> Result<i64, Errno> {
            self.calls.push(("set_timer_op", [timeout_ns, 0, 0]));
            Ok(0)
        }
        fn vcpu_op(&mut self, cmd: u32, vcpu_id: u32, arg: GuestHandle) -> Result<i64, Errno> {
            self.calls.push(("vcpu_op", [cmd as u64, vcpu_id as u64, arg.address()]));
            Ok(0)
        }
        fn hypercall_count(&mut self, number: u32) -> Result<i64, Errno> {
            self.calls.push(("hypercall_count", [number as u64, 0, 0]));
            Ok(7)
        }
        fn set_trap_table(&mut self, traps: GuestArray<TrapInfo>) -> Result<i64, Errno> {
            self.calls.push(("set_trap_table", [traps.address(), 0, 0]));
            Ok(0)
        }
        fn stack_switch(&mut self, ss: u64, rsp: u64) -> Result<i64, Errno> {
            self.calls.push(("stack_switch", [ss, rsp, 0]));
            Ok(0)
        }
        fn set_callbacks(&mut self, event: u64, failsafe: u64, syscall: u64) -> Result<i64, Errno> {
            self.calls.push(("set_callbacks", [event, failsafe, syscall]));
            Ok(0)
        }
        fn fpu_taskswitch(&mut self, set: u32) -> Result<i64, Errno> {
            self.calls.push(("fpu_taskswitch", [set as u64, 0, 0]));
            Ok(0)
        }
        fn vm_assist(&mut self, cmd: u32, assist_type: u32) -> Result<i64, Errno> {
            self.calls.push(("vm_assist", [cmd as u64, assist_type as u64, 0]));
            Ok(0)
        }
        fn iret(&mut self) -> Result<i64, Errno> {
            self.calls.push(("iret", [0; 3]));
            Ok(0)
        }
        fn callback_op(&mut self, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
            self.calls.push(("callback_op", [cmd as u64, arg.address(), 0]));
            Ok(0)
        }
        fn mmu_update(&mut self, requests: GuestArray<MmuUpdate>, count: u32, _done: GuestOut<u32>, _foreign: u16) -> Result<i64, Errno> {
            self.calls.push(("mmu_update", [requests.address(), count as u64, 0]));
            Ok(0)
        }
        fn update_va_mapping(&mut self, va: u64, pte: u64, flags: u64) -> Result<i64, Errno> {
            self.calls.push(("update_va_mapping", [va, pte, flags]));
            Ok(0)
        }
        fn mmuext_op(&mut self, ops: GuestArray<MmuextOp>, count: u32, _done: GuestOut<u32>, _foreign: u16) -> Result<i64, Errno> {
            self.calls.push(("mmuext_op", [ops.address(), count as u64, 0]));
            Ok(0)
        }
        fn memory_op(&mut self, cmd: u64, arg: GuestHandle) -> Result<i64, Errno> {
            self.calls.push(("memory_op", [cmd, arg.address(), 0]));
            Ok(0)
        }
        fn physdev_op(&mut self, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
            self.calls.push(("physdev_op", [cmd as u64, arg.address(), 0]));
            Ok(0)
        }
        fn set_gdt(&mut self, frames: GuestArray<u64>, entries: u32) -> Result<i64, Errno> {
            self.calls.push(("set_gdt", [frames.address(), entries as u64, 0]));
            Ok(0)
        }
        fn update_descriptor(&mut self, maddr: u64, descriptor: u64) -> Result<i64, Errno> {
            self.calls.push(("update_descriptor", [maddr, descriptor, 0]));
            Ok(0)
        }
        fn set_debugreg(&mut self, register: u32, value: u64) -> Result<i64, Errno> {
            self.calls.push(("set_debugreg", [register as u64, value, 0]));
            Ok(0)
        }
        fn get_debugreg(&mut self, register: u32) -> Result<i64, Errno> {
            self.calls.push(("get_debugreg", [register as u64, 0, 0]));
            Ok(0)
        }
        fn multicall(&mut self, calls: GuestArray<MulticallEntry>, count: u32) -> Result<i64, Errno> {
            self.calls.push(("multicall", [calls.address(), count as u64, 0]));
            Ok(0)
        }
        fn set_segment_base(&mut self, which: u32, base: u64) -> Result<i64, Errno> {
            self.calls.push(("set_segment_base", [which as u64, base, 0]));
            Ok(0)
        }
    }

    #[test]
    fn dispatch_decodes_registers_and_errors() {
        let mut r = Recorder { calls: std::vec::Vec::new() };
        let args = [0xffff_ffff_0000_0000, 5, 0x1000, 0, 0, 0];
        assert_eq!(dispatch(&mut r, nr::console_io, args), -14);
        // The cmd register's high half is ignored, as for a C `int`.
        assert_eq!(r.calls[0], ("console_io", [0, 5, 0x1000]));
        assert_eq!(dispatch(&mut r, nr::xen_version, [0; 6]), 0x4_0011);
        assert_eq!(dispatch(&mut r, nr::hypercall_count, [18, 0, 0, 0, 0, 0]), 7);
    }

    #[test]
    fn unimplemented_and_unknown_numbers_are_enosys() {
        let mut r = Recorder { calls: std::vec::Vec::new() };
        for n in [nr::xsm_op, 11, 48, 49, 55, 1000, u64::MAX] {
            assert_eq!(dispatch(&mut r, n, [0; 6]), -38, "number {n}");
        }
        assert!(r.calls.is_empty());
    }
}
