//! The hypervisor's side of the hypercall table: [`HypercallContext`] implements
//! `hypercall_abi::HypercallHandler`, one method per implemented hypercall, each in the
//! file of its family. Handlers see guest memory only through [`GuestMemory`], which
//! translates every guest pointer through the caller's own page tables first.

mod console_io;
mod hypercall_count;
mod sched_op;
mod xen_version;

use crate::domain::Domain;
use crate::mm::guest_walk::{self, MachineMemory};
use hypercall_abi::{Errno, GuestAddr, HypercallHandler};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Everything a handler may touch: the calling domain and guest memory.
pub struct HypercallContext<'a, M: MachineMemory> {
    pub domain: &'a mut Domain,
    pub memory: &'a mut M,
}

impl<M: MachineMemory> HypercallContext<'_, M> {
    fn copy_from_guest(&self, addr: GuestAddr, out: &mut [u8]) -> Result<(), Errno> {
        guest_walk::copy_from_guest(&*self.memory, self.domain.l4_maddr, addr.0, out)
    }

    fn read_guest<T: FromBytes + IntoBytes>(&self, addr: GuestAddr) -> Result<T, Errno> {
        guest_walk::read_guest(&*self.memory, self.domain.l4_maddr, addr.0)
    }

    fn write_guest<T: IntoBytes + Immutable>(&mut self, addr: GuestAddr, value: &T) -> Result<(), Errno> {
        guest_walk::write_guest(&mut *self.memory, self.domain.l4_maddr, addr.0, value)
    }
}

impl<M: MachineMemory> HypercallHandler for HypercallContext<'_, M> {
    fn xen_version(&mut self, cmd: u32, arg: GuestAddr) -> Result<i64, Errno> {
        xen_version::xen_version(self, cmd, arg)
    }

    fn console_io(&mut self, cmd: u32, count: u32, buffer: GuestAddr) -> Result<i64, Errno> {
        console_io::console_io(self, cmd, count, buffer)
    }

    fn sched_op(&mut self, cmd: u32, arg: GuestAddr) -> Result<i64, Errno> {
        sched_op::sched_op(self, cmd, arg)
    }

    fn hypercall_count(&mut self, number: u32) -> Result<i64, Errno> {
        hypercall_count::hypercall_count(self, number)
    }
}

#[cfg(test)]
pub(crate) mod test_support;
