//! The integration harness: builds boot bundles, boots QEMU scenarios (our hypervisor or
//! real Xen), collects the serial log and parses the machine-readable `RESULT` lines.
//! `xtask` uses the same pieces for `run`, `test` and `bench`.

pub mod bundle;
pub mod conformance;
pub mod debian_kernel;
pub mod kernel_image;
pub mod qemu;
pub mod results;
pub mod scenario;
pub mod skip;
