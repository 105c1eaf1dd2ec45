//! Architecture-specific code: everything that touches the CPU or devices directly.
//! Only x86_64 exists; the rest of the hypervisor reaches the hardware through here.

pub mod x86_64;
