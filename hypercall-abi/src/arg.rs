//! How typed hypercall arguments travel in 64-bit registers.

/// A type that travels in one argument register.
///
/// Decoding follows the C prototypes in Xen's headers: an `unsigned int` argument uses
/// the low 32 bits of its register and ignores the rest, a `domid_t` the low 16.
pub trait HypercallArg {
    fn from_register(value: u64) -> Self;
    fn to_register(self) -> u64;
}

impl HypercallArg for u64 {
    fn from_register(value: u64) -> Self {
        value
    }
    fn to_register(self) -> u64 {
        self
    }
}

impl HypercallArg for u32 {
    fn from_register(value: u64) -> Self {
        value as u32
    }
    fn to_register(self) -> u64 {
        self as u64
    }
}

impl HypercallArg for i32 {
    fn from_register(value: u64) -> Self {
        value as u32 as i32
    }
    fn to_register(self) -> u64 {
        self as u32 as u64
    }
}

impl HypercallArg for u16 {
    fn from_register(value: u64) -> Self {
        value as u16
    }
    fn to_register(self) -> u64 {
        self as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_arguments_ignore_high_bits() {
        assert_eq!(u32::from_register(0xdead_beef_0000_0001), 1);
        assert_eq!(u16::from_register(0x1_7ff0), 0x7ff0);
        assert_eq!(i32::from_register(0xffff_ffff), -1);
        assert_eq!((-1i32).to_register(), 0xffff_ffff);
    }
}
