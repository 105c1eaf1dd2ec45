//! The back end of a domU's console ring (io/console.h), for now in the hypervisor. On
//! Xen this is xenconsoled's job, in dom0; until our dom0 runs a console back end, the
//! hypervisor reads the `out` ring of the page the builder gave each domU (start_info
//! console.domU) whenever the domU notifies the ring's event channel, and prints what it
//! finds as that domain's console lines. So a guest that writes its console the way a
//! real domU must (Xen refuses CONSOLEIO_write from a domU in release builds) is heard.
//! Input (the `in` ring) is not fed: serial input goes to dom0.

use crate::mm::frame_table::{FrameTable, PageType};
use crate::mm::guest_walk::MachineMemory;

/// `struct xencons_interface`: out[2048] at 1024, then in_cons, in_prod, out_cons,
/// out_prod (u32 each) at 3072-3084 (ring_buffers::console checks the same layout).
const OUT: u64 = 1024;
const OUT_SIZE: u32 = 2048;
const OUT_CONS: u64 = 3080;
const OUT_PROD: u64 = 3084;

fn read_u32<M: MachineMemory>(memory: &M, maddr: u64) -> Option<u32> {
    let mut bytes = [0u8; 4];
    memory.read_bytes(maddr, &mut bytes)?;
    Some(u32::from_le_bytes(bytes))
}

/// Takes everything the guest has put in the `out` ring of the page at machine frame
/// `mfn` since the last time, hands it to `emit` (in at most two pieces, where the ring
/// wraps) and moves `out_cons` up to `out_prod`. Indexes claiming more than the ring
/// holds mean a broken ring: the bytes are dropped and the consumer catches up (as
/// xenconsoled does). None if the page cannot be read or written (`memory` checks the
/// frame is still the domain's); otherwise how many bytes were emitted.
pub fn drain<M: MachineMemory>(memory: &mut M, mfn: u64, emit: &mut dyn FnMut(&[u8])) -> Option<u32> {
    let page = mfn * 4096;
    let cons = read_u32(memory, page + OUT_CONS)?;
    let prod = read_u32(memory, page + OUT_PROD)?;
    let pending = prod.wrapping_sub(cons);
    if pending > OUT_SIZE {
        memory.write_bytes(page + OUT_CONS, &prod.to_le_bytes())?;
        return Some(0);
    }
    let mut buffer = [0u8; OUT_SIZE as usize];
    let start = cons % OUT_SIZE;
    let first = pending.min(OUT_SIZE - start);
    memory.read_bytes(page + OUT + u64::from(start), &mut buffer[..first as usize])?;
    memory.read_bytes(page + OUT, &mut buffer[first as usize..pending as usize])?;
    emit(&buffer[..pending as usize]);
    memory.write_bytes(page + OUT_CONS, &prod.to_le_bytes())?;
    Some(pending)
}

/// Drains `domain`'s console ring, if it has one, into its console lines: only while
/// the page is still the domain's (it may have been given back) and still an ordinary
/// page. A guest may turn it into a page table or a descriptor page, whose every entry
/// the hypervisor validated: writing `out_cons` there would plant an entry nobody
/// checked, so the ring is not touched then (its console goes quiet, nothing else).
pub fn drain_into_console<M: MachineMemory>(domain: &mut crate::domain::Domain, memory: &mut M, frames: &FrameTable) {
    let Some(rings) = domain.rings else { return };
    if !matches!(frames.page_type(rings.console_mfn), PageType::None | PageType::Writable) {
        return;
    }
    let id = domain.id;
    let mut owned = crate::mm::owned::OwnedBy::new(memory, frames, id);
    let console = &mut domain.console;
    let _ = drain(&mut owned, rings.console_mfn, &mut |bytes| console.push(bytes, &mut |line| super::guest_line::print_guest_line(id, line)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::test_memory::SparseMemory;

    const MFN: u64 = 0x42;

    fn ring(memory: &mut SparseMemory, cons: u32, prod: u32, text: &[u8]) {
        for (i, &b) in text.iter().enumerate() {
            let at = (cons as usize + i) % OUT_SIZE as usize;
            memory.write_bytes(MFN * 4096 + OUT + at as u64, &[b]).unwrap();
        }
        memory.write_bytes(MFN * 4096 + OUT_CONS, &cons.to_le_bytes()).unwrap();
        memory.write_bytes(MFN * 4096 + OUT_PROD, &prod.to_le_bytes()).unwrap();
    }

    fn drained(memory: &mut SparseMemory) -> (Option<u32>, Vec<u8>) {
        let mut got = Vec::new();
        let n = drain(memory, MFN, &mut |bytes| got.extend_from_slice(bytes));
        (n, got)
    }

    #[test]
    fn takes_what_was_written_and_catches_up() {
        let mut memory = SparseMemory::default();
        memory.add_frame(MFN, 0);
        ring(&mut memory, 0, 6, b"hello\n");
        assert_eq!(drained(&mut memory), (Some(6), b"hello\n".to_vec()));
        assert_eq!(read_u32(&memory, MFN * 4096 + OUT_CONS), Some(6));
        assert_eq!(drained(&mut memory), (Some(0), vec![]), "nothing new");
    }

    #[test]
    fn follows_the_ring_around_its_end_and_past_u32_wrap() {
        let mut memory = SparseMemory::default();
        memory.add_frame(MFN, 0);
        ring(&mut memory, 2045, 2045 + 7, b"abcdefg");
        assert_eq!(drained(&mut memory), (Some(7), b"abcdefg".to_vec()));
        let cons = u32::MAX - 2;
        ring(&mut memory, cons, cons.wrapping_add(5), b"vwxyz");
        assert_eq!(drained(&mut memory), (Some(5), b"vwxyz".to_vec()));
    }

    #[test]
    fn a_broken_ring_is_skipped_and_an_unreadable_page_refused() {
        let mut memory = SparseMemory::default();
        memory.add_frame(MFN, 0);
        ring(&mut memory, 0, 5000, b"");
        assert_eq!(drained(&mut memory), (Some(0), vec![]));
        assert_eq!(read_u32(&memory, MFN * 4096 + OUT_CONS), Some(5000));
        let mut got = Vec::new();
        assert_eq!(drain(&mut memory, MFN + 1, &mut |b| got.extend_from_slice(b)), None);
    }

    /// The ring is drained only while its page is an ordinary one: once the guest made
    /// it a descriptor page (or a page table), writing `out_cons` would plant an entry
    /// the hypervisor never validated.
    #[test]
    fn a_ring_page_turned_into_a_table_is_not_written() {
        use crate::domain::DomuRings;
        use crate::hypercall::test_support::{TestGuest, SPARE_FRAMES};
        use crate::mm::pagetable::PageTables;
        let mut g = TestGuest::new();
        let mfn = SPARE_FRAMES.start;
        g.domain.rings = Some(DomuRings { store_mfn: 0, store_port: 1, console_mfn: mfn, console_port: 2 });
        let write = |g: &mut TestGuest, at: u64, value: u32| g.host.memory.write_bytes(mfn * 4096 + at, &value.to_le_bytes()).unwrap();
        g.host.memory.write_bytes(mfn * 4096 + OUT, b"ok\n").unwrap();
        write(&mut g, OUT_PROD, 3);
        drain_into_console(&mut g.domain, &mut g.host.memory, &g.host.frames);
        assert_eq!(read_u32(&g.host.memory, mfn * 4096 + OUT_CONS), Some(3), "an ordinary page: drained");
        // Now a descriptor page (zeroed first, as validation needs), then the indexes.
        g.host.memory.write_bytes(mfn * 4096, &[0u8; 4096]).unwrap();
        let mut tables = PageTables { frames: &mut g.host.frames, memory: &mut g.host.memory, domain: g.domain.id };
        tables.get_page_and_type(mfn, PageType::SegmentDescriptors).unwrap();
        write(&mut g, OUT_PROD, 0x0000_0007);
        drain_into_console(&mut g.domain, &mut g.host.memory, &g.host.frames);
        assert_eq!(read_u32(&g.host.memory, mfn * 4096 + OUT_CONS), Some(0), "a typed page is left alone");
    }
}
