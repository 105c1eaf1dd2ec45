//! set_gdt and update_descriptor (xen.h): a guest GDT is up to 14 of its own frames,
//! each validated (mm::descriptors) and typed as a descriptor page for as long as it is
//! in use, so the guest cannot map it writable meanwhile; `arch` maps them in front of
//! the hypervisor's own GDT page.

use super::HypercallContext;
use crate::mm::descriptors::check_descriptor;
use crate::mm::frame_table::PageType;
use crate::mm::guest_walk::MachineMemory;
use crate::trap::state::GDT_FRAMES;
use hypercall_abi::arch_x86_64::FIRST_RESERVED_GDT_ENTRY;
use hypercall_abi::{Errno, GuestArray};

pub fn set_gdt<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, frame_list: GuestArray<u64>, entries: u32) -> Result<i64, Errno> {
    if entries as usize > FIRST_RESERVED_GDT_ENTRY {
        return Err(Errno::EINVAL);
    }
    let count = (entries as usize).div_ceil(512);
    let mut frames = [0u64; GDT_FRAMES];
    frame_list.read_into(ctx, &mut frames[..count])?;
    for (i, &mfn) in frames.iter().enumerate().take(count) {
        if let Err(e) = ctx.tables().get_page_and_type(mfn, PageType::SegmentDescriptors) {
            frames[..i].iter().for_each(|&taken| ctx.tables().put_page_and_type(taken));
            return Err(if e == Errno::EBUSY { Errno::EINVAL } else { e });
        }
    }
    release_gdt(ctx);
    let traps = &mut ctx.domain.traps;
    traps.gdt_frames = frames;
    traps.gdt_frame_count = count;
    traps.exit.gdt_dirty = true;
    Ok(0)
}

/// Gives up the current GDT's frames.
pub fn release_gdt<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>) {
    let old = ctx.domain.traps.gdt_frames;
    let count = ctx.domain.traps.gdt_frame_count;
    old[..count].iter().for_each(|&mfn| ctx.tables().put_page_and_type(mfn));
    ctx.domain.traps.gdt_frame_count = 0;
    ctx.domain.traps.exit.gdt_dirty = true;
}

pub fn update_descriptor<M: MachineMemory>(ctx: &mut HypercallContext<'_, M>, maddr: u64, descriptor: u64) -> Result<i64, Errno> {
    let mfn = maddr >> 12;
    if !maddr.is_multiple_of(8) || ctx.host.frames.owner(mfn) != Some(ctx.domain.id) {
        return Err(Errno::EINVAL);
    }
    // Checked wherever it goes, as Xen does (seen on 4.17: a TSS descriptor is refused
    // in a plain page too).
    let checked = check_descriptor(descriptor).ok_or(Errno::EINVAL)?;
    if ctx.host.frames.page_type(mfn) == PageType::SegmentDescriptors {
        ctx.host.memory.write_bytes(maddr, &checked.to_le_bytes()).ok_or(Errno::EFAULT)?;
        return Ok(0);
    }
    // Any other frame only as a plain writable page (never a page table).
    ctx.host.frames.get_type(mfn, PageType::Writable).map_err(|_| Errno::EINVAL)?;
    let written = ctx.host.memory.write_bytes(maddr, &checked.to_le_bytes());
    let _ = ctx.host.frames.put_type(mfn);
    written.map(|()| 0).ok_or(Errno::EFAULT)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{TestGuest, GUEST_DATA_VA, L1, SPARE_FRAMES};
    use crate::mm::frame_table::PageType;
    use crate::mm::guest_walk::MachineMemory;
    use hypercall_abi::nr;

    const CODE64_DPL0: u64 = 0x00af_9a00_0000_ffff;
    const TSS: u64 = 0x0000_8900_0000_0067;

    #[test]
    fn set_gdt_types_and_checks_whole_frames() {
        let mut g = TestGuest::new();
        let frame = SPARE_FRAMES.start;
        g.host.memory.set_entry(frame << 12, 2, CODE64_DPL0);
        g.poke(GUEST_DATA_VA, &frame.to_le_bytes());
        assert_eq!(g.call(nr::set_gdt, [GUEST_DATA_VA, 3, 0, 0, 0, 0]), 0);
        assert_eq!(g.host.frames.page_type(frame), PageType::SegmentDescriptors);
        assert_eq!(g.host.memory.read_u64((frame << 12) + 16), Some(CODE64_DPL0 | (3 << 45)), "DPL raised in place");
        assert_eq!(g.domain.traps.gdt_frame_count, 1);
        // In use: cannot be mapped writable.
        assert_eq!(g.call(nr::update_va_mapping, [GUEST_DATA_VA + 0x5000, (frame << 12) | 0x67, 0, 0, 0, 0]), -16);
        // A frame with a TSS descriptor anywhere in it is refused, and the old GDT stays.
        g.host.memory.set_entry((frame + 1) << 12, 500, TSS);
        g.poke(GUEST_DATA_VA, &(frame + 1).to_le_bytes());
        assert_eq!(g.call(nr::set_gdt, [GUEST_DATA_VA, 3, 0, 0, 0, 0]), -22);
        assert_eq!(g.host.frames.type_count(frame + 1), 0);
        assert_eq!(g.domain.traps.gdt_frames[0], frame);
        // A frame mapped writable cannot become a GDT; too many entries; bad list.
        g.poke(GUEST_DATA_VA, &(super::super::test_support::DATA >> 12).to_le_bytes());
        assert_eq!(g.call(nr::set_gdt, [GUEST_DATA_VA, 3, 0, 0, 0, 0]), -22);
        assert_eq!(g.call(nr::set_gdt, [GUEST_DATA_VA, 7169, 0, 0, 0, 0]), -22);
        assert_eq!(g.call(nr::set_gdt, [0x10, 3, 0, 0, 0, 0]), -14);
        // Replacing it with an empty GDT gives the frame back.
        assert_eq!(g.call(nr::set_gdt, [GUEST_DATA_VA, 0, 0, 0, 0, 0]), 0);
        assert_eq!((g.host.frames.type_count(frame), g.host.frames.ref_count(frame)), (0, 0));
    }

    #[test]
    fn update_descriptor_checks_what_it_writes() {
        let mut g = TestGuest::new();
        let frame = SPARE_FRAMES.start;
        g.poke(GUEST_DATA_VA, &frame.to_le_bytes());
        assert_eq!(g.call(nr::set_gdt, [GUEST_DATA_VA, 512, 0, 0, 0, 0]), 0);
        assert_eq!(g.call(nr::update_descriptor, [(frame << 12) + 8, CODE64_DPL0, 0, 0, 0, 0]), 0);
        assert_eq!(g.host.memory.read_u64((frame << 12) + 8), Some(CODE64_DPL0 | (3 << 45)));
        assert_eq!(g.call(nr::update_descriptor, [(frame << 12) + 16, TSS, 0, 0, 0, 0]), -22);
        assert_eq!(g.call(nr::update_descriptor, [(frame << 12) + 4, 0, 0, 0, 0, 0]), -22, "misaligned");
        assert_eq!(g.call(nr::update_descriptor, [L1 + 8, 0, 0, 0, 0, 0]), -22, "a page table");
        assert_eq!(g.call(nr::update_descriptor, [50 << 12, 0, 0, 0, 0, 0]), -22, "not ours");
        let plain = SPARE_FRAMES.start + 1;
        assert_eq!(g.call(nr::update_descriptor, [plain << 12, TSS, 0, 0, 0, 0]), -22, "checked in a plain page too");
        assert_eq!(g.call(nr::update_descriptor, [plain << 12, CODE64_DPL0, 0, 0, 0, 0]), 0);
    }
}
