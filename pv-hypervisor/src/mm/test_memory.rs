//! Machine memory for host tests: 4 KiB frames that exist only once added, so a stray
//! access shows up as a failed read or write.

use super::guest_walk::MachineMemory;
use std::boxed::Box;
use std::collections::HashMap;

#[derive(Default)]
pub struct SparseMemory(HashMap<u64, Box<[u8; 4096]>>);

impl SparseMemory {
    /// Makes frame `mfn` exist, filled with `fill`.
    pub fn add_frame(&mut self, mfn: u64, fill: u8) {
        self.0.insert(mfn, Box::new([fill; 4096]));
    }

    /// Writes page-table entry `index` of the table at machine address `table`.
    pub fn set_entry(&mut self, table: u64, index: u64, value: u64) {
        self.write_bytes(table + index * 8, &value.to_le_bytes()).expect("table frame exists");
    }

    fn slice(&self, maddr: u64, len: usize) -> Option<&[u8]> {
        let at = (maddr & 0xfff) as usize;
        self.0.get(&(maddr >> 12))?.get(at..at.checked_add(len)?)
    }
}

impl MachineMemory for SparseMemory {
    fn read_u64(&self, maddr: u64) -> Option<u64> {
        Some(u64::from_le_bytes(self.slice(maddr, 8)?.try_into().ok()?))
    }

    fn read_bytes(&self, maddr: u64, out: &mut [u8]) -> Option<()> {
        out.copy_from_slice(self.slice(maddr, out.len())?);
        Some(())
    }

    fn write_bytes(&mut self, maddr: u64, data: &[u8]) -> Option<()> {
        let at = (maddr & 0xfff) as usize;
        self.0.get_mut(&(maddr >> 12))?.get_mut(at..at.checked_add(data.len())?)?.copy_from_slice(data);
        Some(())
    }
}
