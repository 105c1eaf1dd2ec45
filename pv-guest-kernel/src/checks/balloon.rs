//! `balloon [MIB]`: the guest gives MIB (default 16) of its free memory back to the
//! hypervisor and takes it again (`mm::balloon`), and checks what both sides say: the
//! reservation shrinks and grows by exactly the pages moved, the p2m list and the M2P
//! table agree afterwards, and every page that came back can be written and read. Runs
//! on both hypervisors; the lines carry page counts, not frame numbers.

use super::Tally;
use crate::mm;
use hypercall_abi::guest::calls;
use hypercall_abi::ops::memory::{MemoryReservation, XENMEM_CURRENT_RESERVATION, XENMEM_DECREASE_RESERVATION};
use hypercall_abi::ops::mmu::DOMID_SELF;
use hypercall_abi::GuestHandle;

fn current_reservation() -> i64 {
    let domid = DOMID_SELF;
    // SAFETY: a readable domid_t for the hypervisor to read.
    unsafe { calls::memory_op(XENMEM_CURRENT_RESERVATION.into(), GuestHandle::from_ref(&domid)) }
}

pub fn run(command: &str) {
    let mut tally = Tally::new("balloon");
    let Some(mib) = super::numeric_argument("balloon", command, 16, 1..=1024) else { return };
    let pages = mib * 256;
    let before = current_reservation();
    let free_before = mm::with(|m| Ok(m.free_frames())).unwrap_or(0);

    let down = mm::with(|m| m.balloon_down(pages));
    tally.line("down", down == Ok(pages), format_args!("pages={} done={}", pages, down.unwrap_or(0)));
    let after_down = current_reservation();
    tally.line("down_reservation", after_down - before == -(pages as i64), format_args!("delta={}", after_down - before));
    let (ballooned, free) = mm::with(|m| Ok((m.ballooned(), m.free_frames()))).unwrap_or((0, 0));
    tally.line("down_p2m_invalid", ballooned == pages, format_args!("pages={ballooned}"));
    tally.line("down_free_frames", free + pages == free_before, format_args!("delta={}", free as i64 - free_before as i64));

    let up = mm::with(|m| m.balloon_up(pages));
    tally.line("up", up == Ok(pages), format_args!("pages={} done={}", pages, up.unwrap_or(0)));
    let after_up = current_reservation();
    tally.line("up_reservation", after_up == before, format_args!("delta={}", after_up - before));
    let (ballooned, free) = mm::with(|m| Ok((m.ballooned(), m.free_frames()))).unwrap_or((0, 0));
    tally.line("up_p2m_filled", ballooned == 0, format_args!("ballooned={ballooned}"));
    tally.line("up_free_frames", free == free_before, format_args!("delta={}", free as i64 - free_before as i64));

    // Every free frame, the returned ones among them: writable and readable through the
    // physmap, and the M2P maps its machine frame back to it.
    let checked = mm::with(|m| Ok(m.audit_free_frames()));
    let (verified, m2p_ok) = checked.unwrap_or((0, 0));
    tally.line("free_frames_usable", verified == free_before, format_args!("all={}", u8::from(verified == free_before)));
    tally.line("m2p_agrees", m2p_ok == free_before, format_args!("all={}", u8::from(m2p_ok == free_before)));
    still_mapped(&mut tally);
    tally.finish();
}

/// decrease_reservation of a frame the guest still maps (its physmap entry): Xen 4.17
/// takes it (1 done) but frees it, and shrinks the reservation, only when the last
/// mapping goes.
fn still_mapped(tally: &mut Tally) {
    let before = current_reservation();
    let taken = mm::with(|m| m.take_frame());
    let Ok((pfn, mfn)) = taken else {
        tally.line("decrease_mapped", false, format_args!("setup=0"));
        return;
    };
    let mut extent = [mfn];
    let request = MemoryReservation { extent_start: extent.as_mut_ptr() as u64, nr_extents: 1, domid: DOMID_SELF, ..Default::default() };
    // SAFETY: the request and its one-entry list are ours and live for the call.
    let ret = unsafe { calls::memory_op(XENMEM_DECREASE_RESERVATION.into(), GuestHandle::from_ref(&request)) };
    tally.line("decrease_mapped", ret == 1, format_args!("ret={ret}"));
    let mapped = current_reservation() - before;
    tally.line("decrease_mapped_reservation", mapped == 0, format_args!("delta={mapped}"));
    let unmapped = mm::with(|m| {
        let kernel = m.kernel_space().l4();
        let va = m.physmap_va(pfn);
        m.unmap(kernel, va)
    });
    let after = current_reservation() - before;
    tally.line(
        "decrease_mapped_then_unmapped",
        unmapped.is_ok() && after == -1,
        format_args!("unmap={} delta={after}", unmapped.err().map_or(0, mm::MmError::code)),
    );
    let refilled = mm::with(|m| {
        m.forget_machine_frame(pfn);
        m.balloon_up(1)
    });
    tally.line("refilled", refilled == Ok(1), format_args!("done={}", refilled.unwrap_or(0)));
}
