//! pv-hypervisor: a Xen-style type-1 hypervisor that runs paravirtualized guests in ring 3.
//!
//! Hardware-independent logic (image parsing, domain layout, guest page walks, frame
//! allocation, hypercall handling) compiles on the host and is unit-tested there with
//! `cargo test -p pv-hypervisor --lib`. Everything that touches the CPU lives under
//! [`arch`], compiled only for the bare-metal target.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

#[cfg(target_os = "none")]
pub mod arch;
pub mod domain;
pub mod boot_options;
pub mod console;
pub mod hypercall;
pub mod mm;
pub mod trap;
