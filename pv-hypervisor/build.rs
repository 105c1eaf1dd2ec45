//! Links the bare-metal binary with our linker script; host builds are untouched.
fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        // Code stays position independent (RIP-relative, so it runs at the high
        // direct-map addresses), but the image is linked at fixed addresses with every
        // relocation resolved: nothing relocates the hypervisor at boot.
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
