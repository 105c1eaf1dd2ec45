//! Guest virtual addresses, translated in software through the guest's own page tables,
//! so the hypervisor never takes a fault on a guest pointer.
//!
//! A translation succeeds only if every level is present and user-accessible (a PV
//! kernel runs in ring 3, so everything it may touch is a user mapping) and, for writes,
//! writable at every level; the address must be canonical and outside the range reserved
//! for the hypervisor (arch-x86/xen-x86_64.h). Anything else is `-EFAULT`.

use hypercall_abi::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Machine memory as the hypervisor may touch it. `None` means "not memory I will
/// access" (outside RAM); implementations bound-check every access.
pub trait MachineMemory {
    fn read_u64(&self, maddr: u64) -> Option<u64>;
    fn read_bytes(&self, maddr: u64, out: &mut [u8]) -> Option<()>;
    fn write_bytes(&mut self, maddr: u64, data: &[u8]) -> Option<()>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const LARGE: u64 = 1 << 7;
/// Physical-address bits of an entry (bits 12-51).
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
const PAGE: u64 = 4096;

pub const HYPERVISOR_VIRT_START: u64 = 0xffff_8000_0000_0000;
pub const HYPERVISOR_VIRT_END: u64 = 0xffff_8800_0000_0000;

fn is_canonical(va: u64) -> bool {
    let top = (va as i64) >> 47;
    top == 0 || top == -1
}

/// The machine address `va` maps to in the address space rooted at `l4_maddr`.
pub fn translate(mem: &impl MachineMemory, l4_maddr: u64, va: u64, access: Access) -> Result<u64, Errno> {
    if !is_canonical(va) || (HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END).contains(&va) {
        return Err(Errno::EFAULT);
    }
    let mut table = l4_maddr & ADDRESS_MASK;
    // Levels 4, 3, 2, 1: index shift of each.
    for (level, shift) in [(4u8, 39u32), (3, 30), (2, 21), (1, 12)] {
        let index = (va >> shift) & 511;
        let entry = mem.read_u64(table + index * 8).ok_or(Errno::EFAULT)?;
        if entry & PRESENT == 0 || entry & USER == 0 {
            return Err(Errno::EFAULT);
        }
        if access == Access::Write && entry & WRITABLE == 0 {
            return Err(Errno::EFAULT);
        }
        let frame = entry & ADDRESS_MASK;
        if (level == 3 || level == 2) && entry & LARGE != 0 {
            let size = 1u64 << shift;
            // The low bits of a large page's address field hold PAT and must be ignored.
            return Ok((frame & !(size - 1)) + (va & (size - 1)));
        }
        if level == 1 {
            return Ok(frame + (va & (PAGE - 1)));
        }
        table = frame;
    }
    Err(Errno::EFAULT)
}

/// Translates every page of `[va, va + len)` first, so a failure anywhere happens before
/// any byte is copied; then calls `each(maddr, offset_in_buffer, len)` per piece.
fn for_each_piece(
    mem: &impl MachineMemory,
    l4_maddr: u64,
    va: u64,
    len: usize,
    access: Access,
    mut each: impl FnMut(u64, usize, usize) -> Result<(), Errno>,
) -> Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    let end = va.checked_add(len as u64 - 1).ok_or(Errno::EFAULT)?;
    let mut page = va & !(PAGE - 1);
    loop {
        translate(mem, l4_maddr, page.max(va), access)?;
        if page >= end & !(PAGE - 1) {
            break;
        }
        page += PAGE;
    }
    let mut done = 0usize;
    while done < len {
        let cur = va + done as u64;
        let piece = ((PAGE - cur % PAGE) as usize).min(len - done);
        let maddr = translate(mem, l4_maddr, cur, access)?;
        each(maddr, done, piece)?;
        done += piece;
    }
    Ok(())
}

pub fn copy_from_guest(mem: &impl MachineMemory, l4_maddr: u64, va: u64, out: &mut [u8]) -> Result<(), Errno> {
    let len = out.len();
    for_each_piece(mem, l4_maddr, va, len, Access::Read, |maddr, at, n| {
        mem.read_bytes(maddr, &mut out[at..at + n]).ok_or(Errno::EFAULT)
    })
}

pub fn copy_to_guest(mem: &mut impl MachineMemory, l4_maddr: u64, va: u64, data: &[u8]) -> Result<(), Errno> {
    let mut pieces: [(u64, usize, usize); 2] = [(0, 0, 0); 2];
    let mut count = 0;
    // Collect translations first (a buffer of at most one page crosses at most two pages
    // per step), then write: all-or-nothing per call for buffers up to a page.
    let mut offset = 0usize;
    while offset < data.len() {
        let chunk = (data.len() - offset).min(PAGE as usize);
        count = 0;
        for_each_piece(&*mem, l4_maddr, va + offset as u64, chunk, Access::Write, |maddr, at, n| {
            pieces[count] = (maddr, offset + at, n);
            count += 1;
            Ok(())
        })?;
        for &(maddr, at, n) in &pieces[..count] {
            mem.write_bytes(maddr, &data[at..at + n]).ok_or(Errno::EFAULT)?;
        }
        offset += chunk;
    }
    let _ = count;
    Ok(())
}

pub fn read_guest<T: FromBytes + IntoBytes>(mem: &impl MachineMemory, l4_maddr: u64, va: u64) -> Result<T, Errno> {
    let mut value = T::new_zeroed();
    copy_from_guest(mem, l4_maddr, va, value.as_mut_bytes())?;
    Ok(value)
}

pub fn write_guest<T: IntoBytes + Immutable>(mem: &mut impl MachineMemory, l4_maddr: u64, va: u64, value: &T) -> Result<(), Errno> {
    copy_to_guest(mem, l4_maddr, va, value.as_bytes())
}
