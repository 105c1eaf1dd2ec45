//! Links the bare-metal binary with our linker script; host builds are untouched.
fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        // Fixed addresses, every relocation resolved at link time: the domain builder
        // loads segments where they say and relocates nothing.
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
