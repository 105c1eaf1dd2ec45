//! How typed hypercall arguments travel in 64-bit registers.

/// A guest virtual address passed to a hypercall. The hypervisor never dereferences it
/// directly: it is translated through the calling guest's own page tables first, and a
/// bad one yields `-EFAULT`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[repr(transparent)]
pub struct GuestAddr(pub u64);

impl GuestAddr {
    pub const NULL: GuestAddr = GuestAddr(0);

    pub fn from_ptr<T: ?Sized>(ptr: *const T) -> GuestAddr {
        GuestAddr(ptr as *const u8 as u64)
    }

    pub fn from_mut_ptr<T: ?Sized>(ptr: *mut T) -> GuestAddr {
        GuestAddr(ptr as *mut u8 as u64)
    }

    pub const fn is_null(self) -> bool {
        self.0 == 0
    }

    /// `self + offset`, or `None` on overflow.
    pub const fn checked_add(self, offset: u64) -> Option<GuestAddr> {
        match self.0.checked_add(offset) {
            Some(a) => Some(GuestAddr(a)),
            None => None,
        }
    }
}

/// A type that travels in one argument register.
///
/// Decoding follows the C prototypes in Xen's headers: an `unsigned int` argument uses
/// the low 32 bits of its register and ignores the rest, a `domid_t` the low 16.
pub trait HypercallArg: Copy {
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

impl HypercallArg for GuestAddr {
    fn from_register(value: u64) -> Self {
        GuestAddr(value)
    }
    fn to_register(self) -> u64 {
        self.0
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
