//! Typed guest handles: how a hypercall names guest memory (Xen's `XEN_GUEST_HANDLE`,
//! xen.h). Every pointer argument in the hypercall table, and every pointer a guest
//! leaves inside an argument structure, is one of:
//!
//! - [`GuestIn<T>`]: one `T` the hypervisor reads;
//! - [`GuestOut<T>`]: one `T` it writes;
//! - [`GuestInOut<T>`]: one `T` it reads and may then write back;
//! - [`GuestArray<T>`]: consecutive `T`s, taken front to back;
//! - [`GuestHandle`]: a pointer whose type its command decides (`memory_op`'s `arg`),
//!   which the handler turns into one of the above once it knows the command.
//!
//! On the hypervisor's side handles are neither `Copy` nor `Clone`, and every access
//! consumes the handle: a value is fetched from the guest once, into hypervisor memory,
//! and checked and used there. A second fetch of the same guest bytes, which another
//! vCPU may have changed in between (a double fetch, the classic time-of-check to
//! time-of-use hole), cannot be written without making a new handle on purpose.
//!
//! The bytes go through a [`GuestMemory`]: the hypervisor's implementation walks the
//! calling domain's own page tables and reaches only frames it owns. Its methods take
//! an [`Access`] token that only this module can make, so the hypervisor reaches guest
//! memory through handles and nothing else.
//!
//! A handler that fetches a request once compiles:
//!
//! ```
//! # use hypercall_abi::{handle::Access, Errno, GuestIn, GuestMemory};
//! # struct Guest;
//! # impl GuestMemory for Guest {
//! #     fn read_guest_bytes(&self, _: Access, _: u64, out: &mut [u8]) -> Result<(), Errno> { out.fill(1); Ok(()) }
//! #     fn write_guest_bytes(&mut self, _: Access, _: u64, _: &[u8]) -> Result<(), Errno> { Ok(()) }
//! # }
//! fn handler(guest: &Guest, request: GuestIn<u32>) -> Result<u32, Errno> {
//!     let size = request.read(guest)?;
//!     if size > 64 {
//!         return Err(Errno::EINVAL);
//!     }
//!     Ok(size)
//! }
//! # assert_eq!(handler(&Guest, GuestIn::from_raw(0x1000)), Err(Errno::EINVAL));
//! ```
//!
//! The same handler fetching it a second time after the check, the double fetch, does
//! not (the handle was consumed by the first read):
//!
//! ```compile_fail,E0382
//! # use hypercall_abi::{handle::Access, Errno, GuestIn, GuestMemory};
//! # struct Guest;
//! # impl GuestMemory for Guest {
//! #     fn read_guest_bytes(&self, _: Access, _: u64, out: &mut [u8]) -> Result<(), Errno> { out.fill(1); Ok(()) }
//! #     fn write_guest_bytes(&mut self, _: Access, _: u64, _: &[u8]) -> Result<(), Errno> { Ok(()) }
//! # }
//! fn handler(guest: &Guest, request: GuestIn<u32>) -> Result<u32, Errno> {
//!     let size = request.read(guest)?;
//!     if size > 64 {
//!         return Err(Errno::EINVAL);
//!     }
//!     request.read(guest)
//! }
//! ```
//!
//! Nor can a handler reach guest memory by address: the raw methods need an `Access`,
//! which only this module can make:
//!
//! ```compile_fail,E0423
//! # use hypercall_abi::{handle::Access, Errno, GuestMemory};
//! fn peek(guest: &impl GuestMemory, va: u64) -> Result<u8, Errno> {
//!     let mut byte = [0u8];
//!     guest.read_guest_bytes(Access(()), va, &mut byte)?;
//!     Ok(byte[0])
//! }
//! ```
//!
//! Where handles come from: the table's argument registers (`dispatch`), a command's
//! cast of a [`GuestHandle`], an element or the rest of an array, and `from_raw` for an
//! address the guest stored in a structure it passed (or, for `iret`, its stack
//! pointer). A guest (feature `guest`) makes them from references and slices.

use crate::{Errno, HypercallArg};
use core::marker::PhantomData;
use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Proof that a guest-memory access comes from a handle: only this module makes one.
#[derive(Clone, Copy)]
pub struct Access(());

/// Guest virtual memory as one domain sees it, for the handles in this module.
pub trait GuestMemory {
    /// Copies `out.len()` bytes from guest address `va`; `-EFAULT` if any is not
    /// readable by the guest.
    fn read_guest_bytes(&self, access: Access, va: u64, out: &mut [u8]) -> Result<(), Errno>;
    /// Copies `data` to guest address `va`; `-EFAULT` if any byte is not writable by
    /// the guest.
    fn write_guest_bytes(&mut self, access: Access, va: u64, data: &[u8]) -> Result<(), Errno>;
}

/// The address `count` elements of `T` after `addr`, or `None` if it overflows.
fn offset<T>(addr: Option<u64>, count: u64) -> Option<u64> {
    addr?.checked_add(count.checked_mul(size_of::<T>() as u64)?)
}

macro_rules! handle_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<T> {
            /// `None` once arithmetic on the address overflowed: every access is -EFAULT.
            addr: Option<u64>,
            _of: PhantomData<fn() -> T>,
        }

        impl<T> $name<T> {
            /// The null handle (some hypercalls take it to mean "none").
            pub const NULL: Self = Self::from_raw(0);

            /// A handle at guest address `addr`: an address the guest stored in a
            /// structure it passed, or one a guest makes up (the fuzzer, attacks).
            pub const fn from_raw(addr: u64) -> Self {
                $name { addr: Some(addr), _of: PhantomData }
            }

            /// The guest address, for tracing and comparisons; not for access.
            pub fn address(&self) -> u64 {
                self.addr.unwrap_or(u64::MAX)
            }

            pub fn is_null(&self) -> bool {
                self.addr == Some(0)
            }
        }

        impl<T> HypercallArg for $name<T> {
            fn from_register(value: u64) -> Self {
                Self::from_raw(value)
            }
            fn to_register(self) -> u64 {
                self.address()
            }
        }

        impl<T> core::fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.address())
            }
        }
    };
}

handle_type! {
    /// One `T` the hypervisor reads from the guest, once.
    GuestIn
}
handle_type! {
    /// One `T` the hypervisor writes into the guest, once.
    GuestOut
}
handle_type! {
    /// One `T` the hypervisor reads once and may then write back.
    GuestInOut
}
handle_type! {
    /// Consecutive `T`s in the guest, taken front to back. The count travels separately,
    /// as in Xen's ABI.
    GuestArray
}

impl<T: FromBytes + IntoBytes> GuestIn<T> {
    /// Fetches the value.
    pub fn read<M: GuestMemory + ?Sized>(self, memory: &M) -> Result<T, Errno> {
        let mut value = T::new_zeroed();
        memory.read_guest_bytes(Access(()), self.addr.ok_or(Errno::EFAULT)?, value.as_mut_bytes())?;
        Ok(value)
    }
}

impl<T: IntoBytes + Immutable> GuestOut<T> {
    /// Stores `value`.
    pub fn write<M: GuestMemory + ?Sized>(self, memory: &mut M, value: &T) -> Result<(), Errno> {
        memory.write_guest_bytes(Access(()), self.addr.ok_or(Errno::EFAULT)?, value.as_bytes())
    }
}

impl<T> GuestOut<T> {
    /// The field of type `U` at byte `offset` of the `T` (`offset_of!`), as its own
    /// handle: a result written back into an entry leaves the entry's other fields as
    /// the guest has them.
    ///
    /// # Panics
    /// If the field does not lie within `T` (a bug in the caller's constant, not
    /// something a guest can cause).
    pub fn field<U>(self, offset: usize) -> GuestOut<U> {
        assert!(offset + size_of::<U>() <= size_of::<T>(), "field outside its structure");
        GuestOut { addr: self.addr.and_then(|a| a.checked_add(offset as u64)), _of: PhantomData }
    }
}

impl<T: FromBytes + IntoBytes> GuestInOut<T> {
    /// Fetches the value, and keeps the right to write it back.
    pub fn read<M: GuestMemory + ?Sized>(self, memory: &M) -> Result<(T, GuestOut<T>), Errno> {
        let out = GuestOut { addr: self.addr, _of: PhantomData };
        Ok((GuestIn { addr: self.addr, _of: PhantomData }.read(memory)?, out))
    }
}

impl<T> GuestInOut<T> {
    /// Only to be read.
    pub fn into_in(self) -> GuestIn<T> {
        GuestIn { addr: self.addr, _of: PhantomData }
    }

    /// Only to be written.
    pub fn into_out(self) -> GuestOut<T> {
        GuestOut { addr: self.addr, _of: PhantomData }
    }
}

impl<T> GuestArray<T> {
    /// The array after its first `count` elements.
    pub fn skip(self, count: u64) -> Self {
        GuestArray { addr: offset::<T>(self.addr, count), _of: PhantomData }
    }

    /// The first `count` elements, each a handle of its own, in order.
    pub fn elements(self, count: u64) -> GuestElements<T> {
        GuestElements { next: self.addr, left: count, _of: PhantomData }
    }
}

impl<T: FromBytes + IntoBytes> GuestArray<T> {
    /// Fetches the first `out.len()` elements; returns the array after them.
    pub fn read_into<M: GuestMemory + ?Sized>(self, memory: &M, out: &mut [T]) -> Result<Self, Errno> {
        let start = self.addr.ok_or(Errno::EFAULT)?;
        memory.read_guest_bytes(Access(()), start, out.as_mut_bytes())?;
        Ok(self.skip(out.len() as u64))
    }
}

impl<T: IntoBytes + Immutable> GuestArray<T> {
    /// Stores `data` as the first `data.len()` elements; returns the array after them.
    pub fn write_from<M: GuestMemory + ?Sized>(self, memory: &mut M, data: &[T]) -> Result<Self, Errno> {
        let start = self.addr.ok_or(Errno::EFAULT)?;
        memory.write_guest_bytes(Access(()), start, data.as_bytes())?;
        Ok(self.skip(data.len() as u64))
    }
}

/// The elements of a [`GuestArray`], front to back (see [`GuestArray::elements`]).
pub struct GuestElements<T> {
    next: Option<u64>,
    left: u64,
    _of: PhantomData<fn() -> T>,
}

impl<T> Iterator for GuestElements<T> {
    type Item = GuestInOut<T>;

    fn next(&mut self) -> Option<GuestInOut<T>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let element = GuestInOut { addr: self.next, _of: PhantomData };
        self.next = offset::<T>(self.next, 1);
        Some(element)
    }
}

/// A guest pointer whose type depends on the command that comes with it.
pub struct GuestHandle {
    addr: u64,
}

impl GuestHandle {
    pub const NULL: GuestHandle = GuestHandle { addr: 0 };

    pub const fn from_raw(addr: u64) -> Self {
        GuestHandle { addr }
    }

    pub fn address(&self) -> u64 {
        self.addr
    }

    pub fn is_null(&self) -> bool {
        self.addr == 0
    }

    pub fn into_in<T>(self) -> GuestIn<T> {
        GuestIn::from_raw(self.addr)
    }

    pub fn into_out<T>(self) -> GuestOut<T> {
        GuestOut::from_raw(self.addr)
    }

    pub fn into_in_out<T>(self) -> GuestInOut<T> {
        GuestInOut::from_raw(self.addr)
    }

    pub fn into_array<T>(self) -> GuestArray<T> {
        GuestArray::from_raw(self.addr)
    }
}

impl HypercallArg for GuestHandle {
    fn from_register(value: u64) -> Self {
        GuestHandle::from_raw(value)
    }
    fn to_register(self) -> u64 {
        self.addr
    }
}

impl core::fmt::Debug for GuestHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GuestHandle({:#x})", self.addr)
    }
}

/// The guest's constructors: handles from its own references and slices.
#[cfg(feature = "guest")]
mod from_guest_memory {
    use super::*;

    impl<T> GuestIn<T> {
        pub fn from_ref(value: &T) -> Self {
            Self::from_raw(value as *const T as u64)
        }
    }

    impl<T> GuestOut<T> {
        pub fn from_mut(value: &mut T) -> Self {
            Self::from_raw(value as *mut T as u64)
        }
    }

    impl<T> GuestInOut<T> {
        pub fn from_mut(value: &mut T) -> Self {
            Self::from_raw(value as *mut T as u64)
        }
    }

    impl<T> GuestArray<T> {
        /// For hypercalls that only read the elements.
        pub fn from_slice(values: &[T]) -> Self {
            Self::from_raw(values.as_ptr() as u64)
        }

        /// For hypercalls that write elements (results, frame numbers).
        pub fn from_mut_slice(values: &mut [T]) -> Self {
            Self::from_raw(values.as_mut_ptr() as u64)
        }
    }

    impl GuestHandle {
        pub fn from_ref<T: ?Sized>(value: &T) -> Self {
            Self::from_raw(value as *const T as *const u8 as u64)
        }

        pub fn from_mut<T: ?Sized>(value: &mut T) -> Self {
            Self::from_raw(value as *mut T as *mut u8 as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// Guest memory as a byte array at `BASE`, counting every fetch.
    struct Bytes {
        data: Vec<u8>,
        reads: core::cell::Cell<usize>,
    }

    const BASE: u64 = 0x1000;

    impl Bytes {
        fn new(len: usize) -> Self {
            Bytes { data: (0..len).map(|i| i as u8).collect(), reads: 0.into() }
        }

        fn range(&self, va: u64, len: usize) -> Result<core::ops::Range<usize>, Errno> {
            let start = va.checked_sub(BASE).ok_or(Errno::EFAULT)? as usize;
            let end = start.checked_add(len).filter(|&e| e <= self.data.len()).ok_or(Errno::EFAULT)?;
            Ok(start..end)
        }
    }

    impl GuestMemory for Bytes {
        fn read_guest_bytes(&self, _: Access, va: u64, out: &mut [u8]) -> Result<(), Errno> {
            self.reads.set(self.reads.get() + 1);
            out.copy_from_slice(&self.data[self.range(va, out.len())?]);
            Ok(())
        }

        fn write_guest_bytes(&mut self, _: Access, va: u64, data: &[u8]) -> Result<(), Errno> {
            let range = self.range(va, data.len())?;
            self.data[range].copy_from_slice(data);
            Ok(())
        }
    }

    #[test]
    fn a_value_is_fetched_once_and_written_back_in_place() {
        let mut memory = Bytes::new(64);
        let (value, out) = GuestInOut::<u32>::from_register(BASE + 4).read(&memory).unwrap();
        assert_eq!(value, u32::from_le_bytes([4, 5, 6, 7]));
        assert_eq!(memory.reads.get(), 1);
        out.write(&mut memory, &0xaabb_ccdd).unwrap();
        assert_eq!(&memory.data[4..8], &[0xdd, 0xcc, 0xbb, 0xaa]);
        assert_eq!(GuestIn::<u64>::from_raw(BASE + 60).read(&memory), Err(Errno::EFAULT), "runs off the end");
        assert_eq!(GuestIn::<u64>::NULL.read(&memory), Err(Errno::EFAULT));
    }

    #[test]
    fn elements_come_in_order_and_an_overflowing_array_faults() {
        let memory = Bytes::new(32);
        let values: Vec<u64> = GuestArray::<u64>::from_raw(BASE).elements(4).map(|e| e.into_in().read(&memory).unwrap()).collect();
        assert_eq!(values, [0x0706050403020100, 0x0f0e0d0c0b0a0908, 0x1716151413121110, 0x1f1e1d1c1b1a1918]);
        assert_eq!(GuestArray::<u64>::from_raw(BASE).elements(5).count(), 5, "the fifth is a handle; reading it faults");
        let mut near_the_top = GuestArray::<u64>::from_raw(u64::MAX - 8).elements(2);
        near_the_top.next();
        assert_eq!(near_the_top.next().unwrap().into_in().read(&memory), Err(Errno::EFAULT));
        assert_eq!(GuestArray::<u64>::from_raw(BASE).skip(u64::MAX / 4).read_into(&memory, &mut [0]).err(), Some(Errno::EFAULT));
        assert_eq!(GuestArray::<u64>::from_raw(u64::MAX).skip(1).address(), u64::MAX, "overflowed");
    }

    #[test]
    fn arrays_read_and_write_in_pieces() {
        let mut memory = Bytes::new(16);
        let mut first = [0u8; 4];
        let rest = GuestArray::<u8>::from_raw(BASE).read_into(&memory, &mut first).unwrap();
        assert_eq!(first, [0, 1, 2, 3]);
        assert_eq!(rest.address(), BASE + 4);
        let rest = rest.write_from(&mut memory, &[9, 9]).unwrap();
        assert_eq!(rest.address(), BASE + 6);
        assert_eq!(&memory.data[..8], &[0, 1, 2, 3, 9, 9, 6, 7]);
    }

    #[test]
    fn a_field_handle_writes_only_its_field() {
        #[derive(FromBytes, IntoBytes, Immutable)]
        #[repr(C)]
        struct Entry {
            op: u64,
            result: u64,
        }
        let mut memory = Bytes::new(16);
        let (entry, out) = GuestInOut::<Entry>::from_raw(BASE).read(&memory).unwrap();
        assert_eq!(entry.op, 0x0706050403020100);
        out.field::<u64>(core::mem::offset_of!(Entry, result)).write(&mut memory, &u64::MAX).unwrap();
        assert_eq!(memory.data, vec![0, 1, 2, 3, 4, 5, 6, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    #[should_panic(expected = "field outside")]
    fn a_field_outside_its_structure_is_a_bug() {
        let _ = GuestOut::<u32>::from_raw(BASE).field::<u64>(0);
    }

    #[test]
    fn an_untyped_handle_takes_its_commands_type() {
        let memory = Bytes::new(8);
        let handle = GuestHandle::from_register(BASE + 2);
        assert_eq!(handle.into_in::<u16>().read(&memory), Ok(0x0302));
        assert!(GuestHandle::NULL.is_null());
    }
}
