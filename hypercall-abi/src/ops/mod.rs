//! Sub-operation numbers and argument structures, one module per hypercall family.

/// callback_op commands, callback types and structures (callback.h).
pub mod callback;
/// console_io commands (xen.h).
pub mod console_io;
/// event_channel_op commands and structures, virtual IRQs (event_channel.h, xen.h).
pub mod event_channel;
/// memory_op commands and structures, the M2P table's place (memory.h).
pub mod memory;
/// mmu_update, mmuext_op and update_va_mapping (xen.h).
pub mod mmu;
/// multicall entries (xen.h).
pub mod multicall;
/// nmi_op commands and the callback structure (nmi.h).
pub mod nmi;
/// physdev_op commands (physdev.h).
pub mod physdev;
/// sched_op commands, shutdown reasons and argument structures (sched.h).
pub mod sched_op;
/// set_trap_table entries and the iret frame (arch-x86/xen.h, xen-x86_64.h).
pub mod traps;
/// vcpu_op commands and structures (vcpu.h).
pub mod vcpu;
/// vm_assist commands and types (xen.h).
pub mod vm_assist;
/// xen_version commands and their output structures (version.h).
pub mod xen_version;
