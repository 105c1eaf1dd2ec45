//! The hypervisor's side of the hypercall table: [`HypercallContext`] implements
//! `hypercall_abi::HypercallHandler`, one method per implemented hypercall, each in the
//! file of its family. Handlers see guest memory only through the typed handles the
//! table gives them (`hypercall_abi::handle`), which fetch each value once through the
//! caller's own page tables and only from frames it owns.

mod caller_registers;
mod console_io;
mod cpu_state;
mod descriptors;
mod event_channel;
mod hypercall_count;
mod iret;
mod memory;
mod mmu;
mod multicall;
mod reservation;
pub mod sched_op;
pub mod trace;
mod traps;
mod vcpu_op;
pub mod xen_version;

pub use caller_registers::CallerRegisters;
pub use iret::{IRET_NO_USER_TABLE, IRET_UNREADABLE};
pub use multicall::IRET_IN_MULTICALL;

use crate::domain::vcpu::GuestRegisters;
use crate::domain::Domain;
use crate::mm::frame_alloc::FrameSource;
use crate::mm::frame_table::FrameTable;
use crate::mm::guest_walk::{self, MachineMemory};
use crate::mm::m2p::MachToPhys;
use crate::mm::owned::OwnedBy;
use alloc::vec::Vec;
use hypercall_abi::handle::Access;
use hypercall_abi::ops::memory::E820Entry;
use hypercall_abi::ops::mmu::{MmuUpdate, MmuextOp};
use hypercall_abi::ops::multicall::MulticallEntry;
use hypercall_abi::ops::traps::TrapInfo;
use hypercall_abi::{Errno, GuestArray, GuestHandle, GuestMemory, GuestOut, HypercallHandler};

/// What the machine is, as memory_op reports it; fixed after boot.
pub struct MachineInfo {
    /// The machine-to-phys table every guest sees read-only.
    pub m2p: MachToPhys,
    /// One past the highest RAM frame (XENMEM_maximum_ram_page, Xen's `max_page`).
    pub max_page: u64,
    /// The firmware's memory map (XENMEM_machine_memory_map, dom0 only).
    pub memory_map: Vec<E820Entry>,
    /// System time and the TSC scale (set_timer_op, the time guests read).
    pub clock: crate::time::Clock,
}

/// The TLB flush a hypercall leaves for the exit path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbFlush {
    None,
    Page(u64),
    All,
}

/// Everything a handler may touch: the calling domain, the machine (guest memory, the
/// frame table...), and the calling vCPU's saved registers (which `iret` replaces; the
/// result goes into RAX after).
pub struct HypercallContext<'a, M: MachineMemory> {
    pub domain: &'a mut Domain,
    /// The other domains (interdomain event channels reach them).
    pub others: crate::domain::Others<'a>,
    pub host: &'a mut Host<M>,
    pub regs: CallerRegisters<'a>,
    /// Free machine frames, for memory_op's reservations.
    pub frame_source: &'a mut dyn FrameSource,
    /// What the guest asked to be flushed from the TLB before it runs again.
    pub flush: TlbFlush,
    /// Set by a handler that stopped early: the arguments to run it again with.
    pub continuation: Option<[u64; 6]>,
}

/// What a hypercall may reach of the machine besides the domains. One struct, so the
/// context (built on every hypercall's path) holds one reference to it.
pub struct Host<M: MachineMemory> {
    pub memory: M,
    /// Ownership and types of every machine frame (PV MMU).
    pub frames: FrameTable,
    /// The hypervisor's own L4, whose reserved slots every guest L4 gets. Boxed: 4 KiB
    /// read only when an L4 is validated, kept off the page of the fields every
    /// hypercall reads.
    pub hypervisor_l4: alloc::boxed::Box<[u64; 512]>,
    pub machine: MachineInfo,
    /// Serial input queued for dom0 (CONSOLEIO_read).
    pub console_input: crate::console::input::SerialInput,
    /// System time at which a long hypercall stops and continues later: the next timer
    /// interrupt the hypervisor armed (interrupts are off while it runs).
    pub next_interrupt_at: u64,
}

/// Xen's hypercall continuation: the guest re-executes its `syscall` (2 bytes back)
/// with the hypercall number in rax and `args` in the argument registers, so a long
/// hypercall resumes where it stopped after timers and other domains have run. What
/// the caller must put in rax: the number.
pub fn apply_continuation(regs: &mut GuestRegisters, number: u64, args: [u64; 6]) -> i64 {
    regs.rip = regs.rip.wrapping_sub(2);
    [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9] = args;
    number as i64
}

impl<M: MachineMemory> HypercallContext<'_, M> {
    /// Whether a long hypercall should stop here and continue later (a timer is due).
    pub fn preempt_wanted(&self) -> bool {
        self.host.machine.clock.now_ns() >= self.host.next_interrupt_at
    }

    /// Stops the hypercall here; it runs again with `args` after the exit path has run
    /// the timers and the scheduler.
    pub fn continue_later(&mut self, args: [u64; 6]) -> Result<i64, Errno> {
        self.continuation = Some(args);
        self.domain.traps.exit.reschedule = true;
        Ok(0)
    }

    /// Asks for `va`'s translation to be flushed; a second, different address makes it
    /// a whole flush.
    fn flush_page(&mut self, va: u64) {
        self.flush = match self.flush {
            TlbFlush::None => TlbFlush::Page(va),
            TlbFlush::Page(other) if other == va => TlbFlush::Page(va),
            _ => TlbFlush::All,
        };
    }

    fn flush_all(&mut self) {
        self.flush = TlbFlush::All;
    }

    /// Whether the handler left anything for [`HypercallContext::finish`]: a
    /// continuation, a flush, or given-back frames to free. One test on the common path.
    #[inline(always)]
    pub fn left_work(&self) -> bool {
        (u64::from(self.flush != TlbFlush::None) | u64::from(self.continuation.is_some()) | self.host.frames.exit_work()) != 0
    }

    /// After the handler of hypercall `number` returned `result`: the value for the
    /// guest's RAX (the number again for a continuation, which re-executes the call),
    /// having freed what was given back and unreferenced; and what the exit path must
    /// flush.
    #[cold]
    #[inline(never)]
    pub fn finish(&mut self, number: u64, result: i64) -> (i64, TlbFlush) {
        let rax = match self.continuation {
            Some(args) => apply_continuation(self.regs.replace(), number, args),
            None => result,
        };
        self.free_given_back();
        (rax, self.flush_wanted())
    }

    /// What the exit path must flush: the whole TLB when the guest asked for it or the
    /// frame table needs it (a frame changed use under a stale translation), else the
    /// one page the guest named, if any.
    fn flush_wanted(&self) -> TlbFlush {
        if self.host.frames.flush_needed() {
            TlbFlush::All
        } else {
            self.flush
        }
    }
    /// Frees what the call left given back and unreferenced (see
    /// domain::frames::free_given_back); before `flush_wanted`, since freeing a frame
    /// under a stale translation asks for a flush.
    fn free_given_back(&mut self) {
        crate::domain::frames::free_given_back(self.domain, &mut self.host.frames, &mut self.host.memory, &self.host.machine.m2p, self.frame_source);
    }

    /// Gives up on the calling domain: it never resumes.
    fn crash(&mut self, reason: &'static str) {
        self.domain.crash(reason);
    }
}

/// Guest memory for the handles (`hypercall_abi::handle`), the handlers' only way to it:
/// through the calling domain's own page tables, and only in frames the frame table says
/// it owns (mm::owned). The `Access` token keeps raw addresses out of the handlers.
impl<M: MachineMemory> GuestMemory for HypercallContext<'_, M> {
    fn read_guest_bytes(&self, _: Access, va: u64, out: &mut [u8]) -> Result<(), Errno> {
        let memory = OwnedBy::read_only(&self.host.memory, &self.host.frames, self.domain.id);
        guest_walk::copy_from_guest(&memory, self.domain.l4_maddr(), va, out)
    }

    fn write_guest_bytes(&mut self, _: Access, va: u64, data: &[u8]) -> Result<(), Errno> {
        let mut memory = OwnedBy::new(&mut self.host.memory, &self.host.frames, self.domain.id);
        guest_walk::copy_to_guest(&mut memory, self.domain.l4_maddr(), va, data)
    }
}

impl<M: MachineMemory> HypercallHandler for HypercallContext<'_, M> {
    fn xen_version(&mut self, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
        xen_version::xen_version(self, cmd, arg)
    }

    fn console_io(&mut self, cmd: u32, count: u32, buffer: GuestArray<u8>) -> Result<i64, Errno> {
        console_io::console_io(self, cmd, count, buffer)
    }

    fn sched_op(&mut self, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
        sched_op::sched_op(self, cmd, arg)
    }

    fn set_trap_table(&mut self, traps: GuestArray<TrapInfo>) -> Result<i64, Errno> {
        traps::set_trap_table(self, traps)
    }

    fn stack_switch(&mut self, ss: u64, rsp: u64) -> Result<i64, Errno> {
        traps::stack_switch(self, ss, rsp)
    }

    fn set_callbacks(&mut self, event_address: u64, failsafe_address: u64, syscall_address: u64) -> Result<i64, Errno> {
        traps::set_callbacks(self, event_address, failsafe_address, syscall_address)
    }

    fn fpu_taskswitch(&mut self, set: u32) -> Result<i64, Errno> {
        traps::fpu_taskswitch(self, set)
    }

    fn vm_assist(&mut self, cmd: u32, assist_type: u32) -> Result<i64, Errno> {
        traps::vm_assist(self, cmd, assist_type)
    }

    fn iret(&mut self) -> Result<i64, Errno> {
        iret::iret(self)
    }

    fn callback_op(&mut self, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
        traps::callback_op(self, cmd, arg)
    }

    fn mmu_update(&mut self, requests: GuestArray<MmuUpdate>, count: u32, done_out: GuestOut<u32>, foreign_domid: u16) -> Result<i64, Errno> {
        mmu::mmu_update(self, requests, count, done_out, foreign_domid)
    }

    fn update_va_mapping(&mut self, va: u64, pte: u64, flags: u64) -> Result<i64, Errno> {
        mmu::update_va_mapping(self, va, pte, flags)
    }

    fn mmuext_op(&mut self, ops: GuestArray<MmuextOp>, count: u32, done_out: GuestOut<u32>, foreign_domid: u16) -> Result<i64, Errno> {
        mmu::mmuext_op(self, ops, count, done_out, foreign_domid)
    }

    fn physdev_op(&mut self, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
        cpu_state::physdev_op(self, cmd, arg)
    }

    fn set_gdt(&mut self, frame_list: GuestArray<u64>, entries: u32) -> Result<i64, Errno> {
        descriptors::set_gdt(self, frame_list, entries)
    }

    fn update_descriptor(&mut self, maddr: u64, descriptor: u64) -> Result<i64, Errno> {
        descriptors::update_descriptor(self, maddr, descriptor)
    }

    fn set_debugreg(&mut self, register: u32, value: u64) -> Result<i64, Errno> {
        cpu_state::set_debugreg(self, register, value)
    }

    fn get_debugreg(&mut self, register: u32) -> Result<i64, Errno> {
        cpu_state::get_debugreg(self, register)
    }

    fn multicall(&mut self, calls: GuestArray<MulticallEntry>, count: u32) -> Result<i64, Errno> {
        multicall::multicall(self, calls, count)
    }

    fn set_segment_base(&mut self, which: u32, base: u64) -> Result<i64, Errno> {
        cpu_state::set_segment_base(self, which, base)
    }

    fn memory_op(&mut self, cmd: u64, arg: GuestHandle) -> Result<i64, Errno> {
        memory::memory_op(self, cmd, arg)
    }

    fn event_channel_op(&mut self, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
        event_channel::event_channel_op(self, cmd, arg)
    }

    fn nmi_op(&mut self, cmd: u32, arg: GuestHandle) -> Result<i64, Errno> {
        traps::nmi_op(self, cmd, arg)
    }

    fn set_timer_op(&mut self, timeout_ns: u64) -> Result<i64, Errno> {
        sched_op::set_timer_op(self, timeout_ns)
    }

    fn vcpu_op(&mut self, cmd: u32, vcpu_id: u32, arg: GuestHandle) -> Result<i64, Errno> {
        vcpu_op::vcpu_op(self, cmd, vcpu_id, arg)
    }

    fn hypercall_count(&mut self, number: u32) -> Result<i64, Errno> {
        hypercall_count::hypercall_count(self, number)
    }
}

#[cfg(test)]
pub(crate) mod test_support;
