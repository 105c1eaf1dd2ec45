//! Address spaces besides the kernel's: a new L4 with every slot of the kernel's (the
//! loader's mapping, the physmap, the heap: the tables under them are shared), pinned
//! so the hypervisor validates it once; switched to with MMUEXT_NEW_BASEPTR; destroyed
//! with the tables only it has.

use super::raw;
use super::{mmuext, Memory, MmError, PTE_ADDRESS, PTE_PRESENT, READ_ONLY};
use hypercall_abi::ops::mmu::{MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L4_TABLE, MMUEXT_UNPIN_TABLE};

/// L4 slots 256-271 are the hypervisor's (Xen's and ours): it fills them itself.
const HYPERVISOR_SLOTS: core::ops::Range<u64> = 256..272;

/// A page-table tree, named by its L4's machine frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressSpace {
    pub(super) l4: u64,
}

impl AddressSpace {
    pub fn l4(&self) -> u64 {
        self.l4
    }
}

impl Memory {
    /// A new address space sharing the kernel's mappings, pinned.
    pub fn new_address_space(&mut self) -> Result<AddressSpace, MmError> {
        let (pfn, mfn) = self.take_frame()?;
        let kernel = self.kernel_l4;
        let mut entries = [0u64; 512];
        for (slot, entry) in entries.iter_mut().enumerate() {
            if !HYPERVISOR_SLOTS.contains(&(slot as u64)) {
                *entry = self.entry(kernel, slot as u64)?;
            }
        }
        // SAFETY: a frame just taken from the allocator, mapped writable in the physmap
        // and nowhere else.
        unsafe { raw::fill_page(self.physmap_va(pfn), |i| entries[i as usize]) };
        if let Err(e) = self.remap_physmap(pfn, READ_ONLY).and_then(|()| mmuext(MMUEXT_PIN_L4_TABLE, mfn)) {
            let _ = self.remap_physmap(pfn, super::DATA);
            self.give_frame(pfn);
            return Err(e);
        }
        Ok(AddressSpace { l4: mfn })
    }

    /// Makes `space` the running address space.
    pub fn switch_to(&mut self, space: AddressSpace) -> Result<(), MmError> {
        mmuext(MMUEXT_NEW_BASEPTR, space.l4)?;
        self.current_l4 = space.l4;
        Ok(())
    }

    /// Unpins `space` and frees its L4 and every table under a slot it does not share
    /// with the kernel. The frames its tables mapped are the caller's business.
    pub fn destroy_address_space(&mut self, space: AddressSpace) -> Result<(), MmError> {
        if space.l4 == self.current_l4 || space.l4 == self.kernel_l4 {
            return Err(MmError::InUse);
        }
        let mut private = [0u64; 512];
        let mut count = 0;
        for slot in (0..512u64).filter(|s| !HYPERVISOR_SLOTS.contains(s)) {
            let entry = self.entry(space.l4, slot)?;
            if entry & PTE_PRESENT != 0 && entry != self.entry(self.kernel_l4, slot)? {
                private[count] = (entry & PTE_ADDRESS) >> 12;
                count += 1;
            }
        }
        mmuext(MMUEXT_UNPIN_TABLE, space.l4)?;
        for &l3 in &private[..count] {
            self.free_tree(l3, 3)?;
        }
        self.free_table(space.l4)
    }

    /// Frees table `mfn` of `level` and the tables below it.
    fn free_tree(&mut self, mfn: u64, level: u8) -> Result<(), MmError> {
        if level > 1 {
            for index in 0..512 {
                let entry = self.entry(mfn, index)?;
                if entry & PTE_PRESENT != 0 {
                    self.free_tree((entry & PTE_ADDRESS) >> 12, level - 1)?;
                }
            }
        }
        self.free_table(mfn)
    }
}
