//! The back end of a domU's console ring (io/console.h), for now in the hypervisor. On
//! Xen this is xenconsoled's job, in dom0; until our dom0 runs a console back end, the
//! hypervisor reads the `out` ring of the page the builder gave each domU (start_info
//! console.domU) whenever the domU notifies the ring's event channel, and prints what it
//! finds as that domain's console lines. So a guest that writes its console the way a
//! real domU must (Xen refuses CONSOLEIO_write from a domU in release builds) is heard.
//! Input (the `in` ring) is not fed: serial input goes to dom0.

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

/// Drains `domain`'s console ring, if it has one, into its console lines. `memory`
/// must reach only the domain's own frames (mm::owned): the ring page may have been
/// given back.
pub fn drain_into_console<M: MachineMemory>(domain: &mut crate::domain::Domain, memory: &mut M) {
    let Some(rings) = domain.rings else { return };
    let id = domain.id;
    let console = &mut domain.console;
    let _ = drain(memory, rings.console_mfn, &mut |bytes| console.push(bytes, &mut |line| super::guest_line::print_guest_line(id, line)));
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
}
