//! pv-hypervisor: a Xen-style type-1 hypervisor that runs paravirtualized guests in ring 3.
//!
//! Hardware-independent logic (image parsing, domain layout, guest page walks, frame
//! allocation, hypercall handling) compiles on the host and is unit-tested there with
//! `cargo test -p pv-hypervisor --lib`. Everything that touches the CPU lives under
//! [`arch`], compiled only for the bare-metal target.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

// The unsafe boundary: only `arch` (the CPU, devices, and the direct-map accessor to
// machine memory) may use `unsafe`; all policy compiles with it forbidden.
#[cfg(target_os = "none")]
pub mod arch;
#[forbid(unsafe_code)]
pub mod boot_options;
#[forbid(unsafe_code)]
pub mod console;
#[forbid(unsafe_code)]
pub mod domain;
#[forbid(unsafe_code)]
pub mod evtchn;
#[forbid(unsafe_code)]
pub mod hypercall;
#[forbid(unsafe_code)]
pub mod mm;
#[forbid(unsafe_code)]
pub mod sched;
#[forbid(unsafe_code)]
pub mod time;
#[forbid(unsafe_code)]
pub mod trap;
