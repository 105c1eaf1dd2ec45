//! Trap and CPU virtualisation, as policy: what a guest registered (`state`), the frame
//! an exception bounce builds (`bounce`), delivering events (`deliver`), the `iret`
//! hypercall (`iret`), the check on every frame returned to a guest (`frame_check`),
//! decoding and emulating the privileged instructions a guest kernel executes (`decode`,
//! `emulate`), and what `cpuid` tells a PV guest (`cpuid`).
//! No unsafe code (forbidden in lib.rs): `arch` hands it registers and guest memory
//! behind `MachineMemory`.

pub mod bounce;
pub mod cpuid;
pub mod debugreg;
pub mod decode;
pub mod deliver;
pub mod emulate;
pub mod entry;
pub mod frame_check;
pub mod iret;
pub mod ldt;
pub mod ports;
pub mod ptwr;
pub mod state;
