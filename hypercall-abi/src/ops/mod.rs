//! Sub-operation numbers and argument structures, one module per hypercall family.

/// console_io commands (xen.h).
pub mod console_io;
/// sched_op commands, shutdown reasons and argument structures (sched.h).
pub mod sched_op;
/// xen_version commands and their output structures (version.h).
pub mod xen_version;
