//! pv-guest-kernel: a small paravirtualized kernel. It never executes a privileged
//! instruction except through [`platform`], which asks the hypervisor instead.
//!
//! It boots on pv-hypervisor and on real Xen alike: it enters from `start_info`, greets
//! with what it was given, runs the command named on its command line and powers off.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod checks;
#[cfg(target_os = "none")]
mod commands;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod events;
#[cfg(target_os = "none")]
mod mm;
#[cfg(target_os = "none")]
mod platform;
#[cfg(target_os = "none")]
mod threads;
#[cfg(target_os = "none")]
mod traps;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("pv-guest-kernel is a bare-metal kernel: build it with `cargo xtask build`");
    std::process::exit(2);
}
