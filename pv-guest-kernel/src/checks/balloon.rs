//! `balloon [MIB]`: the guest gives MIB (default 16) of its free memory back to the
//! hypervisor and takes it again (`mm::balloon`), and checks what both sides say: the
//! reservation shrinks and grows by exactly the pages moved, the p2m list and the M2P
//! table agree afterwards, and every page that came back can be written and read. Runs
//! on both hypervisors; the lines carry page counts, not frame numbers.

use super::Tally;
use crate::console::println;
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

fn line(tally: &mut Tally, check: &str, fields: core::fmt::Arguments<'_>, pass: bool) {
    println!("RESULT test=balloon check={check} {fields} status={}", if pass { "pass" } else { "fail" });
    tally.add(pass);
}

pub fn run(command: &str) {
    let mut tally = Tally::new("balloon");
    let Some(mib) = super::numeric_argument("balloon", command, 16, 1..=1024) else { return };
    let pages = mib * 256;
    let before = current_reservation();
    let free_before = mm::with(|m| Ok(m.free_frames())).unwrap_or(0);

    let down = mm::with(|m| m.balloon_down(pages));
    line(&mut tally, "down", format_args!("pages={} done={}", pages, down.unwrap_or(0)), down == Ok(pages));
    let after_down = current_reservation();
    line(&mut tally, "down_reservation", format_args!("delta={}", after_down - before), after_down - before == -(pages as i64));
    let (ballooned, free) = mm::with(|m| Ok((m.ballooned(), m.free_frames()))).unwrap_or((0, 0));
    line(&mut tally, "down_p2m_invalid", format_args!("pages={ballooned}"), ballooned == pages);
    line(&mut tally, "down_free_frames", format_args!("delta={}", free as i64 - free_before as i64), free + pages == free_before);

    let up = mm::with(|m| m.balloon_up(pages));
    line(&mut tally, "up", format_args!("pages={} done={}", pages, up.unwrap_or(0)), up == Ok(pages));
    let after_up = current_reservation();
    line(&mut tally, "up_reservation", format_args!("delta={}", after_up - before), after_up == before);
    let (ballooned, free) = mm::with(|m| Ok((m.ballooned(), m.free_frames()))).unwrap_or((0, 0));
    line(&mut tally, "up_p2m_filled", format_args!("ballooned={ballooned}"), ballooned == 0);
    line(&mut tally, "up_free_frames", format_args!("delta={}", free as i64 - free_before as i64), free == free_before);

    // Every free frame, the returned ones among them: writable and readable through the
    // physmap, and the M2P maps its machine frame back to it.
    let checked = mm::with(|m| Ok(m.audit_free_frames()));
    let (verified, m2p_ok) = checked.unwrap_or((0, 0));
    line(&mut tally, "free_frames_usable", format_args!("all={}", u8::from(verified == free_before)), verified == free_before);
    line(&mut tally, "m2p_agrees", format_args!("all={}", u8::from(m2p_ok == free_before)), m2p_ok == free_before);
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
        line(tally, "decrease_mapped", format_args!("setup=0"), false);
        return;
    };
    let mut extent = [mfn];
    let request = MemoryReservation { extent_start: extent.as_mut_ptr() as u64, nr_extents: 1, domid: DOMID_SELF, ..Default::default() };
    // SAFETY: the request and its one-entry list are ours and live for the call.
    let ret = unsafe { calls::memory_op(XENMEM_DECREASE_RESERVATION.into(), GuestHandle::from_ref(&request)) };
    line(tally, "decrease_mapped", format_args!("ret={ret}"), ret == 1);
    let mapped = current_reservation() - before;
    line(tally, "decrease_mapped_reservation", format_args!("delta={mapped}"), mapped == 0);
    let unmapped = mm::with(|m| {
        let kernel = m.kernel_space().l4();
        let va = m.physmap_va(pfn);
        m.unmap(kernel, va)
    });
    let after = current_reservation() - before;
    line(
        tally,
        "decrease_mapped_then_unmapped",
        format_args!("unmap={} delta={after}", unmapped.err().map_or(0, mm::MmError::code)),
        unmapped.is_ok() && after == -1,
    );
    let refilled = mm::with(|m| {
        m.forget_machine_frame(pfn);
        m.balloon_up(1)
    });
    line(tally, "refilled", format_args!("done={}", refilled.unwrap_or(0)), refilled == Ok(1));
}
