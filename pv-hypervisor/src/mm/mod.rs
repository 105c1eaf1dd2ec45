//! Memory management: machine frames and access to guest memory.

pub mod guest_walk;
