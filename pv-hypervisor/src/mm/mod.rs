//! Memory management: machine frames and access to guest memory.

pub mod frame_alloc;
pub mod guest_walk;
