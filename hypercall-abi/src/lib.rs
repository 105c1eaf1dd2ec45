//! The hypercall interface between `pv-hypervisor` and its guests, defined once.
//!
//! It follows Xen's public x86_64 PV ABI (xen/include/public/) wherever it covers the
//! same thing, so the numbers and byte layouts here are Xen's. Each fact names the header
//! it comes from; docs/xen-abi.md collects them.
//!
//! - [`hypercalls`]: the ONE table of hypercalls. From it come the numbers
//!   ([`nr`]), the guest wrappers (feature `guest`, module [`guest`]), the hypervisor's
//!   [`HypercallHandler`] trait and its [`dispatch`] function, and the [`HYPERCALLS`]
//!   metadata used by tests and docs.
//! - Typed guest handles ([`handle`]): how hypercalls name guest memory, each value
//!   fetched once.
//! - Shared structures ([`start_info`], [`shared_info`]) with compile-time size and
//!   offset checks.
//! - Sub-operation numbers and argument structures ([`ops`]), error numbers ([`errno`]),
//!   ELF note types ([`elfnote`]), feature bits ([`features`]), x86_64 constants
//!   ([`arch_x86_64`]).
#![no_std]

pub mod arch_x86_64;
pub mod arg;
pub mod debug_exit;
pub mod elfnote;
pub mod errno;
pub mod features;
#[cfg(all(feature = "guest", target_arch = "x86_64"))]
pub mod guest;
pub mod handle;
#[macro_use]
mod macros;
pub mod hypercalls;
pub mod ops;
pub mod shared_info;
pub mod start_info;

pub use arg::HypercallArg;
pub use errno::Errno;
pub use handle::{GuestArray, GuestHandle, GuestIn, GuestInOut, GuestMemory, GuestOut};
pub use hypercalls::{dispatch, nr, HypercallHandler, HypercallInfo, HYPERCALLS};
