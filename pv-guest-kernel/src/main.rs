#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("pv-guest-kernel is a bare-metal kernel: build it with `cargo xtask build`");
    std::process::exit(2);
}
