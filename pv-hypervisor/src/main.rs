//! The hypervisor binary. All of it lives in the library: the PVH entry point, set up in
//! `arch::x86_64::boot`, is what QEMU jumps to.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
use pv_hypervisor as _;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("pv-hypervisor is a bare-metal kernel: build it with `cargo xtask build`");
    std::process::exit(2);
}
