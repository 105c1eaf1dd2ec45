//! The kernel heap (`alloc`'s global allocator): a first-fit allocator
//! (linked_list_allocator) over a region at L4 slot 2 that grows by mapping frames from
//! the frame allocator whenever an allocation does not fit. The region's L3 is made
//! when the memory manager starts, so every address space made later shares the heap.

use super::{mmu_update, Memory, MmError, DATA, PAGE, TABLE};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use hypercall_abi::ops::mmu::MmuUpdate;
use linked_list_allocator::Heap;
use spin::Mutex;

pub const HEAP_BASE: u64 = 2 << 39;
const HEAP_SLOT: u64 = HEAP_BASE >> 39;
/// Growth comes in steps of at least this much, so small allocations do not each cost
/// a trip to the page-table manager.
const GROW_STEP: u64 = 64 * 1024;

/// Pages mapped under the heap so far.
static PAGES: AtomicU64 = AtomicU64::new(0);

pub fn pages() -> u64 {
    PAGES.load(Relaxed)
}

/// Links an empty L3 at the heap's slot of the kernel's L4.
pub(super) fn prepare(memory: &mut Memory) -> Result<(), MmError> {
    let l3 = memory.new_table()?;
    let link = MmuUpdate { ptr: (memory.kernel_l4 << 12) | (HEAP_SLOT * 8), val: (l3 << 12) | TABLE };
    mmu_update(&[link]).inspect_err(|_| {
        let _ = memory.free_table(l3);
    })
}

struct GrowingHeap(Mutex<Heap>);

#[global_allocator]
static ALLOCATOR: GrowingHeap = GrowingHeap(Mutex::new(Heap::empty()));

/// Maps `pages` more pages at the top of the heap; returns how many it could.
fn grow(pages: u64) -> u64 {
    let mut mapped = 0;
    let _ = super::with(|memory| {
        let l4 = memory.kernel_l4;
        while mapped < pages {
            let (pfn, mfn) = memory.take_frame()?;
            let va = HEAP_BASE + (PAGES.load(Relaxed) + mapped) * PAGE;
            if let Err(e) = memory.map(l4, va, mfn, DATA) {
                memory.give_frame(pfn);
                return Err(e);
            }
            mapped += 1;
        }
        Ok(())
    });
    mapped
}

// SAFETY: blocks come from `Heap`, which hands out each byte once until it is given
// back; the region it manages is mapped (grow maps before it extends).
unsafe impl GlobalAlloc for GrowingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut heap = self.0.lock();
        loop {
            if let Ok(block) = heap.allocate_first_fit(layout) {
                return block.as_ptr();
            }
            let wanted = ((layout.size() + layout.align()) as u64).next_multiple_of(PAGE).max(GROW_STEP) / PAGE;
            let got = grow(wanted);
            if got == 0 {
                return core::ptr::null_mut();
            }
            let bottom = HEAP_BASE + PAGES.load(Relaxed) * PAGE;
            if PAGES.load(Relaxed) == 0 {
                // SAFETY: `got` pages are mapped from HEAP_BASE, writable, used by no one.
                unsafe { heap.init(bottom as *mut u8, (got * PAGE) as usize) };
            } else {
                // SAFETY: the pages just mapped continue the heap's region exactly.
                unsafe { heap.extend((got * PAGE) as usize) };
            }
            PAGES.fetch_add(got, Relaxed);
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(ptr) {
            // SAFETY: `block` came from `alloc` with this layout (GlobalAlloc's contract).
            unsafe { self.0.lock().deallocate(block, layout) };
        }
    }
}
