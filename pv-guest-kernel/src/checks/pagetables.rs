//! `pagetables`: the guest's own page-table manager (`mm`) at work, one RESULT line per
//! step: mapping where no table exists yet (it builds L3, L2 and L1), reading through
//! the mapping, refusing to map twice, write-protecting (a store then faults as it
//! must), unprotecting, unmapping (a load then faults), a second address space with a
//! private mapping at the same address as the kernel's (switching shows one frame, then
//! the other) and the kernel's other mappings shared, destroying it (its tables come back), and refusing to destroy the
//! running one. Runs on both hypervisors; the conformance harness compares the lines.

use super::{probe, report, Expect, Tally};
use crate::console::println;
use crate::mm::{self, MmError, DATA, READ_ONLY};
use hypercall_abi::guest::calls;
use hypercall_abi::ops::mmu::{MmuextOp, DOMID_SELF, MMUEXT_CLEAR_PAGE, MMUEXT_COPY_PAGE};
use hypercall_abi::{GuestArray, GuestOut};

/// L4 slot 3: nothing maps there until this command does.
const VA: u64 = (3 << 39) | 0x1234_5000;
/// L4 slot 4, mapped in the second address space and then in the kernel's.
const PRIVATE_VA: u64 = (4 << 39) | 0x2000;
const TAG_A: u64 = 0x5441_4741_0000_0001;
const TAG_B: u64 = 0x5441_4742_0000_0002;

fn code(result: Result<(), MmError>) -> i64 {
    result.err().map_or(0, MmError::code)
}

fn value(tally: &mut Tally, check: &str, got: u64, expected: u64) {
    let pass = got == expected;
    tally.line(check, pass, format_args!("value_ok={}", u8::from(pass)));
}

/// Reads the word at `va`, with the trap handler armed.
fn load(va: u64) -> super::Probed {
    probe!("", "mov rax, qword ptr [rdi]", va, 0u64)
}

pub fn run() {
    let mut tally = Tally::new("pagetables");
    if crate::traps::install() != 0 {
        println!("RESULT test=pagetables status=fail reason=trap-table");
        return;
    }
    let frames = mm::with(|m| {
        let (a, mfn_a) = m.take_frame()?;
        let (b, mfn_b) = m.take_frame()?;
        m.poke(a, 0, TAG_A)?;
        m.poke(b, 0, TAG_B)?;
        Ok((a, mfn_a, b, mfn_b))
    });
    let Ok((a, mfn_a, b, mfn_b)) = frames else {
        println!("RESULT test=pagetables check=setup ret={} status=fail", frames.err().map_or(0, MmError::code));
        tally.add(false);
        return tally.finish();
    };
    let kernel = mm::with(|m| Ok(m.kernel_space().l4())).unwrap_or(0);

    let free_before = mm::with(|m| Ok(m.free_frames())).unwrap_or(0);
    tally.ret("map_builds_tables", code(mm::with(|m| m.map(kernel, VA, mfn_a, DATA))), 0);
    let made = free_before - mm::with(|m| Ok(m.free_frames())).unwrap_or(0);
    println!("RESULT test=pagetables check=tables_made count={made} status={}", if made == 3 { "pass" } else { "fail" });
    tally.add(made == 3);
    let p = load(VA);
    tally.add(report("pagetables", "load_mapped", &p, &Expect::none()));
    value(&mut tally, "load_sees_the_frame", p.rax, TAG_A);
    tally.ret("map_twice", code(mm::with(|m| m.map(kernel, VA, mfn_b, DATA))), MmError::AlreadyMapped.code());

    tally.ret("protect_read_only", code(mm::with(|m| m.protect(kernel, VA, READ_ONLY))), 0);
    let p = probe!("", "mov qword ptr [rdi], rsi", VA, 1u64);
    tally.add(report("pagetables", "store_read_only", &p, &Expect { cr2: Some(VA), ..Expect::fault(14, 3) }));
    tally.ret("protect_writable", code(mm::with(|m| m.protect(kernel, VA, DATA))), 0);
    let p = probe!("", "mov qword ptr [rdi], rsi", VA, TAG_A + 1);
    tally.add(report("pagetables", "store_writable", &p, &Expect::none()));
    value(&mut tally, "store_reached_the_frame", mm::with(|m| m.peek(a, 0)).unwrap_or(0), TAG_A + 1);

    tally.ret("unmap", code(mm::with(|m| m.unmap(kernel, VA))), 0);
    let p = load(VA);
    tally.add(report("pagetables", "load_unmapped", &p, &Expect { cr2: Some(VA), ..Expect::fault(14, 0) }));
    tally.ret("unmap_twice", code(mm::with(|m| m.unmap(kernel, VA))), MmError::NotMapped.code());

    // A second address space: it shares the kernel's mappings (VA, mapped again), and
    // PRIVATE_VA, which only it has a table for, maps B there and A here.
    tally.ret("map_again", code(mm::with(|m| m.map(kernel, VA, mfn_a, DATA))), 0);
    let free_before = mm::with(|m| Ok(m.free_frames())).unwrap_or(0);
    let space = mm::with(|m| m.new_address_space());
    tally.ret("new_address_space", code(space.map(|_| ())), 0);
    let Ok(space) = space else { return tally.finish() };
    tally.ret("map_in_second_space", code(mm::with(|m| m.map(space.l4(), PRIVATE_VA, mfn_b, DATA))), 0);
    tally.ret("map_in_kernel_space", code(mm::with(|m| m.map(kernel, PRIVATE_VA, mfn_a, DATA))), 0);
    tally.ret("switch_to_second", code(mm::with(|m| m.switch_to(space))), 0);
    let in_second = load(PRIVATE_VA).rax;
    let shared = load(VA).rax;
    tally.ret("switch_back", code(mm::with(|m| m.switch_to(m.kernel_space()))), 0);
    let in_kernel = load(PRIVATE_VA).rax;
    value(&mut tally, "second_space_sees_its_frame", in_second, TAG_B);
    value(&mut tally, "kernel_space_sees_its_frame", in_kernel, TAG_A + 1);
    value(&mut tally, "second_space_shares_kernel_mappings", shared, TAG_A + 1);
    tally.ret("destroy_running_space", code(mm::with(|m| m.destroy_address_space(m.kernel_space()))), MmError::InUse.code());
    tally.ret("destroy_second_space", code(mm::with(|m| m.destroy_address_space(space))), 0);
    let leaked = free_before as i64 - mm::with(|m| Ok(m.free_frames())).unwrap_or(0) as i64;
    // The kernel made tables for PRIVATE_VA (L3, L2, L1); the second space's L4 and its
    // three came back.
    println!("RESULT test=pagetables check=tables_returned kernel_tables={leaked} status={}", if leaked == 3 { "pass" } else { "fail" });
    tally.add(leaked == 3);
    unpinned_base_pointer(&mut tally);
    tally.ret("unmap_private", code(mm::with(|m| m.unmap(kernel, PRIVATE_VA))), 0);
    tally.ret("unmap_shared", code(mm::with(|m| m.unmap(kernel, VA))), 0);
    frame_operations(&mut tally, kernel, (a, mfn_a), mfn_b);
    let _ = mm::with(|m| {
        m.give_frame(a);
        m.give_frame(b);
        Ok(())
    });
    tally.finish();
}

fn mmuext(cmd: u32, arg1: u64, arg2: u64) -> Result<(), MmError> {
    let op = MmuextOp { cmd, _pad: 0, arg1, arg2 };
    // SAFETY: one readable MmuextOp; CLEAR_PAGE and COPY_PAGE write only the frame named.
    let ret = unsafe { calls::mmuext_op(GuestArray::from_slice(&[op]), 1, GuestOut::NULL, DOMID_SELF) };
    if ret < 0 {
        Err(MmError::Hypercall(ret))
    } else {
        Ok(())
    }
}

/// MMUEXT_CLEAR_PAGE and MMUEXT_COPY_PAGE on frame A (ours, data), from frame B, and on
/// the kernel's L4 (a page table: readable, never writable) and machine frame 0 (not
/// ours).
fn frame_operations(tally: &mut Tally, kernel_l4: u64, (a, mfn_a): (u64, u64), mfn_b: u64) {
    let _ = mm::with(|m| m.poke(a, 3, TAG_A));
    tally.ret("clear_page", code(mmuext(MMUEXT_CLEAR_PAGE, mfn_a, 0)), 0);
    value(tally, "clear_page_zeroed", mm::with(|m| m.peek(a, 3)).unwrap_or(1), 0);
    tally.ret("copy_page", code(mmuext(MMUEXT_COPY_PAGE, mfn_a, mfn_b)), 0);
    value(tally, "copy_page_copied", mm::with(|m| m.peek(a, 0)).unwrap_or(0), TAG_B);
    tally.ret("copy_page_from_page_table", code(mmuext(MMUEXT_COPY_PAGE, mfn_a, kernel_l4)), 0);
    tally.ret("clear_page_table", code(mmuext(MMUEXT_CLEAR_PAGE, kernel_l4, 0)), -22);
    tally.ret("copy_into_page_table", code(mmuext(MMUEXT_COPY_PAGE, kernel_l4, mfn_b)), -22);
    tally.ret("clear_page_not_ours", code(mmuext(MMUEXT_CLEAR_PAGE, 0, 0)), -22);
    tally.ret("copy_page_from_not_ours", code(mmuext(MMUEXT_COPY_PAGE, mfn_a, 0)), -22);
}

/// MMUEXT_NEW_BASEPTR with an L4 that is validated but not pinned: Xen 4.17 takes it
/// (the base pointer holds its own type reference), and so do we.
fn unpinned_base_pointer(tally: &mut Tally) {
    use hypercall_abi::ops::mmu::{MMUEXT_PIN_L4_TABLE, MMUEXT_UNPIN_TABLE};
    let Ok(space) = mm::with(|m| m.new_address_space()) else {
        tally.ret("unpinned_setup", code(Err(MmError::OutOfFrames)), 0);
        return;
    };
    tally.ret("unpin_l4", code(mmuext(MMUEXT_UNPIN_TABLE, space.l4(), 0)), 0);
    let switched = mm::with(|m| m.switch_to(space));
    tally.ret("switch_to_unpinned_l4", code(switched), 0);
    if switched.is_ok() {
        tally.ret("switch_back_from_unpinned", code(mm::with(|m| m.switch_to(m.kernel_space()))), 0);
    }
    tally.ret("pin_again", code(mmuext(MMUEXT_PIN_L4_TABLE, space.l4(), 0)), 0);
    tally.ret("destroy_third_space", code(mm::with(|m| m.destroy_address_space(space))), 0);
}
