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

/// The machine address `va` maps to in the address space rooted at `l4_maddr`.
#[inline]
pub fn translate(mem: &impl MachineMemory, l4_maddr: u64, va: u64, access: Access) -> Result<u64, Errno> {
    if !super::is_guest_range(va, va.saturating_add(1)) {
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
#[inline]
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
    // The common cases (a frame, a small structure) stay within one page, or cross into
    // the next: one walk per page, both done before anything is copied.
    let first_page = va & !(PAGE - 1);
    if first_page == end & !(PAGE - 1) {
        let maddr = translate(mem, l4_maddr, va, access)?;
        return each(maddr, 0, len);
    }
    if first_page.wrapping_add(PAGE) == end & !(PAGE - 1) {
        let first = translate(mem, l4_maddr, va, access)?;
        let second = translate(mem, l4_maddr, first_page + PAGE, access)?;
        let split = (first_page + PAGE - va) as usize;
        each(first, 0, split)?;
        return each(second, split, len - split);
    }
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

#[inline]
pub fn copy_from_guest(mem: &impl MachineMemory, l4_maddr: u64, va: u64, out: &mut [u8]) -> Result<(), Errno> {
    let len = out.len();
    for_each_piece(mem, l4_maddr, va, len, Access::Read, |maddr, at, n| mem.read_bytes(maddr, &mut out[at..at + n]).ok_or(Errno::EFAULT))
}

#[inline]
pub fn copy_to_guest(mem: &mut impl MachineMemory, l4_maddr: u64, va: u64, data: &[u8]) -> Result<(), Errno> {
    // Within one page (a bounce frame, a result): one walk, one write.
    if let Some(end) = (data.len() as u64).checked_sub(1).and_then(|n| va.checked_add(n)) {
        if va & !(PAGE - 1) == end & !(PAGE - 1) {
            let maddr = translate(&*mem, l4_maddr, va, Access::Write)?;
            return mem.write_bytes(maddr, data).ok_or(Errno::EFAULT);
        }
    }
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

#[inline]
pub fn read_guest<T: FromBytes + IntoBytes>(mem: &impl MachineMemory, l4_maddr: u64, va: u64) -> Result<T, Errno> {
    let mut value = T::new_zeroed();
    copy_from_guest(mem, l4_maddr, va, value.as_mut_bytes())?;
    Ok(value)
}

#[inline]
pub fn write_guest<T: IntoBytes + Immutable>(mem: &mut impl MachineMemory, l4_maddr: u64, va: u64, value: &T) -> Result<(), Errno> {
    copy_to_guest(mem, l4_maddr, va, value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::test_memory::SparseMemory as Sparse;
    use hypercall_abi::arch_x86_64::HYPERVISOR_VIRT_START;

    const L4: u64 = 0x1000;
    const L3: u64 = 0x2000;
    const L2: u64 = 0x3000;
    const L1: u64 = 0x4000;
    const RW_USER: u64 = PRESENT | WRITABLE | USER;

    /// va 0x40_0000..0x40_2000: two user pages (the second read-only) at 0x10000/0x20000;
    /// va 0x40_2000: a supervisor-only page; va 0x80_0000: a 2 MiB user page at
    /// 0x20_0000; va 0x4000_0000: a 1 GiB user page at 1 GiB.
    fn address_space() -> Sparse {
        let mut m = Sparse::default();
        for f in [L4, L3, L2, L1, 0x10000, 0x20000, 0x30000] {
            m.add_frame(f >> 12, 0);
        }
        m.set_entry(L4, 0, L3 | RW_USER);
        m.set_entry(L3, 0, L2 | RW_USER);
        m.set_entry(L2, 2, L1 | RW_USER); // 0x40_0000
        m.set_entry(L1, 0, 0x10000 | RW_USER);
        m.set_entry(L1, 1, 0x20000 | PRESENT | USER);
        m.set_entry(L1, 2, 0x30000 | PRESENT | WRITABLE);
        m.set_entry(L2, 4, 0x20_0000 | RW_USER | LARGE); // 0x80_0000, 2 MiB
        m.set_entry(L3, 1, 0x4000_0000 | RW_USER | LARGE); // 0x4000_0000, 1 GiB
        m
    }

    #[test]
    fn translates_4k_2m_and_1g_pages() {
        let m = address_space();
        assert_eq!(translate(&m, L4, 0x40_0123, Access::Read), Ok(0x10123));
        assert_eq!(translate(&m, L4, 0x80_0000 + 0x12_3456, Access::Write), Ok(0x20_0000 + 0x12_3456));
        assert_eq!(translate(&m, L4, 0x4000_0000 + 0x1234_5678, Access::Read), Ok(0x4000_0000 + 0x1234_5678));
    }

    #[test]
    fn refuses_what_the_guest_could_not_touch_itself() {
        let m = address_space();
        let efault = Err(Errno::EFAULT);
        assert_eq!(translate(&m, L4, 0x40_1000, Access::Write), efault, "read-only page");
        assert_eq!(translate(&m, L4, 0x40_1000, Access::Read), Ok(0x20000));
        assert_eq!(translate(&m, L4, 0x40_2000, Access::Read), efault, "supervisor page");
        assert_eq!(translate(&m, L4, 0x40_3000, Access::Read), efault, "not present");
        assert_eq!(translate(&m, L4, 0x7fff_0000_0000, Access::Read), efault, "no L3");
        assert_eq!(translate(&m, L4, 0x8000_0000_0000, Access::Read), efault, "non-canonical");
        assert_eq!(translate(&m, L4, HYPERVISOR_VIRT_START + 0x40_0000, Access::Read), efault, "hypervisor range");
        assert_eq!(translate(&m, 0x9999_0000, 0x40_0000, Access::Read), efault, "L4 outside memory");
    }

    #[test]
    fn copies_across_pages_and_fail_before_writing() {
        let mut m = address_space();
        m.write_bytes(0x10ffc, b"abcd").unwrap();
        m.write_bytes(0x20000, b"efgh").unwrap();
        let mut out = [0u8; 8];
        copy_from_guest(&m, L4, 0x40_0ffc, &mut out).unwrap();
        assert_eq!(&out, b"abcdefgh");
        // Writing across into the read-only page fails and writes nothing.
        assert_eq!(copy_to_guest(&mut m, L4, 0x40_0ffc, b"XXXXXXXX"), Err(Errno::EFAULT));
        assert_eq!(m.read_u64(0x10ff8).map(|v| v.to_le_bytes()[4..].to_vec()), Some(b"abcd".to_vec()));
        // A length that wraps the address space.
        let mut big = [0u8; 16];
        assert_eq!(copy_from_guest(&m, L4, u64::MAX - 4, &mut big), Err(Errno::EFAULT));
        assert_eq!(copy_from_guest(&m, L4, 0x40_0000, &mut []), Ok(()));
    }

    #[test]
    fn typed_reads_and_writes() {
        let mut m = address_space();
        write_guest(&mut m, L4, 0x40_0ff8, &0x1122_3344_5566_7788u64).unwrap();
        assert_eq!(read_guest::<u64>(&m, L4, 0x40_0ff8), Ok(0x1122_3344_5566_7788));
        assert_eq!(read_guest::<u64>(&m, L4, 0x40_1ffc), Err(Errno::EFAULT), "runs into the supervisor page");
    }
}
