//! Domains: the boot bundle, guest images, the PV memory layout and the builder.

pub mod bundle;
pub mod elf_image;
pub mod layout;
