//! The macro that turns the hypercall table into everything else.
//!
//! One entry `name = number (arg: Type, ...);` produces:
//! - `nr::name`, the number;
//! - a row of [`HYPERCALLS`](crate::HYPERCALLS) (name, number, arguments, docs);
//! - with feature `guest`, `guest::calls::name(args) -> i64`, which calls through the
//!   hypercall page;
//! - for entries in the `handled` block, a required method of
//!   [`HypercallHandler`](crate::HypercallHandler) and an arm of
//!   [`dispatch`](crate::dispatch). A hypervisor that lacks the handler does not compile.
//!
//! Entries in the `not_implemented` block are real Xen hypercalls the hypervisor does not
//! offer yet: guests still get wrappers (useful on real Xen), the hypervisor answers
//! `-ENOSYS`. Implementing one is moving its line into `handled` and writing the method.

macro_rules! define_hypercalls {
    (
        handled {
            $(
                $(#[doc = $hdoc:literal])*
                $hname:ident = $hnr:literal ( $($harg:ident : $hty:ty),* $(,)? );
            )*
        }
        not_implemented {
            $(
                $(#[doc = $udoc:literal])*
                $uname:ident = $unr:literal ( $($uarg:ident : $uty:ty),* $(,)? );
            )*
        }
    ) => {
        /// Hypercall numbers (xen/include/public/xen.h `__HYPERVISOR_*`, plus ours in the
        /// arch-specific range 48-55).
        #[allow(non_upper_case_globals)]
        pub mod nr {
            $( $(#[doc = $hdoc])* pub const $hname: u64 = $hnr; )*
            $( $(#[doc = $udoc])* pub const $uname: u64 = $unr; )*
        }

        /// Every hypercall in the table, in table order.
        pub const HYPERCALLS: &[HypercallInfo] = &[
            $(
                HypercallInfo {
                    name: stringify!($hname),
                    number: $hnr,
                    args: &[$((stringify!($harg), stringify!($hty))),*],
                    handled: true,
                    doc: concat!($($hdoc, "\n"),*),
                },
            )*
            $(
                HypercallInfo {
                    name: stringify!($uname),
                    number: $unr,
                    args: &[$((stringify!($uarg), stringify!($uty))),*],
                    handled: false,
                    doc: concat!($($udoc, "\n"),*),
                },
            )*
        ];

        // Six argument registers (RDI, RSI, RDX, R10, R8, R9) is all the ABI has.
        $( const _: () = assert!(<[&str]>::len(&[$(stringify!($harg)),*]) <= 6); )*
        $( const _: () = assert!(<[&str]>::len(&[$(stringify!($uarg)),*]) <= 6); )*

        /// The hypervisor's side: one method per implemented hypercall. `self` is the
        /// context of the calling vCPU. Errors become `-errno` in the guest's RAX.
        pub trait HypercallHandler {
            $(
                $(#[doc = $hdoc])*
                fn $hname(&mut self, $($harg: $hty),*) -> Result<i64, Errno>;
            )*
        }

        /// Decodes hypercall `number` with its six argument registers and calls the
        /// handler. Unknown and unimplemented numbers return `-ENOSYS`.
        #[inline(always)]
        pub fn dispatch<H: HypercallHandler + ?Sized>(
            handler: &mut H,
            number: u64,
            args: [u64; 6],
        ) -> i64 {
            #[allow(unused_mut, unused_variables)]
            let mut registers = args.into_iter();
            // Each arm returns the RAX value itself, so the arms meet on a register
            // rather than on a Result in memory.
            match number {
                $(
                    $hnr => {
                        $(
                            let $harg = <$hty as HypercallArg>::from_register(
                                registers.next().unwrap_or(0),
                            );
                        )*
                        $crate::errno::return_value(handler.$hname($($harg),*))
                    }
                )*
                _ => Errno::ENOSYS.to_return_value(),
            }
        }

        /// Typed wrappers, one per hypercall, calling through the hypercall page.
        ///
        /// # Safety
        /// Every wrapper is `unsafe`: pointer arguments must be valid for whatever the
        /// hypercall reads or writes, and some hypercalls change the caller's address
        /// space, trap handling or life.
        #[cfg(all(feature = "guest", target_arch = "x86_64"))]
        pub mod calls {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[doc = $hdoc])*
                #[allow(clippy::missing_safety_doc, unused_mut, unused_variables)]
                #[inline]
                pub unsafe fn $hname($($harg: $hty),*) -> i64 {
                    let mut registers = [0u64; 6];
                    let mut slots = registers.iter_mut();
                    $( if let Some(slot) = slots.next() { *slot = HypercallArg::to_register($harg); } )*
                    // SAFETY: the caller upholds this hypercall's contract (see module docs).
                    unsafe { crate::guest::hypercall(nr::$hname, registers) }
                }
            )*
            $(
                $(#[doc = $udoc])*
                #[allow(clippy::missing_safety_doc, unused_mut, unused_variables)]
                #[inline]
                pub unsafe fn $uname($($uarg: $uty),*) -> i64 {
                    let mut registers = [0u64; 6];
                    let mut slots = registers.iter_mut();
                    $( if let Some(slot) = slots.next() { *slot = HypercallArg::to_register($uarg); } )*
                    // SAFETY: the caller upholds this hypercall's contract (see module docs).
                    unsafe { crate::guest::hypercall(nr::$uname, registers) }
                }
            )*
        }
    };
}
