use super::super::test_support::{TestGuest, GUEST_DATA_VA};
use hypercall_abi::nr;
use hypercall_abi::ops::callback::*;
use hypercall_abi::ops::traps::TrapInfo;
use hypercall_abi::ops::vm_assist::*;
use zerocopy::IntoBytes;

fn trap(vector: u8, flags: u8, address: u64) -> TrapInfo {
    TrapInfo { vector, flags, cs: 0xe030, _pad: 0, address }
}

fn write_traps(guest: &mut TestGuest, entries: &[TrapInfo]) {
    let bytes: std::vec::Vec<u8> = entries.iter().flat_map(|t| t.as_bytes().to_vec()).collect();
    guest.poke(GUEST_DATA_VA, &bytes);
}

#[test]
fn set_trap_table_installs_until_the_terminator_and_null_clears() {
    let mut g = TestGuest::new();
    write_traps(&mut g, &[trap(14, 4, 0x10_1000), trap(0x80, 3, 0x10_2000), trap(3, 0, 0), trap(6, 0, 0x10_3000)]);
    assert_eq!(g.call(nr::set_trap_table, [GUEST_DATA_VA, 0, 0, 0, 0, 0]), 0);
    let t = &g.domain.traps;
    assert_eq!(t.trap(14).address, 0x10_1000);
    assert_eq!(t.trap(14).cs, 0xe033, "guest privilege forced on the selector");
    assert!(t.trap(14).masks_events(), "flags bit 2: an interrupt gate");
    assert_eq!((t.trap(0x80).dpl(), t.trap(0x80).masks_events()), (3, false));
    assert!(!t.trap(6).is_set(), "entries after the terminator are not read");
    // A later call changes only the vectors it names.
    write_traps(&mut g, &[trap(6, 0, 0x10_4000), trap(0, 0, 0)]);
    assert_eq!(g.call(nr::set_trap_table, [GUEST_DATA_VA, 0, 0, 0, 0, 0]), 0);
    assert_eq!((g.domain.traps.trap(6).address, g.domain.traps.trap(14).address), (0x10_4000, 0x10_1000));
    assert_eq!(g.call(nr::set_trap_table, [0; 6]), 0);
    assert!((0..=255u8).all(|v| !g.domain.traps.trap(v).is_set()));
}

#[test]
fn set_trap_table_errors_keep_what_was_installed() {
    let mut g = TestGuest::new();
    write_traps(&mut g, &[trap(1, 0, 0x10_1000), trap(2, 0, 0x8000_0000_0000), trap(0, 0, 0)]);
    assert_eq!(g.call(nr::set_trap_table, [GUEST_DATA_VA, 0, 0, 0, 0, 0]), -22);
    assert!(g.domain.traps.trap(1).is_set() && !g.domain.traps.trap(2).is_set());
    // An array running off the mapped pages without a terminator.
    let last = GUEST_DATA_VA + TestGuest::MAPPED_BYTES - 16;
    g.poke(last, trap(9, 0, 0x10_9000).as_bytes());
    assert_eq!(g.call(nr::set_trap_table, [last, 0, 0, 0, 0, 0]), -14);
    assert!(g.domain.traps.trap(9).is_set());
    assert_eq!(g.call(nr::set_trap_table, [0xffff_8300_0000_0000, 0, 0, 0, 0, 0]), -14);
}

#[test]
fn callbacks_register_and_only_nmi_unregisters() {
    let mut g = TestGuest::new();
    let reg = |t: u16, flags: u16, address: u64| CallbackRegister { callback_type: t, flags, _pad: 0, address };
    let arg = [CALLBACKOP_REGISTER as u64, GUEST_DATA_VA, 0, 0, 0, 0];
    g.poke(GUEST_DATA_VA, reg(CALLBACKTYPE_SYSCALL, CALLBACKF_MASK_EVENTS, 0x10_5000).as_bytes());
    assert_eq!(g.call(nr::callback_op, arg), 0);
    let syscall = g.domain.traps.callbacks.syscall.unwrap();
    assert_eq!((syscall.address, syscall.mask_events), (0x10_5000, true));
    for t in [CALLBACKTYPE_EVENT, CALLBACKTYPE_FAILSAFE, CALLBACKTYPE_SYSCALL32, CALLBACKTYPE_SYSENTER, CALLBACKTYPE_NMI] {
        g.poke(GUEST_DATA_VA, reg(t, 0, 0x10_6000).as_bytes());
        assert_eq!(g.call(nr::callback_op, arg), 0, "type {t}");
    }
    // The NMI callback is trap-table entry 2, masking events whatever the flags said.
    let nmi = g.domain.traps.trap(2);
    assert_eq!((nmi.address, nmi.cs, nmi.masks_events(), nmi.dpl()), (0x10_6000, 0xe033, true, 0));
    for retired_or_unknown in [3, 6, 8] {
        g.poke(GUEST_DATA_VA, reg(retired_or_unknown, 0, 0x10_6000).as_bytes());
        assert_eq!(g.call(nr::callback_op, arg), -38, "type {retired_or_unknown}");
    }
    g.poke(GUEST_DATA_VA, reg(CALLBACKTYPE_EVENT, 0, 0xffff_0000_0000_0000).as_bytes());
    assert_eq!(g.call(nr::callback_op, arg), -22, "non-canonical");

    let unreg = [CALLBACKOP_UNREGISTER as u64, GUEST_DATA_VA, 0, 0, 0, 0];
    g.poke(GUEST_DATA_VA, CallbackUnregister { callback_type: CALLBACKTYPE_NMI, _pad: 0 }.as_bytes());
    assert_eq!(g.call(nr::callback_op, unreg), 0);
    assert!(!g.domain.traps.trap(2).is_set());
    g.poke(GUEST_DATA_VA, CallbackUnregister { callback_type: CALLBACKTYPE_EVENT, _pad: 0 }.as_bytes());
    assert_eq!(g.call(nr::callback_op, unreg), -22);
    g.poke(GUEST_DATA_VA, CallbackUnregister { callback_type: 99, _pad: 0 }.as_bytes());
    assert_eq!(g.call(nr::callback_op, unreg), -38);
    assert_eq!(g.call(nr::callback_op, [7, GUEST_DATA_VA, 0, 0, 0, 0]), -38);
    assert_eq!(g.call(nr::callback_op, [CALLBACKOP_REGISTER as u64, 0x10, 0, 0, 0, 0]), -14);

    assert_eq!(g.call(nr::set_callbacks, [0x10_7000, 0x10_8000, 0x8000_0000_0000, 0, 0, 0]), 0);
    assert_eq!(g.domain.traps.callbacks.event.unwrap().address, 0x10_7000);
    assert_eq!(g.domain.traps.callbacks.failsafe.unwrap().address, 0x10_8000);
    let syscall = g.domain.traps.callbacks.syscall.unwrap();
    assert_eq!((syscall.address, syscall.mask_events), (0x10_5000, true), "the bad address was skipped");
}

#[test]
fn stack_switch_fpu_and_vm_assist() {
    let mut g = TestGuest::new();
    assert_eq!(g.call(nr::stack_switch, [0xe028, 0x20_0000, 0, 0, 0, 0]), 0);
    assert_eq!((g.domain.traps.kernel_ss, g.domain.traps.kernel_sp), (0xe02b, 0x20_0000));
    assert_eq!(g.call(nr::fpu_taskswitch, [1, 0, 0, 0, 0, 0]), 0);
    assert!(g.domain.traps.fpu_ts());
    assert_eq!(g.call(nr::fpu_taskswitch, [0, 0, 0, 0, 0, 0]), 0);
    assert!(!g.domain.traps.fpu_ts());
    let enable = VMASST_CMD_ENABLE as u64;
    assert_eq!(g.call(nr::vm_assist, [enable, VMASST_TYPE_ARCHITECTURAL_IOPL as u64, 0, 0, 0, 0]), 0);
    assert!(g.domain.traps.architectural_iopl());
    assert_eq!(g.call(nr::vm_assist, [VMASST_CMD_DISABLE as u64, 4, 0, 0, 0, 0]), 0);
    assert!(!g.domain.traps.architectural_iopl());
    assert_eq!(g.call(nr::vm_assist, [enable, 6, 0, 0, 0, 0]), -22);
    assert_eq!(g.call(nr::vm_assist, [enable, 64, 0, 0, 0, 0]), -22);
    assert_eq!(g.call(nr::vm_assist, [2, 4, 0, 0, 0, 0]), -38);
}

#[test]
fn nmi_op_sets_the_same_entry_and_send_nmi_waits_for_iret() {
    use hypercall_abi::ops::nmi::*;
    use hypercall_abi::ops::vcpu::VCPUOP_SEND_NMI;
    let mut g = TestGuest::new();
    g.poke(GUEST_DATA_VA, XennmiCallback { handler_address: 0x10_7000, pad: 0 }.as_bytes());
    assert_eq!(g.call(nr::nmi_op, [XENNMI_REGISTER_CALLBACK as u64, GUEST_DATA_VA, 0, 0, 0, 0]), 0);
    assert_eq!(g.domain.traps.trap(2).address, 0x10_7000);
    g.poke(GUEST_DATA_VA, XennmiCallback { handler_address: 0x8000_0000_0000, pad: 0 }.as_bytes());
    assert_eq!(g.call(nr::nmi_op, [XENNMI_REGISTER_CALLBACK as u64, GUEST_DATA_VA, 0, 0, 0, 0]), -22);
    assert_eq!(g.call(nr::nmi_op, [XENNMI_REGISTER_CALLBACK as u64, 0x10, 0, 0, 0, 0]), -14);
    assert_eq!(g.call(nr::nmi_op, [7, 0, 0, 0, 0, 0]), -38);

    assert_eq!(g.call(nr::vcpu_op, [VCPUOP_SEND_NMI as u64, 0, GUEST_DATA_VA, 0, 0, 0]), -22, "arg must be NULL");
    assert_eq!(g.call(nr::vcpu_op, [VCPUOP_SEND_NMI as u64, 1, 0, 0, 0, 0]), -2, "no vCPU 1");
    assert_eq!(g.call(nr::vcpu_op, [VCPUOP_SEND_NMI as u64, 0, 0, 0, 0, 0]), 0);
    assert!(g.domain.traps.nmi_deliverable());
    // Delivered on the way out: the handler runs with NMIs (and events) masked.
    g.regs.rsp = GUEST_DATA_VA + 0x800;
    assert_eq!(crate::trap::deliver::deliver_nmi(&mut g.domain, &mut g.host.memory, &mut g.regs), Ok(true));
    assert_eq!(g.regs.rip, 0x10_7000);
    assert!(g.domain.traps.nmi_masked && !g.domain.traps.exit.nmi_pending);
    assert_eq!(g.call(nr::vcpu_op, [VCPUOP_SEND_NMI as u64, 0, 0, 0, 0, 0]), 0);
    assert_eq!(crate::trap::deliver::deliver_nmi(&mut g.domain, &mut g.host.memory, &mut g.regs), Ok(false), "nested: waits");
    assert!(g.domain.traps.exit.nmi_pending);
    // Unregistered: a pending NMI is dropped.
    assert_eq!(g.call(nr::nmi_op, [XENNMI_UNREGISTER_CALLBACK as u64, 0, 0, 0, 0, 0]), 0);
    g.domain.traps.nmi_masked = false;
    assert_eq!(crate::trap::deliver::deliver_nmi(&mut g.domain, &mut g.host.memory, &mut g.regs), Ok(false));
    assert!(!g.domain.traps.exit.nmi_pending);
}
