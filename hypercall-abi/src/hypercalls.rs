pub mod nr {}
pub trait HypercallHandler {}
pub struct HypercallInfo;
pub const HYPERCALLS: &[HypercallInfo] = &[];
pub fn dispatch() {}
